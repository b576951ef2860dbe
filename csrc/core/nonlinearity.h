// The four nonlinearities FastGRNN may use (names as in EdgeML), and their derivatives.
//
// Derivatives are expressed through the function's OUTPUT, so backward passes only need the
// activations saved by the forward pass. For the piecewise-linear functions this gives the slope
// inside the clamp range and 0 outside and at the kinks, as docs/spec.md section 4 asks.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "elementwise.h"
#include "platform.h"
#include "types.h"

RNNPOOL_BEGIN_ISA_NAMESPACE

// tanh as x P(x^2) / Q(x^2) on [-9, 9] and +-1 outside (|tanh| > 1 - 3e-8 there): no exp, no
// branch, one division (a refined reciprocal in the vector builds, see divide()), the same formula
// for a float and for a vector of floats (simd/). The coefficients were fitted for this project
// (weighted least squares towards minimax). Max abs error against tanh in double, over the float
// range: 3e-7 with a true division, 4e-7 with the vector builds' reciprocal
// (tests/test_nonlinearity.cpp); NaN propagates. float64 uses std::tanh (the double overloads below
// and in simd/scalar.h).
template <class T>
RNNPOOL_HD T tanh_(T x) {
  x = clamp(x, T(-9.0f), T(9.0f));
  const T t = x * x;
  T p = T(-8.463029404e-14f);
  p = fmadd(p, t, T(5.267038194e-11f));
  p = fmadd(p, t, T(-2.020068202e-8f));
  p = fmadd(p, t, T(1.114786664e-5f));
  p = fmadd(p, t, T(3.103317926e-3f));
  p = fmadd(p, t, T(1.308343261e-1f));
  p = fmadd(p, t, T(1.0f));
  T q = T(2.545228926e-4f);
  q = fmadd(q, t, T(2.449261770e-2f));
  q = fmadd(q, t, T(4.641675949e-1f));
  q = fmadd(q, t, T(1.0f));
  return divide(x * p, q);
}
RNNPOOL_HD double tanh_(double x) { return std::tanh(x); }

// sigmoid(x) = (1 + tanh(x / 2)) / 2: max abs error 2e-7 for float.
template <class T>
RNNPOOL_HD T sigmoid(T x) {
  return fmadd(T(0.5f), tanh_(T(0.5f) * x), T(0.5f));
}
RNNPOOL_HD double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// EdgeML's piecewise-linear quantSigm and quantTanh: a multiply-add and a clamp.
template <class T>
RNNPOOL_HD T quant_sigm(T x) {
  return clamp(fmadd(x, T(0.5f), T(0.5f)), T(0.0f), T(1.0f));
}
template <class T>
RNNPOOL_HD T quant_tanh(T x) {
  return clamp(x, T(-1.0f), T(1.0f));
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
  if (NL == Nonlinearity::Sigmoid) return y * (T(1.0f) - y);
  if (NL == Nonlinearity::Tanh) return T(1.0f) - y * y;
  if (NL == Nonlinearity::QuantSigm) return inside_open(y, T(0.0f), T(1.0f), T(0.5f));
  return inside_open(y, T(-1.0f), T(1.0f), T(1.0f));
}

// The same two, chosen at run time: for code where the choice is uniform across a group of threads
// (the GPU sweep), so a switch per element costs less than one compiled loop per pair.
template <class T>
RNNPOOL_HD T activate(Nonlinearity nl, T x) {
  switch (nl) {
    case Nonlinearity::Sigmoid: return activate<Nonlinearity::Sigmoid>(x);
    case Nonlinearity::Tanh: return activate<Nonlinearity::Tanh>(x);
    case Nonlinearity::QuantSigm: return activate<Nonlinearity::QuantSigm>(x);
    default: return activate<Nonlinearity::QuantTanh>(x);
  }
}

template <class T>
RNNPOOL_HD T derivative_from_output(Nonlinearity nl, T y) {
  switch (nl) {
    case Nonlinearity::Sigmoid: return derivative_from_output<Nonlinearity::Sigmoid>(y);
    case Nonlinearity::Tanh: return derivative_from_output<Nonlinearity::Tanh>(y);
    case Nonlinearity::QuantSigm: return derivative_from_output<Nonlinearity::QuantSigm>(y);
    default: return derivative_from_output<Nonlinearity::QuantTanh>(y);
  }
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
