// float registers for x86-64 with AVX2 and FMA: 8 lanes (__m256).
#pragma once

#include <immintrin.h>

#include "scalar.h"
#include "x86_transpose.h"

RNNPOOL_BEGIN_ISA_NAMESPACE

template <>
struct Vec<float> {
  static constexpr int kWidth = 8;
  static constexpr int kRegisters = 16;  // ymm0-15
  __m256 v;
  Vec() = default;
  explicit Vec(__m256 r) : v(r) {}
  explicit Vec(float s) : v(_mm256_set1_ps(s)) {}
  static Vec load(const float* p) { return Vec(_mm256_loadu_ps(p)); }
  void store(float* p) const { _mm256_storeu_ps(p, v); }
};
using VecF = Vec<float>;

inline VecF operator+(VecF a, VecF b) { return VecF(_mm256_add_ps(a.v, b.v)); }
inline VecF operator-(VecF a, VecF b) { return VecF(_mm256_sub_ps(a.v, b.v)); }
inline VecF operator*(VecF a, VecF b) { return VecF(_mm256_mul_ps(a.v, b.v)); }
inline VecF operator/(VecF a, VecF b) { return VecF(_mm256_div_ps(a.v, b.v)); }
inline VecF fmadd(VecF a, VecF b, VecF c) { return VecF(_mm256_fmadd_ps(a.v, b.v, c.v)); }
// 12-bit reciprocal estimate, one Newton step (r' = r (2 - b r)), times a.
inline VecF divide(VecF a, VecF b) {
  const __m256 r = _mm256_rcp_ps(b.v);
  const __m256 refined = _mm256_mul_ps(r, _mm256_fnmadd_ps(b.v, r, _mm256_set1_ps(2.0f)));
  return VecF(_mm256_mul_ps(a.v, refined));
}
// max/min return their second operand when either is NaN: x goes second so NaN propagates.
inline VecF clamp(VecF x, VecF lo, VecF hi) { return VecF(_mm256_min_ps(hi.v, _mm256_max_ps(lo.v, x.v))); }
inline VecF inside_open(VecF x, VecF lo, VecF hi, VecF value) {
  const __m256 inside = _mm256_and_ps(_mm256_cmp_ps(x.v, lo.v, _CMP_GT_OQ), _mm256_cmp_ps(x.v, hi.v, _CMP_LT_OQ));
  return VecF(_mm256_and_ps(inside, value.v));
}

template <>
struct Transpose<float> : TransposeAvx8 {};

RNNPOOL_END_ISA_NAMESPACE
