// CPU kernels of rnnpool::gated_skip_conv2d and its backward (SPEC section 5).
//
// Forward: one parallel loop over samples. For each sample the channels with m[n, c] != 0 are
// convolved, and only those: the convolution of the active channels is ATen's own (oneDNN for
// float32), run single-threaded inside the sample's task on the gathered weight rows (and, for
// depthwise, the gathered input channels); then one pass writes y = m * act(alpha * conv + beta)
// + (1 - m) * x, copying x where m = 0. A sample with every m = 0 is a copy and costs no convolution.
// Skipping where m = 0 holds in training too: the backward recomputes the convolution in full.
//
// Backward: the whole convolution once more (batched), one fused element-wise pass for the gate,
// scale/shift and direct-x gradients and the convolution's output gradient, then ATen's
// convolution_backward.
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

#include "../gated_skip_args.h"

namespace rnnpool {
namespace {

// [rows, cols] -> [cols, rows] in tiles of 8 rows by 64 columns. A sample's rows are whole planes
// (4 KB apart for 32x32), so a tile's rows share L1 sets: 8 rows fit the cache's 8 ways, 16 thrash
// (16x16 tiles took ~4 cycles per element). ATen's strided copy to channels-last is slower still.
void transpose_planes(const float* in, float* out, int64_t rows, int64_t cols) {
  constexpr int64_t kTileRows = 8, kTileCols = 64;
  for (int64_t r0 = 0; r0 < rows; r0 += kTileRows)
    for (int64_t c0 = 0; c0 < cols; c0 += kTileCols) {
      const int64_t r1 = std::min(r0 + kTileRows, rows), c1 = std::min(c0 + kTileCols, cols);
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t r = r0; r < r1; ++r) out[c * rows + r] = in[r * cols + c];
    }
}

// Everything of one call, made contiguous, with the per-channel epilogue folded to
// z = alpha[c] * conv_without_bias + beta[c] (alpha = scale, beta = bias * scale + shift).
struct GatedSkipInputs {
  GatedSkipShape shape;
  at::Tensor x, weight, gate, alpha, beta;  // gate: m [N, C]
  bool channels_last;
  at::Tensor filters_ohwi;  // weight as [C, kh, kw, C/groups] when channels_last

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
    channels_last = x.scalar_type() == at::kFloat;
    if (channels_last) filters_ohwi = weight.permute({0, 2, 3, 1}).contiguous();
  }

  at::Tensor convolve(const at::Tensor& input, const at::Tensor& w, int64_t groups) const {
    return at::conv2d(input, w, c10::nullopt, {1, 1}, shape.padding(), shape.dilation(), groups);
  }

  // Sample n as the per-sample convolutions take it: channels-last for float32, where oneDNN runs a
  // batch of one in that layout without reordering x (and the filters) into its blocked format.
  at::Tensor sample(int64_t n) const {
    const at::Tensor xn = x.narrow(0, n, 1);
    if (!channels_last) return xn;
    at::Tensor out = at::empty({1, shape.channels, shape.height, shape.width},
                               x.options().memory_format(at::MemoryFormat::ChannelsLast));
    transpose_planes(xn.data_ptr<float>(), out.data_ptr<float>(), shape.channels, shape.plane());
    return out;
  }

  // All filters, or the rows in `index`, in the layout sample() pairs them with.
  at::Tensor filters() const { return channels_last ? filters_ohwi.permute({0, 3, 1, 2}) : weight; }
  at::Tensor filters(const at::Tensor& index) const {
    return channels_last ? filters_ohwi.index_select(0, index).permute({0, 3, 1, 2}) : weight.index_select(0, index);
  }
};

template <class T>
inline T activate(T z, bool relu) {
  return relu && !(z > T(0)) && !std::isnan(z) ? T(0) : z;
}

// One channel of a convolution output: pixel i (row-major over H x W) is base[i * step]. step is 1
// for an NCHW output and the number of channels for a channels-last one.
template <class T>
struct ConvPlane {
  const T* base = nullptr;
  int64_t step = 0;
};

// y = m * act(alpha * conv + beta) + (1 - m) * x over pixels [begin, end) of a channel with m != 0.
template <class T>
void blend_pixels(ConvPlane<T> conv, const T* x, T* y, int64_t begin, int64_t end, T m, T alpha, T beta, bool relu) {
  const T* cv = conv.base;
  const int64_t step = conv.step;
  if (m == T(1)) {
    for (int64_t i = begin; i < end; ++i) y[i] = activate(alpha * cv[i * step] + beta, relu);
  } else {
    const T keep = T(1) - m;
    for (int64_t i = begin; i < end; ++i) y[i] = m * activate(alpha * cv[i * step] + beta, relu) + keep * x[i];
  }
}

// The convolution of sample n's active channels only. Returns one plane per channel (base nullptr
// where m = 0); `parts` keeps the tensors behind them alive.
template <class T>
std::vector<ConvPlane<T>> convolve_active_channels(const GatedSkipInputs& in, int64_t n,
                                                   const std::vector<int64_t>& active, std::vector<at::Tensor>& parts) {
  const GatedSkipShape& s = in.shape;
  std::vector<ConvPlane<T>> planes(s.channels);
  const at::Tensor xn = in.sample(n);
  auto take = [&](at::Tensor out, const int64_t* channels, int64_t count) {
    // NCHW or channels-last (oneDNN's choice): both have rows of W pixels `step` apart.
    if (s.height > 1 && out.stride(2) != s.width * out.stride(3)) out = out.contiguous();
    parts.push_back(out);
    const T* base = out.template data_ptr<T>();
    for (int64_t j = 0; j < count; ++j) planes[channels[j]] = {base + j * out.stride(1), out.stride(3)};
  };
  const int64_t count = static_cast<int64_t>(active.size());
  if (count == s.channels) {
    take(in.convolve(xn, in.filters(), s.groups), active.data(), count);
  } else if (s.channels_per_group() == 1) {
    // Depthwise: an active channel needs its own input channel and filter only.
    const at::Tensor index = at::from_blob(const_cast<int64_t*>(active.data()), {count}, at::kLong);
    take(in.convolve(xn.index_select(1, index), in.filters(index), count), active.data(), count);
  } else {
    // Each group with an active channel: its input channels against the active filters of the group.
    const int64_t per_group = s.channels_per_group();
    for (int64_t first = 0; first < count;) {
      const int64_t group = active[first] / per_group;
      int64_t last = first;
      while (last < count && active[last] / per_group == group) ++last;
      const at::Tensor index = at::from_blob(const_cast<int64_t*>(active.data() + first), {last - first}, at::kLong);
      const at::Tensor w = last - first == per_group ? in.filters().narrow(0, group * per_group, per_group)
                                                     : in.filters(index);
      take(in.convolve(xn.narrow(1, group * per_group, per_group), w, 1), active.data() + first, last - first);
      first = last;
    }
  }
  return planes;
}

template <class T>
void forward_samples(const GatedSkipInputs& in, at::Tensor& y) {
  const GatedSkipShape& s = in.shape;
  const T* x = in.x.data_ptr<T>();
  const T* gate = in.gate.data_ptr<T>();
  const T* alpha = in.alpha.data_ptr<T>();
  const T* beta = in.beta.data_ptr<T>();
  T* out = y.data_ptr<T>();
  const int64_t sample_size = s.channels * s.plane();
  // Samples with an active channel are shared among the threads; the others are copied.
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
  if (computed.empty()) return;
  at::parallel_for(0, static_cast<int64_t>(computed.size()), 1, [&](int64_t begin, int64_t end) {
    // Worker threads do not inherit the caller's autograd state: the convolutions here are plain math.
    at::NoGradGuard no_grad;
    std::vector<int64_t> active;
    for (int64_t i = begin; i < end; ++i) {
      const int64_t n = computed[i];
      const T* m = gate + n * s.channels;
      const T* xn = x + n * sample_size;
      T* yn = out + n * sample_size;
      active.clear();
      for (int64_t c = 0; c < s.channels; ++c)
        if (m[c] != T(0)) active.push_back(c);
      std::vector<at::Tensor> parts;
      const std::vector<ConvPlane<T>> conv = convolve_active_channels<T>(in, n, active, parts);
      // A block of pixels of every channel at a time: a channels-last convolution output is read
      // row by row from cache while y is written in runs of kPixelBlock per channel.
      constexpr int64_t kPixelBlock = 64;
      for (int64_t begin = 0; begin < s.plane(); begin += kPixelBlock) {
        const int64_t end = std::min(begin + kPixelBlock, s.plane());
        for (int64_t c = 0; c < s.channels; ++c) {
          const T* xc = xn + c * s.plane();
          T* yc = yn + c * s.plane();
          if (conv[c].base == nullptr)
            std::memcpy(yc + begin, xc + begin, (end - begin) * sizeof(T));
          else
            blend_pixels(conv[c], xc, yc, begin, end, m[c], alpha[c], beta[c], s.relu);
        }
      }
    }
  });
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
  const at::Tensor conv = in.convolve(in.x, in.weight, s.groups).contiguous();
  at::Tensor grad_x = at::empty_like(in.x), grad_conv = at::empty_like(conv);
  PlaneSums sums;
  AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "gated_skip_conv2d_backward_cpu",
                             [&] { sums = backward_planes<scalar_t>(in, conv, dy, grad_x, grad_conv); });

  const at::Tensor none = at::empty({0}, in.x.options());
  at::Tensor grad_weight = none;
  if (conv_grad_mask[0] || conv_grad_mask[1]) {
    auto grads = at::convolution_backward(grad_conv, in.x, in.weight, c10::nullopt, {1, 1}, s.padding(),
                                          s.dilation(), false, {0, 0}, s.groups,
                                          {conv_grad_mask[0], conv_grad_mask[1], false});
    if (conv_grad_mask[0]) grad_x.add_(std::get<0>(grads));
    if (conv_grad_mask[1]) grad_weight = std::get<1>(grads);
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
