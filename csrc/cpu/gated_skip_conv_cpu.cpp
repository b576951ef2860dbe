// CPU kernels of rnnpool::gated_skip_conv2d and its backward (docs/spec.md section 5).
//
// Forward: the channels with m[n, c] != 0 are convolved, and only those, by the direct convolution
// of csrc/core/gated_conv.h (the active CPU ISA build), which writes y = m * act(alpha * conv +
// beta) + (1 - m) * x as it stores each tile; channels with m = 0 are copied from x. A sample with
// every m = 0 is a copy and costs no convolution. Skipping where m = 0 holds in training too: the
// backward recomputes the convolution in full.
//
// Why not oneDNN for the active part: a gathered subset of filters is a new convolution per sample,
// and oneDNN only runs fast on it in channels-last, which costs a transpose of x per sample and a
// pass over the output for the blend. With a quarter of the channels active those two took as long
// as the multiply-adds (benchmarks/results/gated-skip-cpu-*).
//
// Backward: the whole convolution once more (batched, with the taps that can read a pixel: see
// ReachingTaps), one fused element-wise pass for the gate, scale/shift and direct-x gradients and the
// convolution's output gradient, then ATen's convolution_backward.
#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <tuple>
#include <vector>

#include "../core/checked_size.h"
#include "../gated_skip_args.h"
#include "cpu_isa.h"

namespace rnnpool {
namespace {

// Everything of one call, made contiguous, with the per-channel epilogue folded to
// z = alpha[c] * conv_without_bias + beta[c] (alpha = scale, beta = bias * scale + shift).
struct GatedSkipInputs {
  GatedSkipShape shape;
  at::Tensor x, weight, gate, alpha, beta;  // gate: m [N, C]

  GatedSkipInputs(const at::Tensor& x_in, const at::Tensor& weight_in, const c10::optional<at::Tensor>& bias,
                  const c10::optional<at::Tensor>& layer_gate, const c10::optional<at::Tensor>& channel_gate,
                  const c10::optional<at::Tensor>& scale, const c10::optional<at::Tensor>& shift,
                  at::IntArrayRef dilation, int64_t groups, c10::string_view activation)
      : shape(check_gated_skip_args(x_in, weight_in, bias, layer_gate, channel_gate, scale, shift, dilation,
                                    groups, activation)),
        x(x_in.contiguous()),
        weight(weight_in.contiguous()) {
    const auto options = x.options();
    gate = at::ones({shape.batch, shape.channels}, options);
    if (layer_gate) gate.mul_(layer_gate->unsqueeze(1));
    if (channel_gate) gate.mul_(*channel_gate);
    alpha = scale ? scale->contiguous() : at::ones({shape.channels}, options);
    beta = bias ? *bias * alpha : at::zeros({shape.channels}, options);
    if (shift) beta = beta + *shift;
    beta = beta.contiguous();
  }

};

// The filters cut to the taps that can read a pixel (reaching_half_kernel, core/checked_size.h), with
// the padding and dilation that keep the shape: the other taps read only zero padding, so convolving
// with these alone gives the same output and input gradient, with padding bounded by the image
// whatever the dilation. The cut-off taps' weight gradients are zero.
struct ReachingTaps {
  at::Tensor weight;
  std::vector<int64_t> padding, dilation;
  int64_t first_h, first_w;  // the first kept tap of the full filter, per dimension

  explicit ReachingTaps(const GatedSkipInputs& in) {
    const GatedSkipShape& s = in.shape;
    const int64_t half_h = reaching_half_kernel(s.kernel_h, s.dilation_h, s.height);
    const int64_t half_w = reaching_half_kernel(s.kernel_w, s.dilation_w, s.width);
    first_h = (s.kernel_h - 1) / 2 - half_h;
    first_w = (s.kernel_w - 1) / 2 - half_w;
    weight = in.weight.slice(2, first_h, first_h + 2 * half_h + 1).slice(3, first_w, first_w + 2 * half_w + 1);
    // A single tap is read at offset 0 whatever the dilation.
    dilation = {half_h ? s.dilation_h : 1, half_w ? s.dilation_w : 1};
    padding = {dilation[0] * half_h, dilation[1] * half_w};
  }

  at::Tensor convolve(const at::Tensor& input, int64_t groups) const {
    return at::conv2d(input, weight.contiguous(), c10::nullopt, {1, 1}, padding, dilation, groups);
  }

  // The full filters' gradient from the kept taps' one.
  at::Tensor full_weight_grad(const at::Tensor& grad, const at::Tensor& full_weight) const {
    if (grad.sizes() == full_weight.sizes()) return grad;
    at::Tensor full = at::zeros_like(full_weight);
    full.slice(2, first_h, first_h + grad.size(2)).slice(3, first_w, first_w + grad.size(3)).copy_(grad);
    return full;
  }
};

template <class T>
inline T activate(T z, bool relu) {
  return relu && !(z > T(0)) && !std::isnan(z) ? T(0) : z;
}

// One sample made ready for the direct convolution: its zero-padded planes, the filters of its
// active channels and one job per group with an active channel. Reused from sample to sample.
//
// Only the taps that can read a pixel are convolved (reaching_half_kernel, core/checked_size.h):
// the others read zeros for every output pixel. So the padding, and the buffer, stay below the
// image's own size on each side for any dilation, instead of growing with C * dilation^2.
template <class T>
class SampleJobs {
 public:
  explicit SampleJobs(const GatedSkipInputs& in)
      : in_(in),
        half_h_(reaching_half_kernel(in.shape.kernel_h, in.shape.dilation_h, in.shape.height)),
        half_w_(reaching_half_kernel(in.shape.kernel_w, in.shape.dilation_w, in.shape.width)),
        layout_(gated_conv_layout(in.shape.height, in.shape.width, 2 * half_h_ + 1, 2 * half_w_ + 1,
                                  in.shape.dilation_h, in.shape.dilation_w)),
        // Zeroed once: each sample writes the interiors only, so the borders stay zero.
        padded_(checked_buffer_size(), T(0)) {}

  // Makes sample n's jobs; copies x to y for its channels with m = 0.
  const std::vector<GatedConvJob<T>>& prepare(int64_t n, T* y) {
    const GatedSkipShape& s = in_.shape;
    const T* m = in_.gate.template data_ptr<T>() + n * s.channels;
    const T* x = in_.x.template data_ptr<T>() + n * s.channels * s.plane();
    std::vector<int64_t> active;
    for (int64_t c = 0; c < s.channels; ++c) {
      if (m[c] != T(0)) active.push_back(c);
      else std::memcpy(y + c * s.plane(), x + c * s.plane(), s.plane() * sizeof(T));
    }
    // The filters are packed again only when the active set changes (with hard gates it often does not).
    if (active != active_) {
      active_ = std::move(active);
      make_jobs();
    }
    for (GatedConvJob<T>& job : jobs_) {
      pad_channels(x, job.first_input, job.group_channels);
      job.gate = m;
      job.y = y;
    }
    return jobs_;
  }

 private:
  // The padded copy's elements. The padding is under the image's size (see above) and the checks
  // bounded x's size, so this fits; checked all the same, as every size from user integers.
  size_t checked_buffer_size() const {
    const Size plane = Size(layout_.padded_height) * Size(layout_.padded_width);
    const Size elements = Size(in_.shape.channels) * plane + Size(kGatedConvColumnMultiple);
    TORCH_CHECK((elements * Size(sizeof(T))).within(kMaxAllocationBytes),
                "gated_skip_conv2d: the padded copy of a sample (", describe_bytes(elements * Size(sizeof(T))),
                ") is over the limit of 2^40 bytes");
    return static_cast<size_t>(layout_.buffer_size(in_.shape.channels));
  }

  void pad_channels(const T* x, int64_t first, int64_t count) {
    const GatedSkipShape& s = in_.shape;
    for (int64_t c = first; c < first + count; ++c)
      for (int64_t i = 0; i < s.height; ++i)
        std::memcpy(padded_.data() + c * layout_.plane() + i * layout_.padded_width + layout_.origin(),
                    x + (c * s.height + i) * s.width, s.width * sizeof(T));
  }

  // One job per run of active channels in one group, its filters' reaching taps packed as
  // [C/groups][2 half_h + 1][2 half_w + 1][count].
  void make_jobs() {
    const GatedSkipShape& s = in_.shape;
    const int64_t per_group = s.channels_per_group(), kh = 2 * half_h_ + 1, kw = 2 * half_w_ + 1;
    const int64_t taps = per_group * kh * kw;
    // The reaching taps' offset in each filter [C/groups][kernel_h][kernel_w].
    const int64_t top = (s.kernel_h - 1) / 2 - half_h_, left = (s.kernel_w - 1) / 2 - half_w_;
    const T* weight = in_.weight.template data_ptr<T>();
    jobs_.clear();
    filters_.resize(active_.size() * taps);
    for (size_t first = 0; first < active_.size();) {
      const int64_t group = active_[first] / per_group;
      size_t last = first;
      while (last < active_.size() && active_[last] / per_group == group) ++last;
      const int64_t count = static_cast<int64_t>(last - first);
      T* filters = filters_.data() + first * taps;
      for (int64_t j = 0; j < count; ++j) {
        const T* filter = weight + active_[first + j] * per_group * s.kernel_h * s.kernel_w;
        for (int64_t ci = 0, t = 0; ci < per_group; ++ci)
          for (int64_t i = 0; i < kh; ++i)
            for (int64_t k = 0; k < kw; ++k, ++t)
              filters[t * count + j] = filter[(ci * s.kernel_h + top + i) * s.kernel_w + left + k];
      }
      GatedConvJob<T> job{};
      job.height = s.height, job.width = s.width, job.kernel_h = kh, job.kernel_w = kw;
      job.dilation_h = s.dilation_h, job.dilation_w = s.dilation_w;
      job.layout = layout_;
      job.group_channels = per_group, job.relu = s.relu;
      job.padded = padded_.data(), job.first_input = group * per_group;
      job.weights = filters, job.channels = active_.data() + first, job.count = count;
      job.alpha = in_.alpha.template data_ptr<T>(), job.beta = in_.beta.template data_ptr<T>();
      jobs_.push_back(job);
      first = last;
    }
  }

  const GatedSkipInputs& in_;
  int64_t half_h_, half_w_;  // reaching taps on each side of the centre
  GatedConvLayout layout_;
  std::vector<T> padded_, filters_;
  std::vector<int64_t> active_;
  std::vector<GatedConvJob<T>> jobs_;
};

template <class T>
void forward_samples(const GatedSkipInputs& in, at::Tensor& y) {
  const GatedSkipShape& s = in.shape;
  const T* x = in.x.data_ptr<T>();
  const T* gate = in.gate.data_ptr<T>();
  T* out = y.data_ptr<T>();
  const int64_t sample_size = s.channels * s.plane();
  // Samples with an active channel are convolved; the others are copied.
  std::vector<int64_t> computed, copied;
  for (int64_t n = 0; n < s.batch; ++n) {
    const T* m = gate + n * s.channels;
    (std::any_of(m, m + s.channels, [](T g) { return g != T(0); }) ? computed : copied).push_back(n);
  }
  // Copies in parallel: y is freshly allocated, so the copy's cost is mostly the kernel mapping its
  // pages on first touch (about 5 ms for 8 MB on one core here), which is per-core work.
  at::parallel_for(0, static_cast<int64_t>(copied.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      std::memcpy(out + copied[i] * sample_size, x + copied[i] * sample_size, sample_size * sizeof(T));
  });
  const int64_t samples = static_cast<int64_t>(computed.size());
  if (samples >= at::get_num_threads()) {
    // Enough samples for every thread: each convolves whole samples with workspaces of its own.
    at::parallel_for(0, samples, 1, [&](int64_t begin, int64_t end) {
      SampleJobs<T> jobs(in);
      for (int64_t i = begin; i < end; ++i)
        for (const GatedConvJob<T>& job : jobs.prepare(computed[i], out + computed[i] * sample_size))
          run_cpu_gated_conv(job, 0, s.height);
    });
    return;
  }
  // Fewer samples than threads (batch 1 on a multi-core device): the threads share each sample's
  // rows, job by job.
  SampleJobs<T> jobs(in);
  for (int64_t n : computed) {
    const std::vector<GatedConvJob<T>>& sample_jobs = jobs.prepare(n, out + n * sample_size);
    const int64_t rows = s.height;
    at::parallel_for(0, static_cast<int64_t>(sample_jobs.size()) * rows, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end;) {
        const int64_t job = i / rows, row = i % rows, last = std::min(end - job * rows, rows);
        run_cpu_gated_conv(sample_jobs[job], row, last);
        i = job * rows + last;
      }
    });
  }
}

at::Tensor gated_skip_conv2d_cpu(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                                 const c10::optional<at::Tensor>& layer_gate,
                                 const c10::optional<at::Tensor>& channel_gate, const c10::optional<at::Tensor>& scale,
                                 const c10::optional<at::Tensor>& shift, at::IntArrayRef dilation, int64_t groups,
                                 c10::string_view activation) {
  const GatedSkipInputs in(x, weight, bias, layer_gate, channel_gate, scale, shift, dilation, groups, activation);
  at::Tensor y = at::empty_like(in.x);
  AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "gated_skip_conv2d_cpu", [&] { forward_samples<scalar_t>(in, y); });
  return y;
}

// Per (n, c) plane sums the backward reduces afterwards, in a fixed order.
struct PlaneSums {
  at::Tensor gate, dz, dz_conv;  // sum (act(z) - x) * dy; sum dz; sum dz * conv, each [N, C]
};

// One pass over every plane: grad_x's direct part (1 - m) * dy, the convolution's output gradient
// alpha * dz with dz = m * dy * act'(z), and the plane sums.
template <class T>
PlaneSums backward_planes(const GatedSkipInputs& in, const at::Tensor& conv, const at::Tensor& dy_in,
                          at::Tensor& grad_x, at::Tensor& grad_conv) {
  using Acc = at::acc_type<T, false>;
  const GatedSkipShape& s = in.shape;
  const auto options = in.x.options();
  PlaneSums sums{at::empty({s.batch, s.channels}, options), at::empty({s.batch, s.channels}, options),
                 at::empty({s.batch, s.channels}, options)};
  const T *x = in.x.data_ptr<T>(), *cv = conv.data_ptr<T>(), *dy = dy_in.data_ptr<T>();
  const T *gate = in.gate.data_ptr<T>(), *alpha = in.alpha.data_ptr<T>(), *beta = in.beta.data_ptr<T>();
  T *gx = grad_x.data_ptr<T>(), *gc = grad_conv.data_ptr<T>();
  T *sum_gate = sums.gate.data_ptr<T>(), *sum_dz = sums.dz.data_ptr<T>(), *sum_dz_conv = sums.dz_conv.data_ptr<T>();
  at::parallel_for(0, s.batch * s.channels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t c = p % s.channels, offset = p * s.plane();
      const T m = gate[p], keep = T(1) - m, a = alpha[c], b = beta[c];
      Acc g = 0, d = 0, dc = 0;
      for (int64_t i = offset; i < offset + s.plane(); ++i) {
        const T z = a * cv[i] + b;
        const T dz = s.relu && !(z > T(0)) ? T(0) : m * dy[i];
        g += Acc(activate(z, s.relu) - x[i]) * Acc(dy[i]);
        d += dz;
        dc += Acc(dz) * Acc(cv[i]);
        gx[i] = keep * dy[i];
        gc[i] = a * dz;
      }
      sum_gate[p] = T(g), sum_dz[p] = T(d), sum_dz_conv[p] = T(dc);
    }
  });
  return sums;
}

using BackwardResult = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

BackwardResult gated_skip_conv2d_backward_cpu(const at::Tensor& grad_output, const at::Tensor& x,
                                              const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                                              const c10::optional<at::Tensor>& layer_gate,
                                              const c10::optional<at::Tensor>& channel_gate,
                                              const c10::optional<at::Tensor>& scale,
                                              const c10::optional<at::Tensor>& shift, at::IntArrayRef dilation,
                                              int64_t groups, c10::string_view activation,
                                              std::array<bool, 2> conv_grad_mask) {
  const GatedSkipInputs in(x, weight, bias, layer_gate, channel_gate, scale, shift, dilation, groups, activation);
  const GatedSkipShape& s = in.shape;
  TORCH_CHECK_VALUE(grad_output.sizes() == in.x.sizes(), "grad_output must have the shape of x ", in.x.sizes(),
                    ", got ", grad_output.sizes());
  TORCH_CHECK_TYPE(grad_output.scalar_type() == in.x.scalar_type(), "grad_output must have the dtype of x (",
                   in.x.scalar_type(), "), got ", grad_output.scalar_type());
  const at::Tensor dy = grad_output.contiguous();
  const ReachingTaps taps(in);
  const at::Tensor conv = taps.convolve(in.x, s.groups).contiguous();
  at::Tensor grad_x = at::empty_like(in.x), grad_conv = at::empty_like(conv);
  PlaneSums sums;
  AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "gated_skip_conv2d_backward_cpu",
                             [&] { sums = backward_planes<scalar_t>(in, conv, dy, grad_x, grad_conv); });

  const at::Tensor none = at::empty({0}, in.x.options());
  at::Tensor grad_weight = none;
  if (conv_grad_mask[0] || conv_grad_mask[1]) {
    auto grads = at::convolution_backward(grad_conv, in.x, taps.weight.contiguous(), c10::nullopt, {1, 1},
                                          taps.padding, taps.dilation, false, {0, 0}, s.groups,
                                          {conv_grad_mask[0], conv_grad_mask[1], false});
    if (conv_grad_mask[0]) grad_x.add_(std::get<0>(grads));
    if (conv_grad_mask[1]) grad_weight = taps.full_weight_grad(std::get<1>(grads), in.weight);
  }
  if (!conv_grad_mask[0]) grad_x = none;
  const at::Tensor dz_per_channel = sums.dz.sum(0);
  const at::Tensor grad_bias = bias ? dz_per_channel * in.alpha : none;
  const at::Tensor grad_shift = shift ? dz_per_channel : none;
  // z = scale * (conv + bias) + shift.
  const at::Tensor grad_scale =
      scale ? (bias ? sums.dz_conv + sums.dz * *bias : sums.dz_conv).sum(0) : none;
  const at::Tensor grad_layer_gate =
      layer_gate ? (channel_gate ? sums.gate * *channel_gate : sums.gate).sum(1) : none;
  const at::Tensor grad_channel_gate = channel_gate ? (layer_gate ? sums.gate * layer_gate->unsqueeze(1) : sums.gate)
                                                    : none;
  return {grad_x, grad_weight, grad_bias, grad_layer_gate, grad_channel_gate, grad_scale, grad_shift};
}

}  // namespace
}  // namespace rnnpool

TORCH_LIBRARY_IMPL(rnnpool, CPU, m) {
  m.impl("gated_skip_conv2d", &rnnpool::gated_skip_conv2d_cpu);
  m.impl("gated_skip_conv2d_backward", &rnnpool::gated_skip_conv2d_backward_cpu);
}
