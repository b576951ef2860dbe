// The direct convolution of the gated-skip forward (GatedConvJob, types.h), written once against
// Vec<T>. Output pixels lie in the register lanes, along a row or, for narrow rows, along the
// flattened plane (GatedConvLayout); a tile of accumulators holds up to ConvTile::kChannels output
// channels x ConvTile::kVectors registers of pixels. Every input register loaded serves each
// channel of the tile and every broadcast filter tap each register of pixels, so the loop does
// kChannels * kVectors multiply-adds per kChannels + kVectors loads.
//
// x stays in its NCHW planes (zero-padded by the caller, so no border tests; GatedConvLayout) and y
// is written in place with the gate blend fused into the store: no layout change on either side,
// and channels outside the job cost nothing.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>

#include "simd.h"
#include "types.h"

RNNPOOL_BEGIN_ISA_NAMESPACE

template <class T>
struct ConvTile {
  using V = Vec<T>;
  // Two registers of pixels per row: each filter tap is loaded once per two multiply-adds per
  // channel. The accumulators take 3/4 of the register file; the rest hold the inputs and a tap.
  static constexpr int kVectors = 2;
  static constexpr int kChannels = V::kRegisters * 3 / 4 / kVectors;
  static_assert(kGatedConvColumnMultiple % V::kWidth == 0, "rows are padded for a narrower register");
};

// Copies the output lanes [o, o + n) (output pixel (i, j) is lane i * padded_width + j) to y[i][j],
// skipping the lanes in the padding columns.
template <class T>
void copy_valid_lanes(const GatedConvJob<T>& job, const T* lanes, int64_t o, int64_t n, T* y) {
  const int64_t stride = job.layout.padded_width;
  for (int64_t k = 0; k < n;) {
    const int64_t i = (o + k) / stride, j = (o + k) % stride;
    if (i >= job.height) return;
    const int64_t run = std::min(job.width - j, n - k);
    if (run > 0) std::copy(lanes + k, lanes + k + run, y + i * job.width + j);
    k += stride - j;
  }
}

// y = m * act(alpha * conv + beta) + (1 - m) * x for the tile's channels at output lanes
// [o, o + kVectors * kWidth).
template <class T, int kChannels, int kVectors>
void store_tile(const GatedConvJob<T>& job, const Vec<T> (&acc)[kChannels][kVectors], int64_t first, int64_t o) {
  using V = Vec<T>;
  constexpr int64_t kLanes = kVectors * V::kWidth;
  const GatedConvLayout& layout = job.layout;
  // Whole registers go straight to y when every lane is a pixel of one row.
  const int64_t row = o / layout.padded_width, column = o % layout.padded_width;
  const bool direct = column + kLanes <= job.width;
  const V zero(T(0)), infinity(std::numeric_limits<T>::infinity());
  for (int j = 0; j < kChannels; ++j) {
    const int64_t c = job.channels[first + j];
    const T m = job.gate[c];
    const V alpha(job.alpha[c]), beta(job.beta[c]), gate(m), keep(T(1) - m);
    const T* x = job.padded + c * layout.plane() + o + layout.origin();
    T* y = job.y + c * job.height * job.width;
    T lanes[kLanes];
    T* out = direct ? y + row * job.width + column : lanes;
    for (int v = 0; v < kVectors; ++v) {
      V z = fmadd(alpha, acc[j][v], beta);
      if (job.relu) z = clamp(z, zero, infinity);  // NaN stays NaN
      if (m != T(1)) z = fmadd(gate, z, keep * V::load(x + v * V::kWidth));
      z.store(out + v * V::kWidth);
    }
    if (!direct) copy_valid_lanes(job, lanes, o, kLanes, y);
  }
}

// Output channels [first, first + kChannels) of the job at output lanes from o.
template <class T, int kChannels, int kVectors>
void convolve_tile(const GatedConvJob<T>& job, int64_t first, int64_t o) {
  using V = Vec<T>;
  V acc[kChannels][kVectors];
  for (auto& channel : acc)
    for (V& a : channel) a = V(T(0));
  const int64_t plane = job.layout.plane(), stride = job.layout.padded_width;
  const T* input = job.padded + job.first_input * plane + o;
  const T* taps = job.weights + first;
  for (int64_t ci = 0; ci < job.group_channels; ++ci, input += plane) {
    for (int64_t kh = 0; kh < job.kernel_h; ++kh) {
      const T* line = input + kh * job.dilation_h * stride;
      for (int64_t kw = 0; kw < job.kernel_w; ++kw, taps += job.count) {
        V xs[kVectors];
        for (int v = 0; v < kVectors; ++v) xs[v] = V::load(line + kw * job.dilation_w + v * V::kWidth);
        for (int j = 0; j < kChannels; ++j) {
          const V tap(taps[j]);
          for (int v = 0; v < kVectors; ++v) acc[j][v] = fmadd(tap, xs[v], acc[j][v]);
        }
      }
    }
  }
  store_tile(job, acc, first, o);
}

// Output lanes [begin, begin + length) of channels [first, first + kChannels): whole tiles, then
// single registers for what is left.
template <class T, int kChannels>
void convolve_span(const GatedConvJob<T>& job, int64_t first, int64_t begin, int64_t length) {
  constexpr int kVectors = ConvTile<T>::kVectors, kWidth = Vec<T>::kWidth;
  const int64_t registers = (length + kWidth - 1) / kWidth;
  int64_t r = 0;
  for (; r + kVectors <= registers; r += kVectors) convolve_tile<T, kChannels, kVectors>(job, first, begin + r * kWidth);
  for (; r < registers; ++r) convolve_tile<T, kChannels, 1>(job, first, begin + r * kWidth);
}

// Rows [row_begin, row_end) of channels [first, first + kChannels): one span per row, or one span
// through the row ends (GatedConvLayout::across_rows).
template <class T, int kChannels>
void convolve_rows(const GatedConvJob<T>& job, int64_t first, int64_t row_begin, int64_t row_end) {
  if (row_begin >= row_end) return;
  const int64_t stride = job.layout.padded_width;
  if (job.layout.across_rows) {
    convolve_span<T, kChannels>(job, first, row_begin * stride, (row_end - 1 - row_begin) * stride + job.width);
    return;
  }
  for (int64_t row = row_begin; row < row_end; ++row) convolve_span<T, kChannels>(job, first, row * stride, job.width);
}

template <class T, int... kCounts>
void convolve_rows_of(int64_t channels, const GatedConvJob<T>& job, int64_t first, int64_t row_begin,
                      int64_t row_end, std::integer_sequence<int, kCounts...>) {
  ((channels == kCounts + 1 ? convolve_rows<T, kCounts + 1>(job, first, row_begin, row_end) : void()), ...);
}

// Rows [row_begin, row_end) of every channel of the job, in tiles of balanced sizes (16 channels
// are two tiles of 8, not 12 and 4), one tile at a time so that its filters stay in cache.
template <class T>
void gated_conv_rows(const GatedConvJob<T>& job, int64_t row_begin, int64_t row_end) {
  constexpr int kMax = ConvTile<T>::kChannels;
  const int64_t tiles = (job.count + kMax - 1) / kMax;
  for (int64_t t = 0, first = 0; t < tiles; ++t) {
    const int64_t size = (job.count - first) / (tiles - t);
    convolve_rows_of(size, job, first, row_begin, row_end, std::make_integer_sequence<int, kMax>());
    first += size;
  }
}

RNNPOOL_END_ISA_NAMESPACE
