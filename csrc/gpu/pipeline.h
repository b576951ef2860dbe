// The sweep as the GPU runs it: GEMMs for every input projection and every weight gradient, and
// a team of threads per recurrent sequence (csrc/gpu/sequence.h) for the recurrences. The recurrences
// run through a SequenceRunner: the CUDA kernels (csrc/gpu/sweep_cuda.cu), or a loop on the CPU
// (csrc/testing/emulated_ops.cpp) that lets the CPU tests check this whole algorithm.
//
// Forward, for x [N, C, H, W] with P = N H' W' patches:
//   xp  = W1_in x per pixel                        GEMM [N H W, C] x [C, g h1]   (g = 1 FastGRNN, 3 GRU)
//   S   = RNN1 over each patch's rows and columns   P (kh + kw) sequences        -> [P, kh + kw, h1]
//   s2  = W2_in S per summary                       GEMM [P (kh + kw), h1] x [h1, g h2]
//   Q   = RNN2 both ways over rows and columns      4 P sequences                -> [P, 4, h2]
//   V^G = proj_weight S + proj_bias (ReX)           GEMM [P, (kh + kw) h1] x [(kh + kw) h1, 4 h2]
// Backward recomputes xp, S and s2, runs the sequences backwards (each writes per-step gradient
// records and its h_prev), and turns those into weight gradients with GEMMs and sums.
#pragma once

#include <ATen/ATen.h>

#include <tuple>
#include <vector>

#include "../sweep_args.h"
#include "sequence.h"

namespace rnnpool {

// Runs SequenceTeam<T>::forward or ::backward for every sequence of a job, on the device that holds
// the job's pointers.
class SequenceRunner {
 public:
  virtual ~SequenceRunner() = default;
  virtual void forward(const SequenceJob<float>& job) const = 0;
  virtual void forward(const SequenceJob<double>& job) const = 0;
  virtual void backward(const SequenceJob<float>& job) const = 0;
  virtual void backward(const SequenceJob<double>& job) const = 0;
};

using SweepGradients =
    std::tuple<at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>, std::vector<at::Tensor>>;

// rnnpool::forward / rnnpool::backward through a runner: the arguments are checked
// (check_sweep_args), the device of x guarded, and float16/bfloat16 inputs computed in float32 with
// the results cast back.
at::Tensor sequence_sweep_forward(const SequenceRunner& runner, const at::Tensor& x, at::TensorList rnn1,
                                  at::TensorList rnn2, const c10::optional<at::Tensor>& proj_weight,
                                  const c10::optional<at::Tensor>& proj_bias, at::IntArrayRef kernel_size,
                                  at::IntArrayRef stride, at::IntArrayRef padding, c10::string_view cell,
                                  c10::string_view gate, c10::string_view update, c10::string_view parts);

SweepGradients sequence_sweep_backward(const SequenceRunner& runner, const at::Tensor& grad_output,
                                       const at::Tensor& x, at::TensorList rnn1, at::TensorList rnn2,
                                       const c10::optional<at::Tensor>& proj_weight,
                                       const c10::optional<at::Tensor>& proj_bias, at::IntArrayRef kernel_size,
                                       at::IntArrayRef stride, at::IntArrayRef padding, c10::string_view cell,
                                       c10::string_view gate, c10::string_view update, c10::string_view parts);

// The two as kernels for TORCH_LIBRARY_IMPL, with a default-constructed Runner.
template <class Runner>
at::Tensor sequence_sweep_forward_kernel(const at::Tensor& x, at::TensorList rnn1, at::TensorList rnn2,
                                         const c10::optional<at::Tensor>& proj_weight,
                                         const c10::optional<at::Tensor>& proj_bias, at::IntArrayRef kernel_size,
                                         at::IntArrayRef stride, at::IntArrayRef padding, c10::string_view cell,
                                         c10::string_view gate, c10::string_view update, c10::string_view parts) {
  return sequence_sweep_forward(Runner(), x, rnn1, rnn2, proj_weight, proj_bias, kernel_size, stride, padding, cell,
                                gate, update, parts);
}

template <class Runner>
SweepGradients sequence_sweep_backward_kernel(const at::Tensor& grad_output, const at::Tensor& x, at::TensorList rnn1,
                                              at::TensorList rnn2, const c10::optional<at::Tensor>& proj_weight,
                                              const c10::optional<at::Tensor>& proj_bias,
                                              at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                              at::IntArrayRef padding, c10::string_view cell, c10::string_view gate,
                                              c10::string_view update, c10::string_view parts) {
  return sequence_sweep_backward(Runner(), grad_output, x, rnn1, rnn2, proj_weight, proj_bias, kernel_size, stride,
                                 padding, cell, gate, update, parts);
}

}  // namespace rnnpool
