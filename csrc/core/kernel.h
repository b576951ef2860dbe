// The interface the torch bindings and the C++ tests use to run the sweep, and the table of CPU
// ISA builds. Each build (isa/sweep_<isa>.cpp) compiles the whole core with its own flags into its
// own namespace; cpu/cpu_isa.cpp picks one at run time.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

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

// What every ISA build exports (defined in isa/sweep_<isa>.cpp through sweep.h and gated_conv.h).
#define RNNPOOL_DECLARE_ISA_BUILD(isa)                                                          \
  inline namespace isa {                                                                        \
  template <class T>                                                                            \
  std::unique_ptr<SweepKernel<T>> make_sweep_kernel(CellKind cell, const SweepShape& shape,     \
                                                    const SweepParams<T>& params);              \
  void activate_floats(Nonlinearity nl, const float* x, int64_t n, float* y);                   \
  template <class T>                                                                            \
  void gated_conv_rows(const GatedConvJob<T>& job, int64_t row_begin, int64_t row_end);         \
  }

RNNPOOL_DECLARE_ISA_BUILD(scalar)  // every target: one value per instruction, the reference path
#if defined(__x86_64__) || defined(_M_X64)
#define RNNPOOL_X86_ISA_BUILDS 1
RNNPOOL_DECLARE_ISA_BUILD(avx2)    // AVX2 + FMA, 8 floats per register
RNNPOOL_DECLARE_ISA_BUILD(avx512)  // AVX-512F, 16 floats per register
#endif
#if defined(__aarch64__)
#define RNNPOOL_NEON_ISA_BUILD 1
RNNPOOL_DECLARE_ISA_BUILD(neon)  // AdvSIMD, 4 floats per register (every ARMv8-A core)
#endif

#undef RNNPOOL_DECLARE_ISA_BUILD

// One ISA build, as the run-time selection and the tests see it.
struct CpuIsa {
  const char* name;
  bool supported;  // by the CPU (and OS) this process runs on
  std::unique_ptr<SweepKernel<float>> (*make_float)(CellKind, const SweepShape&, const SweepParams<float>&);
  std::unique_ptr<SweepKernel<double>> (*make_double)(CellKind, const SweepShape&, const SweepParams<double>&);
  // y = nl(x) with the build's vectorised nonlinearity (x and y may be the same array).
  void (*activate_floats)(Nonlinearity, const float*, int64_t, float*);
  // Rows [begin, end) of a gated-skip convolution job (gated_conv.h).
  void (*gated_conv_float)(const GatedConvJob<float>&, int64_t, int64_t);
  void (*gated_conv_double)(const GatedConvJob<double>&, int64_t, int64_t);
};

// The builds compiled for this target, fastest first (the scalar one last).
const std::vector<CpuIsa>& compiled_cpu_isas();

}  // namespace rnnpool
