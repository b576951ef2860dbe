// float registers for aarch64 NEON (AdvSIMD, part of every ARMv8-A core): 4 lanes (float32x4_t).
#pragma once

#include <arm_neon.h>

#include <cstdint>

#include "scalar.h"

RNNPOOL_BEGIN_ISA_NAMESPACE

template <>
struct Vec<float> {
  static constexpr int kWidth = 4;
  static constexpr int kRegisters = 32;  // v0-v31
  float32x4_t v;
  Vec() = default;
  explicit Vec(float32x4_t r) : v(r) {}
  explicit Vec(float s) : v(vdupq_n_f32(s)) {}
  static Vec load(const float* p) { return Vec(vld1q_f32(p)); }
  void store(float* p) const { vst1q_f32(p, v); }
};
using VecF = Vec<float>;

inline VecF operator+(VecF a, VecF b) { return VecF(vaddq_f32(a.v, b.v)); }
inline VecF operator-(VecF a, VecF b) { return VecF(vsubq_f32(a.v, b.v)); }
inline VecF operator*(VecF a, VecF b) { return VecF(vmulq_f32(a.v, b.v)); }
inline VecF operator/(VecF a, VecF b) { return VecF(vdivq_f32(a.v, b.v)); }
inline VecF fmadd(VecF a, VecF b, VecF c) { return VecF(vfmaq_f32(c.v, a.v, b.v)); }
// 8-bit reciprocal estimate, two Newton steps (vrecpsq gives 2 - b r), times a.
inline VecF divide(VecF a, VecF b) {
  float32x4_t r = vrecpeq_f32(b.v);
  r = vmulq_f32(r, vrecpsq_f32(b.v, r));
  r = vmulq_f32(r, vrecpsq_f32(b.v, r));
  return VecF(vmulq_f32(a.v, r));
}
// FMAX/FMIN return NaN when either operand is NaN.
inline VecF clamp(VecF x, VecF lo, VecF hi) { return VecF(vminq_f32(vmaxq_f32(x.v, lo.v), hi.v)); }
inline VecF inside_open(VecF x, VecF lo, VecF hi, VecF value) {
  const uint32x4_t inside = vandq_u32(vcgtq_f32(x.v, lo.v), vcltq_f32(x.v, hi.v));
  return VecF(vreinterpretq_f32_u32(vandq_u32(inside, vreinterpretq_u32_f32(value.v))));
}

template <>
struct Transpose<float> {
  static constexpr int kWidth = 4;
  // out[i * out_stride + j] = rows[j][column + i] for i, j < 4: TRN1/TRN2 on 32- then 64-bit lanes.
  static void block(const float* const* rows, int64_t column, float* out, int64_t out_stride) {
    const float32x4_t r0 = vld1q_f32(rows[0] + column), r1 = vld1q_f32(rows[1] + column);
    const float32x4_t r2 = vld1q_f32(rows[2] + column), r3 = vld1q_f32(rows[3] + column);
    const float32x4_t t0 = vtrn1q_f32(r0, r1), t1 = vtrn2q_f32(r0, r1);
    const float32x4_t t2 = vtrn1q_f32(r2, r3), t3 = vtrn2q_f32(r2, r3);
    auto pairs = [](float32x4_t v) { return vreinterpretq_f64_f32(v); };
    auto floats = [](float64x2_t v) { return vreinterpretq_f32_f64(v); };
    vst1q_f32(out, floats(vtrn1q_f64(pairs(t0), pairs(t2))));
    vst1q_f32(out + out_stride, floats(vtrn1q_f64(pairs(t1), pairs(t3))));
    vst1q_f32(out + 2 * out_stride, floats(vtrn2q_f64(pairs(t0), pairs(t2))));
    vst1q_f32(out + 3 * out_stride, floats(vtrn2q_f64(pairs(t1), pairs(t3))));
  }
};

RNNPOOL_END_ISA_NAMESPACE
