#include "pipeline.h"

#include <c10/core/DeviceGuard.h>

#include <algorithm>
#include <cstdlib>

namespace rnnpool {
namespace {

// The backward's per-step records and states for a chunk of samples stay under this many bytes:
// 1 GiB, or the environment's RNNPOOL_BACKWARD_WORKSPACE_BYTES (read at each call).
int64_t backward_workspace_bytes() {
  const char* text = std::getenv("RNNPOOL_BACKWARD_WORKSPACE_BYTES");
  if (text == nullptr || *text == '\0') return int64_t(1) << 30;
  char* end = nullptr;
  const long long bytes = std::strtoll(text, &end, 10);
  TORCH_CHECK_VALUE(*end == '\0' && bytes > 0, "RNNPOOL_BACKWARD_WORKSPACE_BYTES must be a positive number of bytes, got '",
                    text, "'");
  return bytes;
}

// One RNN's parameters in the op's order (see csrc/rnnpool.cpp), contiguous, in the compute dtype.
struct Cell {
  CellKind kind;
  Nonlinearity gate, update;
  int64_t hidden;
  std::vector<at::Tensor> params;

  int64_t gates() const { return kind == CellKind::GRU ? 3 : 1; }
  const at::Tensor& input_weight() const { return params[0]; }  // [gates hidden, input]
};

Cell make_cell(const SweepArgs& a, at::TensorList params, int64_t hidden, at::ScalarType dtype) {
  Cell c{a.cell, a.gate, a.update, hidden, {}};
  for (const at::Tensor& p : params) c.params.push_back(p.to(dtype).contiguous());
  return c;
}

// The job reads `inputs` through a raw pointer: the caller keeps the tensor alive until it has run.
template <class T>
SequenceJob<T> make_job(const SequenceGeometry& geometry, int64_t num_sequences, const Cell& c,
                        const at::Tensor& inputs) {
  SequenceJob<T> job{};
  job.geometry = geometry;
  job.num_sequences = num_sequences;
  job.cell = c.kind;
  job.gate = c.gate;
  job.update = c.update;
  job.hidden = static_cast<int>(c.hidden);
  job.recurrent = c.params[1].data_ptr<T>();
  job.recurrent_stride = static_cast<int>(c.hidden);
  job.bias_a = c.params[2].data_ptr<T>();
  job.bias_b = c.params[3].data_ptr<T>();
  if (c.kind == CellKind::FastGRNN) {
    job.zeta_raw = c.params[4].data_ptr<T>();
    job.nu_raw = c.params[5].data_ptr<T>();
  }
  job.inputs = inputs.data_ptr<T>();
  return job;
}

// Gradients of one cell's parameters, accumulated over chunks, in the op's order.
struct CellGradients {
  std::vector<at::Tensor> params;

  explicit CellGradients(const Cell& c) {
    for (const at::Tensor& p : c.params) params.push_back(at::zeros_like(p));
  }
};

template <class T>
class SequencePipeline {
 public:
  SequencePipeline(const SequenceRunner& runner, const SweepArgs& a, const at::Tensor& x, at::TensorList rnn1,
                   at::TensorList rnn2, const c10::optional<at::Tensor>& proj_weight,
                   const c10::optional<at::Tensor>& proj_bias)
      : runner_(runner),
        shape_(a.shape),
        dtype_(c10::CppTypeToScalarType<T>::value),
        x_(x.to(dtype_).contiguous()),
        rnn1_(make_cell(a, rnn1, shape_.hidden1, dtype_)),
        rnn2_(make_cell(a, rnn2, shape_.hidden2, dtype_)) {
    if (shape_.global) {
      proj_weight_ = proj_weight->to(dtype_).contiguous();
      proj_bias_ = proj_bias->to(dtype_).contiguous();
    }
  }

  at::Tensor forward() const {
    const SweepShape& s = shape_;
    if (s.batch == 0) return at::empty({0, s.out_channels(), s.out_h(), s.out_w()}, x_.options());
    const at::Tensor xp = project_pixels(x_);  // outlives the job that reads it
    const at::Tensor summaries = summarize(xp, s.batch);
    std::vector<at::Tensor> blocks;
    at::Tensor pooled;
    if (s.needs_rnn2()) {
      const int64_t P = summaries.size(0);
      pooled = at::empty({P, 4 * s.hidden2}, x_.options());
      const at::Tensor inputs = project(summaries.view({-1, s.hidden1}), rnn2_);  // outlives the job
      SequenceJob<T> job = make_job<T>(geometry(SequenceSet::Summaries), 4 * P, rnn2_, inputs);
      job.final_state = pooled.data_ptr<T>();
      runner_.forward(job);
    }
    if (s.rows) blocks.push_back(pooled.narrow(1, 0, 2 * s.hidden2));
    if (s.global) blocks.push_back(at::addmm(proj_bias_, summaries, proj_weight_.t()));
    if (s.cols) blocks.push_back(pooled.narrow(1, 2 * s.hidden2, 2 * s.hidden2));
    return at::cat(blocks, 1).view({s.batch, s.out_h(), s.out_w(), s.out_channels()}).permute({0, 3, 1, 2}).contiguous();
  }

  SweepGradients backward(const at::Tensor& grad_output) const {
    const SweepShape& s = shape_;
    at::Tensor dx = at::empty_like(x_);
    CellGradients g1(rnn1_), g2(rnn2_);
    at::Tensor d_proj_weight, d_proj_bias;
    if (s.global) {
      d_proj_weight = at::zeros_like(proj_weight_);
      d_proj_bias = at::zeros_like(proj_bias_);
    }
    const at::Tensor grad = grad_output.to(dtype_);
    const int64_t chunk = samples_per_chunk();
    for (int64_t first = 0; first < s.batch; first += chunk) {
      const int64_t count = std::min(chunk, s.batch - first);
      const at::Tensor x = x_.narrow(0, first, count);
      const at::Tensor xp = project_pixels(x);  // read by RNN1's forward and its backward
      const at::Tensor summaries = summarize(xp, count);  // [P, (kh + kw) h1]
      const int64_t P = summaries.size(0);
      // The output gradient as [P, out_channels], blocks R, G, C.
      const at::Tensor g = grad.narrow(0, first, count).permute({0, 2, 3, 1}).reshape({P, s.out_channels()});
      int64_t offset = 0;
      auto next_block = [&](bool present, int64_t width) {
        at::Tensor block = present ? g.narrow(1, offset, width) : at::Tensor();
        offset += present ? width : 0;
        return block;
      };
      const at::Tensor g_rows = next_block(s.rows, 2 * s.hidden2);
      const at::Tensor g_global = next_block(s.global, 4 * s.hidden2);
      const at::Tensor g_cols = next_block(s.cols, 2 * s.hidden2);

      at::Tensor d_summaries = at::zeros_like(summaries);
      if (s.global) {
        d_summaries.addmm_(g_global, proj_weight_);
        d_proj_weight.addmm_(g_global.t(), summaries);
        d_proj_bias.add_(g_global.sum(0));
      }
      if (s.needs_rnn2()) {
        at::Tensor d_pooled = at::zeros({P, 4 * s.hidden2}, x_.options());
        if (s.rows) d_pooled.narrow(1, 0, 2 * s.hidden2).copy_(g_rows);
        if (s.cols) d_pooled.narrow(1, 2 * s.hidden2, 2 * s.hidden2).copy_(g_cols);
        const at::Tensor summary_rows = summaries.view({-1, s.hidden1});
        const at::Tensor d_s2 = backward_sequences(SequenceSet::Summaries, count, rnn2_, project(summary_rows, rnn2_),
                                                   d_pooled, g2, summary_rows.size(0));
        g2.params[0].addmm_(d_s2.t(), summary_rows);
        d_summaries.view({-1, s.hidden1}).addmm_(d_s2, rnn2_.input_weight());
      }
      const at::Tensor d_xp = backward_sequences(SequenceSet::PatchLines, count, rnn1_, xp,
                                                 d_summaries, g1, count * s.pixels());
      // Both GEMMs read x and write dx in NCHW, as planes [C, H W] per sample: no layout copies.
      const at::Tensor d_xp_planes = d_xp.view({count, s.pixels(), -1}).transpose(1, 2);  // [n, g h1, H W]
      const at::Tensor planes = x.reshape({count, s.channels, s.pixels()});
      g1.params[0].add_(at::matmul(d_xp_planes, planes.transpose(1, 2)).sum(0));
      at::Tensor dx_planes = dx.narrow(0, first, count).view({count, s.channels, s.pixels()});
      at::bmm_out(dx_planes, rnn1_.input_weight().t().expand({count, s.channels, -1}), d_xp_planes);
    }
    std::vector<at::Tensor> d_proj;
    if (s.global) d_proj = {d_proj_weight, d_proj_bias};
    return {dx, g1.params, g2.params, d_proj};
  }

 private:
  // A chunk's patches are numbered from 0, so the geometry does not depend on the chunk.
  SequenceGeometry geometry(SequenceSet set) const {
    const SweepShape& s = shape_;
    return SequenceGeometry{set, s.height, s.width, s.out_h(), s.out_w(), s.kernel_h, s.kernel_w,
                            s.stride_h, s.stride_w, s.pad_h, s.pad_w};
  }

  // RNN1's input projection of every pixel of x [n, C, H, W] (no bias): [n H W, gates h1], one row
  // per pixel in the order SequenceGeometry::input_row numbers them. A batched GEMM reads each
  // sample's [C, H W] planes transposed, so x is never copied to channels-last.
  at::Tensor project_pixels(const at::Tensor& x) const {
    const at::Tensor planes = x.reshape({x.size(0), shape_.channels, shape_.pixels()});
    return at::matmul(planes.transpose(1, 2), rnn1_.input_weight().t()).view({x.size(0) * shape_.pixels(), -1});
  }

  // The input projection of every row of `rows` (no bias): [rows, gates hidden].
  static at::Tensor project(const at::Tensor& rows, const Cell& c) { return at::mm(rows, c.input_weight().t()); }

  // RNN1's summaries of every patch of `count` samples from their projected pixels `xp`
  // (project_pixels): [count H' W', (kh + kw) h1].
  at::Tensor summarize(const at::Tensor& xp, int64_t count) const {
    const SweepShape& s = shape_;
    const int64_t P = count * s.patches();
    at::Tensor summaries = at::empty({P, s.summaries() * s.hidden1}, x_.options());
    SequenceJob<T> job = make_job<T>(geometry(SequenceSet::PatchLines), P * s.summaries(), rnn1_, xp);
    job.final_state = summaries.data_ptr<T>();
    runner_.forward(job);
    return summaries;
  }

  // Back-propagates d_final [sequences, hidden] through one sequence set of `count` samples whose
  // projected inputs are `inputs`; adds the cell's recurrent-weight, bias and zeta/nu gradients to
  // `grads` and returns the gradient of `inputs` ([num_input_rows, gates hidden]).
  at::Tensor backward_sequences(SequenceSet set, int64_t count, const Cell& c, const at::Tensor& inputs,
                                const at::Tensor& d_final, CellGradients& grads, int64_t num_input_rows) const {
    const SequenceGeometry geo = geometry(set);
    const int64_t patches = count * shape_.patches();
    const int64_t rows = patches * geo.steps_per_patch();
    SequenceJob<T> job = make_job<T>(geo, patches * geo.sequences_per_patch(), c, inputs);
    const at::Tensor h_prev = at::empty({rows, c.hidden}, x_.options());
    const at::Tensor records = at::empty({rows, job.record_width()}, x_.options());
    const at::Tensor step_inputs = at::empty({rows}, x_.options().dtype(at::kLong));
    const at::Tensor mix_partials = at::empty({job.num_sequences, c.hidden, 2}, x_.options());
    const at::Tensor d_final_rows = d_final.contiguous();
    job.d_final = d_final_rows.data_ptr<T>();
    job.h_prev = h_prev.data_ptr<T>();
    job.records = records.data_ptr<T>();
    job.step_inputs = step_inputs.data_ptr<int64_t>();
    job.mix_partials = mix_partials.data_ptr<T>();
    runner_.backward(job);

    const int64_t H = c.hidden;
    at::Tensor d_input;  // per step, the gradient of its input projection
    if (c.kind == CellKind::FastGRNN) {
      const at::Tensor d_gate = records.narrow(1, 0, H), d_update = records.narrow(1, H, H);
      d_input = d_gate + d_update;  // pre = W x + U h_prev feeds both
      grads.params[1].addmm_(d_input.t(), h_prev);
      grads.params[2].add_(d_gate.sum(0));
      grads.params[3].add_(d_update.sum(0));
      // Chain rule through the sigmoid the cell applies to the raw zeta and nu.
      const at::Tensor sums = mix_partials.sum(at::IntArrayRef{0, 1});
      for (int i = 0; i < 2; ++i) {
        const at::Tensor squashed = at::sigmoid(c.params[4 + i]);
        grads.params[4 + i].add_(sums.narrow(0, i, 1) * squashed * (1 - squashed));
      }
    } else {
      d_input = records.narrow(1, 0, 3 * H);  // d ai = d ah for r and z; d ah_n is stored apart
      const at::Tensor d_recurrent = at::cat({records.narrow(1, 0, 2 * H), records.narrow(1, 3 * H, H)}, 1);
      grads.params[1].addmm_(d_recurrent.t(), h_prev);
      grads.params[2].add_(d_input.sum(0));
      grads.params[3].add_(d_recurrent.sum(0));
    }
    // Sum the steps' gradients per input row; padding steps (-1) go to a spare last row.
    const at::Tensor targets = at::where(step_inputs < 0, num_input_rows, step_inputs);
    at::Tensor d_inputs = at::zeros({num_input_rows + 1, c.gates() * H}, x_.options());
    d_inputs.index_add_(0, targets, d_input);
    return d_inputs.narrow(0, 0, num_input_rows);
  }

  // Samples per backward chunk, so that the per-step records fit backward_workspace_bytes().
  int64_t samples_per_chunk() const {
    const SweepShape& s = shape_;
    const int64_t width1 = s.hidden1 * (rnn1_.kind == CellKind::GRU ? 5 : 3) + 1;  // h_prev, records, index
    const int64_t width2 = s.hidden2 * (rnn2_.kind == CellKind::GRU ? 5 : 3) + 1;
    const int64_t per_patch = 2 * s.kernel_h * s.kernel_w * width1 + 2 * s.summaries() * width2;
    const int64_t per_sample = std::max<int64_t>(1, s.patches() * per_patch * int64_t(sizeof(T)));
    return std::max<int64_t>(1, std::min<int64_t>(s.batch, backward_workspace_bytes() / per_sample));
  }

  const SequenceRunner& runner_;
  SweepShape shape_;
  at::ScalarType dtype_;
  at::Tensor x_;
  Cell rnn1_, rnn2_;
  at::Tensor proj_weight_, proj_bias_;
};

// float64 stays float64; everything else (float32, float16, bfloat16) computes in float32.
template <class F>
auto with_compute_type(const at::Tensor& x, F&& f) {
  if (x.scalar_type() == at::kDouble) return f(double{});
  return f(float{});
}

}  // namespace

at::Tensor sequence_sweep_forward(const SequenceRunner& runner, const at::Tensor& x, at::TensorList rnn1,
                                  at::TensorList rnn2, const c10::optional<at::Tensor>& proj_weight,
                                  const c10::optional<at::Tensor>& proj_bias, at::IntArrayRef kernel_size,
                                  at::IntArrayRef stride, at::IntArrayRef padding, c10::string_view cell,
                                  c10::string_view gate, c10::string_view update, c10::string_view parts) {
  const SweepArgs args = check_sweep_args(x, rnn1, rnn2, proj_weight, proj_bias, kernel_size, stride, padding, cell,
                                          gate, update, parts);
  const at::OptionalDeviceGuard device_guard(x.device());
  return with_compute_type(x, [&](auto type) {
    using T = decltype(type);
    return SequencePipeline<T>(runner, args, x, rnn1, rnn2, proj_weight, proj_bias).forward().to(x.scalar_type());
  });
}

SweepGradients sequence_sweep_backward(const SequenceRunner& runner, const at::Tensor& grad_output,
                                       const at::Tensor& x, at::TensorList rnn1, at::TensorList rnn2,
                                       const c10::optional<at::Tensor>& proj_weight,
                                       const c10::optional<at::Tensor>& proj_bias, at::IntArrayRef kernel_size,
                                       at::IntArrayRef stride, at::IntArrayRef padding, c10::string_view cell,
                                       c10::string_view gate, c10::string_view update, c10::string_view parts) {
  const SweepArgs args = check_sweep_args(x, rnn1, rnn2, proj_weight, proj_bias, kernel_size, stride, padding, cell,
                                          gate, update, parts);
  check_grad_output(grad_output, x, args.shape);
  const at::OptionalDeviceGuard device_guard(x.device());
  return with_compute_type(x, [&](auto type) {
    using T = decltype(type);
    auto [dx, g1, g2, gproj] =
        SequencePipeline<T>(runner, args, x, rnn1, rnn2, proj_weight, proj_bias).backward(grad_output);
    // Back to each input's own dtype (they all share x's, see check_sweep_args).
    auto cast = [&](std::vector<at::Tensor>& grads) {
      for (at::Tensor& g : grads) g = g.to(x.scalar_type());
    };
    cast(g1);
    cast(g2);
    cast(gproj);
    return SweepGradients{dx.to(x.scalar_type()), g1, g2, gproj};
  });
}

}  // namespace rnnpool
