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
// (lanes.h), so every step is a small dense kernel over L lanes with the weights in cache. Both
// passes take a chunk of samples at a time, and the groups run over the whole chunk (a sample with
// one patch does not leave L - 1 lanes idle); every phase is parallel over its groups or pixels,
// so a single sample is spread over all threads too.
//
// The op saves only its inputs: the backward recomputes the chunk's forward, keeping RNN1's tape
// (the gate activations of every step) and recomputing RNN2's small tape per patch group (see
// rnn1_tape_size). Saving the tapes of the whole batch in the forward would cost 3-5 x hidden
// values per step per sample of memory between the passes, which is what RNNPool exists to avoid.
// No task of the backward adds into memory another task writes: each patch group leaves the
// gradients of the summaries it read in its own slot and each sequence group those of its inputs,
// and a gather phase sums them per summary or pixel in a fixed order; parameter gradients are summed
// per lane, then per unit of a fixed number of groups into the unit's own slot, then over the units
// in order. So no result depends on the thread count or the schedule.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <numeric>
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
        recurrent_plain_(s.hidden1 % Vec<T>::kWidth == 0),
        recurrent_plain_end_(recurrent_plain_ ? layout_.rnn1[2] : layout_.rnn1[1]),
        rnn1_(Cell::bind(p.rnn1, s.hidden1, p.gate, p.update)),
        rnn2_(Cell::bind(p.rnn2, s.hidden2, p.gate, p.update)),
        g1_(Cell::kGates * s.hidden1),
        g2_(Cell::kGates * s.hidden2),
        tape1_(Cell::tape_size(s.hidden1)),
        tape2_(Cell::tape_size(s.hidden2)),
        covered_rows_(covered(s.out_h(), s.stride_h, s.kernel_h)),
        covered_cols_(covered(s.out_w(), s.stride_w, s.kernel_w)),
        covered_row_index_(positions(covered_rows_, (s.out_h() - 1) * s.stride_h + s.kernel_h)),
        covered_col_index_(positions(covered_cols_, (s.out_w() - 1) * s.stride_w + s.kernel_w)),
        row_windows_(windows(s.out_h(), s.stride_h, s.kernel_h, (s.out_h() - 1) * s.stride_h + s.kernel_h)),
        col_windows_(windows(s.out_w(), s.stride_w, s.kernel_w, (s.out_w() - 1) * s.stride_w + s.kernel_w)),
        padded_h_((s.out_h() - 1) * s.stride_h + s.kernel_h),
        padded_w_((s.out_w() - 1) * s.stride_w + s.kernel_w),
        out_h_(s.out_h()),
        out_w_(s.out_w()),
        patches_(s.patches()),
        summaries_per_sample_(out_w_ * padded_h_ + out_h_ * padded_w_),
        block_samples_(std::max<int64_t>(1, 8 * L / std::min(row_sequences(), col_sequences()))),
        workspace_(carve_workspace()) {}

  const GradOffsets& layout() const override { return layout_; }

  // P [samples][pixels][g1], then the summaries [samples][summaries_per_sample()][h1].
  int64_t forward_buffer_size(int64_t samples) const override {
    return samples * (projection_size() + summaries_size());
  }

  // P, the summaries, the tapes of RNN1, each patch group's summary gradients, the gathered summary
  // gradients, and each sequence group's input gradients.
  int64_t backward_buffer_size(int64_t samples) const override {
    return samples * (projection_size() + 2 * summaries_size()) + sequence_groups(samples) * rnn1_tape_size() +
           patch_groups(samples) * group_summary_grads_size() + sequence_groups(samples) * group_input_grads_size();
  }

  int64_t lane_filling_samples() const override { return L / std::gcd<int64_t>(patches_, L); }

  void forward(const T* x, int64_t samples, T* out, T* buffer, const ParallelFor& parallel) const override {
    T* P = buffer;
    T* summaries = P + samples * projection_size();
    project_chunk(x, samples, P, parallel);
    for_each_task(parallel, sequence_groups(samples), workspace_.forward_size, [&](int64_t group, T* ws) {
      const SequenceLanes lanes = sequence_lanes(samples, group);
      run_rnn1(P, lanes, ws, /*tape=*/nullptr);
      store_summaries(lanes, ws + workspace_.rnn1_state, summaries, ws + workspace_.zero_row);
    });
    for_each_task(parallel, patch_groups(samples), workspace_.forward_size, [&](int64_t group, T* ws) {
      const PatchLanes lanes = patch_lanes(samples, group);
      run_pool(summaries, lanes, ws, /*record=*/false);
      for_each_output_block<const T*>(ws + workspace_.rnn2_states, ws + workspace_.projection, [&](const T* block, int64_t rows, int64_t channel) {
        for_each_sample_run(lanes, [&](int l0, int l1) {
          for (int64_t k = 0; k < rows; ++k) copy(block + k * L + l0, l1 - l0, out + output_offset(lanes, l0, channel + k));
        });
      });
    });
  }

  void backward(const T* x, const T* grad_out, int64_t samples, T* dx, double* grad, T* buffer,
                const ParallelFor& parallel) const override {
    T* P = buffer;
    T* summaries = P + samples * projection_size();
    T* rnn1_tapes = summaries + samples * summaries_size();
    T* group_dS = rnn1_tapes + sequence_groups(samples) * rnn1_tape_size();
    T* d_summaries = group_dS + patch_groups(samples) * group_summary_grads_size();
    T* group_dA = d_summaries + samples * summaries_size();

    // The forward again, keeping RNN1's tapes.
    project_chunk(x, samples, P, parallel);
    for_each_task(parallel, sequence_groups(samples), workspace_.forward_size, [&](int64_t group, T* ws) {
      const SequenceLanes lanes = sequence_lanes(samples, group);
      run_rnn1(P, lanes, ws, rnn1_tapes + group * rnn1_tape_size());
      store_summaries(lanes, ws + workspace_.rnn1_state, summaries, ws + workspace_.zero_row);
    });
    // Phase 3 backward: RNN2 and f_L's gradients, and each group's summary gradients.
    const int64_t rnn2_params = layout_.rnn2[0], rnn1_params = layout_.rnn1[1];
    const int64_t plain_begin = s_.global ? layout_.proj_weight : layout_.total;  // f_L's weight, not per lane
    const int64_t plain_end = s_.global ? layout_.proj_bias : layout_.total;
    const std::vector<double> pool_slots = per_unit_gradients(
        parallel, patch_groups(samples), rnn2_params, layout_.total, plain_begin, plain_end,
        [&](int64_t group, T* grad_lanes, T* grad_plain, T* ws) {
          pool_backward(summaries, grad_out, samples, group, group_dS + group * group_summary_grads_size(), grad_lanes,
                        grad_plain, ws);
        });
    gather_summary_grads(group_dS, samples, d_summaries, parallel);
    // Phase 2 backward: RNN1's recurrent gradients, and each group's input gradients.
    const std::vector<double> sequence_slots = per_unit_gradients(parallel, sequence_groups(samples), rnn1_params, rnn2_params,
                                                                  rnn1_params, recurrent_plain_end_,
                                                                  [&](int64_t group, T* grad_lanes, T* grad_plain, T* ws) {
      summarize_backward(rnn1_tapes + group * rnn1_tape_size(), d_summaries, samples, group,
                         group_dA + group * group_input_grads_size(), grad_lanes, grad_plain, ws);
    });
    // Phase 1 backward, per pixel task: the task's dP, then dx and W_input's gradient.
    const int64_t tasks = pixel_tasks(samples), w_numel = g1_ * s_.channels;
    std::vector<double> pixel_slots(tasks * w_numel, 0.0);
    parallel(tasks, [&](int64_t begin, int64_t end) {
      const int64_t most_pixels =  // of any task
          samples_per_pixel_task() > 1 ? samples_per_pixel_task() * s_.pixels() : std::min(kPixelsPerTask, s_.pixels());
      std::vector<T> dP(g1_ * most_pixels), dP_transposed(g1_ * padded_stride<T>(most_pixels));
      for (int64_t i = begin; i < end; ++i) {
        const PixelTask task = pixel_task(samples, i);
        const int64_t n = task.first_sample;
        gather_input_grads(group_dA, samples, task, dP.data());
        project_pixels_backward(p_.rnn1[0], g1_, s_.channels, x + n * input_size(), s_.pixels(), task.samples,
                                task.begin, task.end, dP.data(), dx + n * input_size(),
                                pixel_slots.data() + i * w_numel, dP_transposed.data());
      }
    });
    add_slots_in_order(pool_slots, layout_.total - rnn2_params, grad + rnn2_params);
    add_slots_in_order(sequence_slots, rnn2_params - rnn1_params, grad + rnn1_params);
    add_slots_in_order(pixel_slots, w_numel, grad + layout_.rnn1[0]);
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
    int64_t summaries_transposed;  // [L][(kh + kw) h1] the summaries, lanes first (f_L's weight gradient)
    int64_t d_recurrent;    // [steps][recurrent rows][L] each step's gradient of the recurrent product
    int64_t h_transposed;   // [steps][L][h1] RNN1's h_prev of each step, lanes first (its recurrent weight's gradient)
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
    w.summaries_transposed = take(s_.global ? ns * s_.hidden1 * L : 0);
    w.d_recurrent = take(longest * std::max(g1_, g2_) * L);
    w.h_transposed = take(longest * L * s_.hidden1);
    w.backward_size = at;
    return w;
  }

  int64_t input_size() const { return s_.channels * s_.pixels(); }             // per sample
  int64_t output_size() const { return s_.out_channels() * patches_; }     // per sample
  int64_t projection_size() const { return s_.pixels() * g1_; }                // per sample
  int64_t summaries_per_sample() const { return summaries_per_sample_; }
  // Row summaries [out_w][padded_h][h1], then column summaries [out_h][padded_w][h1].
  int64_t summaries_size() const { return summaries_per_sample() * s_.hidden1; }  // per sample

  // The groups of a chunk. Patches: in output order, sample after sample. Sequences: in blocks of
  // block_samples_ samples, the block's row sequences, then its column sequences (a large sample
  // is a block of its own, so its projected pixels are read by its rows and columns while they are
  // in cache; small samples share blocks, so their groups fill the lanes).
  int64_t row_groups(int64_t samples) const { return (samples * row_sequences() + L - 1) / L; }
  int64_t col_groups(int64_t samples) const { return (samples * col_sequences() + L - 1) / L; }
  int64_t block_groups(int64_t samples) const { return row_groups(samples) + col_groups(samples); }
  int64_t sequence_groups(int64_t samples) const {
    const int64_t full = samples / block_samples_, rest = samples % block_samples_;
    return full * block_groups(block_samples_) + (rest ? block_groups(rest) : 0);
  }
  int64_t patch_groups(int64_t samples) const { return (samples * patches_ + L - 1) / L; }

  // Where a sequence group lies: its block (first sample, sample count), its kind, and its index
  // among the block's groups of that kind.
  struct SequenceGroup {
    int64_t first_sample, samples;
    bool rows;
    int64_t index;
  };
  SequenceGroup sequence_group(int64_t samples, int64_t group) const {
    const int64_t per_block = block_groups(block_samples_), full = samples / block_samples_;
    int64_t block = group / per_block, index = group % per_block, count = block_samples_;
    if (block >= full) block = full, index = group - full * per_block, count = samples - full * block_samples_;
    const int64_t rows = row_groups(count);
    return {block * block_samples_, count, index < rows, index < rows ? index : index - rows};
  }

  // Where sample n's sequences of one kind lie, the inverse of sequence_group: the q-th is lane
  // (at + q) % L of group first_group + (at + q) / L.
  struct SequenceOrigin {
    int64_t first_group, at;
  };
  SequenceOrigin sequence_origin(int64_t samples, int64_t n, bool rows) const {
    const int64_t block = n / block_samples_, first = block * block_samples_;
    const int64_t count = std::min(block_samples_, samples - first);
    return {block * block_groups(block_samples_) + (rows ? 0 : row_groups(count)),
            (n - first) * (rows ? row_sequences() : col_sequences())};
  }
  // A group's gradients of what its lanes read, kept per lane (rows of h1 or g1 values), so the
  // gathers that sum them add whole rows: summaries [kh + kw][L][h1], inputs [steps][L][g1].
  int64_t group_summary_grads_size() const { return s_.summaries() * L * s_.hidden1; }
  int64_t group_input_grads_size() const { return std::max(s_.kernel_h, s_.kernel_w) * L * g1_; }

  // Phase 1, its backward and the gather of its gradients run over pixel tasks: pixels [begin, end)
  // of `samples` samples from first_sample: a block of kPixelsPerTask pixels of one sample, or
  // whole samples, up to kGroupedPixels pixels, where a sample has fewer (a batch of small maps
  // still makes several tasks).
  struct PixelTask {
    int64_t first_sample, samples, begin, end;
  };
  // 512: a 112x112 sample makes 25 tasks, which two threads share within 4% (1024 made 13: 7 vs 6).
  static constexpr int64_t kPixelsPerTask = 512, kGroupedPixels = 256;
  int64_t samples_per_pixel_task() const { return std::max<int64_t>(1, kGroupedPixels / s_.pixels()); }
  int64_t pixel_blocks() const { return (s_.pixels() + kPixelsPerTask - 1) / kPixelsPerTask; }  // per sample
  int64_t pixel_tasks(int64_t samples) const {
    const int64_t per_task = samples_per_pixel_task();
    return per_task > 1 ? (samples + per_task - 1) / per_task : samples * pixel_blocks();
  }
  PixelTask pixel_task(int64_t samples, int64_t task) const {
    const int64_t per_task = samples_per_pixel_task();
    if (per_task > 1) return {task * per_task, std::min(per_task, samples - task * per_task), 0, s_.pixels()};
    const int64_t begin = task % pixel_blocks() * kPixelsPerTask;
    return {task / pixel_blocks(), 1, begin, std::min(begin + kPixelsPerTask, s_.pixels())};
  }

  // Phase 1 for a chunk: P[n][pix][gate * h1].
  void project_chunk(const T* x, int64_t samples, T* P, const ParallelFor& parallel) const {
    parallel(pixel_tasks(samples), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const PixelTask task = pixel_task(samples, i);
        for (int64_t n = task.first_sample; n < task.first_sample + task.samples; ++n)
          project_pixels(p_.rnn1[0], g1_, s_.channels, x + n * input_size(), s_.pixels(), task.begin, task.end,
                         P + n * projection_size());
      }
    });
  }

  // f(task, workspace) for every task in [0, tasks), in parallel; each worker has its own workspace.
  template <class F>
  static void for_each_task(const ParallelFor& parallel, int64_t tasks, int64_t workspace_size, F&& f) {
    parallel(tasks, [&](int64_t begin, int64_t end) {
      std::vector<T> workspace(workspace_size);
      for (int64_t i = begin; i < end; ++i) f(i, workspace.data());
    });
  }

  // Runs f(group, grad_lanes, grad_plain, workspace) for every group, in parallel. grad_lanes holds
  // the per-lane sums of parameters [begin, end) of the layout except [plain_begin, plain_end)
  // ([end - begin - plain count][L], in layout order); grad_plain the sums of those, not per lane
  // (f_L's weight: 16 lanes of it would take 16 times its size per worker). Returns the sums of each
  // unit of consecutive groups: [units][end - begin], in double. A unit is at most 8 groups
  // (flushing the lanes stays cheap) and at most a sixteenth of them (a sample's groups make several
  // units, enough for the threads to share evenly: batch 1 at 112x112 has 49 patch groups, 17
  // units); it depends on nothing else.
  template <class F>
  std::vector<double> per_unit_gradients(const ParallelFor& parallel, int64_t groups, int64_t begin, int64_t end,
                                         int64_t plain_begin, int64_t plain_end, F&& f) const {
    const int64_t per_unit = std::max<int64_t>(1, std::min<int64_t>(8, groups / 16));
    const int64_t units = (groups + per_unit - 1) / per_unit, width = end - begin, plain = plain_end - plain_begin;
    const int64_t before = plain_begin - begin, after = end - plain_end;
    std::vector<double> slots(units * width, 0.0);
    parallel(units, [&](int64_t first, int64_t last) {
      std::vector<T> workspace(workspace_.backward_size), grad_lanes((width - plain) * L, T(0)), grad_plain(plain, T(0));
      for (int64_t u = first; u < last; ++u) {
        for (int64_t g = u * per_unit; g < std::min(groups, (u + 1) * per_unit); ++g)
          f(g, grad_lanes.data(), grad_plain.data(), workspace.data());
        double* slot = slots.data() + u * width;
        flush_lanes(grad_lanes.data(), before, slot);
        flush_lanes(grad_lanes.data() + before * L, after, slot + before + plain);
        for (int64_t i = 0; i < plain; ++i) slot[before + i] += grad_plain[i];
        fill(grad_plain.data(), plain, T(0));
      }
    });
    return slots;
  }

  // Backward keeps RNN1's tape for every sequence group of the chunk (3-5 x h1 values per step:
  // about 7 MB per sample at the MobileNetV2 stem shape) rather than recompute RNN1, the costliest
  // phase; RNN2's tape is small and is recomputed per patch group instead.
  int64_t rnn1_tape_size() const { return std::max(s_.kernel_h, s_.kernel_w) * tape1_; }

  // Padded rows (or columns) that some patch covers; with stride > kernel the gaps are skipped.
  static std::vector<int64_t> covered(int64_t out, int64_t stride, int64_t kernel) {
    std::vector<int64_t> v;
    for (int64_t y = 0; y < (out - 1) * stride + kernel; ++y)
      if (y % stride < kernel) v.push_back(y);
    return v;
  }

  // The windows (patch rows or columns) [first, last] that hold padded coordinate p, for p in
  // [0, extent): o with 0 <= p - o * stride < kernel and o < count (first > last: none).
  struct Windows {
    int64_t first, last;
  };
  static std::vector<Windows> windows(int64_t count, int64_t stride, int64_t kernel, int64_t extent) {
    std::vector<Windows> w(extent);
    for (int64_t p = 0; p < extent; ++p)
      w[p] = {p >= kernel ? (p - kernel) / stride + 1 : 0, std::min(count - 1, p / stride)};
    return w;
  }

  // index[p] = the position of p in `covered`, or -1, for p in [0, extent).
  static std::vector<int64_t> positions(const std::vector<int64_t>& covered, int64_t extent) {
    std::vector<int64_t> index(extent, -1);
    for (size_t i = 0; i < covered.size(); ++i) index[covered[i]] = static_cast<int64_t>(i);
    return index;
  }

  int64_t row_sequences() const { return out_w_ * static_cast<int64_t>(covered_rows_.size()); }
  int64_t col_sequences() const { return out_h_ * static_cast<int64_t>(covered_cols_.size()); }
  int64_t row_summary(int64_t out_x, int64_t padded_y) const { return out_x * padded_h_ + padded_y; }
  int64_t col_summary(int64_t out_y, int64_t padded_x) const {
    return out_w_ * padded_h_ + out_y * padded_w_ + padded_x;
  }

  // L row sequences (or L column sequences) of a chunk: their sample, first pixel (image
  // coordinates), the step between pixels, and where their summary goes (an index into the chunk's
  // summaries). Idle lanes read only padding and write nothing. A sample's row sequences run image
  // row by image row, its column sequences patch row by patch row, so the lanes of a group read
  // pixels of one image row, and their input gradients, which gather_input_grads sums a row at a
  // time, lie together (ordered patch column by patch column, a row group read 16 image rows; perf:
  // the gather's share of a ReX training step went from 6.0% to 5.1%).
  struct SequenceLanes {
    int count;
    int64_t length, step_y, step_x;
    int64_t sample[L], y0[L], x0[L], summary[L];
  };

  SequenceLanes sequence_lanes(int64_t samples, int64_t group) const {
    SequenceLanes lanes;
    const SequenceGroup where = sequence_group(samples, group);
    const bool rows = where.rows;
    const int64_t first = where.index * L;
    const int64_t per_sample = rows ? row_sequences() : col_sequences();
    lanes.count = static_cast<int>(std::min<int64_t>(L, where.samples * per_sample - first));
    lanes.length = rows ? s_.kernel_w : s_.kernel_h;
    lanes.step_y = rows ? 0 : 1;
    lanes.step_x = rows ? 1 : 0;
    for (int l = 0; l < L; ++l) {
      lanes.sample[l] = 0, lanes.y0[l] = -s_.kernel_h - 1, lanes.x0[l] = -s_.kernel_w - 1, lanes.summary[l] = -1;
      if (l >= lanes.count) continue;
      const int64_t n = where.first_sample + (first + l) / per_sample, q = (first + l) % per_sample;
      lanes.sample[l] = n;
      if (rows) {
        const int64_t ox = q % out_w_, y = covered_rows_[q / out_w_];
        lanes.y0[l] = y - s_.pad_h, lanes.x0[l] = ox * s_.stride_w - s_.pad_w;
        lanes.summary[l] = n * summaries_per_sample() + row_summary(ox, y);
      } else {
        const int64_t oy = q / covered_cols_.size(), x = covered_cols_[q % covered_cols_.size()];
        lanes.y0[l] = oy * s_.stride_h - s_.pad_h, lanes.x0[l] = x - s_.pad_w;
        lanes.summary[l] = n * summaries_per_sample() + col_summary(oy, x);
      }
    }
    return lanes;
  }

  // L consecutive patches of a chunk (in output order, sample after sample); the last group may
  // have fewer. patch: the index in its sample's output.
  struct PatchLanes {
    int count;
    int64_t sample[L], patch[L], out_y[L], out_x[L];
  };

  PatchLanes patch_lanes(int64_t samples, int64_t group) const {
    PatchLanes lanes;
    const int64_t first = group * L;
    lanes.count = static_cast<int>(std::min<int64_t>(L, samples * patches_ - first));
    for (int l = 0; l < lanes.count; ++l) {
      lanes.sample[l] = (first + l) / patches_;
      lanes.patch[l] = (first + l) % patches_;
      lanes.out_y[l] = lanes.patch[l] / out_w_;
      lanes.out_x[l] = lanes.patch[l] % out_w_;
    }
    return lanes;
  }

  // f(l0, l1) for each run of lanes [l0, l1) of one sample (consecutive patches of its output).
  template <class F>
  static void for_each_sample_run(const PatchLanes& lanes, F&& f) {
    for (int l0 = 0, l1; l0 < lanes.count; l0 = l1) {
      for (l1 = l0 + 1; l1 < lanes.count && lanes.sample[l1] == lanes.sample[l0];) ++l1;
      f(l0, l1);
    }
  }

  // Where lane l's value of output channel `channel` lies in the chunk's output.
  int64_t output_offset(const PatchLanes& lanes, int l, int64_t channel) const {
    return lanes.sample[l] * output_size() + channel * patches_ + lanes.patch[l];
  }

  // The projected row (g1 values) each lane reads at step t; padding lanes read `zeros`.
  template <class Ptr>
  void step_rows(const SequenceLanes& lanes, int64_t t, Ptr P, Ptr zeros, Ptr* rows) const {
    for (int l = 0; l < L; ++l) {
      const int64_t y = lanes.y0[l] + t * lanes.step_y, x = lanes.x0[l] + t * lanes.step_x;
      const bool inside = y >= 0 && y < s_.height && x >= 0 && x < s_.width;
      rows[l] = inside ? P + ((lanes.sample[l] * s_.height + y) * s_.width + x) * g1_ : zeros;
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
      rows[l] = summaries + (lanes.sample[l] * summaries_per_sample() + index) * s_.hidden1;
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
  // recurrent_plain: null, and the recurrent weight's gradient goes to the lanes of
  // grad[kRecurrentWeight]; or its plain accumulator, summed over the lanes too (h_transposed:
  // room for the len steps' h_prev transposed, [len][L][hidden]).
  static void run_sequence_backward(const Weights& w, int64_t hidden, T* dx0, int64_t x_stride, int64_t len, T* dh,
                                    const T* tape, int64_t tape_stride, T* const* grad, T* d_recurrent,
                                    T* recurrent_plain = nullptr, T* h_transposed = nullptr) {
    const int64_t rows = Cell::kRecurrentRows * hidden;
    for (int64_t t = len - 1; t >= 0; --t)
      Cell::step_backward(w, tape + t * tape_stride, dh, dx0 + t * x_stride, grad, d_recurrent + t * rows * L);
    // The recurrent weight's gradient over the whole sequence; h_prev heads each step's tape.
    if (!recurrent_plain) {
      outer_accumulate<T, L>(d_recurrent, rows * L, rows, tape, tape_stride, hidden, len, grad[Cell::kRecurrentWeight]);
      return;
    }
    for (int64_t t = 0; t < len; ++t) transpose_rows(tape + t * tape_stride, hidden, L, h_transposed + t * L * hidden);
    outer_accumulate_steps_over_lanes<T, L>(d_recurrent, rows * L, rows, h_transposed, L * hidden, hidden, len,
                                            recurrent_plain);
  }

  void store_summaries(const SequenceLanes& lanes, const T* h, T* summaries, T* sink) const {
    T* rows[L];
    summary_rows<T*>(lanes, summaries, sink, rows);
    lanes_to_rows<T, L>(h, s_.hidden1, rows);
  }


  // RNN1 over one group of sequences: final states in the rnn1_state span; records a tape if one is given.
  void run_rnn1(const T* P, const SequenceLanes& lanes, T* ws, T* tape) const {
    gather_inputs(P, lanes, ws + workspace_.rnn1_inputs, ws + workspace_.zero_row);
    run_sequence(rnn1_, s_.hidden1, ws + workspace_.rnn1_inputs, g1_ * L, lanes.length, ws + workspace_.rnn1_state, tape, tape1_, ws + workspace_.scratch);
  }

  // RNN2 and the projection over one group of patches: results in the rnn2_states and projection
  // spans. With `record` (the backward), RNN2's tapes instead of the projection, which is linear:
  // its gradients need only the summaries.
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
        matvec_with_bias<T, L>(p_.rnn2[0], g2_, s_.hidden1, S + k * h1L, nullptr, B + k * b_step);
      }
      for_each_rnn2_sequence([&](int64_t first, int64_t dir, int64_t len, int64_t slot, int64_t tape_slot) {
        run_sequence(rnn2_, s_.hidden2, B + first * b_step, dir * b_step, len, Q + slot * h2L,
                     tape2 ? tape2 + tape_slot * tape2_ : nullptr, tape2_, scratch);
      });
    }
    if (s_.global && !record) {
      matvec_with_bias<T, L>(p_.proj_weight, 4 * s_.hidden2, s_.summaries() * s_.hidden1, S, p_.proj_bias,
                             ws + workspace_.projection);
    }
  }

  // Pointers to one cell's per-lane gradient accumulators, in parameter order, in grad_lanes that
  // start at parameter `first` of the layout and leave out the plain parameters [plain_begin,
  // plain_end) (see per_unit_gradients); null for a parameter before `first` or a plain one.
  void lane_grads(T* grad_lanes, int64_t first, int64_t plain_begin, int64_t plain_end, const int64_t* offsets,
                  T** out) const {
    for (int p = 0; p < Cell::kNumParams; ++p) {
      const int64_t at = offsets[p];
      out[p] = at < first || (at >= plain_begin && at < plain_end)
                   ? nullptr
                   : grad_lanes + (at - first - (at >= plain_end ? plain_end - plain_begin : 0)) * L;
    }
  }
  // The same where no parameter is plain.
  void lane_grads(T* grad_lanes, int64_t first, const int64_t* offsets, T** out) const {
    lane_grads(grad_lanes, first, first, first, offsets, out);
  }

  // Backward of phase 3 for one group of patches: the gradients of the summaries its lanes read go
  // to the group's own rows, [kh + kw][L][h1]; parameter gradients are added to grad_lanes (RNN2's,
  // then f_L's bias) and grad_plain (f_L's weight).
  void pool_backward(const T* summaries, const T* grad_out, int64_t samples, int64_t group, T* group_dS,
                     T* grad_lanes, T* grad_plain, T* ws) const {
    const PatchLanes lanes = patch_lanes(samples, group);
    run_pool(summaries, lanes, ws, /*record=*/true);
    const int64_t h1L = s_.hidden1 * L, h2L = s_.hidden2 * L, b_step = g2_ * L;
    const T *S = ws + workspace_.summaries, *tape2 = ws + workspace_.rnn2_tape;
    T *dS = ws + workspace_.d_summaries, *dB = ws + workspace_.d_rnn2_inputs, *dQ = ws + workspace_.d_rnn2_states, *dG = ws + workspace_.d_projection;
    T* grad2[Cell::kNumParams];
    const int64_t first_param = layout_.rnn2[0];  // grad_lanes: RNN2's parameters, then f_L's bias
    lane_grads(grad_lanes, first_param, layout_.rnn2, grad2);

    // The output gradient, laid out like the forward's Q and G blocks; idle lanes get 0.
    fill(dQ, 4 * h2L, T(0));
    fill(dG, 4 * h2L, T(0));
    for_each_output_block<T*>(dQ, dG, [&](T* dblock, int64_t rows, int64_t channel) {
      for_each_sample_run(lanes, [&](int l0, int l1) {
        for (int64_t k = 0; k < rows; ++k) copy(grad_out + output_offset(lanes, l0, channel + k), l1 - l0, dblock + k * L + l0);
      });
    });
    fill(dS, s_.summaries() * h1L, T(0));
    if (s_.global) {
      const int64_t in = s_.summaries() * s_.hidden1;
      T* St = ws + workspace_.summaries_transposed;
      transpose_rows(S, in, L, St);
      outer_accumulate_over_lanes<T, L>(dG, 4 * s_.hidden2, St, in, grad_plain);
      add_lanes<T, L>(dG, 4 * s_.hidden2, grad_lanes + (layout_.proj_weight - first_param) * L);
      matvec_transposed_accumulate<T, L>(p_.proj_weight, 4 * s_.hidden2, in, dG, dS);
    }
    if (s_.needs_rnn2()) {
      fill(dB, s_.summaries() * b_step, T(0));
      for_each_rnn2_sequence([&](int64_t first, int64_t dir, int64_t len, int64_t slot, int64_t tape_slot) {
        run_sequence_backward(rnn2_, s_.hidden2, dB + first * b_step, dir * b_step, len, dQ + slot * h2L,
                              tape2 + tape_slot * tape2_, tape2_, grad2, ws + workspace_.d_recurrent);
      });
      const int64_t first = rnn2_first_summary(), count = rnn2_end_summary() - first;
      for (int64_t k = first; k < first + count; ++k)
        matvec_transposed_accumulate<T, L>(p_.rnn2[0], g2_, s_.hidden1, dB + k * b_step, dS + k * h1L);
      outer_accumulate<T, L>(dB + first * b_step, b_step, g2_, S + first * h1L, h1L, s_.hidden1, count, grad2[0]);
    }
    for (int64_t k = 0; k < s_.summaries(); ++k) lanes_to_own_rows(dS + k * h1L, s_.hidden1, group_dS + k * h1L);
  }

  // out[l][i] = in[i][l] for i < n: a transpose into rows of n values, whole registers at a time
  // (lanes_to_rows, for scattered rows, stores value by value; perf put the change at about 2% of
  // a ReX training step).
  static void lanes_to_own_rows(const T* in, int64_t n, T* out) { transpose_rows(in, n, int64_t(L), out); }

  // d_summaries[summary] = the sum of the gradients the patches that read it left in their groups'
  // rows, patch after patch in output order: the transpose of slot_rows. One task per patch column
  // (its row summaries) or patch row (its column summaries) of a sample.
  void gather_summary_grads(const T* group_dS, int64_t samples, T* d_summaries, const ParallelFor& parallel) const {
    const int64_t h1 = s_.hidden1, tasks = out_w_ + out_h_;
    parallel(samples * tasks, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int64_t n = i / tasks, task = i % tasks;
        auto add = [&](int64_t oy, int64_t ox, int64_t slot, T* out) {
          const int64_t q = n * patches_ + oy * out_w_ + ox;
          const T* in = group_dS + q / L * group_summary_grads_size() + (slot * L + q % L) * h1;
          accumulate(in, h1, out);
        };
        if (task < out_w_) {  // row summary (ox, py): slot py - oy * stride_h of patches (oy, ox)
          const int64_t ox = task;
          for (int64_t py = 0; py < padded_h_; ++py) {
            T* out = d_summaries + (n * summaries_per_sample_ + row_summary(ox, py)) * h1;
            fill(out, h1, T(0));
            for (int64_t oy = row_windows_[py].first; oy <= row_windows_[py].last; ++oy)
              add(oy, ox, py - oy * s_.stride_h, out);
          }
        } else {  // column summary (oy, px): slot kh + px - ox * stride_w of patches (oy, ox)
          const int64_t oy = task - out_w_;
          for (int64_t px = 0; px < padded_w_; ++px) {
            T* out = d_summaries + (n * summaries_per_sample_ + col_summary(oy, px)) * h1;
            fill(out, h1, T(0));
            for (int64_t ox = col_windows_[px].first; ox <= col_windows_[px].last; ++ox)
              add(oy, ox, s_.kernel_h + px - ox * s_.stride_w, out);
          }
        }
      }
    });
  }

  // dP[pixel] of one pixel task ([task samples][task pixels][g1]) = the sum of the gradients the
  // RNN1 steps that read the pixel left in their groups' rows: its row sequences (patch column by
  // patch column), then its column sequences (patch row by patch row). The transpose of
  // gather_inputs, an image row at a time.
  void gather_input_grads(const T* group_dA, int64_t samples, const PixelTask& task, T* dP) const {
    const int64_t W = s_.width, pixels = task.end - task.begin;
    const int64_t cols_covered = covered_cols_.size();
    fill(dP, task.samples * pixels * g1_, T(0));
    for (int64_t k = 0; k < task.samples; ++k) {
      const int64_t n = task.first_sample + k;
      const SequenceOrigin row_origin = sequence_origin(samples, n, true), col_origin = sequence_origin(samples, n, false);
      // dP[pixel] += the input gradient of step `step` of the sample's q-th sequence of a kind.
      auto add = [&](const SequenceOrigin& origin, int64_t q, int64_t step, T* out) {
        const int64_t at = origin.at + q;
        const T* in = group_dA + (origin.first_group + at / L) * group_input_grads_size() + (step * L + at % L) * g1_;
        accumulate(in, g1_, out);
      };
      for (int64_t y = task.begin / W; y * W < task.end; ++y) {
        const int64_t py = y + s_.pad_h;
        if (py >= padded_h_) break;  // below every patch
        const int64_t x0 = std::max<int64_t>(0, task.begin - y * W), x1 = std::min<int64_t>(W, task.end - y * W);
        T* row = dP + (k * pixels + y * W - task.begin) * g1_;  // row + x * g1_: pixel (y, x)
        if (covered_row_index_[py] >= 0)  // the row sequences (ox, py), step px - ox * stride_w
          for (int64_t ox = 0; ox < out_w_; ++ox)
            for (int64_t t = 0; t < s_.kernel_w; ++t) {
              const int64_t x = ox * s_.stride_w + t - s_.pad_w;
              if (x >= x0 && x < x1) add(row_origin, covered_row_index_[py] * out_w_ + ox, t, row + x * g1_);
            }
        for (int64_t oy = row_windows_[py].first; oy <= row_windows_[py].last; ++oy)  // the column sequences (oy, px)
          for (int64_t x = x0; x < x1; ++x) {
            const int64_t px = x + s_.pad_w;
            if (px < padded_w_ && covered_col_index_[px] >= 0)
              add(col_origin, oy * cols_covered + covered_col_index_[px], py - oy * s_.stride_h, row + x * g1_);
          }
      }
    }
  }

  // Backward of phase 2 for one group of sequences, from its tape: the gradients of its steps'
  // inputs go to the group's own rows, [steps][L][g1]; parameter gradients are added to grad_lanes.
  void summarize_backward(const T* tape, const T* d_summaries, int64_t samples, int64_t group, T* group_dA,
                          T* grad_lanes, T* grad_recurrent, T* ws) const {
    const SequenceLanes lanes = sequence_lanes(samples, group);
    T* dh = ws + workspace_.rnn1_state;
    T* dA = ws + workspace_.d_rnn1_inputs;
    T* grad1[Cell::kNumParams];
    // All but W_input's (phase 1 takes those) and, when plain, the recurrent weight's (grad_recurrent).
    lane_grads(grad_lanes, layout_.rnn1[1], layout_.rnn1[1], recurrent_plain_end_, layout_.rnn1, grad1);
    T* zeros = ws + workspace_.zero_row;
    fill(zeros, s_.hidden1, T(0));
    const T* rows[L];
    summary_rows<const T*>(lanes, d_summaries, zeros, rows);
    rows_to_lanes<T, L>(rows, s_.hidden1, dh);
    fill(dA, lanes.length * g1_ * L, T(0));
    run_sequence_backward(rnn1_, s_.hidden1, dA, g1_ * L, lanes.length, dh, tape, tape1_, grad1, ws + workspace_.d_recurrent,
                          recurrent_plain_ ? grad_recurrent : nullptr, ws + workspace_.h_transposed);
    for (int64_t t = 0; t < lanes.length; ++t) lanes_to_own_rows(dA + t * g1_ * L, g1_, group_dA + t * L * g1_);
  }

  // out[i] += the sum over lanes of grad_lanes[i], for i < n; clears the lanes.
  // Each sum runs over the lanes in order, in double; kSums parameters at a time interleave their
  // independent sums (a chain of dependent double adds per parameter would be latency-bound, and
  // this runs once per unit of groups).
  static void flush_lanes(T* grad_lanes, int64_t n, double* out) {
    constexpr int kSums = 8;
    int64_t i = 0;
    for (; i + kSums <= n; i += kSums) {
      double sum[kSums] = {};
      for (int l = 0; l < L; ++l)
        for (int k = 0; k < kSums; ++k) sum[k] += grad_lanes[(i + k) * L + l];
      for (int k = 0; k < kSums; ++k) out[i + k] += sum[k];
    }
    for (; i < n; ++i) {
      double sum = 0;
      for (int l = 0; l < L; ++l) sum += grad_lanes[i * L + l];
      out[i] += sum;
    }
    fill(grad_lanes, n * L, T(0));
  }

  SweepShape s_;
  SweepParams<T> p_;
  GradOffsets layout_;
  // RNN1's recurrent weight gradient is plain (summed over the lanes per group, see
  // run_sequence_backward) when h1 fills whole registers; else it stays per lane (h8 in 16-lane
  // registers would leave the plain product to its scalar edge loop: the VWW step took 16 ms, not 10).
  bool recurrent_plain_;
  int64_t recurrent_plain_end_;  // the end of the plain range of parameters, which starts at that weight
  Weights rnn1_, rnn2_;
  int64_t g1_, g2_, tape1_, tape2_;
  std::vector<int64_t> covered_rows_, covered_cols_;  // padded coordinates
  std::vector<int64_t> covered_row_index_, covered_col_index_;  // position in covered_*_ per padded coordinate, or -1
  std::vector<Windows> row_windows_, col_windows_;  // the patch rows (columns) per padded row (column)
  int64_t padded_h_, padded_w_;                       // extent the patches cover, padding included
  // The shape's derived sizes, kept (each is a division, and the lane set-up reads them per lane).
  int64_t out_h_, out_w_, patches_, summaries_per_sample_;
  int64_t block_samples_;  // samples per block of sequence groups (see sequence_groups)
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
