// The per-element math of FastGRNN and GRU, forward and backward: one definition for every
// backend. The CPU builds apply it to vector registers (cells.h), the GPU sweep to one float or
// double per thread (sequence.h), so this header needs nothing beyond the element-wise operations.
#pragma once

#include "nonlinearity.h"
#include "platform.h"

RNNPOOL_BEGIN_ISA_NAMESPACE

// FastGRNN: h' = z h + (zeta (1 - z) + nu) h~, with zeta and nu already squashed by sigmoid.
template <class T>
RNNPOOL_HD T fastgrnn_mix(T z, T h_tilde, T h_prev, T zeta, T nu) {
  return z * h_prev + (zeta * (T(1) - z) + nu) * h_tilde;
}

template <class T>
struct FastGRNNPointGrad {
  T pre_gate;    // d/d(pre + bias_gate)
  T pre_update;  // d/d(pre + bias_update)
  T zeta;        // d/d(sigmoid(zeta))
  T nu;          // d/d(sigmoid(nu))
  T h_prev;      // direct part of d/d h_prev (the U^T part is added by the caller)
};

// dz_dpre and dh_dpre are the nonlinearities' derivatives at this point.
template <class T>
RNNPOOL_HD FastGRNNPointGrad<T> fastgrnn_mix_backward(T dh, T z, T h_tilde, T h_prev, T zeta, T nu,
                                                       T dz_dpre, T dh_dpre) {
  FastGRNNPointGrad<T> g;
  g.pre_gate = dh * (h_prev - zeta * h_tilde) * dz_dpre;
  g.pre_update = dh * (zeta * (T(1) - z) + nu) * dh_dpre;
  g.zeta = dh * (T(1) - z) * h_tilde;
  g.nu = dh * h_tilde;
  g.h_prev = dh * z;
  return g;
}

// GRU (torch.nn.GRUCell): ai_* = W_i* x + b_i*, ah_* = W_h* h + b_h*.
template <class T>
struct GRUPoint {
  T r, z, n, h;
};

template <class T>
RNNPOOL_HD GRUPoint<T> gru_point(T ai_r, T ai_z, T ai_n, T ah_r, T ah_z, T ah_n, T h_prev) {
  GRUPoint<T> p;
  p.r = sigmoid(ai_r + ah_r);
  p.z = sigmoid(ai_z + ah_z);
  p.n = tanh_(ai_n + p.r * ah_n);
  p.h = (T(1) - p.z) * p.n + p.z * h_prev;
  return p;
}

template <class T>
struct GRUPointGrad {
  T ai_r, ai_z, ai_n;  // d/d ai_*; d/d ah_r and d/d ah_z are the same values
  T ah_n;
  T h_prev;  // direct part of d/d h_prev (the W_hh^T part is added by the caller)
};

template <class T>
RNNPOOL_HD GRUPointGrad<T> gru_point_backward(T dh, T r, T z, T n, T ah_n, T h_prev) {
  GRUPointGrad<T> g;
  const T dn = dh * (T(1) - z) * (T(1) - n * n);
  g.ai_n = dn;
  g.ah_n = dn * r;
  g.ai_r = dn * ah_n * r * (T(1) - r);
  g.ai_z = dh * (h_prev - n) * z * (T(1) - z);
  g.h_prev = dh * z;
  return g;
}

RNNPOOL_END_ISA_NAMESPACE
