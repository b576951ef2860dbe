// CPU kernels of rnnpool::forward / rnnpool::backward: argument checks, threading with
// at::parallel_for, and the torch-free core (csrc/core/sweep.h, built per ISA, see cpu_isa.h)
// doing the math. Both passes hand the core chunks of samples, as many samples as fit a fixed
// memory budget for the intermediates (in the backward, at most as many as fill a lane group with
// patches). With at least as many chunks as threads, the threads take whole chunks when they split
// evenly (each thread its own buffer; the best use of the caches); otherwise one chunk at a time is
// spread over all threads by the core (a single large sample, or a batch of small ones).
// The chunk size does not depend on the thread count, no result of the core depends on the
// schedule, and each chunk's parameter gradients are summed in chunk order, so every result is the
// same for any thread count.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <tuple>
#include <vector>

#include "../sweep_args.h"
#include "cpu_isa.h"

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace rnnpool {
namespace {

template <class T>
std::vector<const T*> data_pointers(const std::vector<at::Tensor>& tensors) {
  std::vector<const T*> out;
  for (const auto& t : tensors) out.push_back(t.data_ptr<T>());
  return out;
}

std::vector<at::Tensor> contiguous(at::TensorList tensors) {
  std::vector<at::Tensor> out;
  for (const auto& t : tensors) out.push_back(t.contiguous());
  return out;
}

// Memory for the intermediates of one chunk of samples, per pass. The backward's are larger (RNN1's
// tapes; about 11 MB per sample at the MobileNetV2 stem shape), so a chunk there is one sample of a
// large map, and many samples of a small one.
constexpr int64_t kForwardChunkBytes = int64_t(16) << 20;
constexpr int64_t kBackwardChunkBytes = int64_t(16) << 20;

// Samples per chunk: as many as fit `budget` bytes at `per_sample` elements of T each, at least one
// and at most `cap`, then evened out over the chunks that makes (8 samples at 6 per chunk: two chunks
// of 4, not 6 and 2, which would leave one thread idle for half the call).
template <class T>
int64_t chunk_samples(int64_t batch, int64_t per_sample, int64_t budget, int64_t cap = INT64_MAX) {
  const int64_t fit = budget / std::max<int64_t>(1, per_sample * sizeof(T));
  const int64_t most = std::max<int64_t>(1, std::min({batch, fit, cap}));
  const int64_t chunks = (batch + most - 1) / most;
  return (batch + chunks - 1) / chunks;
}

// at::parallel_for as the core's ParallelFor (serial_for, kernel.h, for a core call inside a thread).
void torch_parallel_for(int64_t tasks, const std::function<void(int64_t, int64_t)>& run) {
  at::parallel_for(0, tasks, 1, run);
}

// Asks for the whole 2 MiB pages inside [data, data + bytes) to be backed by transparent huge pages
// (Linux; elsewhere, and where THP is off, a no-op). The sweep writes its chunk buffers and dx once
// per call into memory the allocator has just taken from the system, so a call pays a page fault
// for every page it touches: with 4 KiB pages about 9,000 per ReX training step (perf), 10% of it.
void advise_huge_pages(void* data, size_t bytes) {
#ifdef __linux__
  constexpr uintptr_t kHugePage = uintptr_t(2) << 20;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHugePage - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#endif
}

// at::empty (so memory profiles see the buffer) with its large part advised onto huge pages.
at::Tensor empty_on_huge_pages(at::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor t = at::empty(sizes, options);
  advise_huge_pages(t.data_ptr(), t.nbytes());
  return t;
}

// run(chunk, buffer, parallel) for each of `chunks` chunks, on whole chunks per thread when they
// split evenly enough, else one chunk after another with the core's phases spread over the threads.
// buffer: `elements` of T for the call. Whole chunks are claimed in order, one at a time (not a
// range per thread), so they finish roughly in order (see ChunkGradients).
template <class T, class F>
void for_each_chunk(int64_t chunks, int64_t elements, const at::TensorOptions& options, F&& run) {
  // Whole chunks per thread when they split evenly enough (a multiple of the threads, or at least 4
  // per thread); otherwise each chunk's phases spread over all threads. Either way the same results.
  const int64_t threads = at::get_num_threads();
  if (chunks >= threads && (chunks % threads == 0 || chunks >= 4 * threads)) {
    std::atomic<int64_t> next_chunk{0};
    at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
      const at::Tensor buffer = empty_on_huge_pages({elements}, options);
      for (int64_t c; (c = next_chunk++) < chunks;) run(c, buffer.data_ptr<T>(), ParallelFor(serial_for));
    });
  } else {
    const at::Tensor buffer = empty_on_huge_pages({elements}, options);
    for (int64_t c = 0; c < chunks; ++c) run(c, buffer.data_ptr<T>(), ParallelFor(torch_parallel_for));
  }
}

// The parameter gradients of a call's chunks, each in a slot of its own while its chunk runs, added
// to `total` in chunk order as soon as every earlier chunk is in: the sums are the same for any
// schedule, and only the slots of chunks finished ahead of an earlier one are held, not one per
// chunk of the batch (64 small maps made 4 slots of 98 KB at the demo's shape; 1024 would make 64).
class ChunkGradients {
 public:
  ChunkGradients(int64_t chunks, int64_t width, double* total) : width_(width), total_(total), finished_(chunks) {}

  std::vector<double> slot() const { return std::vector<double>(width_, 0.0); }

  void finish(int64_t chunk, std::vector<double> slot) {
    const std::lock_guard<std::mutex> lock(mutex_);
    finished_[chunk] = std::move(slot);
    for (; next_ < static_cast<int64_t>(finished_.size()) && finished_[next_]; ++next_) {
      add_slots_in_order(*finished_[next_], width_, total_);
      finished_[next_].reset();
    }
  }

 private:
  int64_t width_;
  double* total_;
  std::vector<std::optional<std::vector<double>>> finished_;  // held until their turn
  int64_t next_ = 0;
  std::mutex mutex_;
};

using Gradients = std::tuple<at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>, std::vector<at::Tensor>>;

// Holds contiguous copies of the inputs and the core's kernel for them, for one call.
template <class T>
struct CpuSweep {
  at::Tensor x;
  std::vector<at::Tensor> rnn1, rnn2;
  at::Tensor proj_weight, proj_bias;
  std::vector<const T*> rnn1_ptr, rnn2_ptr;
  SweepShape shape;
  std::unique_ptr<SweepKernel<T>> kernel;

  CpuSweep(const SweepArgs& a, const at::Tensor& x_in, at::TensorList rnn1_in, at::TensorList rnn2_in,
           const c10::optional<at::Tensor>& proj_weight_in, const c10::optional<at::Tensor>& proj_bias_in)
      : x(x_in.contiguous()),
        rnn1(contiguous(rnn1_in)),
        rnn2(contiguous(rnn2_in)),
        proj_weight(proj_weight_in ? proj_weight_in->contiguous() : at::Tensor()),
        proj_bias(proj_bias_in ? proj_bias_in->contiguous() : at::Tensor()),
        rnn1_ptr(data_pointers<T>(rnn1)),
        rnn2_ptr(data_pointers<T>(rnn2)),
        shape(a.shape),
        kernel(make_cpu_sweep_kernel<T>(
            a.cell, shape,
            SweepParams<T>{rnn1_ptr.data(), rnn2_ptr.data(), proj_weight.defined() ? proj_weight.data_ptr<T>() : nullptr,
                           proj_bias.defined() ? proj_bias.data_ptr<T>() : nullptr, a.gate, a.update})) {}

  int64_t input_numel() const { return shape.channels * shape.pixels(); }
  int64_t output_numel() const { return shape.out_channels() * shape.patches(); }

  at::Tensor forward() const {
    at::Tensor out = at::empty({shape.batch, shape.out_channels(), shape.out_h(), shape.out_w()}, x.options());
    if (shape.batch == 0) return out;
    const SweepKernel<T>& k = *kernel;
    const int64_t chunk = chunk_samples<T>(shape.batch, k.forward_buffer_size(1), kForwardChunkBytes);
    const int64_t chunks = (shape.batch + chunk - 1) / chunk;
    // Buffers from torch's allocator, uninitialised: each element read is written first.
    for_each_chunk<T>(chunks, k.forward_buffer_size(chunk), x.options(), [&](int64_t c, T* buffer, const ParallelFor& parallel) {
      const int64_t first = c * chunk;
      k.forward(x.data_ptr<T>() + first * input_numel(), std::min(chunk, shape.batch - first),
                out.data_ptr<T>() + first * output_numel(), buffer, parallel);
    });
    return out;
  }

  Gradients backward(const at::Tensor& grad_output_in) const {
    const SweepKernel<T>& k = *kernel;
    const at::Tensor grad_output = grad_output_in.contiguous();
    at::Tensor dx = empty_on_huge_pages(x.sizes(), x.options());  // the core overwrites every element
    const GradOffsets& layout = k.layout();
    std::vector<double> total(layout.total, 0.0);
    if (shape.batch > 0) {
      // At most the samples that fill whole lane groups: small maps then train in several chunks,
      // whole ones per thread, and hold only those chunks' buffers (64 4x4 samples: 4 chunks of 16).
      const int64_t chunk =
          chunk_samples<T>(shape.batch, k.backward_buffer_size(1), kBackwardChunkBytes, k.lane_filling_samples());
      const int64_t chunks = (shape.batch + chunk - 1) / chunk;
      ChunkGradients gradients(chunks, layout.total, total.data());
      for_each_chunk<T>(chunks, k.backward_buffer_size(chunk), x.options(), [&](int64_t c, T* buffer, const ParallelFor& parallel) {
        const int64_t first = c * chunk;
        std::vector<double> slot = gradients.slot();
        k.backward(x.data_ptr<T>() + first * input_numel(), grad_output.data_ptr<T>() + first * output_numel(),
                   std::min(chunk, shape.batch - first), dx.data_ptr<T>() + first * input_numel(), slot.data(),
                   buffer, parallel);
        gradients.finish(c, std::move(slot));
      });
    }
    k.finalize(total.data());

    auto gradient = [&](int64_t offset, const at::Tensor& like) {
      at::Tensor g = at::empty(like.sizes(), like.options());
      T* out = g.data_ptr<T>();
      for (int64_t i = 0; i < g.numel(); ++i) out[i] = static_cast<T>(total[offset + i]);
      return g;
    };
    std::vector<at::Tensor> g1, g2, gproj;
    for (int p = 0; p < layout.num_cell_params; ++p) {
      g1.push_back(gradient(layout.rnn1[p], rnn1[p]));
      g2.push_back(gradient(layout.rnn2[p], rnn2[p]));
    }
    if (shape.global) gproj = {gradient(layout.proj_weight, proj_weight), gradient(layout.proj_bias, proj_bias)};
    return {dx, g1, g2, gproj};
  }
};

// Calls f(CpuSweep<T>) for the dtype of this call.
template <class F>
auto with_cpu_sweep(const SweepArgs& a, const at::Tensor& x, at::TensorList rnn1, at::TensorList rnn2,
                    const c10::optional<at::Tensor>& proj_weight, const c10::optional<at::Tensor>& proj_bias, F&& f) {
  if (x.scalar_type() == at::kDouble) return f(CpuSweep<double>(a, x, rnn1, rnn2, proj_weight, proj_bias));
  return f(CpuSweep<float>(a, x, rnn1, rnn2, proj_weight, proj_bias));
}

at::Tensor forward_cpu(const at::Tensor& x, at::TensorList rnn1, at::TensorList rnn2,
                       const c10::optional<at::Tensor>& proj_weight, const c10::optional<at::Tensor>& proj_bias,
                       at::IntArrayRef kernel_size, at::IntArrayRef stride, at::IntArrayRef padding,
                       c10::string_view cell, c10::string_view gate, c10::string_view update,
                       c10::string_view parts) {
  const SweepArgs a = check_sweep_args(x, rnn1, rnn2, proj_weight, proj_bias, kernel_size, stride, padding, cell,
                                       gate, update, parts);
  return with_cpu_sweep(a, x, rnn1, rnn2, proj_weight, proj_bias, [](const auto& s) { return s.forward(); });
}

Gradients backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& x, at::TensorList rnn1, at::TensorList rnn2,
    const c10::optional<at::Tensor>& proj_weight, const c10::optional<at::Tensor>& proj_bias,
    at::IntArrayRef kernel_size, at::IntArrayRef stride, at::IntArrayRef padding, c10::string_view cell,
    c10::string_view gate, c10::string_view update, c10::string_view parts) {
  const SweepArgs a = check_sweep_args(x, rnn1, rnn2, proj_weight, proj_bias, kernel_size, stride, padding, cell,
                                       gate, update, parts);
  check_grad_output(grad_output, x, a.shape);
  return with_cpu_sweep(a, x, rnn1, rnn2, proj_weight, proj_bias,
                        [&](const auto& sweep) { return sweep.backward(grad_output); });
}

}  // namespace

TORCH_LIBRARY_IMPL(rnnpool, CPU, m) {
  m.impl("forward", &forward_cpu);
  m.impl("backward", &backward_cpu);
}

}  // namespace rnnpool
