// The patch-wise RNNPool / ReX sweep (SPEC sections 1-3), torch-free.
//
// Work is organised in "groups" of L patches of one sample that are swept together, one patch per
// lane (lanes.h): every row/column/bidirectional sequence of the group advances in lock-step, so
// the recurrent weights stay in cache and each step is a small dense kernel over L lanes.
//
// The input projection W_input x of RNN1 is computed once per pixel for the whole sample
// (project_pixels) and gathered by every patch and pass that reads the pixel; likewise
// RNN2's projection of each summary is computed once and read by both directions.
//
// Backward recomputes a group's forward with a tape (the cell activations of every step, a few
// tens of KiB per group) instead of storing them for the whole batch between the two passes:
// recomputing costs about one extra forward, storing would cost ~(2 kh kw + 2 (kh+kw)) x 3-5 x
// hidden values per patch of memory traffic. Parameter gradients accumulate per lane and are summed
// over lanes and then over samples in a fixed order, so results do not depend on the thread count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cells.h"
#include "lanes.h"

namespace rnnpool {

struct SweepShape {
  int64_t batch, channels, height, width;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
  int64_t hidden1, hidden2;
  bool rows, global, cols;  // output parts V^R, V^G, V^C (RNNPool = rows + cols)

  int64_t out_h() const { return (height + 2 * pad_h - kernel_h) / stride_h + 1; }
  int64_t out_w() const { return (width + 2 * pad_w - kernel_w) / stride_w + 1; }
  int64_t patches() const { return out_h() * out_w(); }
  int64_t pixels() const { return height * width; }
  int64_t summaries() const { return kernel_h + kernel_w; }
  bool needs_rnn2() const { return rows || cols; }
  int64_t out_channels() const { return hidden2 * ((rows ? 2 : 0) + (global ? 4 : 0) + (cols ? 2 : 0)); }
};

template <class T>
struct SweepParams {
  const T* const* rnn1;  // the cell's parameters in the op's order
  const T* const* rnn2;
  const T* proj_weight;  // [4 hidden2, (kh + kw) hidden1], only with shape.global
  const T* proj_bias;    // [4 hidden2]
  Nonlinearity gate, update;
};

// Offsets of every parameter in one flat gradient vector: rnn1's, rnn2's, then proj weight and bias.
template <class Cell>
struct GradLayout {
  int64_t rnn1[Cell::kNumParams], rnn2[Cell::kNumParams];
  int64_t rnn1_numel[Cell::kNumParams], rnn2_numel[Cell::kNumParams];
  int64_t proj_weight, proj_bias, total;

  explicit GradLayout(const SweepShape& s) {
    Cell::param_numels(s.channels, s.hidden1, rnn1_numel);
    Cell::param_numels(s.hidden1, s.hidden2, rnn2_numel);
    int64_t at = 0;
    for (int p = 0; p < Cell::kNumParams; ++p) rnn1[p] = at, at += rnn1_numel[p];
    for (int p = 0; p < Cell::kNumParams; ++p) rnn2[p] = at, at += rnn2_numel[p];
    proj_weight = at;
    at += s.global ? 4 * s.hidden2 * s.summaries() * s.hidden1 : 0;
    proj_bias = at;
    at += s.global ? 4 * s.hidden2 : 0;
    total = at;
  }
};

// P[pix][g] = sum_c W[g][c] x[c][pix] for pix in [begin, end); x is one sample [C][npix].
template <class T>
void project_pixels(const T* W, int64_t G, int64_t C, const T* x, int64_t npix, int64_t begin, int64_t end,
                    T* P) {
  constexpr int64_t kBlock = 64;
  T acc[kBlock];
  for (int64_t p0 = begin; p0 < end; p0 += kBlock) {
    const int64_t nb = std::min(kBlock, end - p0);
    for (int64_t g = 0; g < G; ++g) {
      fill(acc, nb, T(0));
      for (int64_t c = 0; c < C; ++c) {
        const T w = W[g * C + c];
        const T* xr = x + c * npix + p0;
        for (int64_t q = 0; q < nb; ++q) acc[q] += w * xr[q];
      }
      for (int64_t q = 0; q < nb; ++q) P[(p0 + q) * G + g] = acc[q];
    }
  }
}

// The transpose of project_pixels: dx[c][pix] = sum_g W[g][c] dP[pix][g] (overwrites dx) and
// dW[g][c] += sum_pix dP[pix][g] x[c][pix], summed in a fixed order.
template <class T>
void project_pixels_backward(const T* W, int64_t G, int64_t C, const T* x, int64_t npix, const T* dP, T* dx,
                             double* dW) {
  constexpr int64_t kBlock = 64;
  constexpr int kPartials = 8;
  std::vector<T> dPt(G * kBlock);
  T acc[kBlock];
  for (int64_t p0 = 0; p0 < npix; p0 += kBlock) {
    const int64_t nb = std::min(kBlock, npix - p0);
    for (int64_t q = 0; q < nb; ++q)
      for (int64_t g = 0; g < G; ++g) dPt[g * kBlock + q] = dP[(p0 + q) * G + g];
    for (int64_t q = nb; q < kBlock; ++q)
      for (int64_t g = 0; g < G; ++g) dPt[g * kBlock + q] = T(0);
    for (int64_t c = 0; c < C; ++c) {
      fill(acc, kBlock, T(0));
      for (int64_t g = 0; g < G; ++g) {
        const T w = W[g * C + c];
        for (int64_t q = 0; q < kBlock; ++q) acc[q] += w * dPt[g * kBlock + q];
      }
      copy(acc, nb, dx + c * npix + p0);
    }
    for (int64_t g = 0; g < G; ++g)
      for (int64_t c = 0; c < C; ++c) {
        const T* xr = x + c * npix + p0;
        const T* d = dPt.data() + g * kBlock;
        T part[kPartials] = {};
        int64_t q = 0;
        for (; q + kPartials <= nb; q += kPartials)
          for (int k = 0; k < kPartials; ++k) part[k] += d[q + k] * xr[q + k];
        for (; q < nb; ++q) part[0] += d[q] * xr[q];
        double sum = 0;
        for (int k = 0; k < kPartials; ++k) sum += part[k];
        dW[g * C + c] += sum;
      }
  }
}

template <class Cell, class T, int L>
class PatchSweep {
 public:
  using Weights = typename Cell::Weights;

  PatchSweep(const SweepShape& s, const SweepParams<T>& p)
      : s_(s),
        p_(p),
        layout_(s),
        rnn1_(Cell::bind(p.rnn1, s.hidden1, p.gate, p.update)),
        rnn2_(Cell::bind(p.rnn2, s.hidden2, p.gate, p.update)),
        g1_(Cell::kGates * s.hidden1),
        g2_(Cell::kGates * s.hidden2),
        tape1_(Cell::tape_size(s.hidden1)),
        tape2_(Cell::tape_size(s.hidden2)) {
    const int64_t kh = s.kernel_h, kw = s.kernel_w, ns = s.summaries();
    int64_t at = 0;
    auto take = [&at](int64_t n) { const int64_t o = at; at += n; return o; };
    A_ = take(kh * kw * g1_ * L);
    S_ = take(ns * s.hidden1 * L);
    B_ = take(ns * g2_ * L);
    Q_ = take(4 * s.hidden2 * L);
    G_ = take(4 * s.hidden2 * L);
    scratch_ = take(std::max(Cell::scratch_size(s.hidden1), Cell::scratch_size(s.hidden2)));
    forward_size_ = at;
    T1_ = take(2 * kh * kw * tape1_);
    T2_ = take(2 * ns * tape2_);
    dA_ = take(kh * kw * g1_ * L);
    dS_ = take(ns * s.hidden1 * L);
    dB_ = take(ns * g2_ * L);
    dQ_ = take(4 * s.hidden2 * L);
    dG_ = take(4 * s.hidden2 * L);
    backward_size_ = at;
  }

  const GradLayout<Cell>& layout() const { return layout_; }
  int64_t groups_per_sample() const { return (s_.patches() + L - 1) / L; }
  int64_t projection_size() const { return s_.pixels() * g1_; }  // per sample
  int64_t forward_workspace_size() const { return forward_size_; }
  int64_t backward_workspace_size() const { return backward_size_; }
  int64_t grad_lanes_size() const { return layout_.total * L; }

  // RNN1's input projection of one sample's pixels [begin, end), pixel-major: P[pix][gate*h1].
  void project(const T* x_sample, int64_t begin, int64_t end, T* P) const {
    project_pixels(p_.rnn1[0], g1_, s_.channels, x_sample, s_.pixels(), begin, end, P);
  }

  // One group of one sample: P from project(), out the sample's output [C_out][out_h * out_w].
  void forward_group(const T* P, int64_t group, T* out, T* ws) const {
    const Lanes lanes = make_lanes(group);
    forward_pass(P, lanes, ws, /*record=*/false);
    for_each_output_block<const T*>(ws + Q_, ws + G_, [&](const T* block, int64_t rows, int64_t channel) {
      for (int l = 0; l < lanes.count; ++l)
        for (int64_t k = 0; k < rows; ++k) out[(channel + k) * s_.patches() + lanes.patch[l]] = block[k * L + l];
    });
  }

  // The whole backward of one sample. dx_sample is overwritten; grad (layout()) is accumulated.
  // buffers: 2 * projection_size() + grad_lanes_size() + backward_workspace_size() elements.
  void backward_sample(const T* x_sample, const T* grad_out, T* dx_sample, double* grad, T* buffers) const {
    T* P = buffers;
    T* dP = P + projection_size();
    T* grad_lanes = dP + projection_size();
    T* ws = grad_lanes + grad_lanes_size();
    project(x_sample, 0, s_.pixels(), P);
    fill(dP, projection_size(), T(0));
    fill(grad_lanes, grad_lanes_size(), T(0));
    const int64_t groups = groups_per_sample();
    for (int64_t group = 0; group < groups; ++group) {
      backward_group(P, grad_out, group, dP, grad_lanes, ws);
      // Flushing per lane sums every few groups bounds the length of the float sums.
      if ((group + 1) % kGroupsPerFlush == 0 || group + 1 == groups) flush_lanes(grad_lanes, grad);
    }
    project_pixels_backward(p_.rnn1[0], g1_, s_.channels, x_sample, s_.pixels(), dP, dx_sample,
                            grad + layout_.rnn1[0]);
  }

  // After all samples are summed: the chain rule through sigmoid(zeta), sigmoid(nu).
  void finalize(double* grad) const {
    double* g1[Cell::kNumParams];
    double* g2[Cell::kNumParams];
    for (int p = 0; p < Cell::kNumParams; ++p) g1[p] = grad + layout_.rnn1[p], g2[p] = grad + layout_.rnn2[p];
    Cell::finalize_grads(rnn1_, g1);
    Cell::finalize_grads(rnn2_, g2);
  }

 private:
  static constexpr int64_t kGroupsPerFlush = 8;

  struct Lanes {
    int count;
    int64_t patch[L], top[L], left[L];
  };

  Lanes make_lanes(int64_t group) const {
    Lanes lanes;
    const int64_t first = group * L;
    lanes.count = static_cast<int>(std::min<int64_t>(L, s_.patches() - first));
    for (int l = 0; l < L; ++l) {
      if (l < lanes.count) {
        const int64_t p = first + l, oy = p / s_.out_w(), ox = p % s_.out_w();
        lanes.patch[l] = p;
        lanes.top[l] = oy * s_.stride_h - s_.pad_h;
        lanes.left[l] = ox * s_.stride_w - s_.pad_w;
      } else {  // an idle lane reads only padding (zeros) and writes nothing
        lanes.patch[l] = -1;
        lanes.top[l] = -s_.kernel_h;
        lanes.left[l] = -s_.kernel_w;
      }
    }
    return lanes;
  }

  // Calls visit(pixel_index_or_minus_1, a_offset) for every (patch pixel, lane) of the group.
  template <class F>
  void for_each_patch_pixel(const Lanes& lanes, F&& visit) const {
    for (int64_t i = 0; i < s_.kernel_h; ++i)
      for (int64_t j = 0; j < s_.kernel_w; ++j)
        for (int l = 0; l < L; ++l) {
          const int64_t y = lanes.top[l] + i, x = lanes.left[l] + j;
          const bool inside = y >= 0 && y < s_.height && x >= 0 && x < s_.width;
          visit(inside ? y * s_.width + x : -1, (i * s_.kernel_w + j) * g1_ * L + l);
        }
  }

  void gather(const T* P, const Lanes& lanes, T* A) const {
    for_each_patch_pixel(lanes, [&](int64_t pix, int64_t a) {
      for (int64_t g = 0; g < g1_; ++g) A[a + g * L] = pix >= 0 ? P[pix * g1_ + g] : T(0);
    });
  }

  void scatter_add(const T* dA, const Lanes& lanes, T* dP) const {
    for_each_patch_pixel(lanes, [&](int64_t pix, int64_t a) {
      if (pix < 0) return;
      for (int64_t g = 0; g < g1_; ++g) dP[pix * g1_ + g] += dA[a + g * L];
    });
  }

  // visit(lane block, rows, first output channel) for each output part, in the order R, G, C.
  // q: the four RNN2 results [4][h2][L]; g: V^G [4 h2][L].
  template <class Ptr, class F>
  void for_each_output_block(Ptr q, Ptr g, F&& visit) const {
    const int64_t h2 = s_.hidden2;
    int64_t channel = 0;
    if (s_.rows) visit(q, 2 * h2, channel), channel += 2 * h2;
    if (s_.global) visit(g, 4 * h2, channel), channel += 4 * h2;
    if (s_.cols) visit(q + 2 * h2 * L, 2 * h2, channel);
  }

  // RNN2's four sequences: (first summary, direction, length, output slot in Q, tape slot).
  template <class F>
  void for_each_rnn2_sequence(F&& visit) const {
    const int64_t kh = s_.kernel_h, kw = s_.kernel_w;
    if (s_.rows) {
      visit(0, +1, kh, 0, 0);
      visit(kh - 1, -1, kh, 1, kh);
    }
    if (s_.cols) {
      visit(kh, +1, kw, 2, 2 * kh);
      visit(kh + kw - 1, -1, kw, 3, 2 * kh + kw);
    }
  }

  // Summaries RNN2 reads: rows [0, kh) for V^R, columns [kh, kh + kw) for V^C.
  int64_t rnn2_first_summary() const { return s_.rows ? 0 : s_.kernel_h; }
  int64_t rnn2_end_summary() const { return s_.cols ? s_.summaries() : s_.kernel_h; }

  static void run_sequence(const Weights& w, int64_t hidden, const T* x0, int64_t x_stride, int64_t len, T* h,
                           T* tape, int64_t tape_stride, T* scratch) {
    fill(h, hidden * L, T(0));
    for (int64_t t = 0; t < len; ++t) Cell::step(w, x0 + t * x_stride, h, tape ? tape + t * tape_stride : nullptr, scratch);
  }

  // dh: gradient of the final state (consumed). dx0: gradients of the inputs (accumulated).
  static void run_sequence_backward(const Weights& w, T* dx0, int64_t x_stride, int64_t len, T* dh, const T* tape,
                                    int64_t tape_stride, T* const* grad, T* scratch) {
    for (int64_t t = len - 1; t >= 0; --t)
      Cell::step_backward(w, tape + t * tape_stride, dh, dx0 + t * x_stride, grad, scratch);
  }

  void forward_pass(const T* P, const Lanes& lanes, T* ws, bool record) const {
    const int64_t kh = s_.kernel_h, kw = s_.kernel_w, h1L = s_.hidden1 * L, h2L = s_.hidden2 * L;
    const int64_t a_step = g1_ * L, b_step = g2_ * L;
    T *A = ws + A_, *S = ws + S_, *B = ws + B_, *Q = ws + Q_, *scratch = ws + scratch_;
    T* tape1 = record ? ws + T1_ : nullptr;
    T* tape2 = record ? ws + T2_ : nullptr;
    gather(P, lanes, A);
    // RNN1 along each row (left to right), then each column (top to bottom).
    for (int64_t i = 0; i < kh; ++i)
      run_sequence(rnn1_, s_.hidden1, A + i * kw * a_step, a_step, kw, S + i * h1L,
                   tape1 ? tape1 + i * kw * tape1_ : nullptr, tape1_, scratch);
    for (int64_t j = 0; j < kw; ++j)
      run_sequence(rnn1_, s_.hidden1, A + j * a_step, kw * a_step, kh, S + (kh + j) * h1L,
                   tape1 ? tape1 + (kh * kw + j * kh) * tape1_ : nullptr, tape1_, scratch);
    if (s_.needs_rnn2()) {
      for (int64_t k = rnn2_first_summary(); k < rnn2_end_summary(); ++k) {
        fill(B + k * b_step, b_step, T(0));
        matvec_accumulate<T, L>(p_.rnn2[0], g2_, s_.hidden1, S + k * h1L, B + k * b_step);
      }
      for_each_rnn2_sequence([&](int64_t first, int64_t dir, int64_t len, int64_t slot, int64_t tape_slot) {
        run_sequence(rnn2_, s_.hidden2, B + first * b_step, dir * b_step, len, Q + slot * h2L,
                     tape2 ? tape2 + tape_slot * tape2_ : nullptr, tape2_, scratch);
      });
    }
    if (s_.global) {
      broadcast_lanes<T, L>(p_.proj_bias, 4 * s_.hidden2, ws + G_);
      matvec_accumulate<T, L>(p_.proj_weight, 4 * s_.hidden2, s_.summaries() * s_.hidden1, S, ws + G_);
    }
  }

  void backward_group(const T* P, const T* grad_out, int64_t group, T* dP, T* grad_lanes, T* ws) const {
    const Lanes lanes = make_lanes(group);
    forward_pass(P, lanes, ws, /*record=*/true);
    const int64_t kh = s_.kernel_h, kw = s_.kernel_w, h1L = s_.hidden1 * L, h2L = s_.hidden2 * L;
    const int64_t a_step = g1_ * L, b_step = g2_ * L;
    const T *S = ws + S_, *tape1 = ws + T1_, *tape2 = ws + T2_;
    T *dA = ws + dA_, *dS = ws + dS_, *dB = ws + dB_, *scratch = ws + scratch_;
    T* grad1[Cell::kNumParams];
    T* grad2[Cell::kNumParams];
    for (int p = 0; p < Cell::kNumParams; ++p)
      grad1[p] = grad_lanes + layout_.rnn1[p] * L, grad2[p] = grad_lanes + layout_.rnn2[p] * L;

    // The output gradient, laid out like the forward's Q and G blocks; idle lanes get 0.
    fill(ws + dQ_, 4 * h2L, T(0));
    fill(ws + dG_, 4 * h2L, T(0));
    for_each_output_block<T*>(ws + dQ_, ws + dG_, [&](T* dblock, int64_t rows, int64_t channel) {
      for (int l = 0; l < lanes.count; ++l)
        for (int64_t k = 0; k < rows; ++k) dblock[k * L + l] = grad_out[(channel + k) * s_.patches() + lanes.patch[l]];
    });

    fill(dS, s_.summaries() * h1L, T(0));
    if (s_.global) {
      const T* dG = ws + dG_;
      const int64_t in = s_.summaries() * s_.hidden1;
      outer_accumulate<T, L>(dG, 4 * s_.hidden2, S, in, grad_lanes + layout_.proj_weight * L);
      add_lanes<T, L>(dG, 4 * s_.hidden2, grad_lanes + layout_.proj_bias * L);
      matvec_transposed_accumulate<T, L>(p_.proj_weight, 4 * s_.hidden2, in, dG, dS);
    }
    if (s_.needs_rnn2()) {
      fill(dB, s_.summaries() * b_step, T(0));
      T* dQ = ws + dQ_;
      for_each_rnn2_sequence([&](int64_t first, int64_t dir, int64_t len, int64_t slot, int64_t tape_slot) {
        run_sequence_backward(rnn2_, dB + first * b_step, dir * b_step, len, dQ + slot * h2L,
                              tape2 + tape_slot * tape2_, tape2_, grad2, scratch);
      });
      for (int64_t k = rnn2_first_summary(); k < rnn2_end_summary(); ++k) {
        matvec_transposed_accumulate<T, L>(p_.rnn2[0], g2_, s_.hidden1, dB + k * b_step, dS + k * h1L);
        outer_accumulate<T, L>(dB + k * b_step, g2_, S + k * h1L, s_.hidden1, grad2[0]);
      }
    }
    fill(dA, kh * kw * a_step, T(0));
    for (int64_t i = 0; i < kh; ++i)
      run_sequence_backward(rnn1_, dA + i * kw * a_step, a_step, kw, dS + i * h1L, tape1 + i * kw * tape1_, tape1_,
                            grad1, scratch);
    for (int64_t j = 0; j < kw; ++j)
      run_sequence_backward(rnn1_, dA + j * a_step, kw * a_step, kh, dS + (kh + j) * h1L,
                            tape1 + (kh * kw + j * kh) * tape1_, tape1_, grad1, scratch);
    scatter_add(dA, lanes, dP);
  }

  void flush_lanes(T* grad_lanes, double* grad) const {
    for (int64_t i = 0; i < layout_.total; ++i) {
      double sum = 0;
      for (int l = 0; l < L; ++l) sum += grad_lanes[i * L + l];
      grad[i] += sum;
    }
    fill(grad_lanes, grad_lanes_size(), T(0));
  }

  SweepShape s_;
  SweepParams<T> p_;
  GradLayout<Cell> layout_;
  Weights rnn1_, rnn2_;
  int64_t g1_, g2_, tape1_, tape2_;
  // Workspace offsets (elements): forward blocks, then the backward-only ones.
  int64_t A_, S_, B_, Q_, G_, scratch_, forward_size_;
  int64_t T1_, T2_, dA_, dS_, dB_, dQ_, dG_, backward_size_;
};

}  // namespace rnnpool
