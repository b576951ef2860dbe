#include "gated_skip_args.h"

#include "core/checked_size.h"
#include "sweep_args.h"

namespace rnnpool {
namespace {

void check_like_x(const at::Tensor& t, const char* name, const at::Tensor& x) {
  TORCH_CHECK_TYPE(t.scalar_type() == x.scalar_type(), name, " has dtype ", t.scalar_type(), " but x has ",
                   x.scalar_type(), ": all tensors must share a dtype");
  TORCH_CHECK_VALUE(t.device() == x.device(), name, " is on ", t.device(), " but x is on ", x.device(),
                    ": all tensors must share a device");
}

void check_optional(const c10::optional<at::Tensor>& t, const char* name, at::IntArrayRef shape,
                    const at::Tensor& x) {
  if (!t.has_value()) return;
  check_like_x(*t, name, x);
  TORCH_CHECK_VALUE(t->sizes() == shape, name, " must have shape ", shape, " for x ", x.sizes(), ", got ",
                    t->sizes());
}

// The sizes derived from the dilation, checked (core/checked_size.h); rnnpool_ops/gated_skip/_checks.py
// (_check_sizes) applies the same rules. The padded input must fit int64 (the kernels skip the taps
// that reach only padding, so a huge but representable dilation is fine), and the output, of x's
// shape, must fit the allocation limit (which bounds the CPU kernel's padded copy of a sample too).
void check_gated_skip_sizes(const at::Tensor& x, const at::Tensor& weight, at::IntArrayRef dilation) {
  const Size padded_h = Size(x.size(2)) + Size(2) * (Size(dilation[0]) * Size(weight.size(2) - 1) / Size(2));
  const Size padded_w = Size(x.size(3)) + Size(2) * (Size(dilation[1]) * Size(weight.size(3) - 1) / Size(2));
  TORCH_CHECK_VALUE(padded_h.ok() && padded_w.ok(), "dilation ", dilation, " is too large for the kernel ",
                    weight.sizes().slice(2), ": the padded input (H + dilation * (kh - 1), W + dilation * (kw - 1)) ",
                    "of x ", x.sizes(), " does not fit int64");
  const Size output = Size(x.size(0)) * Size(x.size(1)) * Size(x.size(2)) * Size(x.size(3)) * Size(x.element_size());
  TORCH_CHECK_VALUE(output.within(kMaxAllocationBytes), "x ", x.sizes(), " gives an output of ",
                    describe_bytes(output),
                    ", over the limit of 2^40 bytes");
}

}  // namespace

GatedSkipShape check_gated_skip_args(const at::Tensor& x, const at::Tensor& weight,
                                     const c10::optional<at::Tensor>& bias,
                                     const c10::optional<at::Tensor>& layer_gate,
                                     const c10::optional<at::Tensor>& channel_gate,
                                     const c10::optional<at::Tensor>& scale, const c10::optional<at::Tensor>& shift,
                                     at::IntArrayRef dilation, int64_t groups, c10::string_view activation) {
  TORCH_CHECK_VALUE(x.dim() == 4, "x must have shape [N, C, H, W], got ", x.sizes());
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
                   "x must be float32 or float64, got ", x.scalar_type());
  check_image_extent(x);
  TORCH_CHECK_VALUE(groups >= 1, "groups must be >= 1, got ", groups);
  const int64_t n = x.size(0), c = x.size(1);
  TORCH_CHECK_VALUE(c % groups == 0, "groups (", groups, ") must divide the channels of x (", c, "), x is ",
                    x.sizes());
  TORCH_CHECK_VALUE(dilation.size() == 2, "dilation must have 2 elements (height, width), got ", dilation.size());
  TORCH_CHECK_VALUE(dilation[0] >= 1 && dilation[1] >= 1, "dilation must be >= 1, got ", dilation);
  TORCH_CHECK_VALUE(activation == "none" || activation == "relu", "activation must be 'none' or 'relu', got '",
                    activation, "'");
  check_like_x(weight, "weight", x);
  TORCH_CHECK_VALUE(weight.dim() == 4 && weight.size(0) == c && weight.size(1) == c / groups,
                    "weight must have shape [C, C/groups, kh, kw] = [", c, ", ", c / groups, ", kh, kw], got ",
                    weight.sizes());
  TORCH_CHECK_VALUE(weight.size(2) % 2 == 1 && weight.size(3) % 2 == 1,
                    "weight's kernel must be odd in both dimensions (shape-keeping padding), got ",
                    weight.sizes().slice(2));
  check_gated_skip_sizes(x, weight, dilation);
  check_optional(bias, "bias", {c}, x);
  check_optional(scale, "scale", {c}, x);
  check_optional(shift, "shift", {c}, x);
  check_optional(layer_gate, "layer_gate", {n}, x);
  check_optional(channel_gate, "channel_gate", {n, c}, x);
  return GatedSkipShape{n, c, x.size(2), x.size(3), weight.size(2), weight.size(3), dilation[0], dilation[1],
                        groups, activation == "relu"};
}

}  // namespace rnnpool
