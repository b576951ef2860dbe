// The four nonlinearities FastGRNN may use (names as in EdgeML), and their derivatives.
//
// Derivatives are expressed through the function's OUTPUT, so backward passes only need the
// activations saved by the forward pass. For the piecewise-linear functions this gives the slope
// inside the clamp range and 0 outside and at the kinks, as SPEC section 4 asks.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "platform.h"
#include "types.h"

RNNPOOL_BEGIN_ISA_NAMESPACE

// exp for float written without branches or libm calls so loops over it auto-vectorise.
// Cephes-style: 2^n * e^r with |r| <= ln2/2 and a degree-6 polynomial; relative error < 3e-7
// on the clamped range [-87.3, 88.3]. NaN propagates through the polynomial.
RNNPOOL_HD float exp_approx(float x) {
  x = x < -87.3f ? -87.3f : x;
  x = x > 88.3f ? 88.3f : x;
  float t = x * 1.44269504088896341f + 0.5f;
  int32_t n = static_cast<int32_t>(t);
  n -= (static_cast<float>(n) > t) ? 1 : 0;  // floor for negative t
  const float fn = static_cast<float>(n);
  float r = x - fn * 0.693359375f;
  r = r - fn * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const uint32_t bits = static_cast<uint32_t>(n + 127) << 23;
  float scale;
#if defined(__CUDA_ARCH__)
  scale = __uint_as_float(bits);
#else
  std::memcpy(&scale, &bits, sizeof(scale));
#endif
  return p * scale;
}

RNNPOOL_HD float sigmoid(float x) { return 1.0f / (1.0f + exp_approx(-x)); }
RNNPOOL_HD double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// tanh: odd polynomial near 0 (where 1 - 2/(e^2x + 1) would cancel), exp formula elsewhere.
RNNPOOL_HD float tanh_approx(float x) {
  const float ax = x < 0.0f ? -x : x;
  const float z = x * x;
  float small = -5.70498872745e-3f;
  small = small * z + 2.06390887954e-2f;
  small = small * z - 5.37397155531e-2f;
  small = small * z + 1.33314422036e-1f;
  small = small * z - 3.33332819422e-1f;
  small = small * z * x + x;
  float large = 1.0f - 2.0f / (exp_approx(2.0f * ax) + 1.0f);
  large = x < 0.0f ? -large : large;
  return ax < 0.625f ? small : large;
}
RNNPOOL_HD float tanh_(float x) { return tanh_approx(x); }
RNNPOOL_HD double tanh_(double x) { return std::tanh(x); }

template <class T>
RNNPOOL_HD T quant_sigm(T x) {
  const T y = (x + T(1)) * T(0.5);
  return y < T(0) ? T(0) : (y > T(1) ? T(1) : y);
}
template <class T>
RNNPOOL_HD T quant_tanh(T x) {
  return x < T(-1) ? T(-1) : (x > T(1) ? T(1) : x);
}

// The one definition of each nonlinearity and of its derivative (as a function of its output y).
template <Nonlinearity NL, class T>
RNNPOOL_HD T activate(T x) {
  if (NL == Nonlinearity::Sigmoid) return sigmoid(x);
  if (NL == Nonlinearity::Tanh) return tanh_(x);
  if (NL == Nonlinearity::QuantSigm) return quant_sigm(x);
  return quant_tanh(x);
}

template <Nonlinearity NL, class T>
RNNPOOL_HD T derivative_from_output(T y) {
  if (NL == Nonlinearity::Sigmoid) return y * (T(1) - y);
  if (NL == Nonlinearity::Tanh) return T(1) - y * y;
  if (NL == Nonlinearity::QuantSigm) return (y > T(0) && y < T(1)) ? T(0.5) : T(0);
  return (y > T(-1) && y < T(1)) ? T(1) : T(0);
}

template <Nonlinearity NL>
using NonlinearityTag = std::integral_constant<Nonlinearity, NL>;

// Calls f(NonlinearityTag<nl>{}) so loops are compiled once per nonlinearity: the switch stays
// outside the loop and each loop is a plain, vectorisable map.
template <class F>
inline void with_nonlinearity(Nonlinearity nl, F&& f) {
  switch (nl) {
    case Nonlinearity::Sigmoid: f(NonlinearityTag<Nonlinearity::Sigmoid>{}); break;
    case Nonlinearity::Tanh: f(NonlinearityTag<Nonlinearity::Tanh>{}); break;
    case Nonlinearity::QuantSigm: f(NonlinearityTag<Nonlinearity::QuantSigm>{}); break;
    case Nonlinearity::QuantTanh: f(NonlinearityTag<Nonlinearity::QuantTanh>{}); break;
  }
}

template <class T>
inline void activate_inplace(Nonlinearity nl, T* RNNPOOL_RESTRICT v, int64_t n) {
  with_nonlinearity(nl, [&](auto tag) {
    for (int64_t i = 0; i < n; ++i) v[i] = activate<decltype(tag)::value>(v[i]);
  });
}

template <class T>
inline void derivative_from_output(Nonlinearity nl, const T* RNNPOOL_RESTRICT y, T* RNNPOOL_RESTRICT d,
                                   int64_t n) {
  with_nonlinearity(nl, [&](auto tag) {
    for (int64_t i = 0; i < n; ++i) d[i] = derivative_from_output<decltype(tag)::value>(y[i]);
  });
}

RNNPOOL_END_ISA_NAMESPACE
