// The build for x86-64 with AVX2 and FMA (compiled with -mavx2 -mfma; chosen at run time).
#if !defined(__AVX2__) || !defined(__FMA__) || defined(__AVX512F__)
#error "compile this file with -mavx2 -mfma (and without AVX-512)"
#endif
#define RNNPOOL_ISA avx2
#include "isa_build.h"

RNNPOOL_DEFINE_ISA_BUILD()
