// float registers for x86-64 with AVX-512F: 16 lanes (__m512), so one lane group (sweep.h) is
// one register.
#pragma once

#include <immintrin.h>

#include "scalar.h"
#include "x86_transpose.h"

RNNPOOL_BEGIN_ISA_NAMESPACE

template <>
struct Vec<float> {
  static constexpr int kWidth = 16;
  static constexpr int kRegisters = 32;  // zmm0-31
  __m512 v;
  Vec() = default;
  explicit Vec(__m512 r) : v(r) {}
  explicit Vec(float s) : v(_mm512_set1_ps(s)) {}
  static Vec load(const float* p) { return Vec(_mm512_loadu_ps(p)); }
  void store(float* p) const { _mm512_storeu_ps(p, v); }
};
using VecF = Vec<float>;

inline VecF operator+(VecF a, VecF b) { return VecF(_mm512_add_ps(a.v, b.v)); }
inline VecF operator-(VecF a, VecF b) { return VecF(_mm512_sub_ps(a.v, b.v)); }
inline VecF operator*(VecF a, VecF b) { return VecF(_mm512_mul_ps(a.v, b.v)); }
inline VecF operator/(VecF a, VecF b) { return VecF(_mm512_div_ps(a.v, b.v)); }
inline VecF fmadd(VecF a, VecF b, VecF c) { return VecF(_mm512_fmadd_ps(a.v, b.v, c.v)); }
// 14-bit reciprocal estimate, one Newton step (r' = r (2 - b r)), times a.
inline VecF divide(VecF a, VecF b) {
  const __m512 r = _mm512_maskz_rcp14_ps(0xFFFF, b.v);  // masked form: see clamp
  const __m512 refined = _mm512_mul_ps(r, _mm512_fnmadd_ps(b.v, r, _mm512_set1_ps(2.0f)));
  return VecF(_mm512_mul_ps(a.v, refined));
}
// max/min return their second operand when either is NaN: x goes second so NaN propagates. (The
// all-ones zero-masked forms are the same instructions; GCC 12 warns about the unmasked ones.)
inline VecF clamp(VecF x, VecF lo, VecF hi) {
  constexpr __mmask16 all = 0xFFFF;
  return VecF(_mm512_maskz_min_ps(all, hi.v, _mm512_maskz_max_ps(all, lo.v, x.v)));
}
inline VecF inside_open(VecF x, VecF lo, VecF hi, VecF value) {
  const __mmask16 inside = _mm512_cmp_ps_mask(x.v, lo.v, _CMP_GT_OQ) & _mm512_cmp_ps_mask(x.v, hi.v, _CMP_LT_OQ);
  return VecF(_mm512_maskz_mov_ps(inside, value.v));
}

template <>
struct Transpose<float> : TransposeAvx8 {};

RNNPOOL_END_ISA_NAMESPACE
