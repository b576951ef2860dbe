// CUDA kernels of rnnpool::forward / rnnpool::backward: csrc/gpu/pipeline.cpp with a runner
// that launches the recurrences on the current stream, one block as csrc/gpu/sequence_block.h
// describes (teams of threads per sequence, weights and states in shared memory).
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <torch/library.h>

#include "pipeline.h"
#include "sequence_block.h"

namespace rnnpool {
namespace {

// Enough blocks to fill any GPU many times over; the blocks stride over the rest.
constexpr int64_t kMaxBlocks = int64_t(1) << 20;

template <class T, bool kBackward>
__global__ void sequence_kernel(SequenceJob<T> job, LaunchShape shape) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  sequence_block<kBackward>(job, shape, blockIdx.x, threadIdx.x, reinterpret_cast<T*>(shared_bytes),
                            [] { __syncthreads(); });
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
    TORCH_CHECK_VALUE(job.hidden <= kMaxTeamHidden, "the CUDA sweep runs a thread per hidden unit and supports "
                      "hidden sizes up to ", kMaxTeamHidden, ", got ", job.hidden,
                      " (use backend='reference' for larger cells)");
    const LaunchShape shape = launch_shape(job, kBackward, kMaxBlocks);
    auto kernel = sequence_kernel<T, kBackward>;
    // Above 48 KB a block's dynamic shared memory must be asked for.
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(shape.shared_bytes)));
    kernel<<<static_cast<unsigned>(shape.blocks), shape.threads_per_block, shape.shared_bytes,
             at::cuda::getCurrentCUDAStream()>>>(job, shape);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(rnnpool, CUDA, m) {
  m.impl("forward", &sequence_sweep_forward_kernel<CudaRunner>);
  m.impl("backward", &sequence_sweep_backward_kernel<CudaRunner>);
}

}  // namespace rnnpool
