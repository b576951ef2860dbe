// Portability macros for the torch-free kernel core.
#pragma once

// Functions marked RNNPOOL_HD are shared between host C++ and CUDA device code.
// Always inlined: the element-wise loops only vectorise when these are inlined into them, and
// GCC's heuristics can decline in a large translation unit (seen with the -fPIC extension build).
#if defined(__CUDACC__)
#define RNNPOOL_HD __host__ __device__ __forceinline__
#elif defined(__GNUC__) || defined(__clang__)
#define RNNPOOL_HD inline __attribute__((always_inline))
#else
#define RNNPOOL_HD inline
#endif

// Unrolls the loop that follows in device code, where a register array indexed by the loop variable
// stays in registers only when every index is a compile-time constant. Host builds decide alone.
#if defined(__CUDA_ARCH__)
#define RNNPOOL_UNROLL _Pragma("unroll")
#else
#define RNNPOOL_UNROLL
#endif

#if defined(__GNUC__) || defined(__clang__)
#define RNNPOOL_RESTRICT __restrict__
#else
#define RNNPOOL_RESTRICT
#endif

// Everything with code in csrc/core is compiled once per CPU ISA (csrc/core/isa/sweep_*.cpp), each
// build in its own inline namespace so the builds never share a symbol.
#ifndef RNNPOOL_ISA
#define RNNPOOL_ISA portable  // code built outside csrc/core/isa (e.g. device code)
#endif
#define RNNPOOL_BEGIN_ISA_NAMESPACE \
  namespace rnnpool {               \
  inline namespace RNNPOOL_ISA {
#define RNNPOOL_END_ISA_NAMESPACE \
  }                               \
  }
