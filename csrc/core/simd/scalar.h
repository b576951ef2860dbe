// The scalar "register": one value. Vec<T> is the interface every ISA header (avx2.h, avx512.h,
// neon.h) specialises for float; this generic version is the whole float path of the scalar build
// and the float64 path of every build.
//
// A Vec<T> supports + - * /, fmadd, clamp and inside_open (elementwise.h), load/store of kWidth
// consecutive values (any T-aligned address) and construction from a scalar (broadcast);
// kRegisters is how many registers the ISA has, for sizing tiles of accumulators.
#pragma once

#include <cmath>

#include "../elementwise.h"
#include "../platform.h"

RNNPOOL_BEGIN_ISA_NAMESPACE

template <class T>
struct Vec {
  static constexpr int kWidth = 1;
  static constexpr int kRegisters = 16;  // the fewest any target has (x86-64's xmm0-15)
  T v;
  Vec() = default;
  explicit Vec(T s) : v(s) {}
  static Vec load(const T* p) { return Vec(*p); }
  void store(T* p) const { *p = v; }
};

template <class T>
inline Vec<T> operator+(Vec<T> a, Vec<T> b) { return Vec<T>(a.v + b.v); }
template <class T>
inline Vec<T> operator-(Vec<T> a, Vec<T> b) { return Vec<T>(a.v - b.v); }
template <class T>
inline Vec<T> operator*(Vec<T> a, Vec<T> b) { return Vec<T>(a.v * b.v); }
template <class T>
inline Vec<T> operator/(Vec<T> a, Vec<T> b) { return Vec<T>(a.v / b.v); }
template <class T>
inline Vec<T> divide(Vec<T> a, Vec<T> b) { return Vec<T>(divide(a.v, b.v)); }
template <class T>
inline Vec<T> fmadd(Vec<T> a, Vec<T> b, Vec<T> c) { return Vec<T>(fmadd(a.v, b.v, c.v)); }
template <class T>
inline Vec<T> clamp(Vec<T> x, Vec<T> lo, Vec<T> hi) { return Vec<T>(clamp(x.v, lo.v, hi.v)); }
template <class T>
inline Vec<T> inside_open(Vec<T> x, Vec<T> lo, Vec<T> hi, Vec<T> value) {
  return Vec<T>(inside_open(x.v, lo.v, hi.v, value.v));
}

// float64 keeps the library's tanh and exp (see nonlinearity.h).
inline Vec<double> tanh_(Vec<double> x) { return Vec<double>(std::tanh(x.v)); }
inline Vec<double> sigmoid(Vec<double> x) { return Vec<double>(1.0 / (1.0 + std::exp(-x.v))); }

// Moves a W x W block between "one row per lane" and the lane layout (see rows_to_lanes in lanes.h):
// out[i * out_stride + j] = rows[j][column + i]. The scalar build moves one value at a time.
template <class T>
struct Transpose {
  static constexpr int kWidth = 1;
  static void block(const T* const* rows, int64_t column, T* out, int64_t) { out[0] = rows[0][column]; }
};

RNNPOOL_END_ISA_NAMESPACE
