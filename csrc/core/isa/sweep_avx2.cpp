// The core built for x86-64 with AVX2 and FMA (compiled with -mavx2 -mfma; chosen at run time).
#if !defined(__AVX2__) || !defined(__FMA__)
#error "compile this file with -mavx2 -mfma"
#endif
#define RNNPOOL_ISA avx2
#include "../sweep.h"

RNNPOOL_INSTANTIATE_SWEEP_FACTORY(float)
RNNPOOL_INSTANTIATE_SWEEP_FACTORY(double)
