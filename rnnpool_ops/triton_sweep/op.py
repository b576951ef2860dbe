"""rnnpool::forward_triton and rnnpool::backward_triton: torch.library.triton_op wrappers of
sweep.forward / sweep.backward, with autograd.

Same arguments as rnnpool::forward / rnnpool::backward (csrc/rnnpool.cpp). triton_op registers the
function body itself as the fake kernel, and under torch.compile the ops are decomposed into their
torch calls and wrap_triton'd kernels, so the kernels are traced rather than called opaquely. On CPU
tensors (the Triton interpreter) the ops run eagerly, but fake-tensor tracing of them does not work
there: test the launchers and sweep.forward/backward directly.
"""

import torch
from torch.library import triton_op

from .._ops import register_sweep_autograd
from . import sweep

_CONFIG = ("int[2] kernel_size, int[2] stride, int[2] padding, str cell, str gate_nonlinearity, "
           "str update_nonlinearity, str parts")
_INPUTS = f"Tensor x, Tensor[] rnn1, Tensor[] rnn2, Tensor? proj_weight, Tensor? proj_bias, {_CONFIG}"
FORWARD_SCHEMA = f"({_INPUTS}) -> Tensor"
BACKWARD_SCHEMA = (f"(Tensor grad_output, {_INPUTS}) "
                   "-> (Tensor grad_x, Tensor[] grad_rnn1, Tensor[] grad_rnn2, Tensor[] grad_proj)")


@triton_op("rnnpool::forward_triton", mutates_args=(), schema=FORWARD_SCHEMA)
def forward_triton(x, rnn1, rnn2, proj_weight, proj_bias, kernel_size, stride, padding, cell, gate_nonlinearity,
                   update_nonlinearity, parts):
    return sweep.forward(x, rnn1, rnn2, proj_weight, proj_bias, kernel_size, stride, padding, cell,
                         gate_nonlinearity, update_nonlinearity, parts)


@triton_op("rnnpool::backward_triton", mutates_args=(), schema=BACKWARD_SCHEMA)
def backward_triton(grad_output, x, rnn1, rnn2, proj_weight, proj_bias, kernel_size, stride, padding, cell,
                    gate_nonlinearity, update_nonlinearity, parts):
    return sweep.backward(grad_output, x, rnn1, rnn2, proj_weight, proj_bias, kernel_size, stride, padding, cell,
                          gate_nonlinearity, update_nonlinearity, parts)


register_sweep_autograd("rnnpool::forward_triton", torch.ops.rnnpool.backward_triton)
