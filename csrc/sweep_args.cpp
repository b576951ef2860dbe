#include "sweep_args.h"

#include <string>

#include "core/checked_size.h"

namespace rnnpool {
namespace {

Nonlinearity parse_nonlinearity(c10::string_view name, const char* arg) {
  if (name == "sigmoid") return Nonlinearity::Sigmoid;
  if (name == "tanh") return Nonlinearity::Tanh;
  if (name == "quantSigm") return Nonlinearity::QuantSigm;
  if (name == "quantTanh") return Nonlinearity::QuantTanh;
  TORCH_CHECK_VALUE(false, arg, " must be one of 'sigmoid', 'tanh', 'quantSigm', 'quantTanh', got '", name, "'");
}

std::vector<std::vector<int64_t>> expected_cell_shapes(CellKind cell, int64_t in, int64_t h) {
  if (cell == CellKind::FastGRNN) return {{h, in}, {h, h}, {h}, {h}, {1}, {1}};
  return {{3 * h, in}, {3 * h, h}, {3 * h}, {3 * h}};
}

const char* const kFastGRNNNames[] = {"W", "U", "bias_gate", "bias_update", "zeta", "nu"};
const char* const kGRUNames[] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};

// Checks one cell's parameter list; returns its hidden size (read off the first weight).
int64_t check_cell(at::TensorList params, const char* arg, CellKind cell, int64_t in, const at::Tensor& x) {
  const size_t count = cell == CellKind::FastGRNN ? 6 : 4;
  const char* const* names = cell == CellKind::FastGRNN ? kFastGRNNNames : kGRUNames;
  TORCH_CHECK_VALUE(params.size() == count, arg, " must hold ", count, " tensors for this cell (",
                    cell == CellKind::FastGRNN ? "W, U, bias_gate, bias_update, zeta, nu" : "weight_ih, weight_hh, bias_ih, bias_hh",
                    "), got ", params.size());
  const int64_t gates = cell == CellKind::GRU ? 3 : 1;
  TORCH_CHECK_VALUE(params[0].dim() == 2 && params[0].size(0) % gates == 0 && params[0].size(0) > 0, arg, ".",
                    names[0], " must have shape [", gates == 3 ? "3*hidden" : "hidden", ", ", in, "], got ",
                    params[0].sizes());
  const int64_t h = params[0].size(0) / gates;
  const auto shapes = expected_cell_shapes(cell, in, h);
  for (size_t p = 0; p < count; ++p) {
    TORCH_CHECK_VALUE(params[p].sizes() == at::IntArrayRef(shapes[p]), arg, ".", names[p], " must have shape ",
                      at::IntArrayRef(shapes[p]), ", got ", params[p].sizes());
    TORCH_CHECK_TYPE(params[p].scalar_type() == x.scalar_type(), arg, ".", names[p], " must have the dtype of x (",
                     x.scalar_type(), "), got ", params[p].scalar_type());
    TORCH_CHECK_VALUE(params[p].device() == x.device(), arg, ".", names[p], " must be on the device of x (",
                      x.device(), "), got ", params[p].device());
  }
  return h;
}

void check_pair(at::IntArrayRef v, const char* arg, int64_t minimum) {
  TORCH_CHECK_VALUE(v.size() == 2, arg, " must have 2 elements (height, width), got ", v.size());
  TORCH_CHECK_VALUE(v[0] >= minimum && v[1] >= minimum, arg, " must be >= ", minimum, ", got ", v);
}

// The sizes the sweep derives from the geometry, checked (core/checked_size.h) before any
// backend allocates: the output, and a bound of the per-sample workspace of every backend: the
// padded image (the Triton backend materialises it) plus, for each patch, its kh + kw sequences
// of up to max(kh, kw) steps (the reference and Triton backends keep every step of every patch,
// the CPU backward RNN1's tapes and their input gradients), at most C + 12 * hidden values per step.
// rnnpool_ops/_checks.py (_check_sweep_sizes) applies the same rules.
void check_sweep_sizes(const SweepShape& s, int64_t element_bytes, at::IntArrayRef kernel_size,
                       at::IntArrayRef stride, at::IntArrayRef padding, const at::Tensor& x) {
  const Size blocks((s.rows ? 2 : 0) + (s.global ? 4 : 0) + (s.cols ? 2 : 0));
  const Size output =
      Size(s.batch) * blocks * Size(s.hidden2) * Size(s.out_h()) * Size(s.out_w()) * Size(element_bytes);
  TORCH_CHECK_VALUE(output.within(kMaxAllocationBytes), "kernel_size ", kernel_size, ", stride ", stride,
                    " and padding ", padding, " on x ", x.sizes(), " give an output of [", s.batch, ", ",
                    blocks.value(), " * ", s.hidden2, ", ", s.out_h(), ", ", s.out_w(), "]: ",
                    describe_bytes(output), ", over the limit of 2^40 bytes");
  const Size padded = (Size(s.height) + Size(2) * Size(s.pad_h)) * (Size(s.width) + Size(2) * Size(s.pad_w));
  const Size steps = Size(s.out_h()) * Size(s.out_w()) * Size(s.summaries()) *
                     max(Size(s.kernel_h), Size(s.kernel_w));
  const Size workspace = (padded + steps) * (Size(s.channels) + Size(12) * max(Size(s.hidden1), Size(s.hidden2))) *
                         Size(element_bytes);
  TORCH_CHECK_VALUE(workspace.within(kMaxAllocationBytes), "kernel_size ", kernel_size, ", stride ", stride,
                    " and padding ", padding, " on x ", x.sizes(), " need a workspace of ", describe_bytes(workspace),
                    " per sample, over the limit of 2^40 bytes");
}

}  // namespace

SweepArgs check_sweep_args(const at::Tensor& x, at::TensorList rnn1, at::TensorList rnn2,
                           const c10::optional<at::Tensor>& proj_weight, const c10::optional<at::Tensor>& proj_bias,
                           at::IntArrayRef kernel_size, at::IntArrayRef stride, at::IntArrayRef padding,
                           c10::string_view cell, c10::string_view gate_nonlinearity,
                           c10::string_view update_nonlinearity, c10::string_view parts) {
  SweepArgs a;
  TORCH_CHECK_VALUE(x.dim() == 4, "x must have shape [N, C, H, W], got ", x.sizes());
  const bool reduced_precision = x.scalar_type() == at::kHalf || x.scalar_type() == at::kBFloat16;
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble || (x.is_cuda() && reduced_precision),
                   "x must be float32 or float64 (or float16/bfloat16 on CUDA), got ", x.scalar_type(), " on ",
                   x.device());
  check_image_extent(x);
  check_pair(kernel_size, "kernel_size", 1);
  check_pair(stride, "stride", 1);
  check_pair(padding, "padding", 0);
  const Size padded_h = Size(x.size(2)) + Size(2) * Size(padding[0]);
  const Size padded_w = Size(x.size(3)) + Size(2) * Size(padding[1]);
  TORCH_CHECK_VALUE(padded_h.ok() && padded_w.ok(), "padding ", padding, " is too large: the padded input (H + 2 * ",
                    "padding, W + 2 * padding) of x ", x.sizes(), " does not fit int64");
  TORCH_CHECK_VALUE(padded_h.value() >= kernel_size[0] && padded_w.value() >= kernel_size[1], "kernel_size ",
                    kernel_size, " is larger than the padded input [", padded_h.value(), ", ", padded_w.value(),
                    "] (x ", x.sizes(), ", padding ", padding, ")");
  TORCH_CHECK_VALUE(cell == "fastgrnn" || cell == "gru", "cell must be 'fastgrnn' or 'gru', got '", cell, "'");
  a.cell = cell == "gru" ? CellKind::GRU : CellKind::FastGRNN;
  a.gate = parse_nonlinearity(gate_nonlinearity, "gate_nonlinearity");
  a.update = parse_nonlinearity(update_nonlinearity, "update_nonlinearity");
  TORCH_CHECK_VALUE(a.cell == CellKind::FastGRNN || (a.gate == Nonlinearity::Sigmoid && a.update == Nonlinearity::Tanh),
                    "gate_nonlinearity/update_nonlinearity must be 'sigmoid'/'tanh' for the GRU cell, got '",
                    gate_nonlinearity, "'/'", update_nonlinearity, "'");
  const std::string p(parts);
  const bool valid_parts = !p.empty() && (p == "R" || p == "G" || p == "C" || p == "RG" || p == "RC" ||
                                          p == "GC" || p == "RGC");
  TORCH_CHECK_VALUE(valid_parts, "parts must be a non-empty subset of 'RGC' in that order ('RC' = RNNPool, "
                    "'RGC' = ReX), got '", parts, "'");

  SweepShape& s = a.shape;
  s.batch = x.size(0), s.channels = x.size(1), s.height = x.size(2), s.width = x.size(3);
  s.kernel_h = kernel_size[0], s.kernel_w = kernel_size[1];
  s.stride_h = stride[0], s.stride_w = stride[1];
  s.pad_h = padding[0], s.pad_w = padding[1];
  s.rows = p.find('R') != std::string::npos;
  s.global = p.find('G') != std::string::npos;
  s.cols = p.find('C') != std::string::npos;
  s.hidden1 = check_cell(rnn1, "rnn1", a.cell, s.channels, x);
  s.hidden2 = check_cell(rnn2, "rnn2", a.cell, s.hidden1, x);
  check_sweep_sizes(s, x.element_size(), kernel_size, stride, padding, x);

  if (s.global) {
    TORCH_CHECK_VALUE(proj_weight.has_value() && proj_bias.has_value(),
                      "proj_weight and proj_bias are required when parts contains 'G'");
    auto check_projection = [&](const at::Tensor& t, const char* name, std::vector<int64_t> want) {
      TORCH_CHECK_VALUE(t.sizes() == at::IntArrayRef(want), name, " must have shape ", at::IntArrayRef(want),
                        " ([4*hidden2, (kh+kw)*hidden1] and [4*hidden2]), got ", t.sizes());
      TORCH_CHECK_TYPE(t.scalar_type() == x.scalar_type(), name, " must have the dtype of x (", x.scalar_type(),
                       "), got ", t.scalar_type());
      TORCH_CHECK_VALUE(t.device() == x.device(), name, " must be on the device of x (", x.device(), "), got ",
                        t.device());
    };
    check_projection(*proj_weight, "proj_weight", {4 * s.hidden2, s.summaries() * s.hidden1});
    check_projection(*proj_bias, "proj_bias", {4 * s.hidden2});
  } else {
    TORCH_CHECK_VALUE(!proj_weight.has_value() && !proj_bias.has_value(),
                      "proj_weight and proj_bias must be None when parts has no 'G' (parts='", parts, "')");
  }
  return a;
}

void check_image_extent(const at::Tensor& x) {
  TORCH_CHECK_VALUE(x.size(1) >= 1 && x.size(2) >= 1 && x.size(3) >= 1,
                    "x must have at least one channel and one pixel (C, H, W >= 1), got ", x.sizes());
}

void check_grad_output(const at::Tensor& grad_output, const at::Tensor& x, const SweepShape& s) {
  const std::vector<int64_t> out_shape = {s.batch, s.out_channels(), s.out_h(), s.out_w()};
  TORCH_CHECK_VALUE(grad_output.sizes() == at::IntArrayRef(out_shape), "grad_output must have shape ",
                    at::IntArrayRef(out_shape), ", got ", grad_output.sizes());
  TORCH_CHECK_TYPE(grad_output.scalar_type() == x.scalar_type(), "grad_output must have the dtype of x (",
                   x.scalar_type(), "), got ", grad_output.scalar_type());
  TORCH_CHECK_VALUE(grad_output.device() == x.device(), "grad_output must be on the device of x (", x.device(),
                    "), got ", grad_output.device());
}

}  // namespace rnnpool
