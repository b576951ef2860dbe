// Tests of the torch-free core, for every ISA build the CPU supports: the lane-batched sweep against
// a plain per-patch loop written independently here (forward, float and double), its float forward
// and backward against the scalar build's, and the double backward against central finite
// differences. Every buffer the kernels touch ends at an inaccessible page (Guarded).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "../kernel.h"
#include "exact_nonlinearity.h"
#include "guarded.h"

using namespace rnnpool;
using rnnpool_test::Guarded;

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    ++failures;
    std::printf("FAIL: %s\n", what.c_str());
  }
}

struct Case {
  std::string name;
  CellKind cell;
  int64_t batch, channels, height, width, kh, kw, sh, sw, ph, pw, h1, h2;
  bool rows, global, cols;
  Nonlinearity gate = Nonlinearity::Sigmoid, update = Nonlinearity::Tanh;
};

SweepShape shape_of(const Case& c) {
  return SweepShape{c.batch, c.channels, c.height, c.width, c.kh, c.kw, c.sh, c.sw, c.ph, c.pw,
                    c.h1, c.h2, c.rows, c.global, c.cols};
}

// All parameters of a case in one vector per tensor, in the op's order.
struct Params {
  std::vector<std::vector<double>> rnn1, rnn2;
  std::vector<double> proj_w, proj_b;
};

std::vector<double> random_vector(int64_t n, std::mt19937& rng, double scale) {
  std::normal_distribution<double> d(0, scale);
  std::vector<double> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

std::vector<std::vector<double>> random_cell(CellKind kind, int64_t in, int64_t h, std::mt19937& rng) {
  const int64_t g = kind == CellKind::GRU ? 3 : 1;
  std::vector<std::vector<double>> p = {random_vector(g * h * in, rng, 0.5), random_vector(g * h * h, rng, 0.5),
                                        random_vector(g * h, rng, 0.5), random_vector(g * h, rng, 0.5)};
  if (kind == CellKind::FastGRNN) p.push_back(random_vector(1, rng, 1.0)), p.push_back(random_vector(1, rng, 1.0));
  return p;
}

// One RNN over a sequence of input vectors, written plainly from docs/spec.md section 4.
std::vector<double> naive_rnn(const Case& c, const std::vector<std::vector<double>>& p, int64_t in, int64_t h,
                              const std::vector<std::vector<double>>& seq) {
  std::vector<double> state(h, 0.0);
  for (const auto& x : seq) {
    std::vector<double> next(h);
    if (c.cell == CellKind::FastGRNN) {
      const double zeta = 1 / (1 + std::exp(-p[4][0])), nu = 1 / (1 + std::exp(-p[5][0]));
      for (int64_t j = 0; j < h; ++j) {
        double pre = 0;
        for (int64_t k = 0; k < in; ++k) pre += p[0][j * in + k] * x[k];
        for (int64_t k = 0; k < h; ++k) pre += p[1][j * h + k] * state[k];
        const double z = exact_nonlinearity(c.gate, pre + p[2][j]), ht = exact_nonlinearity(c.update, pre + p[3][j]);
        next[j] = z * state[j] + (zeta * (1 - z) + nu) * ht;
      }
    } else {
      auto affine = [&](int gate, int64_t j) {
        double a = p[2][gate * h + j], b = p[3][gate * h + j];
        for (int64_t k = 0; k < in; ++k) a += p[0][(gate * h + j) * in + k] * x[k];
        for (int64_t k = 0; k < h; ++k) b += p[1][(gate * h + j) * h + k] * state[k];
        return std::make_pair(a, b);
      };
      for (int64_t j = 0; j < h; ++j) {
        auto [ar, br] = affine(0, j);
        auto [az, bz] = affine(1, j);
        auto [an, bn] = affine(2, j);
        const double r = 1 / (1 + std::exp(-(ar + br))), z = 1 / (1 + std::exp(-(az + bz)));
        const double n = std::tanh(an + r * bn);
        next[j] = (1 - z) * n + z * state[j];
      }
    }
    state = next;
  }
  return state;
}

std::vector<double> naive_forward(const Case& c, const Params& p, const std::vector<double>& x) {
  const SweepShape s = shape_of(c);
  const int64_t oh = s.out_h(), ow = s.out_w(), co = s.out_channels();
  std::vector<double> out(c.batch * co * oh * ow);
  for (int64_t n = 0; n < c.batch; ++n)
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        auto pixel = [&](int64_t i, int64_t j) {
          std::vector<double> v(c.channels, 0.0);
          const int64_t y = oy * c.sh - c.ph + i, xx = ox * c.sw - c.pw + j;
          if (y >= 0 && y < c.height && xx >= 0 && xx < c.width)
            for (int64_t ch = 0; ch < c.channels; ++ch) v[ch] = x[((n * c.channels + ch) * c.height + y) * c.width + xx];
          return v;
        };
        std::vector<std::vector<double>> rows, cols;
        for (int64_t i = 0; i < c.kh; ++i) {
          std::vector<std::vector<double>> seq;
          for (int64_t j = 0; j < c.kw; ++j) seq.push_back(pixel(i, j));
          rows.push_back(naive_rnn(c, p.rnn1, c.channels, c.h1, seq));
        }
        for (int64_t j = 0; j < c.kw; ++j) {
          std::vector<std::vector<double>> seq;
          for (int64_t i = 0; i < c.kh; ++i) seq.push_back(pixel(i, j));
          cols.push_back(naive_rnn(c, p.rnn1, c.channels, c.h1, seq));
        }
        std::vector<double> feats;
        auto append = [&](const std::vector<double>& v) { feats.insert(feats.end(), v.begin(), v.end()); };
        auto bidir = [&](std::vector<std::vector<double>> seq) {
          append(naive_rnn(c, p.rnn2, c.h1, c.h2, seq));
          std::reverse(seq.begin(), seq.end());
          append(naive_rnn(c, p.rnn2, c.h1, c.h2, seq));
        };
        if (c.rows) bidir(rows);
        if (c.global) {
          std::vector<double> all;
          for (auto& r : rows) all.insert(all.end(), r.begin(), r.end());
          for (auto& v : cols) all.insert(all.end(), v.begin(), v.end());
          for (int64_t k = 0; k < 4 * c.h2; ++k) {
            double acc = p.proj_b[k];
            for (size_t m = 0; m < all.size(); ++m) acc += p.proj_w[k * all.size() + m] * all[m];
            feats.push_back(acc);
          }
        }
        if (c.cols) bidir(cols);
        for (int64_t k = 0; k < co; ++k) out[((n * co + k) * oh + oy) * ow + ox] = feats[k];
      }
  return out;
}

template <class T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

template <class T>
using Factory = std::unique_ptr<SweepKernel<T>> (*)(CellKind, const SweepShape&, const SweepParams<T>&);

// A ParallelFor in another order: every task a range of its own, last task first (what a thread
// pool may do; no result may change).
void one_by_one_backwards(int64_t tasks, const std::function<void(int64_t, int64_t)>& run) {
  for (int64_t i = tasks - 1; i >= 0; --i) run(i, i + 1);
}

// Runs one core build on T copies of the data: forward, and (when grad_out is given) backward,
// `chunk` samples at a time, the tasks scheduled by `parallel`. Every array the kernels read or
// write is Guarded.
template <class T>
struct CoreRun {
  std::unique_ptr<Guarded<T>> out, dx;
  std::vector<double> grad;

  CoreRun(Factory<T> make, const Case& c, const Params& p, const std::vector<double>& x,
          const std::vector<double>* grad_out, int64_t chunk = 0, const ParallelFor& parallel = serial_for) {
    std::vector<std::unique_ptr<Guarded<T>>> r1, r2;
    std::vector<const T*> r1p, r2p;
    for (auto& v : p.rnn1) r1.push_back(std::make_unique<Guarded<T>>(v)), r1p.push_back(r1.back()->data());
    for (auto& v : p.rnn2) r2.push_back(std::make_unique<Guarded<T>>(v)), r2p.push_back(r2.back()->data());
    const Guarded<T> pw(p.proj_w), pb(p.proj_b);
    const SweepShape s = shape_of(c);
    const SweepParams<T> sp{r1p.data(), r2p.data(), pw.data(), pb.data(), c.gate, c.update};
    const std::unique_ptr<SweepKernel<T>> sweep = make(c.cell, s, sp);
    const int64_t in_sample = c.channels * c.height * c.width, out_sample = s.out_channels() * s.patches();
    if (chunk <= 0) chunk = c.batch;
    out = std::make_unique<Guarded<T>>(c.batch * out_sample);
    for (int64_t first = 0; first < c.batch; first += chunk) {
      // Per chunk, so the guard pages sit right after this chunk's data.
      const int64_t count = std::min(chunk, c.batch - first);
      const Guarded<T> x_chunk(count * in_sample), buffer(sweep->forward_buffer_size(count));
      Guarded<T> out_chunk(count * out_sample);
      std::copy(x.begin() + first * in_sample, x.begin() + (first + count) * in_sample, x_chunk.data());
      sweep->forward(x_chunk.data(), count, out_chunk.data(), buffer.data(), parallel);
      std::copy(out_chunk.data(), out_chunk.data() + count * out_sample, out->data() + first * out_sample);
    }
    if (!grad_out) return;
    dx = std::make_unique<Guarded<T>>(x.size());
    grad.assign(sweep->layout().total, 0.0);
    for (int64_t first = 0; first < c.batch; first += chunk) {
      const int64_t count = std::min(chunk, c.batch - first);
      const Guarded<T> x_chunk(count * in_sample), go(count * out_sample), buffer(sweep->backward_buffer_size(count));
      Guarded<T> dx_chunk(count * in_sample, T(7));  // every element must be overwritten
      std::copy(x.begin() + first * in_sample, x.begin() + (first + count) * in_sample, x_chunk.data());
      std::copy(grad_out->begin() + first * out_sample, grad_out->begin() + (first + count) * out_sample, go.data());
      sweep->backward(x_chunk.data(), go.data(), count, dx_chunk.data(), grad.data(), buffer.data(), parallel);
      std::copy(dx_chunk.data(), dx_chunk.data() + count * in_sample, dx->data() + first * in_sample);
    }
    sweep->finalize(grad.data());
  }
};

// Whether two runs gave the same bits: output, dx and parameter gradients.
template <class T>
bool same_bits(const CoreRun<T>& a, const CoreRun<T>& b) {
  for (size_t i = 0; i < a.out->size(); ++i)
    if ((*a.out)[i] != (*b.out)[i]) return false;
  for (size_t i = 0; i < a.dx->size(); ++i)
    if ((*a.dx)[i] != (*b.dx)[i]) return false;
  return a.grad == b.grad;
}

template <class T>
double max_forward_error(Factory<T> make, const Case& c, const Params& p, const std::vector<double>& x) {
  const std::vector<double> want = naive_forward(c, p, x);
  const CoreRun<T> run(make, c, p, x, nullptr);
  double err = 0;
  for (size_t i = 0; i < want.size(); ++i) err = std::max(err, std::fabs(double((*run.out)[i]) - want[i]));
  return want.empty() ? 0 : err;
}

// All parameters and the input as one list of pointers, for finite differences.
std::vector<double*> all_values(Params& p, std::vector<double>& x) {
  std::vector<double*> v;
  for (auto& t : p.rnn1)
    for (auto& e : t) v.push_back(&e);
  for (auto& t : p.rnn2)
    for (auto& e : t) v.push_back(&e);
  for (auto& e : p.proj_w) v.push_back(&e);
  for (auto& e : p.proj_b) v.push_back(&e);
  for (auto& e : x) v.push_back(&e);
  return v;
}

double max_gradient_error(Factory<double> make, const Case& c, Params p, std::vector<double> x, std::mt19937& rng) {
  const SweepShape s = shape_of(c);
  const std::vector<double> go = random_vector(c.batch * s.out_channels() * s.patches(), rng, 1.0);
  const CoreRun<double> run(make, c, p, x, &go);
  auto loss = [&]() {
    const std::vector<double> out = naive_forward(c, p, x);
    double l = 0;
    for (size_t i = 0; i < out.size(); ++i) l += out[i] * go[i];
    return l;
  };
  // Analytic gradients in the same order as all_values(): the flat layout, then dx.
  std::vector<double> analytic(run.grad);
  analytic.insert(analytic.end(), run.dx->data(), run.dx->data() + run.dx->size());
  const std::vector<double*> values = all_values(p, x);
  double err = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    const double keep = *values[i], eps = 1e-6;
    *values[i] = keep + eps;
    const double up = loss();
    *values[i] = keep - eps;
    const double down = loss();
    *values[i] = keep;
    const double numeric = (up - down) / (2 * eps);
    err = std::max(err, std::fabs(numeric - analytic[i]) / (1 + std::fabs(numeric)));
  }
  return err;
}

// One build's float forward and backward against another's: the largest difference in the output,
// dx and the parameter gradients, each relative to the largest magnitude of that result.
double max_float_difference(Factory<float> make, Factory<float> reference, const Case& c, const Params& p,
                            const std::vector<double>& x, std::mt19937& rng) {
  const SweepShape s = shape_of(c);
  const std::vector<double> go = random_vector(c.batch * s.out_channels() * s.patches(), rng, 1.0);
  const CoreRun<float> run(make, c, p, x, &go), want(reference, c, p, x, &go);
  auto relative = [](const auto& a, const auto& b) {
    double diff = 0, scale = 1e-3;
    for (size_t i = 0; i < b.size(); ++i) {
      diff = std::max(diff, std::fabs(double(a[i]) - double(b[i])));
      scale = std::max(scale, std::fabs(double(b[i])));
    }
    return diff / scale;
  };
  return std::max({relative(*run.out, *want.out), relative(*run.dx, *want.dx), relative(run.grad, want.grad)});
}

}  // namespace

int main() {
  std::mt19937 rng(1234);
  const Nonlinearity S = Nonlinearity::Sigmoid, Tn = Nonlinearity::Tanh, QS = Nonlinearity::QuantSigm,
                     QT = Nonlinearity::QuantTanh;
  // name, cell, N, C, H, W, kh, kw, sh, sw, ph, pw, h1, h2, R, G, C
  std::vector<Case> cases = {
      {"fastgrnn square overlap", CellKind::FastGRNN, 2, 3, 9, 9, 4, 4, 2, 2, 0, 0, 5, 3, true, false, true},
      {"fastgrnn nonsquare gaps padding", CellKind::FastGRNN, 1, 2, 7, 11, 2, 3, 3, 4, 1, 2, 4, 3, true, true, true},
      {"fastgrnn quantised", CellKind::FastGRNN, 2, 3, 6, 5, 3, 2, 1, 2, 1, 0, 3, 2, true, false, true, QS, QT},
      {"fastgrnn tanh gate sigmoid update", CellKind::FastGRNN, 1, 2, 5, 6, 3, 3, 2, 1, 1, 1, 3, 2, true, true, false, Tn, S},
      {"gru rex", CellKind::GRU, 2, 3, 8, 7, 3, 4, 2, 3, 1, 1, 4, 3, true, true, true},
      {"gru global only single patch", CellKind::GRU, 1, 2, 3, 4, 3, 4, 1, 1, 0, 0, 3, 2, false, true, false},
      {"gru columns only", CellKind::GRU, 3, 2, 5, 5, 5, 2, 5, 1, 0, 0, 2, 2, false, false, true},
      // Wide rows: lane groups of many sequences side by side, and groups across patch rows.
      {"fastgrnn wide rows", CellKind::FastGRNN, 2, 3, 6, 40, 3, 3, 2, 2, 0, 0, 4, 3, true, false, true},
      {"gru wide rows padded", CellKind::GRU, 1, 2, 5, 37, 3, 2, 2, 1, 1, 1, 3, 2, true, true, true},
      // Hidden sizes that are not multiples of any register width or unroll factor.
      {"gru odd hidden sizes", CellKind::GRU, 1, 3, 5, 4, 3, 2, 1, 1, 1, 0, 9, 5, true, true, true},
      // Fewer patches per sample than lanes: groups span samples (19 samples: 16 + 3 patches).
      {"gru one patch per sample", CellKind::GRU, 19, 3, 4, 4, 4, 4, 4, 4, 0, 0, 4, 3, true, true, true},
      {"fastgrnn six patches per sample", CellKind::FastGRNN, 5, 2, 5, 7, 3, 3, 2, 2, 0, 0, 3, 2, true, false, true},
      // Blocks of 16 samples per sequence-group block and pixel task, and a partial one (23 = 16 + 7).
      {"gru blocks of samples", CellKind::GRU, 23, 2, 4, 4, 2, 2, 2, 2, 0, 0, 3, 2, true, true, true},
      // More pixels than a grouped pixel task takes (256): a sample per task; more than a block of
      // one (1024): two blocks, the last one partial.
      {"gru a sample per pixel task", CellKind::GRU, 2, 2, 17, 20, 3, 3, 2, 2, 1, 1, 3, 2, true, true, true},
      {"fastgrnn two pixel blocks", CellKind::FastGRNN, 1, 2, 33, 33, 3, 3, 2, 2, 1, 1, 3, 2, true, false, true},
      // Enough channels, units and pixels for the backward projection's whole register tiles and
      // every kind of edge (9 channels, 15 or 6 units, 99 pixels: 96 in tiles, 3 left over).
      {"gru register tiles of the projection", CellKind::GRU, 2, 9, 9, 11, 3, 3, 2, 2, 1, 1, 5, 3, true, true, true},
      {"fastgrnn register tiles of the projection", CellKind::FastGRNN, 1, 7, 9, 11, 3, 3, 2, 2, 1, 1, 6, 2, true, false, true},
      // Hidden sizes that fill whole registers (8: AVX2, 16: AVX-512): RNN1's recurrent weight
      // gradient summed over the lanes per group.
      {"gru hidden 16", CellKind::GRU, 2, 3, 7, 9, 3, 3, 2, 2, 1, 1, 16, 3, true, true, true},
      {"fastgrnn hidden 8", CellKind::FastGRNN, 1, 2, 9, 7, 3, 3, 2, 2, 1, 1, 8, 3, true, false, true},
  };
  const CpuIsa& scalar_isa = compiled_cpu_isas().back();
  for (const CpuIsa& isa : compiled_cpu_isas()) {
    if (!isa.supported) {
      std::printf("SKIPPED: this CPU cannot run the %s build\n", isa.name);
      continue;
    }
    const bool is_scalar = &isa == &scalar_isa;
    for (const Case& c : cases) {
      Params p;
      p.rnn1 = random_cell(c.cell, c.channels, c.h1, rng);
      p.rnn2 = random_cell(c.cell, c.h1, c.h2, rng);
      if (c.global) {
        p.proj_w = random_vector(4 * c.h2 * (c.kh + c.kw) * c.h1, rng, 0.3);
        p.proj_b = random_vector(4 * c.h2, rng, 0.3);
      }
      const std::vector<double> x = random_vector(c.batch * c.channels * c.height * c.width, rng, 1.0);
      const double f32 = max_forward_error(isa.make_float, c, p, x);
      const double f64 = max_forward_error(isa.make_double, c, p, x);
      const std::string name = std::string(isa.name) + " " + c.name;
      expect(f32 < 2e-5, name + ": float32 forward error " + std::to_string(f32));
      expect(f64 < 1e-12, name + ": float64 forward error " + std::to_string(f64));
      {
        // No result may depend on the schedule of the tasks; the chunking changes only rounding.
        const SweepShape s = shape_of(c);
        const std::vector<double> go = random_vector(c.batch * s.out_channels() * s.patches(), rng, 1.0);
        const CoreRun<float> in_order(isa.make_float, c, p, x, &go), shuffled(isa.make_float, c, p, x, &go, 0, one_by_one_backwards);
        expect(same_bits(in_order, shuffled), name + ": float32 results depend on the order of the tasks");
        const CoreRun<double> whole(isa.make_double, c, p, x, &go), by_sample(isa.make_double, c, p, x, &go, 1);
        double diff = 0;
        for (size_t i = 0; i < whole.grad.size(); ++i)
          diff = std::max(diff, std::fabs(whole.grad[i] - by_sample.grad[i]) / (1 + std::fabs(whole.grad[i])));
        for (size_t i = 0; i < whole.dx->size(); ++i) diff = std::max(diff, std::fabs((*whole.dx)[i] - (*by_sample.dx)[i]));
        for (size_t i = 0; i < whole.out->size(); ++i) diff = std::max(diff, std::fabs((*whole.out)[i] - (*by_sample.out)[i]));
        expect(diff < 1e-12, name + ": one sample per chunk differs from one chunk by " + std::to_string(diff));
      }
      if (is_scalar) {
        // float64 runs the scalar code in every build: finite differences once, here.
        const double grad = max_gradient_error(isa.make_double, c, p, x, rng);
        // The quantised nonlinearities have kinks, where finite differences are not derivatives.
        const bool smooth = c.gate <= Nonlinearity::Tanh && c.update <= Nonlinearity::Tanh;
        expect(!smooth || grad < 1e-6, name + ": gradient error " + std::to_string(grad));
        std::printf("%-50s fwd f32 %.1e  f64 %.1e  grad %.1e\n", name.c_str(), f32, f64, grad);
      } else {
        const double diff = max_float_difference(isa.make_float, scalar_isa.make_float, c, p, x, rng);
        expect(diff < 1e-4, name + ": float32 forward/backward differ from the scalar build's by " + std::to_string(diff));
        std::printf("%-50s fwd f32 %.1e  f64 %.1e  f32 fwd+bwd vs scalar %.1e\n", name.c_str(), f32, f64, diff);
      }
    }
  }
  if (failures) std::printf("%d check(s) failed\n", failures);
  return failures ? 1 : 0;
}
