// RNN1's input projection W x of every pixel of a sample (pixel-major: P[pix][unit]), and its
// transpose for the backward pass, as register-blocked loops over lane registers (lanes.h).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "lanes.h"
#include "platform.h"

RNNPOOL_BEGIN_ISA_NAMESPACE

// Rows [g0, g0 + kRows) of P for one block of PB pixels: kRows accumulators stay in registers while
// the loop over channels streams the block's pixels. The tile then goes to P (pixel-major) through
// register transposes when its sides are multiples of the transpose width, else value by value.
template <int kRows, int PB, class T>
inline void project_block(const T* W, int64_t G, int64_t C, const T* x, int64_t npix, int64_t p0, int64_t g0,
                          T* P) {
  using Regs = LaneRegs<T, PB>;
  Regs acc[kRows];
  for (int i = 0; i < kRows; ++i) acc[i] = Regs::splat(T(0));
  for (int64_t c = 0; c < C; ++c) {
    const Regs xc = Regs::load(x + c * npix + p0);
    for (int i = 0; i < kRows; ++i) acc[i].fma(W[(g0 + i) * C + c], xc);
  }
  T tile[kRows * PB];
  for (int i = 0; i < kRows; ++i) acc[i].store(tile + i * PB);
  constexpr int TW = Transpose<T>::kWidth;
  if constexpr (kRows % TW == 0 && PB % TW == 0) {
    const T* rows[kRows];
    for (int i = 0; i < kRows; ++i) rows[i] = tile + i * PB;
    for (int j0 = 0; j0 < kRows; j0 += TW)
      for (int q0 = 0; q0 < PB; q0 += TW) Transpose<T>::block(rows + j0, q0, P + (p0 + q0) * G + g0 + j0, G);
  } else {
    for (int q = 0; q < PB; ++q)
      for (int i = 0; i < kRows; ++i) P[(p0 + q) * G + g0 + i] = tile[i * PB + q];
  }
}

// Pixel registers per block of project_pixels: two where the ISA has 32 registers (16
// accumulators; each broadcast weight then feeds two multiply-adds, so the loop is no longer bound
// by its loads), one where it has 16.
template <class T>
constexpr int kPixelRegisters = Vec<T>::kRegisters >= 32 ? 2 : 1;

// P[pix][g] = sum_c W[g][c] x[c][pix] for pix in [begin, end); x is one sample [C][npix].
// Blocks of 8 units by kPixelRegisters registers of pixels (then one register, then single pixels):
// per channel a load per register and 8 broadcasts, and whole 8 x 8 (4 x 4 on NEON) transposes
// into P.
template <class T>
void project_pixels(const T* W, int64_t G, int64_t C, const T* x, int64_t npix, int64_t begin, int64_t end,
                    T* P) {
  constexpr int PB = Vec<T>::kWidth, kRows = 8;
  int64_t p0 = begin;
  // Every unit of the blocks of `width` pixels from p0 that fit before end; p0 ends past them.
  auto blocks = [&](auto width) {
    constexpr int BW = decltype(width)::value;
    for (; p0 + BW <= end; p0 += BW) {
      int64_t g0 = 0;
      for (; g0 + kRows <= G; g0 += kRows) project_block<kRows, BW>(W, G, C, x, npix, p0, g0, P);
      for (; g0 < G; ++g0) project_block<1, BW>(W, G, C, x, npix, p0, g0, P);
    }
  };
  blocks(std::integral_constant<int, kPixelRegisters<T> * PB>{});
  blocks(std::integral_constant<int, PB>{});
  for (; p0 < end; ++p0)  // the last partial block
    for (int64_t g = 0; g < G; ++g) {
      T acc = 0;
      for (int64_t c = 0; c < C; ++c) acc += W[g * C + c] * x[c * npix + p0];
      P[p0 * G + g] = acc;
    }
}

// out[g * out_stride + q] = in[q * G + g] for q < n, g < G (out_stride defaults to n): whole
// register transposes, the edges value by value.
template <class T>
void transpose_rows(const T* in, int64_t n, int64_t G, T* out, int64_t out_stride = 0) {
  constexpr int TW = Transpose<T>::kWidth;
  if (out_stride == 0) out_stride = n;
  const int64_t whole_q = n / TW * TW, whole_g = G / TW * TW;
  const T* rows[TW];
  for (int64_t q0 = 0; q0 < whole_q; q0 += TW) {
    for (int j = 0; j < TW; ++j) rows[j] = in + (q0 + j) * G;
    for (int64_t g0 = 0; g0 < whole_g; g0 += TW) Transpose<T>::block(rows, g0, out + g0 * out_stride + q0, out_stride);
  }
  for (int64_t q = 0; q < n; ++q)
    for (int64_t g = q < whole_q ? whole_g : 0; g < G; ++g) out[g * out_stride + q] = in[q * G + g];
}

// The row stride of a transpose with rows of n values that is written and read a register tile
// at a time: one cache line more than n, so a power-of-two n (512 pixels) does not map every
// row to the same few cache sets (measured: the 512 x 48 transpose of the backward projection
// took 10.5 us with a stride of 512 floats).
template <class T>
int64_t padded_stride(int64_t n) {
  return n + 64 / static_cast<int64_t>(sizeof(T));
}

// Register tiles of the backward projection: kRowsPerTile rows by kVectorsPerTile registers of
// pixels, 12 accumulators where the ISA has 32 registers (each step loads 4 + 3 values for 12
// multiply-adds, so the loop is bound by FMAs, not loads), 6 where it has 16.
template <class T>
constexpr int kRowsPerTile = Vec<T>::kRegisters >= 32 ? 4 : 3;
template <class T>
constexpr int kVectorsPerTile = Vec<T>::kRegisters >= 32 ? 3 : 2;

// The register tile both backward products are made of: acc[i][j] += scalar(s, i) * the j-th
// register at vectors(s), for steps s in [0, steps), BV loads and BC broadcasts per step.
template <int BC, int BV, class T, class Vectors, class Scalar>
inline void broadcast_tile_accumulate(Vec<T> (&acc)[BC][BV], int64_t steps, Vectors&& vectors, Scalar&& scalar) {
  using V = Vec<T>;
  for (int64_t s = 0; s < steps; ++s) {
    const T* row = vectors(s);
    V dv[BV];
    for (int j = 0; j < BV; ++j) dv[j] = V::load(row + j * V::kWidth);
    for (int i = 0; i < BC; ++i) {
      const V b(scalar(s, i));
      for (int j = 0; j < BV; ++j) acc[i][j] = fmadd(b, dv[j], acc[i][j]);
    }
  }
}

// dx[c][q] = sum_g W[g][c] d[g][q] for channels [c0, c0 + BC) and BV registers of pixels from q0;
// d [G][d_stride], dx [C][dx_stride].
template <int BC, int BV, class T>
inline void input_grad_tile(const T* W, int64_t G, int64_t C, const T* d, int64_t d_stride, int64_t q0, int64_t c0,
                            T* dx, int64_t dx_stride) {
  using V = Vec<T>;
  constexpr int PB = V::kWidth;
  V acc[BC][BV];
  for (int i = 0; i < BC; ++i)
    for (int j = 0; j < BV; ++j) acc[i][j] = V(T(0));
  broadcast_tile_accumulate<BC, BV, T>(
      acc, G, [&](int64_t g) { return d + g * d_stride + q0; }, [&](int64_t g, int i) { return W[g * C + c0 + i]; });
  for (int i = 0; i < BC; ++i)
    for (int j = 0; j < BV; ++j) acc[i][j].store(dx + (c0 + i) * dx_stride + q0 + j * PB);
}

// dx for every channel and the pixels [q0, q0 + BV registers).
template <int BV, class T>
inline void input_grad_columns(const T* W, int64_t G, int64_t C, const T* d, int64_t d_stride, int64_t q0, T* dx,
                               int64_t dx_stride) {
  constexpr int BC = kRowsPerTile<T>;
  int64_t c = 0;
  for (; c + BC <= C; c += BC) input_grad_tile<BC, BV>(W, G, C, d, d_stride, q0, c, dx, dx_stride);
  for (; c < C; ++c) input_grad_tile<1, BV>(W, G, C, d, d_stride, q0, c, dx, dx_stride);
}

// dW[g][c] += sum over the samples and their pixels [0, n) of d[g][k n + q] x[k][c][q], for units
// [g0, g0 + BG) and channels [c0, c0 + BC); x_at(k, c) is sample k's channel c. Whole registers of
// pixels are summed per lane in T, the tail pixels in T, then both in double.
template <int BG, int BC, class T, class XAt>
inline void weight_grad_tile(const T* d, int64_t d_stride, int64_t samples, int64_t n, int64_t C, XAt&& x_at,
                             int64_t g0, int64_t c0, double* dW) {
  using V = Vec<T>;
  constexpr int PB = V::kWidth;
  const int64_t full = n / PB * PB;
  V acc[BG][BC];
  T tail[BG][BC] = {};
  for (int a = 0; a < BG; ++a)
    for (int b = 0; b < BC; ++b) acc[a][b] = V(T(0));
  for (int64_t k = 0; k < samples; ++k) {
    const T* dk = d + k * n;
    for (int64_t q = 0; q < full; q += PB) {
      V dv[BG], xv[BC];
      for (int a = 0; a < BG; ++a) dv[a] = V::load(dk + (g0 + a) * d_stride + q);
      for (int b = 0; b < BC; ++b) xv[b] = V::load(x_at(k, c0 + b) + q);
      for (int a = 0; a < BG; ++a)
        for (int b = 0; b < BC; ++b) acc[a][b] = fmadd(dv[a], xv[b], acc[a][b]);
    }
    for (int64_t q = full; q < n; ++q)
      for (int a = 0; a < BG; ++a)
        for (int b = 0; b < BC; ++b) tail[a][b] += dk[(g0 + a) * d_stride + q] * x_at(k, c0 + b)[q];
  }
  for (int a = 0; a < BG; ++a)
    for (int b = 0; b < BC; ++b) {
      T v[PB];
      acc[a][b].store(v);
      double sum = tail[a][b];
      for (int l = 0; l < PB; ++l) sum += v[l];
      dW[(g0 + a) * C + c0 + b] += sum;
    }
}

// dW for units [g0, g0 + BG) and every channel.
template <int BG, class T, class XAt>
inline void weight_grad_rows(const T* d, int64_t d_stride, int64_t samples, int64_t n, int64_t C, XAt&& x_at,
                             int64_t g0, double* dW) {
  constexpr int BC = kVectorsPerTile<T>;
  int64_t c = 0;
  for (; c + BC <= C; c += BC) weight_grad_tile<BG, BC>(d, d_stride, samples, n, C, x_at, g0, c, dW);
  for (; c < C; ++c) weight_grad_tile<BG, 1>(d, d_stride, samples, n, C, x_at, g0, c, dW);
}

// The weight gradient from pixel-major dP, for units that fill whole registers: dW[g][c] for
// BV registers of units from g0 and BC channels from c0, each accumulator a register of units fed
// by a broadcast x value, so no register is summed across its lanes (the lane-sum tiles above
// stream seven rows from L2 per 12 multiply-adds; this streams dP once per channel tile). Each
// value is summed over the task's pixels in T, in pixel order, then added to dW in double.
template <class T>
constexpr int kWeightTileAccumulators = Vec<T>::kRegisters >= 32 ? 24 : 8;

template <int BV, int BC, class T, class XAt>
inline void weight_grad_unit_tile(const T* dP, int64_t G, int64_t samples, int64_t n, int64_t C, XAt&& x_at,
                                  int64_t g0, int64_t c0, double* dW) {
  using V = Vec<T>;
  constexpr int W = V::kWidth;
  V acc[BC][BV];
  for (int i = 0; i < BC; ++i)
    for (int j = 0; j < BV; ++j) acc[i][j] = V(T(0));
  for (int64_t k = 0; k < samples; ++k) {
    const T* d = dP + k * n * G + g0;
    const T* x[BC];
    for (int i = 0; i < BC; ++i) x[i] = x_at(k, c0 + i);
    broadcast_tile_accumulate<BC, BV, T>(
        acc, n, [&](int64_t q) { return d + q * G; }, [&](int64_t q, int i) { return x[i][q]; });
  }
  for (int i = 0; i < BC; ++i)
    for (int j = 0; j < BV; ++j) {
      T v[W];
      acc[i][j].store(v);
      for (int l = 0; l < W; ++l) dW[(g0 + j * W + l) * C + c0 + i] += v[l];
    }
}

// dW for BV registers of units from g0 and every channel.
template <int BV, class T, class XAt>
inline void weight_grad_unit_columns(const T* dP, int64_t G, int64_t samples, int64_t n, int64_t C, XAt&& x_at,
                                     int64_t g0, double* dW) {
  constexpr int BC = kWeightTileAccumulators<T> / BV;
  int64_t c = 0;
  for (; c + BC <= C; c += BC) weight_grad_unit_tile<BV, BC>(dP, G, samples, n, C, x_at, g0, c, dW);
  for (; c + 4 <= C; c += 4) weight_grad_unit_tile<BV, 4>(dP, G, samples, n, C, x_at, g0, c, dW);  // independent sums
  for (; c < C; ++c) weight_grad_unit_tile<BV, 1>(dP, G, samples, n, C, x_at, g0, c, dW);
}

// The transpose of project_pixels for pixels [begin, end) of `samples` consecutive samples (x and
// dx [samples][C][npix]), given their dP [samples][end - begin][G]: overwrites dx[n][c][pix] =
// sum_g W[g][c] dP[n][pix][g] and adds dW[g][c] += sum_{n, pix} dP[n][pix][g] x[n][c][pix] (summed
// in T in a fixed order, then added in double). dPt: room for dP transposed, G *
// padded_stride<T>(samples * (end - begin)) elements. Both are small matrix products in register
// tiles: dx over dP transposed, dW over dP itself where the units fill whole registers.
template <class T>
void project_pixels_backward(const T* W, int64_t G, int64_t C, const T* x, int64_t npix, int64_t samples,
                             int64_t begin, int64_t end, const T* dP, T* dx, double* dW, T* dPt) {
  constexpr int PB = Vec<T>::kWidth, BV = kVectorsPerTile<T>, BG = kRowsPerTile<T>;
  const int64_t n = end - begin, full = n / PB * PB, row = padded_stride<T>(samples * n);  // dPt[g]: a row
  transpose_rows(dP, samples * n, G, dPt, row);
  auto x_at = [&](int64_t k, int64_t c) { return x + (k * C + c) * npix + begin; };
  for (int64_t k = 0; k < samples; ++k) {
    const T* d = dPt + k * n;  // this sample's dP^T: d[g * row + q]
    T* dx_k = dx + k * C * npix + begin;
    int64_t q = 0;
    for (; q + BV * PB <= full; q += BV * PB) input_grad_columns<BV>(W, G, C, d, row, q, dx_k, npix);
    for (; q < full; q += PB) input_grad_columns<1>(W, G, C, d, row, q, dx_k, npix);
    for (int64_t c = 0; c < C; ++c)
      for (q = full; q < n; ++q) {
        T acc = 0;
        for (int64_t g = 0; g < G; ++g) acc += W[g * C + c] * d[g * row + q];
        dx_k[c * npix + q] = acc;
      }
  }
  // dW: whole registers of units from pixel-major dP, the rest by lane sums over dP transposed.
  constexpr int kUnitVectors = Vec<T>::kRegisters >= 32 ? 3 : 2;
  int64_t g = 0;
  for (; g + kUnitVectors * PB <= G; g += kUnitVectors * PB)
    weight_grad_unit_columns<kUnitVectors>(dP, G, samples, n, C, x_at, g, dW);
  for (; g + PB <= G; g += PB) weight_grad_unit_columns<1>(dP, G, samples, n, C, x_at, g, dW);
  for (; g + BG <= G; g += BG) weight_grad_rows<BG>(dPt, row, samples, n, C, x_at, g, dW);
  for (; g < G; ++g) weight_grad_rows<1>(dPt, row, samples, n, C, x_at, g, dW);
}

RNNPOOL_END_ISA_NAMESPACE
