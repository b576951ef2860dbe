// The four nonlinearities FastGRNN may use (names as in EdgeML), and their derivatives.
//
// Derivatives are expressed through the function's OUTPUT, so backward passes only need the
// activations saved by the forward pass. For the piecewise-linear functions this gives the slope
// inside the clamp range and 0 outside and at the kinks, as SPEC section 4 asks.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "platform.h"
#include "types.h"

RNNPOOL_BEGIN_ISA_NAMESPACE

// tanh for float as x P(x^2) / Q(x^2) on [-9, 9] and +-1 outside (|tanh| > 1 - 3e-8 there): one
// division, no exp, no branch, so loops over it vectorise. The coefficients were fitted for this
// project (weighted least squares towards minimax); max abs error 3.5e-7 in float arithmetic
// (checked on a 4M-point grid over [-12, 12]); NaN propagates.
RNNPOOL_HD float tanh_(float x) {
  x = x < -9.0f ? -9.0f : x;
  x = x > 9.0f ? 9.0f : x;
  const float t = x * x;
  float p = -8.463029404e-14f;
  p = p * t + 5.267038194e-11f;
  p = p * t - 2.020068202e-8f;
  p = p * t + 1.114786664e-5f;
  p = p * t + 3.103317926e-3f;
  p = p * t + 1.308343261e-1f;
  p = p * t + 1.0f;
  float q = 2.545228926e-4f;
  q = q * t + 2.449261770e-2f;
  q = q * t + 4.641675949e-1f;
  q = q * t + 1.0f;
  return x * p / q;
}
RNNPOOL_HD double tanh_(double x) { return std::tanh(x); }

// sigmoid(x) = (1 + tanh(x / 2)) / 2: abs error < 2e-7 for float.
RNNPOOL_HD float sigmoid(float x) { return 0.5f + 0.5f * tanh_(0.5f * x); }
RNNPOOL_HD double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

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

// Calls f(NonlinearityTag<nl>{}) so a loop can be compiled per nonlinearity: the switch stays
// outside the loop and the loop is a plain, vectorisable map.
template <class F>
inline void with_nonlinearity(Nonlinearity nl, F&& f) {
  switch (nl) {
    case Nonlinearity::Sigmoid: f(NonlinearityTag<Nonlinearity::Sigmoid>{}); break;
    case Nonlinearity::Tanh: f(NonlinearityTag<Nonlinearity::Tanh>{}); break;
    case Nonlinearity::QuantSigm: f(NonlinearityTag<Nonlinearity::QuantSigm>{}); break;
    case Nonlinearity::QuantTanh: f(NonlinearityTag<Nonlinearity::QuantTanh>{}); break;
  }
}

RNNPOOL_END_ISA_NAMESPACE
