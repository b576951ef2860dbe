// CPU kernels of rnnpool::forward / rnnpool::backward: argument checks, threading with
// at::parallel_for, and the torch-free core (csrc/core/sweep.h, built per ISA, see cpu_isa.h)
// doing the math.
//
// Forward: the three phases of csrc/core/sweep.h one after the other for a chunk of samples at a
// time, each phase parallel over its pixel blocks or groups. Backward: parallel over samples; each sample's parameter gradients
// go to their own slot and the slots are summed in sample order, so every result is the same for
// any thread count.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <memory>
#include <tuple>
#include <vector>

#include "../sweep_args.h"
#include "cpu_isa.h"

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

// Memory for the forward's intermediates (projections and summaries of a chunk of samples).
constexpr int64_t kIntermediateBytes = int64_t(64) << 20;

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
    // The intermediates of a few samples at a time, so their memory stays bounded for any batch.
    const int64_t per_sample = (k.projection_size() + k.summaries_size()) * static_cast<int64_t>(sizeof(T));
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(shape.batch, kIntermediateBytes / per_sample));
    // From torch's allocator, uninitialised: each element read is written first.
    const at::Tensor projection = at::empty({chunk * k.projection_size()}, x.options());
    const at::Tensor summaries = at::empty({chunk * k.summaries_size()}, x.options());
    for (int64_t first = 0; first < shape.batch; first += chunk)
      forward_samples(first, std::min(chunk, shape.batch - first), projection.data_ptr<T>(),
                      summaries.data_ptr<T>(), out.data_ptr<T>());
    return out;
  }

  // The three phases of csrc/core/sweep.h for samples [first, first + count), each phase parallel
  // over its pixel blocks or groups.
  void forward_samples(int64_t first, int64_t count, T* projection, T* summaries, T* out) const {
    const SweepKernel<T>& k = *kernel;
    const T* xp = x.data_ptr<T>() + first * input_numel();
    out += first * output_numel();
    constexpr int64_t kPixelsPerTask = 1024;
    const int64_t pixel_tasks = (shape.pixels() + kPixelsPerTask - 1) / kPixelsPerTask;
    at::parallel_for(0, count * pixel_tasks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int64_t n = i / pixel_tasks, pixel = (i % pixel_tasks) * kPixelsPerTask;
        k.project(xp + n * input_numel(), pixel, std::min(pixel + kPixelsPerTask, shape.pixels()),
                  projection + n * k.projection_size());
      }
    });
    // Runs f(n, group, workspace) for every group of every sample, in parallel.
    auto for_each_group = [&](int64_t groups, auto&& f) {
      at::parallel_for(0, count * groups, 1, [&](int64_t begin, int64_t end) {
        std::vector<T> workspace(k.workspace_size());
        for (int64_t i = begin; i < end; ++i) f(i / groups, i % groups, workspace.data());
      });
    };
    for_each_group(k.sequence_groups(), [&](int64_t n, int64_t group, T* ws) {
      k.summarize(projection + n * k.projection_size(), group, summaries + n * k.summaries_size(), ws);
    });
    for_each_group(k.patch_groups(), [&](int64_t n, int64_t group, T* ws) {
      k.pool(summaries + n * k.summaries_size(), group, out + n * output_numel(), ws);
    });
  }

  Gradients backward(const at::Tensor& grad_output_in) const {
    const SweepKernel<T>& k = *kernel;
    const at::Tensor grad_output = grad_output_in.contiguous();
    at::Tensor dx = at::empty_like(x);  // backward_sample overwrites every element
    const GradOffsets& layout = k.layout();
    std::vector<double> slots(shape.batch * layout.total, 0.0);
    const T* xp = x.data_ptr<T>();
    const T* gp = grad_output.data_ptr<T>();
    T* dxp = dx.data_ptr<T>();
    at::parallel_for(0, shape.batch, 1, [&](int64_t begin, int64_t end) {
      const at::Tensor buffers = at::empty({k.backward_buffer_size()}, x.options());
      for (int64_t n = begin; n < end; ++n)
        k.backward_sample(xp + n * input_numel(), gp + n * output_numel(), dxp + n * input_numel(),
                          slots.data() + n * layout.total, buffers.data_ptr<T>());
    });
    std::vector<double> total(layout.total, 0.0);
    for (int64_t n = 0; n < shape.batch; ++n)
      for (int64_t i = 0; i < layout.total; ++i) total[i] += slots[n * layout.total + i];
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
