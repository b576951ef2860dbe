// The sweep's op signatures, shared by rnnpool:: (csrc/rnnpool.cpp) and the test-only
// rnnpool_emulated:: (csrc/testing/emulated_ops.cpp).
#pragma once

#define SWEEP_FORWARD_SIGNATURE                                                                  \
  "(Tensor x, Tensor[] rnn1, Tensor[] rnn2, Tensor? proj_weight, Tensor? proj_bias, "           \
  "int[2] kernel_size, int[2] stride, int[2] padding, str cell, str gate_nonlinearity, "        \
  "str update_nonlinearity, str parts) -> Tensor"
#define SWEEP_BACKWARD_SIGNATURE                                                                 \
  "(Tensor grad_output, Tensor x, Tensor[] rnn1, Tensor[] rnn2, Tensor? proj_weight, "          \
  "Tensor? proj_bias, int[2] kernel_size, int[2] stride, int[2] padding, str cell, "            \
  "str gate_nonlinearity, str update_nonlinearity, str parts) "                                 \
  "-> (Tensor grad_x, Tensor[] grad_rnn1, Tensor[] grad_rnn2, Tensor[] grad_proj)"
