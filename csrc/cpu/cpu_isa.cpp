#include "cpu_isa.h"

#include <c10/util/Exception.h>

#include <atomic>
#include <cstdlib>

namespace rnnpool {
namespace {

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

const CpuIsa& find_cpu_isa(const std::string& name, const char* source) {
  const std::vector<CpuIsa>& table = compiled_cpu_isas();
  // An empty name is refused like any unknown one: RNNPOOL_CPU_ISA='' is more likely a mistake than
  // a request for "auto".
  if (name == "auto") {
    for (const CpuIsa& isa : table)
      if (isa.supported) return isa;
  }
  std::vector<std::string> compiled;
  for (const CpuIsa& isa : table) {
    if (name != isa.name) {
      compiled.push_back(isa.name);
      continue;
    }
    TORCH_CHECK_VALUE(isa.supported, source, "='", name, "': this CPU cannot run the ", name,
                      " build; it can run: ", joined(available_cpu_isas()));
    return isa;
  }
  TORCH_CHECK_VALUE(false, source, " must be 'auto' or one of the builds compiled for this machine (",
                    joined(compiled), "), got '", name, "'");
}

std::atomic<const CpuIsa*>& active() {
  static std::atomic<const CpuIsa*> isa{nullptr};
  return isa;
}

}  // namespace

const CpuIsa& active_cpu_isa() {
  const CpuIsa* isa = active().load();
  if (!isa) {
    const char* requested = std::getenv("RNNPOOL_CPU_ISA");
    isa = &find_cpu_isa(requested ? requested : "auto", "RNNPOOL_CPU_ISA");
    active().store(isa);
  }
  return *isa;
}

void set_cpu_isa(const std::string& name) { active().store(&find_cpu_isa(name, "cpu_isa")); }

std::vector<std::string> available_cpu_isas() {
  std::vector<std::string> names;
  for (const CpuIsa& isa : compiled_cpu_isas())
    if (isa.supported) names.push_back(isa.name);
  return names;
}

}  // namespace rnnpool
