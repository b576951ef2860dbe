// Checks the sweep op's arguments (for every backend) and turns them into the core's description.
// Every failure is a c10::Error (a Python RuntimeError/ValueError) naming the argument and what was
// expected, raised before any kernel runs.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "core/types.h"

namespace rnnpool {

struct SweepArgs {
  SweepShape shape;
  CellKind cell;
  Nonlinearity gate, update;
};

SweepArgs check_sweep_args(const at::Tensor& x, at::TensorList rnn1, at::TensorList rnn2,
                           const c10::optional<at::Tensor>& proj_weight, const c10::optional<at::Tensor>& proj_bias,
                           at::IntArrayRef kernel_size, at::IntArrayRef stride, at::IntArrayRef padding,
                           c10::string_view cell, c10::string_view gate_nonlinearity,
                           c10::string_view update_nonlinearity, c10::string_view parts);

// Every op's x must have at least one channel and one pixel (C, H, W >= 1; the batch may be empty):
// an image without pixels has no patch, not a patch of padding.
void check_image_extent(const at::Tensor& x);

// The backward's grad_output must match the forward's output: shape, dtype and device.
void check_grad_output(const at::Tensor& grad_output, const at::Tensor& x, const SweepShape& shape);

}  // namespace rnnpool
