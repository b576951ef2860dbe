// The four nonlinearities in double, written from docs/spec.md section 4 with libm: the tests' yardstick.
#pragma once

#include <cmath>

#include "../types.h"

namespace rnnpool {

inline double exact_nonlinearity(Nonlinearity nl, double x) {
  switch (nl) {
    case Nonlinearity::Sigmoid: return 1 / (1 + std::exp(-x));
    case Nonlinearity::Tanh: return std::tanh(x);
    case Nonlinearity::QuantSigm: return std::fmin(1.0, std::fmax(0.0, (x + 1) / 2));
    default: return std::fmin(1.0, std::fmax(-1.0, x));
  }
}

}  // namespace rnnpool
