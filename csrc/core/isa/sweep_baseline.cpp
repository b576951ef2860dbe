// The core built for the target's baseline ISA: SSE2 on any x86-64, NEON on aarch64.
#define RNNPOOL_ISA baseline
#include "../sweep.h"

RNNPOOL_INSTANTIATE_SWEEP_FACTORY(float)
RNNPOOL_INSTANTIATE_SWEEP_FACTORY(double)
