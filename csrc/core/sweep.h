// The patch-wise RNNPool / ReX sweep (docs/spec.md sections 1-3), torch-free.
//
// A sample is processed in three phases, each shared as widely as the math allows:
//   1. project:   RNN1's input projection W x of every pixel, once (a pixel is read by up to
//                 (kh/sh)(kw/sw) patches, and by both their row and column passes);
//   2. summarize: RNN1 over every distinct row and column sequence. A row summary depends only on
//                 its image row and the patch column it starts in, so vertically overlapping
//                 patches share it (and column summaries are shared across horizontally
//                 overlapping patches): with patch 6 / stride 4 this is 2/3 of the naive work;
//   3. pool:      per patch, RNN2 both ways over the gathered summaries and ReX's projection.
// Phases 2 and 3 work in "groups" of L sequences or patches swept together, one per lane
// (lanes.h), so every step is a small dense kernel over L lanes with the weights in cache.
//
// The op saves only its inputs: backward_sample recomputes a sample's forward, keeping RNN1's tape
// (the gate activations of every step) for the sample and recomputing RNN2's small tape per patch
// group (see rnn1_tape_size). Saving the tapes of the whole batch in the forward would cost 3-5 x
// hidden values per step per sample of memory between the passes, which is what RNNPool exists to
// avoid. Parameter gradients accumulate per lane and are summed over lanes and then over samples in
// a fixed order, so results do not depend on the thread count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "cells.h"
#include "kernel.h"
#include "lanes.h"
#include "projection.h"
#include "types.h"

RNNPOOL_BEGIN_ISA_NAMESPACE

template <class Cell>
GradOffsets grad_offsets(const SweepShape& s) {
  static_assert(Cell::kNumParams <= GradOffsets::kMaxCellParams, "GradOffsets too small");
  GradOffsets o;
  o.num_cell_params = Cell::kNumParams;
  int64_t numel1[Cell::kNumParams], numel2[Cell::kNumParams];
  Cell::param_numels(s.channels, s.hidden1, numel1);
  Cell::param_numels(s.hidden1, s.hidden2, numel2);
  int64_t at = 0;
  for (int p = 0; p < Cell::kNumParams; ++p) o.rnn1[p] = at, at += numel1[p];
  for (int p = 0; p < Cell::kNumParams; ++p) o.rnn2[p] = at, at += numel2[p];
  o.proj_weight = at;
  at += s.global ? 4 * s.hidden2 * s.summaries() * s.hidden1 : 0;
  o.proj_bias = at;
  at += s.global ? 4 * s.hidden2 : 0;
  o.total = at;
  return o;
}

template <class Cell, class T, int L>
class PatchSweep final : public SweepKernel<T> {
 public:
  using Weights = typename Cell::Weights;

  PatchSweep(const SweepShape& s, const SweepParams<T>& p)
      : s_(s),
        p_(p),
        layout_(grad_offsets<Cell>(s)),
        rnn1_(Cell::bind(p.rnn1, s.hidden1, p.gate, p.update)),
        rnn2_(Cell::bind(p.rnn2, s.hidden2, p.gate, p.update)),
        g1_(Cell::kGates * s.hidden1),
        g2_(Cell::kGates * s.hidden2),
        tape1_(Cell::tape_size(s.hidden1)),
        tape2_(Cell::tape_size(s.hidden2)),
        covered_rows_(covered(s.out_h(), s.stride_h, s.kernel_h)),
        covered_cols_(covered(s.out_w(), s.stride_w, s.kernel_w)),
        padded_h_((s.out_h() - 1) * s.stride_h + s.kernel_h),
        padded_w_((s.out_w() - 1) * s.stride_w + s.kernel_w),
        workspace_(carve_workspace()) {}

  const GradOffsets& layout() const override { return layout_; }
  int64_t projection_size() const override { return s_.pixels() * g1_; }  // per sample
  // Row summaries [out_w][padded_h][h1], then column summaries [out_h][padded_w][h1] (per sample).
  int64_t summaries_size() const override { return (s_.out_w() * padded_h_ + s_.out_h() * padded_w_) * s_.hidden1; }
  int64_t sequence_groups() const override { return row_groups() + col_groups(); }
  int64_t patch_groups() const override { return (s_.patches() + L - 1) / L; }
  int64_t workspace_size() const override { return workspace_.forward_size; }
  int64_t grad_lanes_size() const { return layout_.total * L; }
  int64_t backward_buffer_size() const override {
    return 3 * projection_size() + 2 * summaries_size() + sequence_groups() * rnn1_tape_size() +
           grad_lanes_size() + workspace_.backward_size;
  }

  // Phase 1 for pixels [begin, end) of one sample [C][H][W]: P[pix][gate * h1].
  void project(const T* x_sample, int64_t begin, int64_t end, T* P) const override {
    project_pixels(p_.rnn1[0], g1_, s_.channels, x_sample, s_.pixels(), begin, end, P);
  }

  // Phase 2 for one group of sequences of a sample: writes their summaries.
  void summarize(const T* P, int64_t group, T* summaries, T* ws) const override {
    const SequenceLanes lanes = sequence_lanes(group);
    run_rnn1(P, lanes, ws, /*tape=*/nullptr);
    store_summaries(lanes, ws + workspace_.rnn1_state, summaries, ws + workspace_.zero_row);
  }

  // Phase 3 for one group of patches of a sample: writes out [C_out][out_h * out_w].
  void pool(const T* summaries, int64_t group, T* out, T* ws) const override {
    const PatchLanes lanes = patch_lanes(group);
    run_pool(summaries, lanes, ws, /*record=*/false);
    for_each_output_block<const T*>(ws + workspace_.rnn2_states, ws + workspace_.projection, [&](const T* block, int64_t rows, int64_t channel) {
      for (int64_t k = 0; k < rows; ++k) copy(block + k * L, lanes.count, out + (channel + k) * s_.patches() + lanes.first);
    });
  }

  // The whole backward of one sample. dx_sample is overwritten; grad (see layout()) is accumulated.
  // buffers: backward_buffer_size() elements.
  void backward_sample(const T* x_sample, const T* grad_out, T* dx_sample, double* grad, T* buffers) const override {
    T* P = buffers;
    T* dP = P + projection_size();
    T* summaries = dP + projection_size();
    T* d_summaries = summaries + summaries_size();
    T* rnn1_tapes = d_summaries + summaries_size();
    T* grad_lanes = rnn1_tapes + sequence_groups() * rnn1_tape_size();
    T* ws = grad_lanes + grad_lanes_size();
    T* dP_transposed = ws + workspace_.backward_size;
    project(x_sample, 0, s_.pixels(), P);
    for (int64_t g = 0; g < sequence_groups(); ++g) {
      const SequenceLanes lanes = sequence_lanes(g);
      run_rnn1(P, lanes, ws, rnn1_tapes + g * rnn1_tape_size());
      store_summaries(lanes, ws + workspace_.rnn1_state, summaries, ws + workspace_.zero_row);
    }
    fill(d_summaries, summaries_size(), T(0));
    fill(grad_lanes, grad_lanes_size(), T(0));
    // Per-lane sums are flushed every few groups (bounding the length of the float sums), and
    // only the parameters the phase touches: RNN2 and f_L in the pool phase, RNN1's recurrent
    // ones in the summarize phase (W_input's gradient is taken per pixel, below).
    const int64_t pool_params = layout_.rnn2[0], rnn1_params = layout_.rnn1[1];
    for (int64_t g = 0; g < patch_groups(); ++g) {
      pool_backward(summaries, grad_out, g, d_summaries, grad_lanes, ws);
      if ((g + 1) % kGroupsPerFlush == 0 || g + 1 == patch_groups())
        flush_lanes(grad_lanes, pool_params, layout_.total, grad);
    }
    fill(dP, projection_size(), T(0));
    for (int64_t g = 0; g < sequence_groups(); ++g) {
      summarize_backward(rnn1_tapes + g * rnn1_tape_size(), d_summaries, g, dP, grad_lanes, ws);
      if ((g + 1) % kGroupsPerFlush == 0 || g + 1 == sequence_groups())
        flush_lanes(grad_lanes, rnn1_params, pool_params, grad);
    }
    project_pixels_backward(p_.rnn1[0], g1_, s_.channels, x_sample, s_.pixels(), dP, dx_sample,
                            grad + layout_.rnn1[0], dP_transposed);
  }

  // After all samples are summed: the chain rule through sigmoid(zeta), sigmoid(nu).
  void finalize(double* grad) const override {
    double* g1[Cell::kNumParams];
    double* g2[Cell::kNumParams];
    for (int p = 0; p < Cell::kNumParams; ++p) g1[p] = grad + layout_.rnn1[p], g2[p] = grad + layout_.rnn2[p];
    Cell::finalize_grads(rnn1_, g1);
    Cell::finalize_grads(rnn2_, g2);
  }

 private:
  // Where each buffer of a worker's workspace `ws` lies, as offsets in elements of T (a span is
  // `ws + offset`): the buffers of the forward phases, then those only the backward uses. L lanes
  // (one sequence or patch each) are interleaved in every buffer ([...][L]).
  struct Workspace {
    // summarize: one group of RNN1 sequences
    int64_t rnn1_inputs;  // [kernel_h or kernel_w steps][g1][L] projected pixels of each step
    int64_t zero_row;     // [max(g1, h1)] zeros read for a padding pixel or idle lane, or a sink written by one
    int64_t rnn1_state;   // [h1][L] the state, then the final states (the summaries)
    // pool: one group of patches
    int64_t summaries;    // [kh + kw][h1][L] the patches' row and column summaries
    int64_t rnn2_inputs;  // [kh + kw][g2][L] RNN2's input projection of each summary
    int64_t rnn2_states;  // [4][h2][L] RNN2's final states: rows forward, backward, columns forward, backward
    int64_t projection;   // [4 h2][L] ReX's V^G
    int64_t scratch;      // the cell's step scratch
    int64_t forward_size;
    // backward only
    int64_t d_rnn1_inputs;  // [kernel_h or kernel_w steps][g1][L]
    int64_t rnn2_tape;      // [2 (kh + kw)][RNN2 tape] one tape per RNN2 pass and step
    int64_t d_summaries;    // [kh + kw][h1][L]
    int64_t d_rnn2_inputs;  // [kh + kw][g2][L]
    int64_t d_rnn2_states;  // [4][h2][L]
    int64_t d_projection;   // [4 h2][L]
    int64_t d_recurrent;    // [steps][recurrent rows][L] each step's gradient of the recurrent product
    int64_t backward_size;
  };

  // The spans of Workspace, one after the other.
  Workspace carve_workspace() const {
    const int64_t longest = std::max(s_.kernel_h, s_.kernel_w), ns = s_.summaries();
    int64_t at = 0;
    auto take = [&at](int64_t n) { const int64_t o = at; at += n; return o; };
    Workspace w;
    w.rnn1_inputs = take(longest * g1_ * L);
    w.zero_row = take(std::max(g1_, s_.hidden1));
    w.rnn1_state = take(s_.hidden1 * L);
    w.summaries = take(ns * s_.hidden1 * L);
    w.rnn2_inputs = take(ns * g2_ * L);
    w.rnn2_states = take(4 * s_.hidden2 * L);
    w.projection = take(4 * s_.hidden2 * L);
    w.scratch = take(std::max(Cell::scratch_size(s_.hidden1), Cell::scratch_size(s_.hidden2)));
    w.forward_size = at;
    w.d_rnn1_inputs = take(longest * g1_ * L);
    w.rnn2_tape = take(2 * ns * tape2_);
    w.d_summaries = take(ns * s_.hidden1 * L);
    w.d_rnn2_inputs = take(ns * g2_ * L);
    w.d_rnn2_states = take(4 * s_.hidden2 * L);
    w.d_projection = take(4 * s_.hidden2 * L);
    w.d_recurrent = take(longest * std::max(g1_, g2_) * L);
    w.backward_size = at;
    return w;
  }

  static constexpr int64_t kGroupsPerFlush = 64;

  // Backward keeps RNN1's tape for every sequence group of the sample (3-5 x h1 values per step:
  // 7-11 MB per thread at the MobileNetV2 stem shape) rather than recompute RNN1, the costliest
  // phase; RNN2's tape is small and is recomputed per patch group instead.
  int64_t rnn1_tape_size() const { return std::max(s_.kernel_h, s_.kernel_w) * tape1_; }

  // Padded rows (or columns) that some patch covers; with stride > kernel the gaps are skipped.
  static std::vector<int64_t> covered(int64_t out, int64_t stride, int64_t kernel) {
    std::vector<int64_t> v;
    for (int64_t y = 0; y < (out - 1) * stride + kernel; ++y)
      if (y % stride < kernel) v.push_back(y);
    return v;
  }

  int64_t row_sequences() const { return s_.out_w() * static_cast<int64_t>(covered_rows_.size()); }
  int64_t col_sequences() const { return s_.out_h() * static_cast<int64_t>(covered_cols_.size()); }
  int64_t row_groups() const { return (row_sequences() + L - 1) / L; }
  int64_t col_groups() const { return (col_sequences() + L - 1) / L; }
  int64_t row_summary(int64_t out_x, int64_t padded_y) const { return out_x * padded_h_ + padded_y; }
  int64_t col_summary(int64_t out_y, int64_t padded_x) const {
    return s_.out_w() * padded_h_ + out_y * padded_w_ + padded_x;
  }

  // L row sequences (or L column sequences): their first pixel (image coordinates), the step
  // between pixels, and where their summary goes. Idle lanes read only padding and write nothing.
  struct SequenceLanes {
    int count;
    int64_t length, step_y, step_x;
    int64_t y0[L], x0[L], summary[L];
  };

  SequenceLanes sequence_lanes(int64_t group) const {
    SequenceLanes lanes;
    const bool rows = group < row_groups();
    const int64_t first = (rows ? group : group - row_groups()) * L;
    const int64_t total = rows ? row_sequences() : col_sequences();
    lanes.count = static_cast<int>(std::min<int64_t>(L, total - first));
    lanes.length = rows ? s_.kernel_w : s_.kernel_h;
    lanes.step_y = rows ? 0 : 1;
    lanes.step_x = rows ? 1 : 0;
    for (int l = 0; l < L; ++l) {
      lanes.y0[l] = -s_.kernel_h - 1, lanes.x0[l] = -s_.kernel_w - 1, lanes.summary[l] = -1;
      if (l >= lanes.count) continue;
      const int64_t q = first + l;
      if (rows) {
        const int64_t ox = q / covered_rows_.size(), y = covered_rows_[q % covered_rows_.size()];
        lanes.y0[l] = y - s_.pad_h, lanes.x0[l] = ox * s_.stride_w - s_.pad_w;
        lanes.summary[l] = row_summary(ox, y);
      } else {
        const int64_t oy = q / covered_cols_.size(), x = covered_cols_[q % covered_cols_.size()];
        lanes.y0[l] = oy * s_.stride_h - s_.pad_h, lanes.x0[l] = x - s_.pad_w;
        lanes.summary[l] = col_summary(oy, x);
      }
    }
    return lanes;
  }

  // L consecutive patches (in output order, from `first`); the last group may have fewer.
  struct PatchLanes {
    int count;
    int64_t first, out_y[L], out_x[L];
  };

  PatchLanes patch_lanes(int64_t group) const {
    PatchLanes lanes;
    const int64_t first = group * L;
    lanes.first = first;
    lanes.count = static_cast<int>(std::min<int64_t>(L, s_.patches() - first));
    for (int l = 0; l < lanes.count; ++l) {
      lanes.out_y[l] = (first + l) / s_.out_w();
      lanes.out_x[l] = (first + l) % s_.out_w();
    }
    return lanes;
  }

  // The projected row (g1 values) each lane reads at step t; padding lanes read `zeros`.
  template <class Ptr>
  void step_rows(const SequenceLanes& lanes, int64_t t, Ptr P, Ptr zeros, Ptr* rows) const {
    for (int l = 0; l < L; ++l) {
      const int64_t y = lanes.y0[l] + t * lanes.step_y, x = lanes.x0[l] + t * lanes.step_x;
      const bool inside = y >= 0 && y < s_.height && x >= 0 && x < s_.width;
      rows[l] = inside ? P + (y * s_.width + x) * g1_ : zeros;
    }
  }

  // A[t][g][l] = P[pixel of lane l at step t][g] (lanes.h moves the values by in-register
  // transposes); padding lanes read a row of zeros.
  void gather_inputs(const T* P, const SequenceLanes& lanes, T* A, T* zeros) const {
    fill(zeros, g1_, T(0));
    const T* rows[L];
    for (int64_t t = 0; t < lanes.length; ++t) {
      step_rows<const T*>(lanes, t, P, zeros, rows);
      rows_to_lanes<T, L>(rows, g1_, A + t * g1_ * L);
    }
  }

  // dP[pixel of lane l at step t][g] += dA[t][g][l]: the transpose of gather_inputs. Lanes of one
  // step never share a pixel; padding lanes add into `sink`, so all lanes but those are distinct.
  void scatter_input_grads(const T* dA, const SequenceLanes& lanes, T* dP, T* sink) const {
    T* rows[L];
    for (int64_t t = 0; t < lanes.length; ++t) {
      step_rows<T*>(lanes, t, dP, sink, rows);
      lanes_to_rows<true, T, L>(dA + t * g1_ * L, g1_, rows);
    }
  }

  // The summary each patch lane reads in slot k (its row summaries, then its column summaries);
  // idle lanes get `idle`.
  template <class Ptr>
  void slot_rows(const PatchLanes& lanes, int64_t k, Ptr summaries, Ptr idle, Ptr* rows) const {
    for (int l = 0; l < L; ++l) {
      if (l >= lanes.count) {
        rows[l] = idle;
        continue;
      }
      const int64_t oy = lanes.out_y[l], ox = lanes.out_x[l], kh = s_.kernel_h;
      const int64_t index = k < kh ? row_summary(ox, oy * s_.stride_h + k) : col_summary(oy, ox * s_.stride_w + k - kh);
      rows[l] = summaries + index * s_.hidden1;
    }
  }

  // The summary each sequence lane produces; idle lanes get `idle`.
  template <class Ptr>
  void summary_rows(const SequenceLanes& lanes, Ptr summaries, Ptr idle, Ptr* rows) const {
    for (int l = 0; l < L; ++l) rows[l] = l < lanes.count ? summaries + lanes.summary[l] * s_.hidden1 : idle;
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
    for (int64_t t = 0; t < len; ++t)
      Cell::step(w, x0 + t * x_stride, h, tape ? tape + t * tape_stride : nullptr, scratch);
  }

  // dh: gradient of the final state (consumed). dx0: gradients of the inputs (accumulated).
  // d_recurrent: room for every step's gradient of the recurrent product ([len][rows][L]).
  static void run_sequence_backward(const Weights& w, int64_t hidden, T* dx0, int64_t x_stride, int64_t len, T* dh,
                                    const T* tape, int64_t tape_stride, T* const* grad, T* d_recurrent, T* scratch) {
    const int64_t rows = Cell::kRecurrentRows * hidden;
    for (int64_t t = len - 1; t >= 0; --t)
      Cell::step_backward(w, tape + t * tape_stride, dh, dx0 + t * x_stride, grad, d_recurrent + t * rows * L,
                          scratch);
    // The recurrent weight's gradient over the whole sequence; h_prev heads each step's tape.
    outer_accumulate<T, L>(d_recurrent, rows * L, rows, tape, tape_stride, hidden, len,
                           grad[Cell::kRecurrentWeight]);
  }

  void store_summaries(const SequenceLanes& lanes, const T* h, T* summaries, T* sink) const {
    T* rows[L];
    summary_rows<T*>(lanes, summaries, sink, rows);
    lanes_to_rows<false, T, L>(h, s_.hidden1, rows);
  }


  // RNN1 over one group of sequences: final states in the rnn1_state span; records a tape if one is given.
  void run_rnn1(const T* P, const SequenceLanes& lanes, T* ws, T* tape) const {
    gather_inputs(P, lanes, ws + workspace_.rnn1_inputs, ws + workspace_.zero_row);
    run_sequence(rnn1_, s_.hidden1, ws + workspace_.rnn1_inputs, g1_ * L, lanes.length, ws + workspace_.rnn1_state, tape, tape1_, ws + workspace_.scratch);
  }

  // RNN2 and the projection over one group of patches: results in the rnn2_states and projection spans.
  void run_pool(const T* summaries, const PatchLanes& lanes, T* ws, bool record) const {
    const int64_t h1L = s_.hidden1 * L, h2L = s_.hidden2 * L, b_step = g2_ * L;
    T *S = ws + workspace_.summaries, *B = ws + workspace_.rnn2_inputs, *Q = ws + workspace_.rnn2_states, *scratch = ws + workspace_.scratch;
    T* tape2 = record ? ws + workspace_.rnn2_tape : nullptr;
    T* zeros = ws + workspace_.zero_row;
    fill(zeros, s_.hidden1, T(0));
    const T* rows[L];
    for (int64_t k = 0; k < s_.summaries(); ++k) {
      slot_rows<const T*>(lanes, k, summaries, zeros, rows);
      rows_to_lanes<T, L>(rows, s_.hidden1, S + k * h1L);
    }
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
      add_bias_lanes<T, L>(nullptr, p_.proj_bias, 4 * s_.hidden2, ws + workspace_.projection);
      matvec_accumulate<T, L>(p_.proj_weight, 4 * s_.hidden2, s_.summaries() * s_.hidden1, S, ws + workspace_.projection);
    }
  }

  // Pointers to one cell's per-lane gradient accumulators, in parameter order.
  void lane_grads(T* grad_lanes, const int64_t* offsets, T** out) const {
    for (int p = 0; p < Cell::kNumParams; ++p) out[p] = grad_lanes + offsets[p] * L;
  }

  // Backward of phase 3 for one group of patches: accumulates d_summaries and parameter gradients.
  void pool_backward(const T* summaries, const T* grad_out, int64_t group, T* d_summaries, T* grad_lanes,
                     T* ws) const {
    const PatchLanes lanes = patch_lanes(group);
    run_pool(summaries, lanes, ws, /*record=*/true);
    const int64_t h1L = s_.hidden1 * L, h2L = s_.hidden2 * L, b_step = g2_ * L;
    const T *S = ws + workspace_.summaries, *tape2 = ws + workspace_.rnn2_tape;
    T *dS = ws + workspace_.d_summaries, *dB = ws + workspace_.d_rnn2_inputs, *dQ = ws + workspace_.d_rnn2_states, *dG = ws + workspace_.d_projection, *scratch = ws + workspace_.scratch;
    T* grad2[Cell::kNumParams];
    lane_grads(grad_lanes, layout_.rnn2, grad2);

    // The output gradient, laid out like the forward's Q and G blocks; idle lanes get 0.
    fill(dQ, 4 * h2L, T(0));
    fill(dG, 4 * h2L, T(0));
    for_each_output_block<T*>(dQ, dG, [&](T* dblock, int64_t rows, int64_t channel) {
      for (int64_t k = 0; k < rows; ++k) copy(grad_out + (channel + k) * s_.patches() + lanes.first, lanes.count, dblock + k * L);
    });
    fill(dS, s_.summaries() * h1L, T(0));
    if (s_.global) {
      const int64_t in = s_.summaries() * s_.hidden1;
      outer_accumulate<T, L>(dG, 0, 4 * s_.hidden2, S, 0, in, 1, grad_lanes + layout_.proj_weight * L);
      add_lanes<T, L>(dG, 4 * s_.hidden2, grad_lanes + layout_.proj_bias * L);
      matvec_transposed_accumulate<T, L>(p_.proj_weight, 4 * s_.hidden2, in, dG, dS);
    }
    if (s_.needs_rnn2()) {
      fill(dB, s_.summaries() * b_step, T(0));
      for_each_rnn2_sequence([&](int64_t first, int64_t dir, int64_t len, int64_t slot, int64_t tape_slot) {
        run_sequence_backward(rnn2_, s_.hidden2, dB + first * b_step, dir * b_step, len, dQ + slot * h2L,
                              tape2 + tape_slot * tape2_, tape2_, grad2, ws + workspace_.d_recurrent, scratch);
      });
      const int64_t first = rnn2_first_summary(), count = rnn2_end_summary() - first;
      for (int64_t k = first; k < first + count; ++k)
        matvec_transposed_accumulate<T, L>(p_.rnn2[0], g2_, s_.hidden1, dB + k * b_step, dS + k * h1L);
      outer_accumulate<T, L>(dB + first * b_step, b_step, g2_, S + first * h1L, h1L, s_.hidden1, count, grad2[0]);
    }
    T* rows[L];
    for (int64_t k = 0; k < s_.summaries(); ++k) {
      slot_rows<T*>(lanes, k, d_summaries, ws + workspace_.zero_row, rows);
      lanes_to_rows<true, T, L>(dS + k * h1L, s_.hidden1, rows);
    }
  }

  // Backward of phase 2 for one group of sequences, from its tape: accumulates dP and parameter
  // gradients.
  void summarize_backward(const T* tape, const T* d_summaries, int64_t group, T* dP, T* grad_lanes, T* ws) const {
    const SequenceLanes lanes = sequence_lanes(group);
    T* dh = ws + workspace_.rnn1_state;
    T* dA = ws + workspace_.d_rnn1_inputs;
    T* grad1[Cell::kNumParams];
    lane_grads(grad_lanes, layout_.rnn1, grad1);
    T* zeros = ws + workspace_.zero_row;
    fill(zeros, s_.hidden1, T(0));
    const T* rows[L];
    summary_rows<const T*>(lanes, d_summaries, zeros, rows);
    rows_to_lanes<T, L>(rows, s_.hidden1, dh);
    fill(dA, lanes.length * g1_ * L, T(0));
    run_sequence_backward(rnn1_, s_.hidden1, dA, g1_ * L, lanes.length, dh, tape, tape1_, grad1, ws + workspace_.d_recurrent,
                          ws + workspace_.scratch);
    scatter_input_grads(dA, lanes, dP, ws + workspace_.zero_row);
  }

  // grad[i] += the sum over lanes of grad_lanes[i], for i in [begin, end); clears those lanes.
  // Each sum runs over the lanes in order, in double; kSums parameters at a time interleave their
  // independent sums (a chain of dependent double adds per parameter would be latency-bound, and
  // this runs once per sample and phase, which dominates when a sample has few patches).
  void flush_lanes(T* grad_lanes, int64_t begin, int64_t end, double* grad) const {
    constexpr int kSums = 8;
    int64_t i = begin;
    for (; i + kSums <= end; i += kSums) {
      double sum[kSums] = {};
      for (int l = 0; l < L; ++l)
        for (int k = 0; k < kSums; ++k) sum[k] += grad_lanes[(i + k) * L + l];
      for (int k = 0; k < kSums; ++k) grad[i + k] += sum[k];
    }
    for (; i < end; ++i) {
      double sum = 0;
      for (int l = 0; l < L; ++l) sum += grad_lanes[i * L + l];
      grad[i] += sum;
    }
    fill(grad_lanes + begin * L, (end - begin) * L, T(0));
  }

  SweepShape s_;
  SweepParams<T> p_;
  GradOffsets layout_;
  Weights rnn1_, rnn2_;
  int64_t g1_, g2_, tape1_, tape2_;
  std::vector<int64_t> covered_rows_, covered_cols_;  // padded coordinates
  int64_t padded_h_, padded_w_;                       // extent the patches cover, padding included
  Workspace workspace_;
};

// Lanes per group: 16 float (one AVX-512, two AVX or four SSE/NEON registers per row), 8 double.
template <class T>
constexpr int kLanes = sizeof(T) == 4 ? 16 : 8;

template <class T>
std::unique_ptr<SweepKernel<T>> make_sweep_kernel(CellKind cell, const SweepShape& shape,
                                                  const SweepParams<T>& params) {
  constexpr int L = kLanes<T>;
  if (cell == CellKind::GRU) return std::make_unique<PatchSweep<GRU<T, L>, T, L>>(shape, params);
  return std::make_unique<PatchSweep<FastGRNN<T, L>, T, L>>(shape, params);
}

RNNPOOL_END_ISA_NAMESPACE
