// The GPU algorithm on the CPU: torch.ops.rnnpool_emulated.forward / backward run
// csrc/sequences/pipeline.cpp with a runner that calls each sequence's thread function
// (csrc/core/sequence.h) in a loop, in place of the CUDA kernels. Tests compare it with the
// reference, so everything in the CUDA path except the kernels' launch code is checked without a GPU.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "pipeline.h"

namespace rnnpool {
namespace {

// Runs each sequence's team code with one CPU thread doing all its units; the GPU's barriers have
// nothing to wait for then.
class CpuLoopRunner final : public SequenceRunner {
 public:
  void forward(const SequenceJob<float>& job) const override { run<false>(job); }
  void forward(const SequenceJob<double>& job) const override { run<false>(job); }
  void backward(const SequenceJob<float>& job) const override { run<true>(job); }
  void backward(const SequenceJob<double>& job) const override { run<true>(job); }

 private:
  template <bool kBackward, class T>
  static void run(const SequenceJob<T>& job) {
    const int64_t scratch_size =
        kBackward ? backward_scratch_size(job.hidden, job.gates()) : forward_scratch_size(job.hidden);
    at::parallel_for(0, job.num_sequences, 64, [&](int64_t begin, int64_t end) {
      std::vector<T> scratch(scratch_size);
      for (int64_t q = begin; q < end; ++q) {
        SequenceTeam<T> team(job, q, /*active=*/true, Units{0, 1}, scratch.data());
        if (kBackward)
          team.backward([] {});
        else
          team.forward([] {});
      }
    });
  }
};

at::Tensor forward_emulated(const at::Tensor& x, at::TensorList rnn1, at::TensorList rnn2,
                            const c10::optional<at::Tensor>& proj_weight, const c10::optional<at::Tensor>& proj_bias,
                            at::IntArrayRef kernel_size, at::IntArrayRef stride, at::IntArrayRef padding,
                            c10::string_view cell, c10::string_view gate, c10::string_view update,
                            c10::string_view parts) {
  const SweepArgs a = check_sweep_args(x, rnn1, rnn2, proj_weight, proj_bias, kernel_size, stride, padding, cell,
                                       gate, update, parts);
  return sequence_sweep_forward(CpuLoopRunner(), a, x, rnn1, rnn2, proj_weight, proj_bias);
}

SweepGradients backward_emulated(const at::Tensor& grad_output, const at::Tensor& x, at::TensorList rnn1,
                                 at::TensorList rnn2, const c10::optional<at::Tensor>& proj_weight,
                                 const c10::optional<at::Tensor>& proj_bias, at::IntArrayRef kernel_size,
                                 at::IntArrayRef stride, at::IntArrayRef padding, c10::string_view cell,
                                 c10::string_view gate, c10::string_view update, c10::string_view parts) {
  const SweepArgs a = check_sweep_args(x, rnn1, rnn2, proj_weight, proj_bias, kernel_size, stride, padding, cell,
                                       gate, update, parts);
  check_grad_output(grad_output, x, a.shape);
  return sequence_sweep_backward(CpuLoopRunner(), a, grad_output, x, rnn1, rnn2, proj_weight, proj_bias);
}

}  // namespace

TORCH_LIBRARY_IMPL(rnnpool_emulated, CPU, m) {
  m.impl("forward", &forward_emulated);
  m.impl("backward", &backward_emulated);
}

}  // namespace rnnpool
