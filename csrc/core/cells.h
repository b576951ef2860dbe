// FastGRNN and GRU: the lane-batched step of L independent sequences, forward and backward.
//
// A step takes the input projection xp = W_input x already computed (no bias: a pixel's projection
// is shared by every patch and pass that reads it, and padding pixels project to exactly 0). The
// forward step can record a "tape" of what its backward needs; the backward step turns the gradient
// of h_t into the gradient of h_{t-1}, adds the gradient of xp, and accumulates parameter gradients
// per lane (see lanes.h).
#pragma once

#include <cstdint>

#include "cell_math.h"
#include "lanes.h"
#include "nonlinearity.h"
#include "platform.h"
#include "types.h"

RNNPOOL_BEGIN_ISA_NAMESPACE

// ---------------------------------------------------------------------------------------------
// Element-wise lane loops: the per-element functions of cell_math.h applied to whole vector registers
// (simd.h), kWidth lanes at a time.
// ---------------------------------------------------------------------------------------------

// The FastGRNN step after U h: pre = W x + U h_prev [H][L]; writes the new h and, with kRecord, the
// tape (h_prev, z, h~). Gate and Update are template arguments so the loop is one vector map.
template <Nonlinearity Gate, Nonlinearity Update, bool kRecord, class T, int L>
inline void fastgrnn_lanes(int64_t H, const T* RNNPOOL_RESTRICT pre, const T* RNNPOOL_RESTRICT bias_gate,
                           const T* RNNPOOL_RESTRICT bias_update, T zeta, T nu, T* RNNPOOL_RESTRICT h_prev,
                           T* RNNPOOL_RESTRICT z, T* RNNPOOL_RESTRICT h_tilde, T* RNNPOOL_RESTRICT h) {
  using V = Vec<T>;
  const V zeta_v(zeta), nu_v(nu);
  for (int64_t j = 0; j < H; ++j) {
    const V bg(bias_gate[j]), bu(bias_update[j]);
    for (int64_t i = j * L; i < (j + 1) * L; i += V::kWidth) {
      const V p = V::load(pre + i), hp = V::load(h + i);
      const V zi = activate<Gate>(p + bg), ht = activate<Update>(p + bu);
      if (kRecord) {
        zi.store(z + i);
        ht.store(h_tilde + i);
        hp.store(h_prev + i);
      }
      fastgrnn_mix(zi, ht, hp, zeta_v, nu_v).store(h + i);
    }
  }
}

// dh: in d/dh_t, out the direct part of d/dh_{t-1}; dpre = d/d(W x + U h_prev), also added to dxp.
template <Nonlinearity Gate, Nonlinearity Update, class T, int L>
inline void fastgrnn_backward_lanes(int64_t H, const T* RNNPOOL_RESTRICT h_prev, const T* RNNPOOL_RESTRICT z,
                                    const T* RNNPOOL_RESTRICT h_tilde, T zeta, T nu, T* RNNPOOL_RESTRICT dh,
                                    T* RNNPOOL_RESTRICT dpre, T* RNNPOOL_RESTRICT dxp, T* RNNPOOL_RESTRICT g_bias_gate,
                                    T* RNNPOOL_RESTRICT g_bias_update, T* RNNPOOL_RESTRICT g_zeta,
                                    T* RNNPOOL_RESTRICT g_nu) {
  using V = Vec<T>;
  const V zeta_v(zeta), nu_v(nu);
  for (int64_t j = 0; j < H; ++j)
    for (int l = 0; l < L; l += V::kWidth) {
      const int64_t i = j * L + l;
      const V zi = V::load(z + i), ht = V::load(h_tilde + i);
      const FastGRNNPointGrad<V> g =
          fastgrnn_mix_backward(V::load(dh + i), zi, ht, V::load(h_prev + i), zeta_v, nu_v,
                                derivative_from_output<Gate>(zi), derivative_from_output<Update>(ht));
      (V::load(g_bias_gate + i) + g.pre_gate).store(g_bias_gate + i);
      (V::load(g_bias_update + i) + g.pre_update).store(g_bias_update + i);
      (V::load(g_zeta + l) + g.zeta).store(g_zeta + l);
      (V::load(g_nu + l) + g.nu).store(g_nu + l);
      const V d = g.pre_gate + g.pre_update;
      d.store(dpre + i);
      (V::load(dxp + i) + d).store(dxp + i);
      g.h_prev.store(dh + i);
    }
}

// Calls f(gate tag, update tag) with the runtime pair of nonlinearities as compile-time values.
template <class F>
inline void with_nonlinearities(Nonlinearity gate, Nonlinearity update, F&& f) {
  with_nonlinearity(gate, [&](auto gate_tag) { with_nonlinearity(update, [&](auto update_tag) { f(gate_tag, update_tag); }); });
}

// ai = W_ih x (without bias), ah = W_hh h + b_hh, both [3H][L]; writes the new h and, with kRecord,
// the tape (h_prev, r, z, n, ah_n).
template <bool kRecord, class T, int L>
inline void gru_lanes(int64_t H, const T* RNNPOOL_RESTRICT ai, const T* RNNPOOL_RESTRICT bias_ih,
                      const T* RNNPOOL_RESTRICT ah, T* RNNPOOL_RESTRICT h_prev, T* RNNPOOL_RESTRICT r,
                      T* RNNPOOL_RESTRICT z, T* RNNPOOL_RESTRICT n, T* RNNPOOL_RESTRICT ah_n, T* RNNPOOL_RESTRICT h) {
  using V = Vec<T>;
  const int64_t HL = H * L;
  for (int64_t j = 0; j < H; ++j) {
    const V b_r(bias_ih[j]), b_z(bias_ih[H + j]), b_n(bias_ih[2 * H + j]);
    for (int64_t i = j * L; i < (j + 1) * L; i += V::kWidth) {
      const V ahn = V::load(ah + 2 * HL + i), hp = V::load(h + i);
      const GRUPoint<V> p = gru_point(V::load(ai + i) + b_r, V::load(ai + HL + i) + b_z, V::load(ai + 2 * HL + i) + b_n,
                                      V::load(ah + i), V::load(ah + HL + i), ahn, hp);
      if (kRecord) {
        hp.store(h_prev + i);
        p.r.store(r + i);
        p.z.store(z + i);
        p.n.store(n + i);
        ahn.store(ah_n + i);
      }
      p.h.store(h + i);
    }
  }
}

// dh: in d/dh_t, out the direct part of d/dh_{t-1}; dah = d/d ah ([3H][L]); d/d ai is added to dxp
// and to the gradient of bias_ih ([3H][L] each), d/d ah_n to that of bias_hh's n rows (its r and z
// rows equal bias_ih's: GRU::finalize_grads copies them).
template <class T, int L>
inline void gru_backward_lanes(int64_t H, const T* RNNPOOL_RESTRICT h_prev, const T* RNNPOOL_RESTRICT r,
                               const T* RNNPOOL_RESTRICT z, const T* RNNPOOL_RESTRICT n,
                               const T* RNNPOOL_RESTRICT ah_n, T* RNNPOOL_RESTRICT dh, T* RNNPOOL_RESTRICT dah,
                               T* RNNPOOL_RESTRICT dxp, T* RNNPOOL_RESTRICT g_bias_ih, T* RNNPOOL_RESTRICT g_bias_hh) {
  using V = Vec<T>;
  const int64_t HL = H * L;
  auto add = [](T* p, V v) { (V::load(p) + v).store(p); };
  for (int64_t i = 0; i < HL; i += V::kWidth) {
    const GRUPointGrad<V> g = gru_point_backward(V::load(dh + i), V::load(r + i), V::load(z + i), V::load(n + i),
                                                 V::load(ah_n + i), V::load(h_prev + i));
    const V ai[3] = {g.ai_r, g.ai_z, g.ai_n};
    for (int k = 0; k < 3; ++k) {
      add(dxp + k * HL + i, ai[k]);
      add(g_bias_ih + k * HL + i, ai[k]);
    }
    add(g_bias_hh + 2 * HL + i, g.ah_n);
    g.ai_r.store(dah + i);
    g.ai_z.store(dah + HL + i);
    g.ah_n.store(dah + 2 * HL + i);
    g.h_prev.store(dh + i);
  }
}

// ---------------------------------------------------------------------------------------------
// Lane-batched cells. Parameters arrive as a list of pointers in the op's order (see rnnpool.cpp);
// gradients are accumulated into per-lane buffers with the same order ([numel][L] each).
// step_backward leaves the recurrent weight's gradient to its caller: it writes d_recurrent, the
// gradient of the recurrent product (kRecurrentRows * hidden rows), and the caller adds the outer
// products with h_prev (the head of each step's tape) for a whole sequence at once.
// ---------------------------------------------------------------------------------------------

template <class T, int L>
struct FastGRNN {
  static constexpr int kGates = 1;
  static constexpr int kNumParams = 6;
  enum Param { kW = 0, kU, kBiasGate, kBiasUpdate, kZeta, kNu };
  static constexpr int kRecurrentWeight = kU, kRecurrentRows = 1;

  struct Weights {
    const T* W;  // [hidden, input]
    const T* U;  // [hidden, hidden]
    const T* bias_gate;
    const T* bias_update;
    T zeta, nu;  // sigmoid already applied
    int64_t hidden;
    Nonlinearity gate, update;
  };

  static Weights bind(const T* const* params, int64_t hidden, Nonlinearity gate, Nonlinearity update) {
    return Weights{params[kW], params[kU], params[kBiasGate], params[kBiasUpdate],
                   squash(params[kZeta][0]), squash(params[kNu][0]), hidden, gate, update};
  }

  // sigmoid of the raw zeta and nu, once per call, in double: EdgeML's nu = -100 gives 4e-44.
  static T squash(T raw) { return static_cast<T>(sigmoid(static_cast<double>(raw))); }

  static void param_numels(int64_t input, int64_t hidden, int64_t* numel) {
    numel[kW] = hidden * input;
    numel[kU] = hidden * hidden;
    numel[kBiasGate] = numel[kBiasUpdate] = hidden;
    numel[kZeta] = numel[kNu] = 1;
  }

  static int64_t tape_size(int64_t hidden) { return 3 * hidden * L; }  // h_prev, z, h~
  // forward: pre [H]
  static int64_t scratch_size(int64_t hidden) { return hidden * L; }

  // tape: null, or room for [h_prev, z, h~] x [H][L] to record.
  static void step(const Weights& w, const T* xp, T* h, T* tape, T* scratch) {
    const int64_t H = w.hidden, n = H * L;
    T* pre = scratch;
    matvec_with_base<T, L>(w.U, H, H, h, xp, pre);
    with_nonlinearities(w.gate, w.update, [&](auto gate, auto update) {
      constexpr Nonlinearity G = decltype(gate)::value, U = decltype(update)::value;
      if (tape)
        fastgrnn_lanes<G, U, true, T, L>(H, pre, w.bias_gate, w.bias_update, w.zeta, w.nu, tape, tape + n, tape + 2 * n, h);
      else
        fastgrnn_lanes<G, U, false, T, L>(H, pre, w.bias_gate, w.bias_update, w.zeta, w.nu, nullptr, nullptr, nullptr, h);
    });
  }

  // dh: in d/dh_t, out d/dh_{t-1}. dxp += d/dxp. grad[p]: per-lane accumulators.
  static void step_backward(const Weights& w, const T* tape, T* dh, T* dxp, T* const* grad, T* d_recurrent) {
    const int64_t H = w.hidden, n = H * L;
    T* dpre = d_recurrent;  // pre = W x + U h_prev
    with_nonlinearities(w.gate, w.update, [&](auto gate, auto update) {
      fastgrnn_backward_lanes<decltype(gate)::value, decltype(update)::value, T, L>(
          H, tape, tape + n, tape + 2 * n, w.zeta, w.nu, dh, dpre, dxp, grad[kBiasGate], grad[kBiasUpdate],
          grad[kZeta], grad[kNu]);
    });
    matvec_transposed_accumulate<T, L>(w.U, H, H, dpre, dh);
  }

  // Chain rule through the sigmoid applied to the raw zeta and nu.
  static void finalize_grads(const Weights& w, double* const* grad) {
    grad[kZeta][0] *= double(w.zeta) * (1.0 - double(w.zeta));
    grad[kNu][0] *= double(w.nu) * (1.0 - double(w.nu));
  }
};

template <class T, int L>
struct GRU {
  static constexpr int kGates = 3;
  static constexpr int kNumParams = 4;
  enum Param { kWeightIH = 0, kWeightHH, kBiasIH, kBiasHH };
  static constexpr int kRecurrentWeight = kWeightHH, kRecurrentRows = 3;

  struct Weights {
    const T* weight_ih;  // [3 hidden, input], gates r, z, n
    const T* weight_hh;  // [3 hidden, hidden]
    const T* bias_ih;
    const T* bias_hh;
    int64_t hidden;
  };

  static Weights bind(const T* const* params, int64_t hidden, Nonlinearity, Nonlinearity) {
    return Weights{params[kWeightIH], params[kWeightHH], params[kBiasIH], params[kBiasHH], hidden};
  }

  static void param_numels(int64_t input, int64_t hidden, int64_t* numel) {
    numel[kWeightIH] = 3 * hidden * input;
    numel[kWeightHH] = 3 * hidden * hidden;
    numel[kBiasIH] = numel[kBiasHH] = 3 * hidden;
  }

  static int64_t tape_size(int64_t hidden) { return 5 * hidden * L; }  // h_prev, r, z, n, ah_n
  // forward: ah [3H]
  static int64_t scratch_size(int64_t hidden) { return 3 * hidden * L; }

  // tape: null, or room for [h_prev, r, z, n, ah_n] x [H][L] to record.
  static void step(const Weights& w, const T* xp, T* h, T* tape, T* scratch) {
    const int64_t H = w.hidden, n = H * L;
    T* ah = scratch;  // [3H][L] = W_hh h + b_hh
    matvec_with_bias<T, L>(w.weight_hh, 3 * H, H, h, w.bias_hh, ah);
    if (tape)
      gru_lanes<true, T, L>(H, xp, w.bias_ih, ah, tape, tape + n, tape + 2 * n, tape + 3 * n, tape + 4 * n, h);
    else
      gru_lanes<false, T, L>(H, xp, w.bias_ih, ah, nullptr, nullptr, nullptr, nullptr, nullptr, h);
  }

  static void step_backward(const Weights& w, const T* tape, T* dh, T* dxp, T* const* grad, T* d_recurrent) {
    const int64_t H = w.hidden, n = H * L;
    const T* h_prev = tape;
    T* dah = d_recurrent;  // ah = W_hh h_prev + b_hh
    gru_backward_lanes<T, L>(H, h_prev, tape + n, tape + 2 * n, tape + 3 * n, tape + 4 * n, dh, dah, dxp,
                             grad[kBiasIH], grad[kBiasHH]);
    matvec_transposed_accumulate<T, L>(w.weight_hh, 3 * H, H, dah, dh);
  }

  // bias_hh's r and z rows enter the cell exactly where bias_ih's do: the same gradient, which the
  // steps accumulate once (into bias_ih's).
  static void finalize_grads(const Weights& w, double* const* grad) {
    for (int64_t i = 0; i < 2 * w.hidden; ++i) grad[kBiasHH][i] = grad[kBiasIH][i];
  }
};

RNNPOOL_END_ISA_NAMESPACE
