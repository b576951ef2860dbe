// The interface the torch bindings use to run the sweep, and one factory per CPU ISA build.
// Each ISA build (isa/sweep_*.cpp) compiles the whole core with its own flags into its own
// namespace; the bindings pick one at run time (cpu/sweep_cpu.cpp).
#pragma once

#include <cstdint>
#include <memory>

#include "types.h"

namespace rnnpool {

// One sweep configuration (shape, cell, weights); see sweep.h for what each phase does.
template <class T>
class SweepKernel {
 public:
  virtual ~SweepKernel() = default;
  virtual const GradOffsets& layout() const = 0;
  virtual int64_t projection_size() const = 0;  // elements per sample
  virtual int64_t summaries_size() const = 0;   // elements per sample
  virtual int64_t sequence_groups() const = 0;  // per sample
  virtual int64_t patch_groups() const = 0;     // per sample
  virtual int64_t workspace_size() const = 0;   // elements per thread
  virtual int64_t backward_buffer_size() const = 0;
  virtual void project(const T* x_sample, int64_t begin, int64_t end, T* P) const = 0;
  virtual void summarize(const T* P, int64_t group, T* summaries, T* ws) const = 0;
  virtual void pool(const T* summaries, int64_t group, T* out, T* ws) const = 0;
  virtual void backward_sample(const T* x_sample, const T* grad_out, T* dx_sample, double* grad,
                               T* buffers) const = 0;
  virtual void finalize(double* grad) const = 0;
};

#define RNNPOOL_DECLARE_SWEEP_FACTORY(isa)                                                       \
  inline namespace isa {                                                                         \
  template <class T>                                                                             \
  std::unique_ptr<SweepKernel<T>> make_sweep_kernel(CellKind cell, const SweepShape& shape,      \
                                                    const SweepParams<T>& params);               \
  }

RNNPOOL_DECLARE_SWEEP_FACTORY(baseline)  // any x86-64 (SSE2) or aarch64 (NEON)
RNNPOOL_DECLARE_SWEEP_FACTORY(avx2)      // x86-64 with AVX2 and FMA

#undef RNNPOOL_DECLARE_SWEEP_FACTORY

}  // namespace rnnpool
