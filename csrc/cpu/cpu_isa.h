// Which build of the kernel core (csrc/core/isa/) the CPU kernels run: the best the CPU supports,
// or the one named by the environment variable RNNPOOL_CPU_ISA (baseline | avx2 | auto), read once.
#pragma once

#include <memory>
#include <string>

#include "../core/kernel.h"

namespace rnnpool {

// "baseline" or "avx2"; raises if RNNPOOL_CPU_ISA names an unknown or unsupported ISA.
const std::string& active_cpu_isa();

template <class T>
std::unique_ptr<SweepKernel<T>> make_cpu_sweep_kernel(CellKind cell, const SweepShape& shape,
                                                      const SweepParams<T>& params);

}  // namespace rnnpool
