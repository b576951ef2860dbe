// Which ISA build of the kernel core (csrc/core/kernel.h) the CPU kernels run. By default the
// first build of compiled_cpu_isas() this CPU supports; the environment variable RNNPOOL_CPU_ISA
// (read at first use) or set_cpu_isa() name another: auto | scalar | avx2 | avx512 | neon.
#pragma once

#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "../core/kernel.h"

namespace rnnpool {

const CpuIsa& active_cpu_isa();

// Raises (c10::ValueError) for a name that is not compiled in or that this CPU cannot run.
void set_cpu_isa(const std::string& name);

// The builds this CPU can run, best first.
std::vector<std::string> available_cpu_isas();

template <class T>
std::unique_ptr<SweepKernel<T>> make_cpu_sweep_kernel(CellKind cell, const SweepShape& shape,
                                                      const SweepParams<T>& params) {
  if constexpr (std::is_same<T, float>::value) return active_cpu_isa().make_float(cell, shape, params);
  else return active_cpu_isa().make_double(cell, shape, params);
}

template <class T>
void run_cpu_gated_conv(const GatedConvJob<T>& job, int64_t row_begin, int64_t row_end) {
  if constexpr (std::is_same<T, float>::value) active_cpu_isa().gated_conv_float(job, row_begin, row_end);
  else active_cpu_isa().gated_conv_double(job, row_begin, row_end);
}

}  // namespace rnnpool
