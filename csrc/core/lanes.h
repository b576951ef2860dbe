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
#include <type_traits>

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


// Shuffles of two native vectors by constant indices into their concatenation.
#if defined(__clang__)
#define RNNPOOL_SHUFFLE(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define RNNPOOL_SHUFFLE(a, b, ...) __builtin_shuffle(a, b, ShuffleIndex{__VA_ARGS__})
#endif

// out[i * out_stride + j] = rows[j][column + i] for i, j < W, W the native width of T: moves values between
// "one row per lane" (a pixel's projected units) and the lane layout. Shuffles for float at 4 and
// 8 lanes (SSE/NEON, AVX); other types and widths use the plain loop.
template <class T>
inline void transpose_block(const T* const* rows, int64_t column, T* RNNPOOL_RESTRICT out, int64_t out_stride) {
  constexpr int W = kVecBytes / static_cast<int>(sizeof(T));
  using V = Vec<T>;
  auto load = [column](const T* p) { return *reinterpret_cast<const V*>(p + column); };
  auto store = [&](int i, V v) { *reinterpret_cast<V*>(out + i * out_stride) = v; };
  if constexpr (std::is_same<T, float>::value && W == 4) {
    typedef int32_t ShuffleIndex __attribute__((vector_size(16)));
    const V r0 = load(rows[0]), r1 = load(rows[1]), r2 = load(rows[2]), r3 = load(rows[3]);
    const V t0 = RNNPOOL_SHUFFLE(r0, r1, 0, 4, 1, 5), t1 = RNNPOOL_SHUFFLE(r0, r1, 2, 6, 3, 7);
    const V t2 = RNNPOOL_SHUFFLE(r2, r3, 0, 4, 1, 5), t3 = RNNPOOL_SHUFFLE(r2, r3, 2, 6, 3, 7);
    store(0, RNNPOOL_SHUFFLE(t0, t2, 0, 1, 4, 5));
    store(1, RNNPOOL_SHUFFLE(t0, t2, 2, 3, 6, 7));
    store(2, RNNPOOL_SHUFFLE(t1, t3, 0, 1, 4, 5));
    store(3, RNNPOOL_SHUFFLE(t1, t3, 2, 3, 6, 7));
  } else if constexpr (std::is_same<T, float>::value && W == 8) {
    typedef int32_t ShuffleIndex __attribute__((vector_size(32)));
    V r[8], t[8], u[8];
    for (int j = 0; j < 8; ++j) r[j] = load(rows[j]);
    for (int j = 0; j < 8; j += 2) {  // interleave pairs of rows within each 128-bit half
      t[j] = RNNPOOL_SHUFFLE(r[j], r[j + 1], 0, 8, 1, 9, 4, 12, 5, 13);
      t[j + 1] = RNNPOOL_SHUFFLE(r[j], r[j + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int j = 0; j < 8; j += 4)  // then pairs of pairs
      for (int k = 0; k < 2; ++k) {
        u[j + 2 * k] = RNNPOOL_SHUFFLE(t[j + k], t[j + k + 2], 0, 1, 8, 9, 4, 5, 12, 13);
        u[j + 2 * k + 1] = RNNPOOL_SHUFFLE(t[j + k], t[j + k + 2], 2, 3, 10, 11, 6, 7, 14, 15);
      }
    for (int i = 0; i < 4; ++i) {  // then the 128-bit halves of rows 0-3 with those of rows 4-7
      store(i, RNNPOOL_SHUFFLE(u[i], u[i + 4], 0, 1, 2, 3, 8, 9, 10, 11));
      store(i + 4, RNNPOOL_SHUFFLE(u[i], u[i + 4], 4, 5, 6, 7, 12, 13, 14, 15));
    }
  } else {
    for (int i = 0; i < W; ++i)
      for (int j = 0; j < W; ++j) out[i * out_stride + j] = rows[j][column + i];
  }
}

#undef RNNPOOL_SHUFFLE

// out[g][l] = rows[l][g] for g < n and every lane l (rows[l] points at n values).
template <class T, int L>
inline void rows_to_lanes(const T* const* rows, int64_t n, T* RNNPOOL_RESTRICT out) {
  constexpr int W = kVecBytes / static_cast<int>(sizeof(T));
  int64_t g = 0;
  for (; g + W <= n; g += W)
    for (int l0 = 0; l0 < L; l0 += W) transpose_block<T>(rows + l0, g, out + g * L + l0, L);
  for (; g < n; ++g)
    for (int l = 0; l < L; ++l) out[g * L + l] = rows[l][g];
}

// rows[l][g] = in[g][l] (kAccumulate: +=) for g < n and every lane l: the transpose of
// rows_to_lanes. Rows of different lanes may overlap only where the result is thrown away (one
// sink row for all idle lanes): the lanes are written in no particular order.
template <bool kAccumulate, class T, int L>
inline void lanes_to_rows(const T* RNNPOOL_RESTRICT in, int64_t n, T* const* rows) {
  constexpr int W = kVecBytes / static_cast<int>(sizeof(T));
  T block[W * W];
  const T* unit_rows[W];
  int64_t g = 0;
  for (; g + W <= n; g += W)
    for (int l0 = 0; l0 < L; l0 += W) {
      for (int i = 0; i < W; ++i) unit_rows[i] = in + (g + i) * L + l0;
      transpose_block<T>(unit_rows, 0, block, W);  // block[j][i]: lane l0 + j, value g + i
      for (int j = 0; j < W; ++j)
        for (int i = 0; i < W; ++i) rows[l0 + j][g + i] = (kAccumulate ? rows[l0 + j][g + i] : T(0)) + block[j * W + i];
    }
  for (; g < n; ++g)
    for (int l = 0; l < L; ++l) rows[l][g] = (kAccumulate ? rows[l][g] : T(0)) + in[g * L + l];
}

RNNPOOL_END_ISA_NAMESPACE
