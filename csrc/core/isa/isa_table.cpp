// The table of ISA builds compiled for this target (kernel.h), with run-time CPU feature checks.
// Built with the target's baseline flags: it only calls into the ISA builds it has checked.
#include "../kernel.h"

namespace rnnpool {
namespace {

#define RNNPOOL_ISA_ENTRY(isa, supported) \
  CpuIsa { #isa, supported, &isa::make_sweep_kernel<float>, &isa::make_sweep_kernel<double>, &isa::activate_floats, \
        &isa::gated_conv_rows<float>, &isa::gated_conv_rows<double> }

std::vector<CpuIsa> make_table() {
  std::vector<CpuIsa> table;
#if defined(RNNPOOL_X86_ISA_BUILDS)
  // __builtin_cpu_supports also checks that the OS saves the wider registers (XGETBV).
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  table.push_back(RNNPOOL_ISA_ENTRY(avx512, avx2 && __builtin_cpu_supports("avx512f")));
  table.push_back(RNNPOOL_ISA_ENTRY(avx2, avx2));
#endif
#if defined(RNNPOOL_NEON_ISA_BUILD)
  table.push_back(RNNPOOL_ISA_ENTRY(neon, true));
#endif
  table.push_back(RNNPOOL_ISA_ENTRY(scalar, true));
  return table;
}

#undef RNNPOOL_ISA_ENTRY

}  // namespace

const std::vector<CpuIsa>& compiled_cpu_isas() {
  static const std::vector<CpuIsa> table = make_table();
  return table;
}

}  // namespace rnnpool
