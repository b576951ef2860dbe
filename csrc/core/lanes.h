// Linear algebra on "lane layout" arrays: a vector v of length n for L independent sequences is
// stored as v[i * L + l]. Every hot loop then runs over l with unit stride and no horizontal
// reduction. The few routines here are the micro-kernels a per-ISA path replaces; this portable
// version uses the compiler's generic vector types at the build's native width, so the same source
// becomes SSE, AVX, AVX-512 or NEON code.
//
// kVecBytes depends on the flags of the translation unit: a build that compiles this header for
// several ISAs must keep each in its own namespace (one definition per ISA).
#pragma once

#include <cstdint>

#include "platform.h"

RNNPOOL_BEGIN_ISA_NAMESPACE

#if defined(__AVX512F__)
constexpr int kVecBytes = 64;
#elif defined(__AVX__)
constexpr int kVecBytes = 32;
#else
constexpr int kVecBytes = 16;  // SSE2 (every x86-64), NEON
#endif

// A native SIMD register of T, loadable from any T-aligned address.
template <class T>
struct NativeVec {
  typedef T type __attribute__((vector_size(kVecBytes), aligned(sizeof(T))));
};
template <class T>
using Vec = typename NativeVec<T>::type;

// L lanes as K native registers; L must be a multiple of the native width.
template <class T, int L>
struct LaneRegs {
  static constexpr int kWidth = kVecBytes / static_cast<int>(sizeof(T));
  static constexpr int K = L / kWidth;
  static_assert(K * kWidth == L, "lanes must be a multiple of the native vector width");
  Vec<T> v[K];

  static LaneRegs load(const T* p) {
    LaneRegs r;
    for (int k = 0; k < K; ++k) r.v[k] = *reinterpret_cast<const Vec<T>*>(p + k * kWidth);
    return r;
  }
  void store(T* p) const {
    for (int k = 0; k < K; ++k) *reinterpret_cast<Vec<T>*>(p + k * kWidth) = v[k];
  }
  static LaneRegs splat(T s) {
    LaneRegs r;
    for (int k = 0; k < K; ++k) r.v[k] = Vec<T>{} + s;
    return r;
  }
  void fma(T w, const LaneRegs& x) {  // this += w * x
    for (int k = 0; k < K; ++k) v[k] += w * x.v[k];
  }
  void mul_add(const LaneRegs& x, const LaneRegs& y) {  // this += x * y
    for (int k = 0; k < K; ++k) v[k] += x.v[k] * y.v[k];
  }
  void add(const LaneRegs& x) {
    for (int k = 0; k < K; ++k) v[k] += x.v[k];
  }
};

// out[r] += M[r, :] . v          M row-major [rows, cols]; out [rows][L]; v [cols][L]
// Four rows at a time: each loaded v[c] feeds four accumulators, so the loop is bound by FMAs
// rather than by loads.
template <class T, int L>
inline void matvec_accumulate(const T* RNNPOOL_RESTRICT M, int64_t rows, int64_t cols,
                              const T* RNNPOOL_RESTRICT v, T* RNNPOOL_RESTRICT out) {
  using Regs = LaneRegs<T, L>;
  constexpr int kRows = 4;
  int64_t r = 0;
  for (; r + kRows <= rows; r += kRows) {
    Regs acc[kRows];
    for (int i = 0; i < kRows; ++i) acc[i] = Regs::load(out + (r + i) * L);
    for (int64_t c = 0; c < cols; ++c) {
      const Regs vc = Regs::load(v + c * L);
      for (int i = 0; i < kRows; ++i) acc[i].fma(M[(r + i) * cols + c], vc);
    }
    for (int i = 0; i < kRows; ++i) acc[i].store(out + (r + i) * L);
  }
  for (; r < rows; ++r) {
    Regs acc = Regs::load(out + r * L);
    for (int64_t c = 0; c < cols; ++c) acc.fma(M[r * cols + c], Regs::load(v + c * L));
    acc.store(out + r * L);
  }
}

// out[c] += M[:, c] . v          (the transpose of matvec_accumulate; v [rows][L]; out [cols][L])
// Four columns at a time, for the same reason as matvec_accumulate.
template <class T, int L>
inline void matvec_transposed_accumulate(const T* RNNPOOL_RESTRICT M, int64_t rows, int64_t cols,
                                         const T* RNNPOOL_RESTRICT v, T* RNNPOOL_RESTRICT out) {
  using Regs = LaneRegs<T, L>;
  constexpr int kCols = 4;
  int64_t c = 0;
  for (; c + kCols <= cols; c += kCols) {
    Regs acc[kCols];
    for (int i = 0; i < kCols; ++i) acc[i] = Regs::load(out + (c + i) * L);
    for (int64_t r = 0; r < rows; ++r) {
      const Regs vr = Regs::load(v + r * L);
      for (int i = 0; i < kCols; ++i) acc[i].fma(M[r * cols + c + i], vr);
    }
    for (int i = 0; i < kCols; ++i) acc[i].store(out + (c + i) * L);
  }
  for (; c < cols; ++c) {
    Regs acc = Regs::load(out + c * L);
    for (int64_t r = 0; r < rows; ++r) acc.fma(M[r * cols + c], Regs::load(v + r * L));
    acc.store(out + c * L);
  }
}

// G[r, c][l] += sum over t < steps of a_t[r][l] * b_t[c][l], where a_t = a + t * a_step and
// b_t = b + t * b_step. Outer products are kept per lane (summed over lanes later, so the order
// of the sums does not depend on threads), and G is read and written once for all the steps.
template <class T, int L>
inline void outer_accumulate(const T* RNNPOOL_RESTRICT a, int64_t a_step, int64_t rows, const T* RNNPOOL_RESTRICT b,
                             int64_t b_step, int64_t cols, int64_t steps, T* RNNPOOL_RESTRICT G) {
  using Regs = LaneRegs<T, L>;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      T* g = G + (r * cols + c) * L;
      Regs acc = Regs::load(g);
      for (int64_t t = 0; t < steps; ++t) acc.mul_add(Regs::load(a + t * a_step + r * L), Regs::load(b + t * b_step + c * L));
      acc.store(g);
    }
}

// out[i][l] += v[i][l] for n rows
template <class T, int L>
inline void add_lanes(const T* RNNPOOL_RESTRICT v, int64_t n, T* RNNPOOL_RESTRICT out) {
  for (int64_t i = 0; i < n * L; ++i) out[i] += v[i];
}

// out[i][l] = v[i][l] + bias[i] for n rows (v may be null: out[i][l] = bias[i])
template <class T, int L>
inline void add_bias_lanes(const T* RNNPOOL_RESTRICT v, const T* RNNPOOL_RESTRICT bias, int64_t n,
                           T* RNNPOOL_RESTRICT out) {
  using Regs = LaneRegs<T, L>;
  for (int64_t i = 0; i < n; ++i) {
    Regs r = Regs::splat(bias[i]);
    if (v) r.add(Regs::load(v + i * L));
    r.store(out + i * L);
  }
}

template <class T>
inline void fill(T* out, int64_t n, T value) {
  for (int64_t i = 0; i < n; ++i) out[i] = value;
}

template <class T>
inline void copy(const T* RNNPOOL_RESTRICT in, int64_t n, T* RNNPOOL_RESTRICT out) {
  for (int64_t i = 0; i < n; ++i) out[i] = in[i];
}

RNNPOOL_END_ISA_NAMESPACE
