// The build for x86-64 with AVX-512F (compiled with -mavx512f -mavx2 -mfma; chosen at run time).
#if !defined(__AVX512F__) || !defined(__AVX2__) || !defined(__FMA__)
#error "compile this file with -mavx512f -mavx2 -mfma"
#endif
#define RNNPOOL_ISA avx512
#include "isa_build.h"

RNNPOOL_DEFINE_ISA_BUILD()
