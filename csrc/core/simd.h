// The vector registers of the ISA this translation unit is built for (csrc/core/isa/sweep_*.cpp
// sets the flags): Vec<float> from simd/<isa>.h, Vec<double> always scalar (float64 is for
// gradient checks, not speed). The kernels in lanes.h, cells.h and projection.h are written once
// against this interface.
#pragma once

#if defined(RNNPOOL_SCALAR_BUILD)
#include "simd/scalar.h"
#elif defined(__AVX512F__)
#include "simd/avx512.h"
#elif defined(__AVX2__) && defined(__FMA__)
#include "simd/avx2.h"
#elif defined(__ARM_NEON) && defined(__aarch64__)
#include "simd/neon.h"
#else
#error "no vector path for this target: build csrc/core/isa/sweep_scalar.cpp instead"
#endif
