// The build for aarch64 with NEON (AdvSIMD is part of ARMv8-A: no extra flags).
#if !defined(__aarch64__) || !defined(__ARM_NEON)
#error "this file is for aarch64 targets"
#endif
#define RNNPOOL_ISA neon
#include "isa_build.h"

RNNPOOL_DEFINE_ISA_BUILD()
