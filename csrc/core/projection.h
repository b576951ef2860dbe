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

// The transpose of project_pixels, given dP [npix][G]: overwrites dx[c][pix] = sum_g W[g][c] dP[pix][g]
// and adds dW[g][c] += sum_pix dP[pix][g] x[c][pix] (summed per pixel lane in T, then over lanes in
// double, in a fixed order). dPt: room for dP transposed, G * npix elements.
template <class T>
void project_pixels_backward(const T* W, int64_t G, int64_t C, const T* x, int64_t npix, const T* dP, T* dx,
                             double* dW, T* dPt) {
  // One register of pixels per block (small maps, e.g. one 4x4 patch per sample, still fill
  // whole blocks), and enough channels per block to cover the FMA latency.
  constexpr int PB = Vec<T>::kWidth, kBlock = kBlockRows<T, PB>;
  using Regs = LaneRegs<T, PB>;
  for (int64_t p = 0; p < npix; ++p)
    for (int64_t g = 0; g < G; ++g) dPt[g * npix + p] = dP[p * G + g];
  const int64_t full = npix / PB * PB;
  // dx, kBlock channels at a time over full pixel blocks; the tail pixels one by one.
  for (int64_t p0 = 0; p0 < full; p0 += PB) {
    int64_t c = 0;
    for (; c + kBlock <= C; c += kBlock) {
      Regs acc[kBlock];
      for (int i = 0; i < kBlock; ++i) acc[i] = Regs::splat(T(0));
      for (int64_t g = 0; g < G; ++g) {
        const Regs d = Regs::load(dPt + g * npix + p0);
        for (int i = 0; i < kBlock; ++i) acc[i].fma(W[g * C + c + i], d);
      }
      for (int i = 0; i < kBlock; ++i) acc[i].store(dx + (c + i) * npix + p0);
    }
    for (; c < C; ++c) {
      Regs acc = Regs::splat(T(0));
      for (int64_t g = 0; g < G; ++g) acc.fma(W[g * C + c], Regs::load(dPt + g * npix + p0));
      acc.store(dx + c * npix + p0);
    }
  }
  for (int64_t c = 0; c < C; ++c)
    for (int64_t p = full; p < npix; ++p) {
      T acc = 0;
      for (int64_t g = 0; g < G; ++g) acc += W[g * C + c] * dPt[g * npix + p];
      dx[c * npix + p] = acc;
    }
  // dW: per (g, c) a dot product over the pixels, kBlock channels at a time.
  auto reduce = [&](const Regs& lanes, T tail, double* out) {
    T v[PB];
    lanes.store(v);
    double sum = tail;
    for (int q = 0; q < PB; ++q) sum += v[q];
    *out += sum;
  };
  for (int64_t g = 0; g < G; ++g) {
    const T* d = dPt + g * npix;
    int64_t c = 0;
    for (; c + kBlock <= C; c += kBlock) {
      Regs acc[kBlock];
      for (int i = 0; i < kBlock; ++i) acc[i] = Regs::splat(T(0));
      for (int64_t p0 = 0; p0 < full; p0 += PB) {
        const Regs dv = Regs::load(d + p0);
        for (int i = 0; i < kBlock; ++i) acc[i].mul_add(dv, Regs::load(x + (c + i) * npix + p0));
      }
      for (int i = 0; i < kBlock; ++i) {
        T tail = 0;
        for (int64_t p = full; p < npix; ++p) tail += d[p] * x[(c + i) * npix + p];
        reduce(acc[i], tail, dW + g * C + c + i);
      }
    }
    for (; c < C; ++c) {
      Regs acc = Regs::splat(T(0));
      for (int64_t p0 = 0; p0 < full; p0 += PB) acc.mul_add(Regs::load(d + p0), Regs::load(x + c * npix + p0));
      T tail = 0;
      for (int64_t p = full; p < npix; ++p) tail += d[p] * x[c * npix + p];
      reduce(acc, tail, dW + g * C + c);
    }
  }
}

RNNPOOL_END_ISA_NAMESPACE
