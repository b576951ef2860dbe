// One recurrent sequence per team of threads, one thread per hidden unit: the unit of work of the
// GPU sweep (csrc/gpu/sweep_cuda.cu) and of its CPU emulation (csrc/testing/emulated_ops.cpp),
// which runs the same code with one thread doing every unit, so the CPU tests check what the GPU
// executes.
//
// The sweep's two RNNs are each a set of independent sequences over projected inputs (the input
// projection W x is a GEMM done before, see csrc/gpu/pipeline.cpp):
//   PatchLines: RNN1 over every row (kw steps) and column (kh steps) of every patch; the inputs are
//               the projected pixels, and a step on a padding pixel reads a zero input.
//   Summaries:  RNN2 over each patch's row summaries and column summaries, forward and backward
//               (4 passes per patch); the inputs are the projected summaries.
// A team keeps its sequence's state in a small scratch area (shared memory on the GPU); thread r
// computes unit r of each step from the whole previous state, reading the recurrent weights from
// wherever the job points (shared memory on the GPU), and the team synchronises between steps.
//
// Backward: the team recomputes its sequence, writing each step's h_prev to `h_prev`; it then walks
// back, recomputing each step's gates from h_prev, and writes per step a record of the gradients
// with respect to the step's pre-activations. Everything else (the recurrent weight's gradient,
// dU = sum_t dpre_t h_prev_t^T, the biases', the input projection's) is a GEMM or a sum over those
// records, done by the caller.
#pragma once

#include <cstdint>

#include "core/cell_math.h"
#include "core/platform.h"
#include "core/types.h"

RNNPOOL_BEGIN_ISA_NAMESPACE

enum class SequenceSet : int { PatchLines = 0, Summaries = 1 };

// Where the sequences of one set come from and where their results go.
struct SequenceGeometry {
  SequenceSet set;
  int64_t height, width;  // the input image (PatchLines)
  int64_t out_h, out_w;   // patches per image row and column
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;

  RNNPOOL_HD int64_t summaries() const { return kernel_h + kernel_w; }
  RNNPOOL_HD int64_t sequences_per_patch() const { return set == SequenceSet::PatchLines ? summaries() : 4; }
  // Steps over all of one patch's sequences: the rows of h_prev and records per patch.
  RNNPOOL_HD int64_t steps_per_patch() const {
    return set == SequenceSet::PatchLines ? 2 * kernel_h * kernel_w : 2 * summaries();
  }

  // The longest sequence: every team of a GPU block steps this many times, so all reach each barrier.
  RNNPOOL_HD int64_t max_length() const { return kernel_h > kernel_w ? kernel_h : kernel_w; }

  RNNPOOL_HD int64_t length(int64_t q) const {
    const int64_t s = q % sequences_per_patch();
    if (set == SequenceSet::PatchLines) return s < kernel_h ? kernel_w : kernel_h;
    return s < 2 ? kernel_h : kernel_w;
  }

  // The input row step t of sequence q reads, or -1 for a padding pixel (a zero input).
  RNNPOOL_HD int64_t input_row(int64_t q, int64_t t) const {
    const int64_t per = sequences_per_patch(), p = q / per, s = q % per;
    if (set == SequenceSet::Summaries) return p * summaries() + summary(s, t);
    const int64_t n = p / (out_h * out_w), oh = p / out_w % out_h, ow = p % out_w;
    const bool row = s < kernel_h;
    const int64_t y = oh * stride_h - pad_h + (row ? s : t);
    const int64_t x = ow * stride_w - pad_w + (row ? t : s - kernel_h);
    if (y < 0 || y >= height || x < 0 || x >= width) return -1;
    return (n * height + y) * width + x;
  }

  // The row of h_prev and records that step t of sequence q owns. PatchLines: per patch, row i's
  // steps (i * kw + t), then column j's (kh kw + j kh + t). Summaries: per patch, the 4 passes
  // (rows forward, rows backward, columns forward, columns backward) each indexed by the summary
  // its step reads, so a summary's two gradients sit at the same offset of two blocks.
  RNNPOOL_HD int64_t record_row(int64_t q, int64_t t) const {
    const int64_t per = sequences_per_patch(), p = q / per, s = q % per;
    const int64_t first = p * steps_per_patch();
    if (set == SequenceSet::PatchLines)
      return first + (s < kernel_h ? s * kernel_w + t : kernel_h * kernel_w + (s - kernel_h) * kernel_h + t);
    const int64_t pass_offset = s < 2 ? s * kernel_h : 2 * kernel_h + (s - 2) * kernel_w;
    return first + pass_offset + summary(s, t) - (s < 2 ? 0 : kernel_h);
  }

 private:
  // Summary read by step t of pass s (0/1: rows forward/backward, 2/3: columns forward/backward).
  RNNPOOL_HD int64_t summary(int64_t s, int64_t t) const {
    const int64_t len = s < 2 ? kernel_h : kernel_w;
    const int64_t i = s % 2 == 0 ? t : len - 1 - t;
    return s < 2 ? i : kernel_h + i;
  }
};

// One launch's work: the cell, its weights, the inputs and the outputs.
template <class T>
struct SequenceJob {
  SequenceGeometry geometry;
  int64_t num_sequences;
  CellKind cell;
  Nonlinearity gate, update;  // FastGRNN's; the GRU's are sigmoid and tanh
  int hidden;
  // FastGRNN: U [H, H], bias_gate, bias_update [H]. GRU: weight_hh [3H, H], bias_ih, bias_hh [3H].
  // Rows of the recurrent weight are recurrent_stride apart (>= H: the GPU pads them in shared
  // memory so that a team's threads, reading one row each, hit different banks).
  const T* recurrent;
  int recurrent_stride;
  const T* bias_a;
  const T* bias_b;
  const T* zeta_raw;  // FastGRNN's raw scalars (sigmoid applied here, so no host sync reads them)
  const T* nu_raw;
  const T* inputs;  // rows of gates() * hidden: the input projections (without bias)

  T* final_state;  // forward: [num_sequences, hidden]

  const T* d_final;   // backward: [num_sequences, hidden], the gradient of the final states
  T* h_prev;          // backward: [record rows, hidden]
  T* records;         // backward: [record rows, record_width()]
  int64_t* step_inputs;  // backward: [record rows], the input row each step read (-1: a padding pixel)
  T* mix_partials;    // backward, FastGRNN: [num_sequences, H, 2], per unit sums of dL/dzeta' and dL/dnu'
                      // (zeta' and nu' the squashed values)

  RNNPOOL_HD int gates() const { return cell == CellKind::GRU ? 3 : 1; }
  // FastGRNN: d pre_gate, d pre_update. GRU: d ai_r, d ai_z, d ai_n (= d ah_r, d ah_z), d ah_n.
  RNNPOOL_HD int record_width() const { return (cell == CellKind::GRU ? 4 : 2) * hidden; }
};

// sigmoid of FastGRNN's raw zeta or nu, in double: EdgeML's nu = -100 gives 4e-44.
template <class T>
RNNPOOL_HD T squash(T raw) {
  return static_cast<T>(sigmoid(static_cast<double>(raw)));
}

// The hidden units a thread computes: units first, first + stride, ... below hidden. On the GPU
// each thread of a team has one (first = its index in the team, stride = hidden); the CPU runs all
// of them in one thread (first 0, stride 1). A thread with no sequence has none (first = hidden).
struct Units {
  int first, stride;
};

// The scratch one sequence needs, in elements of T.
RNNPOOL_HD int64_t forward_scratch_size(int hidden) { return 2 * int64_t(hidden); }
RNNPOOL_HD int64_t backward_scratch_size(int hidden, int gates) { return int64_t(hidden) * (5 + gates); }

// The team's steps. Sync is a callable: __syncthreads() on the GPU, nothing on the CPU. Every
// thread of a GPU block calls these with the same number of steps and reaches every sync, also
// when its sequence is shorter or absent (active = false).
template <class T>
class SequenceTeam {
 public:
  RNNPOOL_HD SequenceTeam(const SequenceJob<T>& job, int64_t q, bool active, Units units, T* scratch)
      : job_(job), q_(q), units_(units), scratch_(scratch), H_(job.hidden),
        len_(active ? job.geometry.length(q) : 0), steps_(job.geometry.max_length()) {
    if (job.cell == CellKind::FastGRNN) {
      zeta_ = squash(*job.zeta_raw);
      nu_ = squash(*job.nu_raw);
    }
  }

  // Runs the sequence and writes its final state.
  template <class Sync>
  RNNPOOL_HD void forward(Sync sync) {
    T* h = scratch_;
    T* h_next = scratch_ + H_;
    run(h, h_next, false, sync);
    for (int r = units_.first; r < H_ && len_ > 0; r += units_.stride) job_.final_state[q_ * H_ + r] = h[r];
  }

  // Recomputes the sequence (recording each step's h_prev), then back-propagates d_final through it.
  template <class Sync>
  RNNPOOL_HD void backward(Sync sync) {
    const int gates = job_.gates();
    T* hp = scratch_;            // h_prev of the step being differentiated
    T* dh = hp + H_;             // d/dh_t, then d/dh_{t-1}
    T* dh_direct = dh + H_;      // the part of d/dh_{t-1} not through the recurrent weight
    T* zeta_sum = dh_direct + H_;
    T* nu_sum = zeta_sum + H_;
    T* dpre = nu_sum + H_;       // [gates H]: d of the recurrent product's rows
    T* h = hp;
    T* h_next = dh;
    run(h, h_next, true, sync);
    for (int r = units_.first; r < H_; r += units_.stride) {
      dh[r] = len_ > 0 ? job_.d_final[q_ * H_ + r] : T(0);
      zeta_sum[r] = nu_sum[r] = T(0);
    }
    for (int64_t back = 0; back < steps_; ++back) {
      const int64_t t = len_ - 1 - back;
      const int64_t row = t >= 0 ? job_.geometry.record_row(q_, t) : 0;
      for (int r = units_.first; r < H_ && t >= 0; r += units_.stride) hp[r] = job_.h_prev[row * H_ + r];
      sync();
      if (t >= 0) {
        const T* x = input_at_row(job_.geometry.input_row(q_, t));
        T* record = job_.records + row * job_.record_width();
        for (int r = units_.first; r < H_; r += units_.stride) {
          if (job_.cell == CellKind::FastGRNN)
            fastgrnn_unit_backward(x, hp, dh, r, record, dh_direct, dpre, zeta_sum, nu_sum);
          else
            gru_unit_backward(x, hp, dh, r, record, dh_direct, dpre);
        }
      }
      sync();
      // d/dh_{t-1}[c] = direct part + sum over the recurrent weight's rows j of W[j, c] dpre[j].
      for (int c = units_.first; c < H_ && t >= 0; c += units_.stride) {
        T acc = dh_direct[c];
        for (int j = 0; j < gates * H_; ++j) acc = fmadd(job_.recurrent[j * job_.recurrent_stride + c], dpre[j], acc);
        dh[c] = acc;
      }
      sync();
    }
    for (int r = units_.first; r < H_ && len_ > 0 && job_.cell == CellKind::FastGRNN; r += units_.stride) {
      job_.mix_partials[2 * (q_ * H_ + r)] = zeta_sum[r];
      job_.mix_partials[2 * (q_ * H_ + r) + 1] = nu_sum[r];
    }
  }

 private:
  // Steps the sequence from zeros with two state buffers, leaving the final state in h. With
  // record, writes each step's h_prev and input row.
  template <class Sync>
  RNNPOOL_HD void run(T*& h, T*& h_next, bool record, Sync sync) {
    for (int r = units_.first; r < H_; r += units_.stride) h[r] = T(0);
    sync();
    for (int64_t t = 0; t < steps_; ++t) {
      if (t < len_) {
        const int64_t input_row = job_.geometry.input_row(q_, t);
        const T* x = input_at_row(input_row);
        const int64_t row = record ? job_.geometry.record_row(q_, t) : 0;
        if (record && units_.first == 0) job_.step_inputs[row] = input_row;
        for (int r = units_.first; r < H_; r += units_.stride) {
          if (record) job_.h_prev[row * H_ + r] = h[r];
          h_next[r] = job_.cell == CellKind::FastGRNN ? fastgrnn_unit(x, h, r) : gru_unit(x, h, r).h;
        }
      }
      sync();
      if (t < len_) {
        T* swap = h;
        h = h_next;
        h_next = swap;
      }
    }
  }

  // The projected input in `row` (SequenceGeometry::input_row), or null for a padding pixel (a zero input).
  RNNPOOL_HD const T* input_at_row(int64_t row) const {
    return row < 0 ? nullptr : job_.inputs + row * job_.gates() * H_;
  }

  // sum_c W[j, c] h[c] for row j of the recurrent weight.
  RNNPOOL_HD T recurrent_dot(int j, const T* h) const {
    const T* w = job_.recurrent + int64_t(j) * job_.recurrent_stride;
    T acc = T(0);
    for (int c = 0; c < H_; ++c) acc = fmadd(w[c], h[c], acc);
    return acc;
  }

  RNNPOOL_HD T input_at(const T* x, int j) const { return x ? x[j] : T(0); }

  // FastGRNN's unit r: z, h~ and the new state, from state h.
  RNNPOOL_HD void fastgrnn_gates(const T* x, const T* h, int r, T& z, T& h_tilde) const {
    const T pre = input_at(x, r) + recurrent_dot(r, h);
    z = activate(job_.gate, pre + job_.bias_a[r]);
    h_tilde = activate(job_.update, pre + job_.bias_b[r]);
  }

  RNNPOOL_HD T fastgrnn_unit(const T* x, const T* h, int r) const {
    T z, h_tilde;
    fastgrnn_gates(x, h, r, z, h_tilde);
    return fastgrnn_mix(z, h_tilde, h[r], zeta_, nu_);
  }

  RNNPOOL_HD void fastgrnn_unit_backward(const T* x, const T* hp, const T* dh, int r, T* record, T* dh_direct,
                                         T* dpre, T* zeta_sum, T* nu_sum) const {
    T z, h_tilde;
    fastgrnn_gates(x, hp, r, z, h_tilde);
    const FastGRNNPointGrad<T> g =
        fastgrnn_mix_backward(dh[r], z, h_tilde, hp[r], zeta_, nu_, derivative_from_output(job_.gate, z),
                              derivative_from_output(job_.update, h_tilde));
    record[r] = g.pre_gate;
    record[H_ + r] = g.pre_update;
    dpre[r] = g.pre_gate + g.pre_update;
    dh_direct[r] = g.h_prev;
    zeta_sum[r] += g.zeta;
    nu_sum[r] += g.nu;
  }

  // The GRU's unit r (gates r, z, n and the new state) from state h; also gives ah_n.
  RNNPOOL_HD GRUPoint<T> gru_unit(const T* x, const T* h, int r, T* ah_n_out = nullptr) const {
    const T* b_ih = job_.bias_a;
    const T* b_hh = job_.bias_b;
    const T ah_n = recurrent_dot(2 * H_ + r, h) + b_hh[2 * H_ + r];
    if (ah_n_out) *ah_n_out = ah_n;
    return gru_point(input_at(x, r) + b_ih[r], input_at(x, H_ + r) + b_ih[H_ + r],
                     input_at(x, 2 * H_ + r) + b_ih[2 * H_ + r], recurrent_dot(r, h) + b_hh[r],
                     recurrent_dot(H_ + r, h) + b_hh[H_ + r], ah_n, h[r]);
  }

  RNNPOOL_HD void gru_unit_backward(const T* x, const T* hp, const T* dh, int r, T* record, T* dh_direct,
                                    T* dpre) const {
    T ah_n;
    const GRUPoint<T> p = gru_unit(x, hp, r, &ah_n);
    const GRUPointGrad<T> g = gru_point_backward(dh[r], p.r, p.z, p.n, ah_n, hp[r]);
    record[r] = g.ai_r;
    record[H_ + r] = g.ai_z;
    record[2 * H_ + r] = g.ai_n;
    record[3 * H_ + r] = g.ah_n;
    dpre[r] = g.ai_r;  // d ah_r = d ai_r
    dpre[H_ + r] = g.ai_z;
    dpre[2 * H_ + r] = g.ah_n;
    dh_direct[r] = g.h_prev;
  }

  const SequenceJob<T>& job_;
  int64_t q_;
  Units units_;
  T* scratch_;
  int H_;
  int64_t len_, steps_;
  T zeta_ = T(0), nu_ = T(0);
};

RNNPOOL_END_ISA_NAMESPACE
