// The interface the torch bindings and the C++ tests use to run the sweep, and the table of CPU
// ISA builds. Each build (isa/sweep_<isa>.cpp) compiles the whole core with its own flags into its
// own namespace; cpu/cpu_isa.cpp picks one at run time.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "types.h"

namespace rnnpool {

// How the core runs independent tasks: parallel(tasks, run) calls run(begin, end) on disjoint
// ranges covering [0, tasks), possibly concurrently, and returns when all are done. No result
// depends on how the tasks are split or ordered (each task writes its own memory and every sum
// runs in a fixed order), so a serial loop gives the same bits as any thread pool.
using ParallelFor = std::function<void(int64_t tasks, const std::function<void(int64_t, int64_t)>& run)>;

// The ParallelFor of one thread: a single range covering every task.
inline void serial_for(int64_t tasks, const std::function<void(int64_t, int64_t)>& run) {
  if (tasks > 0) run(0, tasks);
}

// out[i] += the sum of slots[k][i] over the slots k, in order, for i < width (slots: [count][width]):
// how per-unit and per-chunk gradient sums are combined, the same way for any schedule.
inline void add_slots_in_order(const std::vector<double>& slots, int64_t width, double* out) {
  if (width <= 0) return;
  for (size_t at = 0; at < slots.size(); at += width)
    for (int64_t i = 0; i < width; ++i) out[i] += slots[at + i];
}

// One sweep configuration (shape, cell, weights); see sweep.h for what each phase does. Both passes
// take a chunk of `samples` consecutive samples (x [samples][C][H][W]) and a buffer for its
// intermediates; the lane groups span the chunk's samples, and every phase is parallel over them.
template <class T>
class SweepKernel {
 public:
  virtual ~SweepKernel() = default;
  virtual const GradOffsets& layout() const = 0;
  virtual int64_t forward_buffer_size(int64_t samples) const = 0;   // elements
  virtual int64_t backward_buffer_size(int64_t samples) const = 0;  // elements
  // The fewest samples whose patches fill whole lane groups (a sample of a small map has fewer
  // patches than lanes).
  virtual int64_t lane_filling_samples() const = 0;
  // out: [samples][C_out][out_h][out_w], overwritten.
  virtual void forward(const T* x, int64_t samples, T* out, T* buffer, const ParallelFor& parallel) const = 0;
  // dx (overwritten) and grad (see layout(), accumulated) for grad_out [samples][C_out][out_h][out_w].
  virtual void backward(const T* x, const T* grad_out, int64_t samples, T* dx, double* grad, T* buffer,
                        const ParallelFor& parallel) const = 0;
  // After every chunk's backward: the chain rule through the cell's constrained parameters.
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
