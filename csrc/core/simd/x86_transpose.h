// 8 x 8 float transpose in AVX registers, shared by the AVX2 and AVX-512 builds (a 16 x 16 one
// would move four times the data per call for the same number of rows, which the gathers of
// sweep.h cannot use: they move 8-unit blocks).
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "../platform.h"

RNNPOOL_BEGIN_ISA_NAMESPACE

struct TransposeAvx8 {
  static constexpr int kWidth = 8;
  // out[i * out_stride + j] = rows[j][column + i] for i, j < 8.
  static void block(const float* const* rows, int64_t column, float* out, int64_t out_stride) {
    __m256 r[8], t[8], u[8];
    for (int j = 0; j < 8; ++j) r[j] = _mm256_loadu_ps(rows[j] + column);
    for (int j = 0; j < 8; j += 2) {  // interleave pairs of rows within each 128-bit half
      t[j] = _mm256_unpacklo_ps(r[j], r[j + 1]);
      t[j + 1] = _mm256_unpackhi_ps(r[j], r[j + 1]);
    }
    for (int j = 0; j < 8; j += 4)  // then pairs of pairs (64-bit elements)
      for (int k = 0; k < 2; ++k) {
        const __m256d a = _mm256_castps_pd(t[j + k]), b = _mm256_castps_pd(t[j + k + 2]);
        u[j + 2 * k] = _mm256_castpd_ps(_mm256_unpacklo_pd(a, b));
        u[j + 2 * k + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(a, b));
      }
    for (int i = 0; i < 4; ++i) {  // then the 128-bit halves of rows 0-3 with those of rows 4-7
      _mm256_storeu_ps(out + i * out_stride, _mm256_permute2f128_ps(u[i], u[i + 4], 0x20));
      _mm256_storeu_ps(out + (i + 4) * out_stride, _mm256_permute2f128_ps(u[i], u[i + 4], 0x31));
    }
  }
};

RNNPOOL_END_ISA_NAMESPACE
