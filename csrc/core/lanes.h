// Linear algebra on "lane layout" arrays: a vector v of length n for L independent sequences is
// stored as v[i * L + l]. Every hot loop then runs over l with unit stride and no horizontal
// reduction, which vectorises on any ISA; these few routines are the micro-kernels a per-ISA path
// replaces.
#pragma once

#include <cstdint>

#include "platform.h"

namespace rnnpool {

// out[r] += M[r, :] . v          M row-major [rows, cols]; out [rows][L]; v [cols][L]
template <class T, int L>
inline void matvec_accumulate(const T* RNNPOOL_RESTRICT M, int64_t rows, int64_t cols,
                              const T* RNNPOOL_RESTRICT v, T* RNNPOOL_RESTRICT out) {
  for (int64_t r = 0; r < rows; ++r) {
    T acc[L];
    for (int l = 0; l < L; ++l) acc[l] = out[r * L + l];
    const T* m = M + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      const T w = m[c];
      for (int l = 0; l < L; ++l) acc[l] += w * v[c * L + l];
    }
    for (int l = 0; l < L; ++l) out[r * L + l] = acc[l];
  }
}

// out[c] += M[:, c] . v          (the transpose of matvec_accumulate; v [rows][L]; out [cols][L])
template <class T, int L>
inline void matvec_transposed_accumulate(const T* RNNPOOL_RESTRICT M, int64_t rows, int64_t cols,
                                         const T* RNNPOOL_RESTRICT v, T* RNNPOOL_RESTRICT out) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* m = M + r * cols;
    const T* vr = v + r * L;
    for (int64_t c = 0; c < cols; ++c) {
      const T w = m[c];
      for (int l = 0; l < L; ++l) out[c * L + l] += w * vr[l];
    }
  }
}

// G[r, c][l] += a[r][l] * b[c][l]   (outer products kept per lane; summed over lanes later, so the
// accumulation stays vertical and its order does not depend on threads)
template <class T, int L>
inline void outer_accumulate(const T* RNNPOOL_RESTRICT a, int64_t rows, const T* RNNPOOL_RESTRICT b,
                             int64_t cols, T* RNNPOOL_RESTRICT G) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* ar = a + r * L;
    T* g = G + r * cols * L;
    for (int64_t c = 0; c < cols; ++c)
      for (int l = 0; l < L; ++l) g[c * L + l] += ar[l] * b[c * L + l];
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

}  // namespace rnnpool
