// The scalar build: one value per instruction (built without auto-vectorisation, see setup.py and
// CMakeLists.txt), the readable reference every vector build is tested and measured against, and
// the fallback on x86-64 CPUs without AVX2.
#define RNNPOOL_ISA scalar
#define RNNPOOL_SCALAR_BUILD
#include "isa_build.h"

RNNPOOL_DEFINE_ISA_BUILD()
