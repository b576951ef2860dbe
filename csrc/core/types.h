// Plain descriptions shared by every ISA build of the core and by the torch bindings. Everything
// with code lives in the per-ISA namespace (platform.h); these types must not.
#pragma once

#include <cstdint>

namespace rnnpool {

enum class CellKind : int { FastGRNN = 0, GRU = 1 };

enum class Nonlinearity : int { Sigmoid = 0, Tanh = 1, QuantSigm = 2, QuantTanh = 3 };

struct SweepShape {
  int64_t batch, channels, height, width;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
  int64_t hidden1, hidden2;
  bool rows, global, cols;  // output parts V^R, V^G, V^C (RNNPool = rows + cols)

  int64_t out_h() const { return (height + 2 * pad_h - kernel_h) / stride_h + 1; }
  int64_t out_w() const { return (width + 2 * pad_w - kernel_w) / stride_w + 1; }
  int64_t patches() const { return out_h() * out_w(); }
  int64_t pixels() const { return height * width; }
  int64_t summaries() const { return kernel_h + kernel_w; }
  bool needs_rnn2() const { return rows || cols; }
  int64_t out_channels() const { return hidden2 * ((rows ? 2 : 0) + (global ? 4 : 0) + (cols ? 2 : 0)); }
};

template <class T>
struct SweepParams {
  const T* const* rnn1;  // the cell's parameters in the op's order
  const T* const* rnn2;
  const T* proj_weight;  // [4 hidden2, (kh + kw) hidden1], only with shape.global
  const T* proj_bias;    // [4 hidden2]
  Nonlinearity gate, update;
};

// Offsets of every parameter in one flat gradient vector: rnn1's, rnn2's, then proj weight and bias.
struct GradOffsets {
  static constexpr int kMaxCellParams = 6;
  int num_cell_params;
  int64_t rnn1[kMaxCellParams], rnn2[kMaxCellParams];
  int64_t proj_weight, proj_bias, total;
};

// Rows of registers in the gated-skip kernel are padded to a multiple of every build's register
// width (16 floats).
constexpr int64_t kGatedConvColumnMultiple = 16;

// How the gated-skip kernel (gated_conv.h) sees a sample: zero-padded planes of padded_height x
// padded_width, x's pixel (i, j) at (i + pad_h, j + pad_w), that is at i * padded_width + j +
// origin(); output pixel (i, j) is lane i * padded_width + j.
struct GatedConvLayout {
  int64_t pad_h, pad_w;  // dilation * (kernel - 1) / 2: the padding that keeps the shape
  int64_t padded_height, padded_width;
  // Wide rows start a register at each row (padded_width a multiple of 16 plus the padding, so no
  // register reads past its row). Narrow rows would leave most lanes empty that way (7 pixels of
  // 16): there registers run along the flattened plane through the row ends (padded_width = width
  // plus the padding), and the lanes that land in the padding columns are computed and dropped.
  bool across_rows;

  int64_t plane() const { return padded_height * padded_width; }
  int64_t origin() const { return pad_h * padded_width + pad_w; }
  // A buffer of `channels` planes: a register at the end of the last plane may read up to 15
  // elements past it.
  int64_t buffer_size(int64_t channels) const { return channels * plane() + kGatedConvColumnMultiple; }
};

// n rounded up to whole 16-float registers.
inline int64_t gated_conv_register_lanes(int64_t n) {
  return (n + kGatedConvColumnMultiple - 1) / kGatedConvColumnMultiple * kGatedConvColumnMultiple;
}

inline GatedConvLayout gated_conv_layout(int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w,
                                         int64_t dilation_h, int64_t dilation_w, bool across_rows) {
  const int64_t pad_h = dilation_h * (kernel_h - 1) / 2, pad_w = dilation_w * (kernel_w - 1) / 2;
  const int64_t columns = across_rows ? width : gated_conv_register_lanes(width);
  return {pad_h, pad_w, height + 2 * pad_h, columns + 2 * pad_w, across_rows};
}

// The layout that wastes the fewer lanes of 16-float registers.
inline GatedConvLayout gated_conv_layout(int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w,
                                         int64_t dilation_h, int64_t dilation_w) {
  const GatedConvLayout across = gated_conv_layout(height, width, kernel_h, kernel_w, dilation_h, dilation_w, true);
  if (gated_conv_register_lanes(height * across.padded_width) < height * gated_conv_register_lanes(width))
    return across;
  return gated_conv_layout(height, width, kernel_h, kernel_w, dilation_h, dilation_w, false);
}

// The gated-skip convolution's forward (docs/spec.md section 5) for `count` output channels of one group of
// one sample: y[c] = m[c] * act(alpha[c] * conv_c(x) + beta[c]) + (1 - m[c]) * x[c] (gated_conv.h).
template <class T>
struct GatedConvJob {
  int64_t height, width, kernel_h, kernel_w, dilation_h, dilation_w;
  GatedConvLayout layout;
  int64_t group_channels;  // input channels per group
  bool relu;
  const T* padded;         // every channel of the sample in `layout` (layout.buffer_size(C) elements)
  int64_t first_input;     // the group's first channel
  const T* weights;        // the `count` filters, [group_channels][kernel_h][kernel_w][count]
  const int64_t* channels; // the output channels, all in the group
  int64_t count;
  const T *gate, *alpha, *beta;  // per channel of the layer: m, and z = alpha * conv + beta
  T* y;                          // the sample's output, [C][height][width]
};

}  // namespace rnnpool
