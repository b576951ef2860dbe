// CPU kernel of rnnpool::inverted_residual: MobileNetV2's block (expand 1x1 + clamp, depthwise + clamp,
// project 1x1, optional residual) for inference, holding only a few rows of the expanded map
// (docs/spec.md section 7; rnnpool_ops.streaming runs every such block through it).
//
// The output is made `tile_rows` rows at a time, sample after sample. The expanded rows a tile reads
// live in one buffer [hidden][rows][W]; the rows the next tile reads again (the depthwise halo) are
// moved to its front and kept, so every expanded row is computed once. Per tile: one GEMM expands the
// new input rows into the buffer, one pass over channels adds the bias, clamps and runs the depthwise
// taps into a second buffer [hidden][tile_rows][Wo], one GEMM projects that straight into the output
// rows, and one pass adds the projection's bias and the residual. The GEMMs are ATen's (BLAS), on
// strided views: nothing is copied to be multiplied.
//
// Why not F.conv2d per tile: oneDNN's depthwise convolution costs ~60 us a call on a tile of a few
// rows (a layout reorder each time), more than the tile's multiply-adds, and a row tiling without
// the kept halo computes each expanded row up to kh times.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "../core/checked_size.h"
#include "../sweep_args.h"

namespace rnnpool {
namespace {

struct BlockShape {
  int64_t batch, in_channels, hidden, out_channels, height, width, out_height, out_width;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;

  // Buffer rows one tile of `rows` output rows reads.
  int64_t rows_read(int64_t rows) const { return (rows - 1) * stride_h + dilation_h * (kernel_h - 1) + 1; }
};

void check_tensor(const at::Tensor& t, const char* name, at::IntArrayRef shape, const at::Tensor& x) {
  TORCH_CHECK_TYPE(t.scalar_type() == x.scalar_type(), name, " has dtype ", t.scalar_type(), " but x has ",
                   x.scalar_type(), ": all tensors must share a dtype");
  TORCH_CHECK_VALUE(t.device() == x.device(), name, " is on ", t.device(), " but x is on ", x.device());
  TORCH_CHECK_VALUE(t.sizes() == shape, name, " must have shape ", shape, ", got ", t.sizes());
}

void check_pair(at::IntArrayRef v, const char* name, int64_t low) {
  TORCH_CHECK_VALUE(v.size() == 2, name, " must have 2 elements (height, width), got ", v.size());
  TORCH_CHECK_VALUE(v[0] >= low && v[1] >= low, name, " must be >= ", low, ", got ", v);
}

void check_clamp(at::ArrayRef<double> bounds, const char* name) {
  TORCH_CHECK_VALUE(bounds.size() == 2, name, " must have 2 elements (low, high), got ", bounds.size());
  TORCH_CHECK_VALUE(!std::isnan(bounds[0]) && !std::isnan(bounds[1]) && bounds[0] <= bounds[1], name,
                    " must be (low, high) with low <= high, got (", bounds[0], ", ", bounds[1], ")");
}

BlockShape check_args(const at::Tensor& x, const c10::optional<at::Tensor>& expand_weight,
                      const c10::optional<at::Tensor>& expand_bias, const at::Tensor& depthwise_weight,
                      const at::Tensor& depthwise_bias, const at::Tensor& project_weight,
                      const at::Tensor& project_bias, at::IntArrayRef stride, at::IntArrayRef padding,
                      at::IntArrayRef dilation, at::ArrayRef<double> expand_clamp,
                      at::ArrayRef<double> depthwise_clamp, bool residual, int64_t tile_rows) {
  TORCH_CHECK_VALUE(x.dim() == 4, "x must have shape [N, C, H, W], got ", x.sizes());
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
                   "x must be float32 or float64, got ", x.scalar_type());
  TORCH_CHECK_VALUE(x.device().is_cpu(), "x must be on the CPU, got ", x.device());
  check_image_extent(x);
  const bool needs_grad = x.requires_grad() || depthwise_weight.requires_grad() || depthwise_bias.requires_grad() ||
                          project_weight.requires_grad() || project_bias.requires_grad() ||
                          (expand_weight && expand_weight->requires_grad()) ||
                          (expand_bias && expand_bias->requires_grad());
  TORCH_CHECK(!(needs_grad && at::GradMode::is_enabled()),
              "rnnpool::inverted_residual is inference-only (no gradients): call it under torch.no_grad() or "
              "torch.inference_mode(), or with tensors that do not require grad");
  check_pair(stride, "stride", 1);
  check_pair(padding, "padding", 0);
  check_pair(dilation, "dilation", 1);
  check_clamp(expand_clamp, "expand_clamp");
  check_clamp(depthwise_clamp, "depthwise_clamp");
  TORCH_CHECK_VALUE(tile_rows >= 1, "tile_rows must be >= 1, got ", tile_rows);
  TORCH_CHECK_VALUE(expand_weight.has_value() == expand_bias.has_value(),
                    "expand_weight and expand_bias must be given together (or neither: no expansion)");
  BlockShape s{};
  s.batch = x.size(0), s.in_channels = x.size(1), s.height = x.size(2), s.width = x.size(3);
  if (expand_weight) {
    TORCH_CHECK_VALUE(expand_weight->dim() == 2 && expand_weight->size(1) == s.in_channels,
                      "expand_weight must have shape [hidden, C] with C = ", s.in_channels, " (x's channels), got ",
                      expand_weight->sizes());
    s.hidden = expand_weight->size(0);
    check_tensor(*expand_weight, "expand_weight", expand_weight->sizes(), x);
    check_tensor(*expand_bias, "expand_bias", {s.hidden}, x);
  } else {
    s.hidden = s.in_channels;
  }
  TORCH_CHECK_VALUE(depthwise_weight.dim() == 4 && depthwise_weight.size(0) == s.hidden &&
                        depthwise_weight.size(1) == 1,
                    "depthwise_weight must have shape [hidden, 1, kh, kw] with hidden = ", s.hidden, ", got ",
                    depthwise_weight.sizes());
  check_tensor(depthwise_weight, "depthwise_weight", depthwise_weight.sizes(), x);
  check_tensor(depthwise_bias, "depthwise_bias", {s.hidden}, x);
  TORCH_CHECK_VALUE(project_weight.dim() == 2 && project_weight.size(1) == s.hidden,
                    "project_weight must have shape [C_out, hidden] with hidden = ", s.hidden, ", got ",
                    project_weight.sizes());
  s.out_channels = project_weight.size(0);
  check_tensor(project_weight, "project_weight", project_weight.sizes(), x);
  check_tensor(project_bias, "project_bias", {s.out_channels}, x);
  s.kernel_h = depthwise_weight.size(2), s.kernel_w = depthwise_weight.size(3);
  s.stride_h = stride[0], s.stride_w = stride[1], s.pad_h = padding[0], s.pad_w = padding[1];
  s.dilation_h = dilation[0], s.dilation_w = dilation[1];
  // Sizes with checked arithmetic (core/checked_size.h), as every op's: no user integer overflows them.
  const Size padded_h = Size(s.height) + Size(2) * Size(s.pad_h), padded_w = Size(s.width) + Size(2) * Size(s.pad_w);
  const Size extent_h = Size(s.dilation_h) * Size(s.kernel_h - 1) + Size(1);
  const Size extent_w = Size(s.dilation_w) * Size(s.kernel_w - 1) + Size(1);
  TORCH_CHECK_VALUE(padded_h.ok() && padded_w.ok() && extent_h.ok() && extent_w.ok(), "padding ", padding,
                    " or dilation ", dilation, " is too large: the padded map or the dilated kernel does not fit int64");
  TORCH_CHECK_VALUE(padded_h.value() >= extent_h.value() && padded_w.value() >= extent_w.value(),
                    "the depthwise kernel ", depthwise_weight.sizes().slice(2), " with dilation ", dilation,
                    " does not fit x's padded map [", padded_h.value(), ", ", padded_w.value(), "]");
  s.out_height = (padded_h.value() - extent_h.value()) / s.stride_h + 1;
  s.out_width = (padded_w.value() - extent_w.value()) / s.stride_w + 1;
  const int64_t tile = std::min(tile_rows, s.out_height), element = x.element_size();
  const Size buffers = Size(s.hidden) * ((Size(tile - 1) * Size(s.stride_h) + extent_h) * Size(s.width) +
                                          Size(tile) * Size(s.out_width)) * Size(element);
  const Size output = Size(s.batch) * Size(s.out_channels) * Size(s.out_height) * Size(s.out_width) * Size(element);
  TORCH_CHECK_VALUE(output.within(kMaxAllocationBytes) && buffers.within(kMaxAllocationBytes), "x ", x.sizes(),
                    " with these weights and padding ", padding, " gives an output of ", describe_bytes(output),
                    " and tile buffers of ", describe_bytes(buffers), ": over the limit of 2^40 bytes");
  if (residual) {
    TORCH_CHECK_VALUE(s.out_channels == s.in_channels && s.out_height == s.height && s.out_width == s.width,
                      "residual needs an output of x's shape: [", s.out_channels, ", ", s.out_height, ", ",
                      s.out_width, "] vs x's [", s.in_channels, ", ", s.height, ", ", s.width, "]");
  }
  return s;
}

template <class T>
inline T clamp(T v, T low, T high) {  // NaN passes through, as torch.clamp
  return v < low ? low : (v > high ? high : v);
}

template <class T>
class BlockRunner {
 public:
  BlockRunner(const BlockShape& s, int64_t tile_rows, const at::Tensor& x, const c10::optional<at::Tensor>& expand_weight,
              const c10::optional<at::Tensor>& expand_bias, const at::Tensor& depthwise_weight,
              const at::Tensor& depthwise_bias, const at::Tensor& project_weight, const at::Tensor& project_bias,
              at::ArrayRef<double> expand_clamp, at::ArrayRef<double> depthwise_clamp, bool residual)
      : s_(s),
        tile_rows_(std::min(tile_rows, s.out_height)),
        buffer_rows_(s.rows_read(tile_rows_)),
        x_(x.contiguous()),
        expand_weight_(expand_weight ? expand_weight->contiguous() : at::Tensor()),
        expand_bias_(expand_bias ? expand_bias->contiguous() : at::Tensor()),
        depthwise_weight_(depthwise_weight.contiguous()),
        depthwise_bias_(depthwise_bias.contiguous()),
        project_weight_(project_weight.contiguous()),
        project_bias_(project_bias.contiguous()),
        expand_low_(T(expand_clamp[0])), expand_high_(T(expand_clamp[1])),
        depthwise_low_(T(depthwise_clamp[0])), depthwise_high_(T(depthwise_clamp[1])),
        residual_(residual),
        expanded_(at::empty({s.hidden, buffer_rows_, s.width}, x.options())),
        depthwise_out_(at::empty({s.hidden, tile_rows_ * s.out_width}, x.options())),
        out_(at::empty({s.batch, s.out_channels, s.out_height, s.out_width}, x.options())) {}

  at::Tensor run() {
    for (int64_t n = 0; n < s_.batch; ++n) {
      first_row_ = end_row_ = -s_.pad_h;  // the buffer holds map rows [first_row_, end_row_) (padding < 0, >= H)
      for (int64_t a = 0; a < s_.out_height; a += tile_rows_) tile(n, a, std::min(tile_rows_, s_.out_height - a));
    }
    return out_;
  }

 private:
  // Output rows [a, a + rows) of sample n.
  void tile(int64_t n, int64_t a, int64_t rows) {
    const int64_t lo = a * s_.stride_h - s_.pad_h, hi = lo + s_.rows_read(rows);
    const int64_t kept = std::max<int64_t>(0, end_row_ - lo), fresh_from = lo + kept;
    keep_rows(lo, kept);
    first_row_ = lo, end_row_ = hi;
    expand_rows(n, fresh_from, hi);
    const int64_t width = s_.width, plane = buffer_rows_ * width;
    at::parallel_for(0, s_.hidden, channel_grain(), [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        T* e = expanded_.data_ptr<T>() + c * plane;
        activate_expanded(c, e + kept * width, fresh_from, hi);
        depthwise(c, e, rows);
      }
    });
    project(n, a, rows);
  }

  // Moves the buffer's rows [lo, lo + kept) (which the next tile reads again) to its front.
  void keep_rows(int64_t lo, int64_t kept) {
    if (kept == 0) return;
    const int64_t offset = (lo - first_row_) * s_.width, count = kept * s_.width, plane = buffer_rows_ * s_.width;
    if (offset == 0) return;
    T* e = expanded_.data_ptr<T>();
    at::parallel_for(0, s_.hidden, channel_grain(), [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) std::memmove(e + c * plane, e + c * plane + offset, count * sizeof(T));
    });
  }

  // Writes map rows [from, to) of the expansion (before its bias and clamp) into the buffer; rows
  // outside the map are the depthwise padding (zero after the clamp: see activate_expanded).
  void expand_rows(int64_t n, int64_t from, int64_t to) {
    if (from >= to) return;
    const int64_t in_from = std::clamp<int64_t>(from, 0, s_.height), in_to = std::clamp<int64_t>(to, 0, s_.height);
    if (in_from >= in_to) return;
    at::Tensor dst = expanded_.narrow(1, in_from - first_row_, in_to - in_from).flatten(1);
    at::Tensor src = x_[n].narrow(1, in_from, in_to - in_from).flatten(1);
    if (expand_weight_.defined()) at::mm_out(dst, expand_weight_, src);
    else dst.copy_(src);
  }

  // Bias and clamp of channel c's freshly expanded map rows [from, to), at e; padding rows become 0.
  void activate_expanded(int64_t c, T* e, int64_t from, int64_t to) {
    const int64_t width = s_.width;
    const T bias = expand_weight_.defined() ? expand_bias_.data_ptr<T>()[c] : T(0);
    for (int64_t row = from; row < to; ++row, e += width) {
      if (row < 0 || row >= s_.height) {
        std::fill(e, e + width, T(0));
        continue;
      }
      for (int64_t j = 0; j < width; ++j) e[j] = clamp(e[j] + bias, expand_low_, expand_high_);
    }
  }

  // The depthwise taps of channel c over its buffer rows e, with bias and clamp, into depthwise_out_.
  void depthwise(int64_t c, const T* e, int64_t rows) {
    const int64_t width = s_.width, out_width = s_.out_width;
    const T* w = depthwise_weight_.data_ptr<T>() + c * s_.kernel_h * s_.kernel_w;
    const T bias = depthwise_bias_.data_ptr<T>()[c];
    T* out = depthwise_out_.data_ptr<T>() + c * tile_rows_ * out_width;
    for (int64_t i = 0; i < rows; ++i) {
      T* o = out + i * out_width;
      std::fill(o, o + out_width, bias);
      for (int64_t ki = 0; ki < s_.kernel_h; ++ki) {
        const T* in = e + (i * s_.stride_h + ki * s_.dilation_h) * width;
        for (int64_t kj = 0; kj < s_.kernel_w; ++kj) {
          // Output columns j whose tap reads column j * stride - pad + kj * dilation inside the map.
          const int64_t shift = kj * s_.dilation_w - s_.pad_w;
          const int64_t j_from = shift >= 0 ? 0 : (-shift + s_.stride_w - 1) / s_.stride_w;
          const int64_t j_to = std::min(out_width, width - shift > 0 ? (width - shift - 1) / s_.stride_w + 1 : 0);
          const T tap = w[ki * s_.kernel_w + kj];
          if (s_.stride_w == 1) {
            const T* src = in + shift;
            for (int64_t j = j_from; j < j_to; ++j) o[j] += tap * src[j];
          } else {
            for (int64_t j = j_from; j < j_to; ++j) o[j] += tap * in[j * s_.stride_w + shift];
          }
        }
      }
      for (int64_t j = 0; j < out_width; ++j) o[j] = clamp(o[j], depthwise_low_, depthwise_high_);
    }
  }

  // out[n, :, a:a+rows] = project_weight @ depthwise_out_ + project_bias (+ x[n, :, a:a+rows]).
  void project(int64_t n, int64_t a, int64_t rows) {
    const int64_t count = rows * s_.out_width;
    at::Tensor dst = out_[n].narrow(1, a, rows).flatten(1);
    at::mm_out(dst, project_weight_, depthwise_out_.narrow(1, 0, count));
    const int64_t plane = s_.out_height * s_.out_width, offset = a * s_.out_width;
    T* o = out_.data_ptr<T>() + n * s_.out_channels * plane + offset;
    const T* in = x_.data_ptr<T>() + n * s_.in_channels * s_.height * s_.width + offset;
    const T* bias = project_bias_.data_ptr<T>();
    at::parallel_for(0, s_.out_channels, channel_grain(), [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        T* oc = o + c * plane;
        if (residual_) {
          const T* xc = in + c * plane;
          for (int64_t j = 0; j < count; ++j) oc[j] += bias[c] + xc[j];
        } else {
          for (int64_t j = 0; j < count; ++j) oc[j] += bias[c];
        }
      }
    });
  }

  // Channels per parallel task: enough work (~32k values) to be worth a thread.
  int64_t channel_grain() const {
    return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, buffer_rows_ * s_.width * s_.kernel_w));
  }

  const BlockShape s_;
  const int64_t tile_rows_, buffer_rows_;
  const at::Tensor x_, expand_weight_, expand_bias_, depthwise_weight_, depthwise_bias_, project_weight_,
      project_bias_;
  const T expand_low_, expand_high_, depthwise_low_, depthwise_high_;
  const bool residual_;
  at::Tensor expanded_, depthwise_out_, out_;
  int64_t first_row_ = 0, end_row_ = 0;
};

at::Tensor inverted_residual_cpu(const at::Tensor& x, const c10::optional<at::Tensor>& expand_weight,
                                 const c10::optional<at::Tensor>& expand_bias, const at::Tensor& depthwise_weight,
                                 const at::Tensor& depthwise_bias, const at::Tensor& project_weight,
                                 const at::Tensor& project_bias, at::IntArrayRef stride, at::IntArrayRef padding,
                                 at::IntArrayRef dilation, at::ArrayRef<double> expand_clamp,
                                 at::ArrayRef<double> depthwise_clamp, bool residual, int64_t tile_rows) {
  const BlockShape s = check_args(x, expand_weight, expand_bias, depthwise_weight, depthwise_bias, project_weight,
                                  project_bias, stride, padding, dilation, expand_clamp, depthwise_clamp, residual,
                                  tile_rows);
  if (s.batch == 0) return at::empty({0, s.out_channels, s.out_height, s.out_width}, x.options());
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "inverted_residual", [&] {
    return BlockRunner<scalar_t>(s, tile_rows, x, expand_weight, expand_bias, depthwise_weight, depthwise_bias,
                                 project_weight, project_bias, expand_clamp, depthwise_clamp, residual)
        .run();
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(rnnpool, CPU, m) { m.impl("inverted_residual", &inverted_residual_cpu); }

}  // namespace rnnpool
