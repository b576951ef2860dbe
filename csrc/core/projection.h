// RNN1's input projection W x of every pixel of a sample (pixel-major: P[pix][unit]), and its
// transpose for the backward pass, as register-blocked loops over lane registers (lanes.h).
#pragma once

#include <algorithm>
#include <cstdint>

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

// P[pix][g] = sum_c W[g][c] x[c][pix] for pix in [begin, end); x is one sample [C][npix].
// Blocks of 8 units by one register of pixels: 8 accumulators, one load and 8 multiply-adds per
// channel, and whole 8 x 8 (4 x 4 on NEON) transposes into P.
template <class T>
void project_pixels(const T* W, int64_t G, int64_t C, const T* x, int64_t npix, int64_t begin, int64_t end,
                    T* P) {
  constexpr int PB = Vec<T>::kWidth, kRows = 8;
  int64_t p0 = begin;
  for (; p0 + PB <= end; p0 += PB) {
    int64_t g0 = 0;
    for (; g0 + kRows <= G; g0 += kRows) project_block<kRows, PB>(W, G, C, x, npix, p0, g0, P);
    for (; g0 < G; ++g0) project_block<1, PB>(W, G, C, x, npix, p0, g0, P);
  }
  for (; p0 < end; ++p0)  // the last partial block
    for (int64_t g = 0; g < G; ++g) {
      T acc = 0;
      for (int64_t c = 0; c < C; ++c) acc += W[g * C + c] * x[c * npix + p0];
      P[p0 * G + g] = acc;
    }
}

// out[g * n + q] = in[q * G + g] for q < n, g < G: whole register transposes, the edges value by
// value (a plain loop would store with a stride of n values, which for n a multiple of 1024 maps
// every row to the same cache set).
template <class T>
void transpose_rows(const T* in, int64_t n, int64_t G, T* out) {
  constexpr int TW = Transpose<T>::kWidth;
  const int64_t whole_q = n / TW * TW, whole_g = G / TW * TW;
  const T* rows[TW];
  for (int64_t q0 = 0; q0 < whole_q; q0 += TW) {
    for (int j = 0; j < TW; ++j) rows[j] = in + (q0 + j) * G;
    for (int64_t g0 = 0; g0 < whole_g; g0 += TW) Transpose<T>::block(rows, g0, out + g0 * n + q0, n);
  }
  for (int64_t q = 0; q < n; ++q)
    for (int64_t g = q < whole_q ? whole_g : 0; g < G; ++g) out[g * n + q] = in[q * G + g];
}

// The transpose of project_pixels for pixels [begin, end) of `samples` consecutive samples (x and
// dx [samples][C][npix]), given their dP [samples][end - begin][G]: overwrites dx[n][c][pix] =
// sum_g W[g][c] dP[n][pix][g] and adds dW[g][c] += sum_{n, pix} dP[n][pix][g] x[n][c][pix] (summed
// per pixel lane in T, then over lanes in double, in a fixed order). dPt: room for dP transposed,
// G * samples * (end - begin) elements.
template <class T>
void project_pixels_backward(const T* W, int64_t G, int64_t C, const T* x, int64_t npix, int64_t samples,
                             int64_t begin, int64_t end, const T* dP, T* dx, double* dW, T* dPt) {
  // One register of pixels per block, and enough channels per block to cover the FMA latency.
  constexpr int PB = Vec<T>::kWidth, kBlock = kBlockRows<T, PB>;
  using Regs = LaneRegs<T, PB>;
  const int64_t n = end - begin, full = n / PB * PB, row = samples * n;  // dPt[g]: row values
  transpose_rows(dP, row, G, dPt);
  // Sample k's column c of x and dx, from the first pixel of the range.
  auto x_at = [&](int64_t k, int64_t c) { return x + (k * C + c) * npix + begin; };
  auto dx_at = [&](int64_t k, int64_t c) { return dx + (k * C + c) * npix + begin; };
  for (int64_t k = 0; k < samples; ++k) {
    const T* d = dPt + k * n;  // this sample's dP^T: d[g * row + p]
    // dx, kBlock channels at a time over full pixel blocks; the tail pixels one by one.
    for (int64_t p0 = 0; p0 < full; p0 += PB) {
      int64_t c = 0;
      for (; c + kBlock <= C; c += kBlock) {
        Regs acc[kBlock];
        for (int i = 0; i < kBlock; ++i) acc[i] = Regs::splat(T(0));
        for (int64_t g = 0; g < G; ++g) {
          const Regs dv = Regs::load(d + g * row + p0);
          for (int i = 0; i < kBlock; ++i) acc[i].fma(W[g * C + c + i], dv);
        }
        for (int i = 0; i < kBlock; ++i) acc[i].store(dx_at(k, c + i) + p0);
      }
      for (; c < C; ++c) {
        Regs acc = Regs::splat(T(0));
        for (int64_t g = 0; g < G; ++g) acc.fma(W[g * C + c], Regs::load(d + g * row + p0));
        acc.store(dx_at(k, c) + p0);
      }
    }
    for (int64_t c = 0; c < C; ++c)
      for (int64_t p = full; p < n; ++p) {
        T acc = 0;
        for (int64_t g = 0; g < G; ++g) acc += W[g * C + c] * d[g * row + p];
        dx_at(k, c)[p] = acc;
      }
  }
  // dW: per (g, c) a dot product over the samples' pixels, kBlock channels at a time.
  auto reduce = [&](const Regs& lanes, T tail, double* out) {
    T v[PB];
    lanes.store(v);
    double sum = tail;
    for (int q = 0; q < PB; ++q) sum += v[q];
    *out += sum;
  };
  for (int64_t g = 0; g < G; ++g) {
    int64_t c = 0;
    for (; c + kBlock <= C; c += kBlock) {
      Regs acc[kBlock];
      for (int i = 0; i < kBlock; ++i) acc[i] = Regs::splat(T(0));
      T tail[kBlock] = {};
      for (int64_t k = 0; k < samples; ++k) {
        const T* d = dPt + g * row + k * n;
        for (int64_t p0 = 0; p0 < full; p0 += PB) {
          const Regs dv = Regs::load(d + p0);
          for (int i = 0; i < kBlock; ++i) acc[i].mul_add(dv, Regs::load(x_at(k, c + i) + p0));
        }
        for (int i = 0; i < kBlock; ++i)
          for (int64_t p = full; p < n; ++p) tail[i] += d[p] * x_at(k, c + i)[p];
      }
      for (int i = 0; i < kBlock; ++i) reduce(acc[i], tail[i], dW + g * C + c + i);
    }
    for (; c < C; ++c) {
      Regs acc = Regs::splat(T(0));
      T tail = 0;
      for (int64_t k = 0; k < samples; ++k) {
        const T* d = dPt + g * row + k * n;
        for (int64_t p0 = 0; p0 < full; p0 += PB) acc.mul_add(Regs::load(d + p0), Regs::load(x_at(k, c) + p0));
        for (int64_t p = full; p < n; ++p) tail += d[p] * x_at(k, c)[p];
      }
      reduce(acc, tail, dW + g * C + c);
    }
  }
}

RNNPOOL_END_ISA_NAMESPACE
