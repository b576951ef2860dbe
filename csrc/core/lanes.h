// Linear algebra on "lane layout" arrays: a vector v of length n for L independent sequences is
// stored as v[i * L + l]. Every hot loop then runs over l with unit stride and no horizontal
// reduction. These are the sweep's micro-kernels, written once against the build's vector
// registers (simd.h: scalar, AVX2, AVX-512 or NEON); a build that compiles them for several ISAs
// keeps each in its own namespace (platform.h).
#pragma once

#include <cstdint>

#include "platform.h"
#include "simd.h"

RNNPOOL_BEGIN_ISA_NAMESPACE

// L lanes as K registers of the build's Vec<T> (simd.h); L must be a multiple of its width.
template <class T, int L>
struct LaneRegs {
  using V = Vec<T>;
  static constexpr int K = L / V::kWidth;
  static_assert(K * V::kWidth == L, "lanes must be a multiple of the vector width");
  V v[K];

  static LaneRegs load(const T* p) {
    LaneRegs r;
    for (int k = 0; k < K; ++k) r.v[k] = V::load(p + k * V::kWidth);
    return r;
  }
  void store(T* p) const {
    for (int k = 0; k < K; ++k) v[k].store(p + k * V::kWidth);
  }
  static LaneRegs splat(T s) {
    LaneRegs r;
    for (int k = 0; k < K; ++k) r.v[k] = V(s);
    return r;
  }
  void fma(T w, const LaneRegs& x) {  // this += w * x
    const V wv(w);
    for (int k = 0; k < K; ++k) v[k] = fmadd(wv, x.v[k], v[k]);
  }
  void mul_add(const LaneRegs& x, const LaneRegs& y) {  // this += x * y
    for (int k = 0; k < K; ++k) v[k] = fmadd(x.v[k], y.v[k], v[k]);
  }
  void add(const LaneRegs& x) {
    for (int k = 0; k < K; ++k) v[k] = v[k] + x.v[k];
  }
};

// Independent accumulator registers a blocked loop below keeps: 8 (as rows or columns of M times
// registers per lane row), enough to cover the FMA latency (4 cycles at 2 per cycle) when one
// register holds all the lanes (AVX-512).
template <class T, int L>
constexpr int kBlockRows = LaneRegs<T, L>::K >= 2 ? 4 : 8;

// out[r] = init(r) + M[r, :] . v  M row-major [rows, cols]; out [rows][L]; v [cols][L]; init(r)
// returns the LaneRegs a row starts from.
// kBlockRows rows at a time: each loaded v[c] feeds that many accumulators, so the loop is bound
// by FMAs rather than by loads or latency.
template <class T, int L, class Init>
inline void matvec_from(const T* RNNPOOL_RESTRICT M, int64_t rows, int64_t cols, const T* RNNPOOL_RESTRICT v, T* out,
                        Init&& init) {
  using Regs = LaneRegs<T, L>;
  constexpr int kRows = kBlockRows<T, L>;
  int64_t r = 0;
  for (; r + kRows <= rows; r += kRows) {
    Regs acc[kRows];
    for (int i = 0; i < kRows; ++i) acc[i] = init(r + i);
    for (int64_t c = 0; c < cols; ++c) {
      const Regs vc = Regs::load(v + c * L);
      for (int i = 0; i < kRows; ++i) acc[i].fma(M[(r + i) * cols + c], vc);
    }
    for (int i = 0; i < kRows; ++i) acc[i].store(out + (r + i) * L);
  }
  for (; r < rows; ++r) {
    Regs acc = init(r);
    for (int64_t c = 0; c < cols; ++c) acc.fma(M[r * cols + c], Regs::load(v + c * L));
    acc.store(out + r * L);
  }
}

// out[r] = base[r] + M[r, :] . v; base [rows][L] (FastGRNN's W x under its U h).
template <class T, int L>
inline void matvec_with_base(const T* RNNPOOL_RESTRICT M, int64_t rows, int64_t cols, const T* RNNPOOL_RESTRICT v,
                             const T* RNNPOOL_RESTRICT base, T* RNNPOOL_RESTRICT out) {
  matvec_from<T, L>(M, rows, cols, v, out, [&](int64_t r) { return LaneRegs<T, L>::load(base + r * L); });
}

// out[r] = bias[r] + M[r, :] . v in every lane (bias null: 0), written without reading out.
template <class T, int L>
inline void matvec_with_bias(const T* RNNPOOL_RESTRICT M, int64_t rows, int64_t cols, const T* RNNPOOL_RESTRICT v,
                             const T* bias, T* RNNPOOL_RESTRICT out) {
  matvec_from<T, L>(M, rows, cols, v, out, [&](int64_t r) { return LaneRegs<T, L>::splat(bias ? bias[r] : T(0)); });
}

// out[c] += M[:, c] . v          (the transpose of matvec_from; v [rows][L]; out [cols][L])
// kBlockRows columns at a time, for the same reasons as matvec_from.
template <class T, int L>
inline void matvec_transposed_accumulate(const T* RNNPOOL_RESTRICT M, int64_t rows, int64_t cols,
                                         const T* RNNPOOL_RESTRICT v, T* RNNPOOL_RESTRICT out) {
  using Regs = LaneRegs<T, L>;
  constexpr int kCols = kBlockRows<T, L>;
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
// kBlockRows columns at a time: independent accumulators, and a_t[r] loaded once for all of them.
template <class T, int L>
inline void outer_accumulate(const T* RNNPOOL_RESTRICT a, int64_t a_step, int64_t rows, const T* RNNPOOL_RESTRICT b,
                             int64_t b_step, int64_t cols, int64_t steps, T* RNNPOOL_RESTRICT G) {
  using Regs = LaneRegs<T, L>;
  constexpr int kCols = kBlockRows<T, L>;
  for (int64_t r = 0; r < rows; ++r) {
    int64_t c = 0;
    for (; c + kCols <= cols; c += kCols) {
      Regs acc[kCols];
      for (int i = 0; i < kCols; ++i) acc[i] = Regs::load(G + (r * cols + c + i) * L);
      for (int64_t t = 0; t < steps; ++t) {
        const Regs at = Regs::load(a + t * a_step + r * L);
        for (int i = 0; i < kCols; ++i) acc[i].mul_add(at, Regs::load(b + t * b_step + (c + i) * L));
      }
      for (int i = 0; i < kCols; ++i) acc[i].store(G + (r * cols + c + i) * L);
    }
    for (; c < cols; ++c) {
      T* g = G + (r * cols + c) * L;
      Regs acc = Regs::load(g);
      for (int64_t t = 0; t < steps; ++t) acc.mul_add(Regs::load(a + t * a_step + r * L), Regs::load(b + t * b_step + c * L));
      acc.store(g);
    }
  }
}

// G[r][c] += sum over lanes l of a[r][l] * bt[l][c]: the outer products of a [rows][L] and b
// [cols][L] summed over the lanes at once, into a plain row-major G [rows][cols] (for a parameter
// matrix too large to keep per lane); bt is b transposed, [L][cols] (transpose_rows, projection.h).
// Each row runs over registers of columns, kBlock at a time (independent accumulators), each fed by
// the L broadcasts of a[r][l]; G is read and written once per call.
template <class T, int L>
inline void outer_accumulate_over_lanes(const T* RNNPOOL_RESTRICT a, int64_t rows, const T* RNNPOOL_RESTRICT bt,
                                        int64_t cols, T* RNNPOOL_RESTRICT G) {
  using V = Vec<T>;
  constexpr int W = V::kWidth, kBlock = 4;
  for (int64_t r = 0; r < rows; ++r) {
    const T* ar = a + r * L;
    T* g = G + r * cols;
    int64_t c = 0;
    for (; c + kBlock * W <= cols; c += kBlock * W) {
      V acc[kBlock];
      for (int i = 0; i < kBlock; ++i) acc[i] = V::load(g + c + i * W);
      for (int l = 0; l < L; ++l) {
        const V al(ar[l]);
        for (int i = 0; i < kBlock; ++i) acc[i] = fmadd(al, V::load(bt + l * cols + c + i * W), acc[i]);
      }
      for (int i = 0; i < kBlock; ++i) acc[i].store(g + c + i * W);
    }
    for (; c + W <= cols; c += W) {
      V acc = V::load(g + c);
      for (int l = 0; l < L; ++l) acc = fmadd(V(ar[l]), V::load(bt + l * cols + c), acc);
      acc.store(g + c);
    }
    for (; c < cols; ++c)
      for (int l = 0; l < L; ++l) g[c] += ar[l] * bt[l * cols + c];
  }
}

// G[r][c] += sum over t < steps and lanes l of a_t[r][l] * bt_t[l][c], where a_t = a + t * a_step
// ([rows][L]) and bt_t = bt + t * bt_step ([L][cols], the transposes of [cols][L] blocks): the
// outer products of whole sequences summed over steps and lanes at once, into a plain row-major
// G [rows][cols] that stays in L1 (RNN1's recurrent weight: 16 lanes of it, 48 KB at GRU h16, were
// streamed through L2 for every group). kBlockRows rows of one register of columns at a time:
// independent accumulators, each loaded bt_t[l] feeding all of them.
template <class T, int L>
inline void outer_accumulate_steps_over_lanes(const T* RNNPOOL_RESTRICT a, int64_t a_step, int64_t rows,
                                              const T* RNNPOOL_RESTRICT bt, int64_t bt_step, int64_t cols,
                                              int64_t steps, T* RNNPOOL_RESTRICT G) {
  using V = Vec<T>;
  constexpr int W = V::kWidth, kRows = kBlockRows<T, L>;
  const int64_t whole = cols / W * W;
  for (int64_t c = 0; c < whole; c += W) {
    int64_t r = 0;
    for (; r + kRows <= rows; r += kRows) {
      V acc[kRows];
      for (int i = 0; i < kRows; ++i) acc[i] = V::load(G + (r + i) * cols + c);
      for (int64_t t = 0; t < steps; ++t)
        for (int l = 0; l < L; ++l) {
          const V b = V::load(bt + t * bt_step + l * cols + c);
          for (int i = 0; i < kRows; ++i) acc[i] = fmadd(V(a[t * a_step + (r + i) * L + l]), b, acc[i]);
        }
      for (int i = 0; i < kRows; ++i) acc[i].store(G + (r + i) * cols + c);
    }
    for (; r < rows; ++r) {
      V acc = V::load(G + r * cols + c);
      for (int64_t t = 0; t < steps; ++t)
        for (int l = 0; l < L; ++l) acc = fmadd(V(a[t * a_step + r * L + l]), V::load(bt + t * bt_step + l * cols + c), acc);
      acc.store(G + r * cols + c);
    }
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = whole; c < cols; ++c) {
      T sum = G[r * cols + c];
      for (int64_t t = 0; t < steps; ++t)
        for (int l = 0; l < L; ++l) sum += a[t * a_step + r * L + l] * bt[t * bt_step + l * cols + c];
      G[r * cols + c] = sum;
    }
}

// out[i][l] += v[i][l] for n rows
template <class T, int L>
inline void add_lanes(const T* RNNPOOL_RESTRICT v, int64_t n, T* RNNPOOL_RESTRICT out) {
  using Regs = LaneRegs<T, L>;
  for (int64_t i = 0; i < n; ++i) {
    Regs r = Regs::load(out + i * L);
    r.add(Regs::load(v + i * L));
    r.store(out + i * L);
  }
}

// fill, copy and accumulate: whole registers, then the tail value by value (the ISA builds have
// GCC's loop vectoriser off, see isa_flags.txt: as plain loops these ran a float at a time, and the
// backward's gathers, which add rows of 16-48 values, spent most of their time in them).
template <class T>
inline void fill(T* out, int64_t n, T value) {
  using V = Vec<T>;
  const V v(value);
  int64_t i = 0;
  for (; i + V::kWidth <= n; i += V::kWidth) v.store(out + i);
  for (; i < n; ++i) out[i] = value;
}

template <class T>
inline void copy(const T* RNNPOOL_RESTRICT in, int64_t n, T* RNNPOOL_RESTRICT out) {
  using V = Vec<T>;
  int64_t i = 0;
  for (; i + V::kWidth <= n; i += V::kWidth) V::load(in + i).store(out + i);
  for (; i < n; ++i) out[i] = in[i];
}

// out[i] += in[i] for i < n.
template <class T>
inline void accumulate(const T* RNNPOOL_RESTRICT in, int64_t n, T* RNNPOOL_RESTRICT out) {
  using V = Vec<T>;
  int64_t i = 0;
  for (; i + V::kWidth <= n; i += V::kWidth) (V::load(out + i) + V::load(in + i)).store(out + i);
  for (; i < n; ++i) out[i] += in[i];
}

// out[g][l] = rows[l][g] for g < n and every lane l (rows[l] points at n values).
template <class T, int L>
inline void rows_to_lanes(const T* const* rows, int64_t n, T* RNNPOOL_RESTRICT out) {
  constexpr int W = Transpose<T>::kWidth;
  int64_t g = 0;
  for (; g + W <= n; g += W)
    for (int l0 = 0; l0 < L; l0 += W) Transpose<T>::block(rows + l0, g, out + g * L + l0, L);
  for (; g < n; ++g)
    for (int l = 0; l < L; ++l) out[g * L + l] = rows[l][g];
}

// rows[l][g] = in[g][l] for g < n and every lane l: the transpose of rows_to_lanes. Rows of
// different lanes may overlap only where the result is thrown away (one sink row for all idle
// lanes): the lanes are written in no particular order.
template <class T, int L>
inline void lanes_to_rows(const T* RNNPOOL_RESTRICT in, int64_t n, T* const* rows) {
  constexpr int W = Transpose<T>::kWidth;
  T block[W * W];
  const T* unit_rows[W];
  int64_t g = 0;
  for (; g + W <= n; g += W)
    for (int l0 = 0; l0 < L; l0 += W) {
      for (int i = 0; i < W; ++i) unit_rows[i] = in + (g + i) * L + l0;
      Transpose<T>::block(unit_rows, 0, block, W);  // block[j][i]: lane l0 + j, value g + i
      for (int j = 0; j < W; ++j)
        for (int i = 0; i < W; ++i) rows[l0 + j][g + i] = block[j * W + i];
    }
  for (; g < n; ++g)
    for (int l = 0; l < L; ++l) rows[l][g] = in[g * L + l];
}

RNNPOOL_END_ISA_NAMESPACE
