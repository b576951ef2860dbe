// The vectorised nonlinearities of every ISA build against the same functions in double, over
// every float magnitude that matters: a dense sweep of bit patterns in [-16, 16] (denormals
// included), powers of ten up to FLT_MAX, the infinities and NaN. The bounds below are the maximum
// absolute errors the project states (nonlinearity.h); NaN must come out as NaN.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "../kernel.h"
#include "exact_nonlinearity.h"

using namespace rnnpool;

namespace {

float from_bits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Every 257th bit pattern from 0 to 16 (about 4.2M values), both signs, and the extremes.
std::vector<float> test_inputs() {
  std::vector<float> x;
  const uint32_t last = 0x41800000u;  // 16.0f
  for (uint32_t bits = 0; bits <= last; bits += 257) {
    x.push_back(from_bits(bits));
    x.push_back(-from_bits(bits));
  }
  for (int e = 1; e <= 38; ++e) {
    x.push_back(std::pow(10.0f, float(e)));
    x.push_back(-std::pow(10.0f, float(e)));
  }
  for (float v : {std::numeric_limits<float>::max(), std::numeric_limits<float>::infinity(),
                  std::numeric_limits<float>::denorm_min(), 9.0f, 9.000001f, 1.0f, 0.5f}) {
    x.push_back(v);
    x.push_back(-v);
  }
  return x;
}

struct Bound {
  Nonlinearity nl;
  const char* name;
  double max_abs_error;
};

// The stated accuracy: the rational tanh (and sigmoid through it) to a few float ulps of 1;
// the piecewise-linear functions to the rounding of one multiply-add.
const Bound kBounds[] = {{Nonlinearity::Tanh, "tanh", 4e-7},
                         {Nonlinearity::Sigmoid, "sigmoid", 2e-7},
                         {Nonlinearity::QuantTanh, "quantTanh", 0.0},
                         {Nonlinearity::QuantSigm, "quantSigm", 6e-8}};

}  // namespace

int main() {
  const std::vector<float> x = test_inputs();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  int failures = 0;
  for (const CpuIsa& isa : compiled_cpu_isas()) {
    if (!isa.supported) {
      std::printf("SKIPPED: this CPU cannot run the %s build\n", isa.name);
      continue;
    }
    for (const Bound& b : kBounds) {
      std::vector<float> y(x.size());
      isa.activate_floats(b.nl, x.data(), int64_t(x.size()), y.data());
      double worst = 0, worst_at = 0;
      for (size_t i = 0; i < x.size(); ++i) {
        const double err = std::fabs(double(y[i]) - exact_nonlinearity(b.nl, x[i]));
        if (!(err <= worst)) worst = err, worst_at = x[i];  // also catches NaN outputs
      }
      float nan_out;
      isa.activate_floats(b.nl, &nan, 1, &nan_out);
      const bool ok = worst <= b.max_abs_error && std::isnan(nan_out);
      failures += !ok;
      std::printf("%s %-7s %-9s max abs error %.2e at x = %.7g (bound %.1e), NaN -> %s\n", ok ? "ok  " : "FAIL",
                  isa.name, b.name, worst, worst_at, b.max_abs_error, std::isnan(nan_out) ? "NaN" : "a number");
    }
  }
  if (failures) std::printf("%d check(s) failed\n", failures);
  return failures ? 1 : 0;
}
