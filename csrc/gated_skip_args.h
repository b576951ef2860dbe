// Checks the gated-skip convolution's arguments (docs/spec.md section 5) for every backend. Every failure is a
// c10::Error (a Python ValueError/TypeError) naming the argument and what was expected.
#pragma once

#include <ATen/ATen.h>

namespace rnnpool {

struct GatedSkipShape {
  int64_t batch, channels, height, width;
  int64_t kernel_h, kernel_w, dilation_h, dilation_w, groups;
  bool relu;

  int64_t plane() const { return height * width; }
  int64_t channels_per_group() const { return channels / groups; }
};

GatedSkipShape check_gated_skip_args(const at::Tensor& x, const at::Tensor& weight,
                                     const c10::optional<at::Tensor>& bias,
                                     const c10::optional<at::Tensor>& layer_gate,
                                     const c10::optional<at::Tensor>& channel_gate,
                                     const c10::optional<at::Tensor>& scale, const c10::optional<at::Tensor>& shift,
                                     at::IntArrayRef dilation, int64_t groups, c10::string_view activation);

}  // namespace rnnpool
