// Everything one ISA build of the core exports (kernel.h): isa/sweep_<isa>.cpp sets RNNPOOL_ISA
// and the compiler flags, includes this header and invokes RNNPOOL_DEFINE_ISA_BUILD().
#pragma once

#include "../gated_conv.h"
#include "../sweep.h"

RNNPOOL_BEGIN_ISA_NAMESPACE

// y = nl(x) with this build's vector registers; the tail goes through one zero-padded register.
void activate_floats(Nonlinearity nl, const float* x, int64_t n, float* y) {
  using V = Vec<float>;
  with_nonlinearity(nl, [&](auto tag) {
    constexpr Nonlinearity NL = decltype(tag)::value;
    int64_t i = 0;
    for (; i + V::kWidth <= n; i += V::kWidth) activate<NL>(V::load(x + i)).store(y + i);
    if (i < n) {
      float tail[V::kWidth] = {};
      copy(x + i, n - i, tail);
      activate<NL>(V::load(tail)).store(tail);
      copy(tail, n - i, y + i);
    }
  });
}

RNNPOOL_END_ISA_NAMESPACE

#define RNNPOOL_DEFINE_ISA_BUILD()                                                                         \
  template std::unique_ptr<rnnpool::SweepKernel<float>> rnnpool::RNNPOOL_ISA::make_sweep_kernel(          \
      rnnpool::CellKind, const rnnpool::SweepShape&, const rnnpool::SweepParams<float>&);                  \
  template std::unique_ptr<rnnpool::SweepKernel<double>> rnnpool::RNNPOOL_ISA::make_sweep_kernel(         \
      rnnpool::CellKind, const rnnpool::SweepShape&, const rnnpool::SweepParams<double>&);             \
  template void rnnpool::RNNPOOL_ISA::gated_conv_rows(const rnnpool::GatedConvJob<float>&, int64_t, int64_t);  \
  template void rnnpool::RNNPOOL_ISA::gated_conv_rows(const rnnpool::GatedConvJob<double>&, int64_t, int64_t);
