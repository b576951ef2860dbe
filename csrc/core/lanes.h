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
  void fma(T w, const T* p) {  // this += w * p[0:L]
    for (int k = 0; k < K; ++k) v[k] += w * *reinterpret_cast<const Vec<T>*>(p + k * kWidth);
  }
};

// out[r] += M[r, :] . v          M row-major [rows, cols]; out [rows][L]; v [cols][L]
template <class T, int L>
inline void matvec_accumulate(const T* RNNPOOL_RESTRICT M, int64_t rows, int64_t cols,
                              const T* RNNPOOL_RESTRICT v, T* RNNPOOL_RESTRICT out) {
  for (int64_t r = 0; r < rows; ++r) {
    auto acc = LaneRegs<T, L>::load(out + r * L);
    const T* m = M + r * cols;
    for (int64_t c = 0; c < cols; ++c) acc.fma(m[c], v + c * L);
    acc.store(out + r * L);
  }
}

// out[c] += M[:, c] . v          (the transpose of matvec_accumulate; v [rows][L]; out [cols][L])
template <class T, int L>
inline void matvec_transposed_accumulate(const T* RNNPOOL_RESTRICT M, int64_t rows, int64_t cols,
                                         const T* RNNPOOL_RESTRICT v, T* RNNPOOL_RESTRICT out) {
  for (int64_t c = 0; c < cols; ++c) {
    auto acc = LaneRegs<T, L>::load(out + c * L);
    for (int64_t r = 0; r < rows; ++r) acc.fma(M[r * cols + c], v + r * L);
    acc.store(out + c * L);
  }
}

// G[r, c][l] += a[r][l] * b[c][l]   (outer products kept per lane; summed over lanes later, so the
// accumulation stays vertical and its order does not depend on threads)
template <class T, int L>
inline void outer_accumulate(const T* RNNPOOL_RESTRICT a, int64_t rows, const T* RNNPOOL_RESTRICT b,
                             int64_t cols, T* RNNPOOL_RESTRICT G) {
  using Regs = LaneRegs<T, L>;
  for (int64_t r = 0; r < rows; ++r) {
    const Regs ar = Regs::load(a + r * L);
    T* g = G + r * cols * L;
    for (int64_t c = 0; c < cols; ++c) {
      Regs acc = Regs::load(g + c * L);
      const Regs bc = Regs::load(b + c * L);
      for (int k = 0; k < Regs::K; ++k) acc.v[k] += ar.v[k] * bc.v[k];
      acc.store(g + c * L);
    }
  }
}

// out[i][l] += v[i][l] for n rows
template <class T, int L>
inline void add_lanes(const T* RNNPOOL_RESTRICT v, int64_t n, T* RNNPOOL_RESTRICT out) {
  for (int64_t i = 0; i < n * L; ++i) out[i] += v[i];
}

// out[i][l] = bias[i] for n rows
template <class T, int L>
inline void broadcast_lanes(const T* RNNPOOL_RESTRICT bias, int64_t n, T* RNNPOOL_RESTRICT out) {
  for (int64_t i = 0; i < n; ++i)
    for (int l = 0; l < L; ++l) out[i * L + l] = bias[i];
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
