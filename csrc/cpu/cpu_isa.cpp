#include "cpu_isa.h"

#include <c10/util/Exception.h>

#include <cstdlib>

namespace rnnpool {
namespace {

bool cpu_has_avx2() {
#if defined(RNNPOOL_HAVE_AVX2)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;  // not an x86-64 build
#endif
}

std::string choose_cpu_isa() {
  const char* requested = std::getenv("RNNPOOL_CPU_ISA");
  const std::string name = requested ? requested : "auto";
  if (name == "auto" || name.empty()) return cpu_has_avx2() ? "avx2" : "baseline";
  TORCH_CHECK_VALUE(name == "baseline" || name == "avx2",
                    "RNNPOOL_CPU_ISA must be 'auto', 'baseline' or 'avx2', got '", name, "'");
  TORCH_CHECK_VALUE(name != "avx2" || cpu_has_avx2(),
                    "RNNPOOL_CPU_ISA=avx2, but this CPU or build has no AVX2+FMA path");
  return name;
}

}  // namespace

const std::string& active_cpu_isa() {
  static const std::string isa = choose_cpu_isa();
  return isa;
}

template <class T>
std::unique_ptr<SweepKernel<T>> make_cpu_sweep_kernel(CellKind cell, const SweepShape& shape,
                                                      const SweepParams<T>& params) {
#if defined(RNNPOOL_HAVE_AVX2)
  if (active_cpu_isa() == "avx2") return avx2::make_sweep_kernel<T>(cell, shape, params);
#endif
  active_cpu_isa();  // still validates RNNPOOL_CPU_ISA
  return baseline::make_sweep_kernel<T>(cell, shape, params);
}

template std::unique_ptr<SweepKernel<float>> make_cpu_sweep_kernel(CellKind, const SweepShape&,
                                                                   const SweepParams<float>&);
template std::unique_ptr<SweepKernel<double>> make_cpu_sweep_kernel(CellKind, const SweepShape&,
                                                                    const SweepParams<double>&);

}  // namespace rnnpool
