// The core built for the target's baseline ISA: SSE2 on any x86-64, NEON on aarch64.
#define RNNPOOL_ISA baseline
#include "../sweep.h"

namespace rnnpool {
namespace baseline {
template std::unique_ptr<SweepKernel<float>> make_sweep_kernel(CellKind, const SweepShape&,
                                                               const SweepParams<float>&);
template std::unique_ptr<SweepKernel<double>> make_sweep_kernel(CellKind, const SweepShape&,
                                                                const SweepParams<double>&);
}  // namespace baseline
}  // namespace rnnpool
