// The core built for x86-64 with AVX2 and FMA (compiled with -mavx2 -mfma; chosen at run time).
#if !defined(__AVX2__) || !defined(__FMA__)
#error "compile this file with -mavx2 -mfma"
#endif
#define RNNPOOL_ISA avx2
#include "../sweep.h"

namespace rnnpool {
namespace avx2 {
template std::unique_ptr<SweepKernel<float>> make_sweep_kernel(CellKind, const SweepShape&,
                                                               const SweepParams<float>&);
template std::unique_ptr<SweepKernel<double>> make_sweep_kernel(CellKind, const SweepShape&,
                                                                const SweepParams<double>&);
}  // namespace avx2
}  // namespace rnnpool
