// The few element-wise operations the cell math is written in, for plain float and double
// (CPU scalar code and CUDA device code). csrc/core/simd/ gives the same operations for vector
// registers, so nonlinearity.h and cells.h define each formula once for every backend.
#pragma once

#include "platform.h"

RNNPOOL_BEGIN_ISA_NAMESPACE

// a * b + c
template <class T>
RNNPOOL_HD T fmadd(T a, T b, T c) {
  return a * b + c;
}

// a / b. The vector registers compute it from the reciprocal estimate refined by Newton's method:
// about half the cost of a division, within 2 ulp.
template <class T>
RNNPOOL_HD T divide(T a, T b) {
  return a / b;
}

// x limited to [lo, hi]; NaN stays NaN (both comparisons are false for it).
template <class T>
RNNPOOL_HD T clamp(T x, T lo, T hi) {
  x = x < lo ? lo : x;
  return x > hi ? hi : x;
}

// value where lo < x < hi, else 0 (so 0 for NaN): the slope of a clamped linear function.
template <class T>
RNNPOOL_HD T inside_open(T x, T lo, T hi, T value) {
  return (x > lo && x < hi) ? value : T(0);
}

RNNPOOL_END_ISA_NAMESPACE
