// CUDA kernels of rnnpool::forward / rnnpool::backward: csrc/sequences/pipeline.cpp with a runner
// that launches the recurrences (csrc/core/sequence.h) on the current stream.
//
// A block runs several sequences at once, a team of `hidden` threads each (thread r computes
// hidden unit r at every step). The block first copies the cell's recurrent weight and biases into
// shared memory, rows padded to hidden + 1 elements: at a step the team's threads read one row each,
// element c at the same time, and the padding puts those reads in different banks. Each team's
// state lives in shared memory too, and the block synchronises between steps.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

#include "../sequences/pipeline.h"

namespace rnnpool {
namespace {

constexpr int kTargetThreadsPerBlock = 128;
// A team is one block at most; at 512 threads the kernels' registers (up to 80 each) still fit an SM.
constexpr int kMaxHidden = 512;
// Weights above this stay in global memory (read through L1) rather than in shared memory.
constexpr int64_t kMaxSharedWeightBytes = 96 * 1024;

// How a job is laid out on the GPU.
struct LaunchShape {
  int teams_per_block, threads_per_block;
  bool weights_shared;
  int64_t weight_elems, scratch_elems;  // per block, in elements of T
  size_t shared_bytes;
};

template <class T>
LaunchShape launch_shape(const SequenceJob<T>& job, bool backward) {
  const int H = job.hidden, gates = job.gates();
  LaunchShape s;
  s.teams_per_block = std::max(1, kTargetThreadsPerBlock / H);
  s.threads_per_block = s.teams_per_block * H;
  const int64_t weights = int64_t(gates) * H * (H + 1) + 2 * int64_t(gates) * H;
  s.weights_shared = weights * int64_t(sizeof(T)) <= kMaxSharedWeightBytes;
  s.weight_elems = s.weights_shared ? weights : 0;
  s.scratch_elems = s.teams_per_block * (backward ? backward_scratch_size(H, gates) : forward_scratch_size(H));
  s.shared_bytes = static_cast<size_t>((s.weight_elems + s.scratch_elems) * int64_t(sizeof(T)));
  return s;
}

template <class T, bool kBackward>
__global__ void sequence_kernel(SequenceJob<T> job, LaunchShape shape) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  T* shared = reinterpret_cast<T*>(shared_bytes);
  const int H = job.hidden, gates = job.gates();
  if (shape.weights_shared) {
    const int64_t rows = int64_t(gates) * H, stride = H + 1;
    T* recurrent = shared;
    T* bias_a = recurrent + rows * stride;
    T* bias_b = bias_a + rows;
    for (int64_t i = threadIdx.x; i < rows * H; i += blockDim.x) recurrent[i / H * stride + i % H] = job.recurrent[i];
    for (int64_t i = threadIdx.x; i < rows; i += blockDim.x) {
      bias_a[i] = job.bias_a[i];
      bias_b[i] = job.bias_b[i];
    }
    job.recurrent = recurrent;
    job.recurrent_stride = static_cast<int>(stride);
    job.bias_a = bias_a;
    job.bias_b = bias_b;
  }
  __syncthreads();
  const int team = threadIdx.x / H;
  T* scratch = shared + shape.weight_elems + team * (shape.scratch_elems / shape.teams_per_block);
  const Units units{static_cast<int>(threadIdx.x % H), H};
  auto sync = [] { __syncthreads(); };
  // Every thread of the block runs the same rounds, so all reach every barrier.
  for (int64_t first = int64_t(blockIdx.x) * shape.teams_per_block; first < job.num_sequences;
       first += int64_t(gridDim.x) * shape.teams_per_block) {
    const int64_t q = first + team;
    const bool active = q < job.num_sequences;
    SequenceTeam<T> t(job, active ? q : 0, active, units, scratch);
    if (kBackward)
      t.backward(sync);
    else
      t.forward(sync);
    __syncthreads();  // the next round reuses the scratch
  }
}

class CudaRunner final : public SequenceRunner {
 public:
  void forward(const SequenceJob<float>& job) const override { launch<false>(job); }
  void forward(const SequenceJob<double>& job) const override { launch<false>(job); }
  void backward(const SequenceJob<float>& job) const override { launch<true>(job); }
  void backward(const SequenceJob<double>& job) const override { launch<true>(job); }

 private:
  template <bool kBackward, class T>
  static void launch(const SequenceJob<T>& job) {
    if (job.num_sequences == 0) return;
    TORCH_CHECK_VALUE(job.hidden <= kMaxHidden, "the CUDA sweep runs a thread per hidden unit and supports hidden "
                      "sizes up to ", kMaxHidden, ", got ", job.hidden, " (use backend='reference' for larger cells)");
    const LaunchShape shape = launch_shape(job, kBackward);
    auto kernel = sequence_kernel<T, kBackward>;
    // Above 48 KB a block's dynamic shared memory must be asked for.
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(shape.shared_bytes)));
    // Enough blocks to fill the GPU many times over; the kernel strides over the rest.
    const int64_t blocks = std::min<int64_t>((job.num_sequences + shape.teams_per_block - 1) / shape.teams_per_block,
                                             int64_t(1) << 20);
    kernel<<<static_cast<unsigned>(blocks), shape.threads_per_block, shape.shared_bytes,
             at::cuda::getCurrentCUDAStream()>>>(job, shape);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

at::Tensor forward_cuda(const at::Tensor& x, at::TensorList rnn1, at::TensorList rnn2,
                        const c10::optional<at::Tensor>& proj_weight, const c10::optional<at::Tensor>& proj_bias,
                        at::IntArrayRef kernel_size, at::IntArrayRef stride, at::IntArrayRef padding,
                        c10::string_view cell, c10::string_view gate, c10::string_view update, c10::string_view parts) {
  const SweepArgs a = check_sweep_args(x, rnn1, rnn2, proj_weight, proj_bias, kernel_size, stride, padding, cell,
                                       gate, update, parts);
  const c10::cuda::CUDAGuard device_guard(x.device());
  return sequence_sweep_forward(CudaRunner(), a, x, rnn1, rnn2, proj_weight, proj_bias);
}

SweepGradients backward_cuda(const at::Tensor& grad_output, const at::Tensor& x, at::TensorList rnn1,
                             at::TensorList rnn2, const c10::optional<at::Tensor>& proj_weight,
                             const c10::optional<at::Tensor>& proj_bias, at::IntArrayRef kernel_size,
                             at::IntArrayRef stride, at::IntArrayRef padding, c10::string_view cell,
                             c10::string_view gate, c10::string_view update, c10::string_view parts) {
  const SweepArgs a = check_sweep_args(x, rnn1, rnn2, proj_weight, proj_bias, kernel_size, stride, padding, cell,
                                       gate, update, parts);
  check_grad_output(grad_output, x, a.shape);
  const c10::cuda::CUDAGuard device_guard(x.device());
  return sequence_sweep_backward(CudaRunner(), a, grad_output, x, rnn1, rnn2, proj_weight, proj_bias);
}

}  // namespace

TORCH_LIBRARY_IMPL(rnnpool, CUDA, m) {
  m.impl("forward", &forward_cuda);
  m.impl("backward", &backward_cuda);
}

}  // namespace rnnpool
