// The gated-skip convolution's direct kernel (gated_conv.h), for every ISA build the CPU supports,
// float and double, against a plain loop over the convolution's definition written here: groups,
// depthwise, dilation, kernels 1 to 5, widths on both sides of every register width, tiles of every
// channel count, both layouts (GatedConvLayout), rows run in two ranges. Channels with m = 0 must
// be left untouched, and every buffer ends at an inaccessible page (Guarded), so a read or write
// outside it crashes the test.
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "../kernel.h"
#include "guarded.h"

using namespace rnnpool;
using rnnpool_test::Guarded;

namespace {

int failures = 0;

struct Case {
  std::string name;
  int64_t channels, height, width, kernel, groups, dilation;
  bool relu;
};

struct Data {
  std::vector<double> x, weight, alpha, beta, gate;  // x [C][H][W], weight [C][C/groups][k][k]
};

Data make_case_data(const Case& c, std::mt19937& rng) {
  std::normal_distribution<double> normal(0, 1);
  Data d;
  auto fill = [&](std::vector<double>& v, int64_t n, double scale, double offset) {
    v.resize(n);
    for (double& e : v) e = offset + scale * normal(rng);
  };
  fill(d.x, c.channels * c.height * c.width, 1, 0);
  fill(d.weight, c.channels * (c.channels / c.groups) * c.kernel * c.kernel, 0.3, 0);
  fill(d.alpha, c.channels, 0.2, 1);
  fill(d.beta, c.channels, 0.3, 0);
  // Gates off, on and in between, so every channel count and position gets a job.
  const double values[] = {0.0, 1.0, 1.0, 0.3};
  for (int64_t ch = 0; ch < c.channels; ++ch) d.gate.push_back(values[rng() % 4]);
  return d;
}

// y[c] = m * act(alpha * conv + beta) + (1 - m) * x[c] straight from the definition.
double expected(const Case& c, const Data& d, int64_t ch, int64_t i, int64_t j) {
  const int64_t per_group = c.channels / c.groups, pad = c.dilation * (c.kernel - 1) / 2;
  double conv = 0;
  for (int64_t ci = 0; ci < per_group; ++ci)
    for (int64_t a = 0; a < c.kernel; ++a)
      for (int64_t b = 0; b < c.kernel; ++b) {
        const int64_t r = i - pad + a * c.dilation, q = j - pad + b * c.dilation;
        if (r < 0 || r >= c.height || q < 0 || q >= c.width) continue;
        const int64_t input = ch / per_group * per_group + ci;
        conv += d.weight[((ch * per_group + ci) * c.kernel + a) * c.kernel + b] *
                d.x[(input * c.height + r) * c.width + q];
      }
  double z = d.alpha[ch] * conv + d.beta[ch];
  if (c.relu && z < 0) z = 0;
  const double m = d.gate[ch];
  return m * z + (1 - m) * d.x[(ch * c.height + i) * c.width + j];
}

// Runs the build's kernel on T copies of the data: one job per group with an active channel, its
// rows in two ranges. Returns the largest error on active channels; inactive ones must keep the
// sentinel they were filled with.
template <class T>
double max_error(void (*run)(const GatedConvJob<T>&, int64_t, int64_t), const Case& c, const Data& d,
                 const GatedConvLayout& layout, const std::string& name) {
  const int64_t per_group = c.channels / c.groups;
  Guarded<T> padded(layout.buffer_size(c.channels)), alpha(d.alpha), beta(d.beta), gate(d.gate);
  for (int64_t ch = 0; ch < c.channels; ++ch)
    for (int64_t i = 0; i < c.height; ++i)
      for (int64_t j = 0; j < c.width; ++j)
        padded.data()[ch * layout.plane() + i * layout.padded_width + j + layout.origin()] =
            T(d.x[(ch * c.height + i) * c.width + j]);
  const T sentinel = T(12345);
  Guarded<T> y(c.channels * c.height * c.width, sentinel);
  const int64_t taps = per_group * c.kernel * c.kernel;
  for (int64_t group = 0; group < c.groups; ++group) {
    std::vector<int64_t> channels;
    for (int64_t ch = group * per_group; ch < (group + 1) * per_group; ++ch)
      if (d.gate[ch] != 0) channels.push_back(ch);
    if (channels.empty()) continue;
    const int64_t count = static_cast<int64_t>(channels.size());
    Guarded<T> filters(count * taps);
    for (int64_t j = 0; j < count; ++j)
      for (int64_t t = 0; t < taps; ++t) filters.data()[t * count + j] = T(d.weight[channels[j] * taps + t]);
    Guarded<int64_t> channel_list(channels.size());
    std::copy(channels.begin(), channels.end(), channel_list.data());
    GatedConvJob<T> job{};
    job.height = c.height, job.width = c.width, job.kernel_h = job.kernel_w = c.kernel;
    job.dilation_h = job.dilation_w = c.dilation;
    job.layout = layout;
    job.group_channels = per_group, job.relu = c.relu;
    job.padded = padded.data(), job.first_input = group * per_group;
    job.weights = filters.data(), job.channels = channel_list.data(), job.count = count;
    job.gate = gate.data(), job.alpha = alpha.data(), job.beta = beta.data(), job.y = y.data();
    const int64_t split = c.height / 3;
    run(job, 0, split);
    run(job, split, c.height);
  }
  double worst = 0;
  for (int64_t ch = 0; ch < c.channels; ++ch)
    for (int64_t i = 0; i < c.height; ++i)
      for (int64_t j = 0; j < c.width; ++j) {
        const T got = y[(ch * c.height + i) * c.width + j];
        if (d.gate[ch] == 0) {
          if (got != sentinel) {
            ++failures;
            std::printf("FAIL: %s: channel %lld has m = 0 but was written\n", name.c_str(), (long long)ch);
            return INFINITY;
          }
          continue;
        }
        const double want = expected(c, d, ch, i, j);
        worst = std::max(worst, std::fabs(double(got) - want) / (1 + std::fabs(want)));
      }
  return worst;
}

}  // namespace

int main() {
  std::mt19937 rng(4321);
  // name, C, H, W, kernel, groups, dilation, relu
  const std::vector<Case> cases = {
      {"k3 one register per row", 5, 4, 7, 3, 1, 1, true},
      {"k3 wide rows, many tiles", 29, 5, 37, 3, 1, 1, false},
      {"k3 rows of exactly two registers", 13, 3, 32, 3, 1, 1, true},
      {"k1", 7, 3, 17, 1, 1, 1, false},
      {"k5 dilation 2", 6, 9, 21, 5, 1, 2, true},
      {"kernel beyond the image", 4, 2, 3, 5, 1, 1, false},
      {"groups 2", 10, 5, 19, 3, 2, 1, true},
      {"depthwise", 9, 6, 40, 3, 9, 1, false},
      {"depthwise k5 dilation 2", 4, 7, 6, 5, 4, 2, true},
      {"single pixel", 3, 1, 1, 3, 1, 1, false},
  };
  for (const CpuIsa& isa : compiled_cpu_isas()) {
    if (!isa.supported) {
      std::printf("SKIPPED: this CPU cannot run the %s build\n", isa.name);
      continue;
    }
    for (const Case& c : cases) {
      const Data d = make_case_data(c, rng);
      // Both layouts, whichever gated_conv_layout would pick for the shape.
      for (bool across_rows : {false, true}) {
        const GatedConvLayout layout =
            gated_conv_layout(c.height, c.width, c.kernel, c.kernel, c.dilation, c.dilation, across_rows);
        const std::string name =
            std::string(isa.name) + " " + c.name + (layout.across_rows ? " (across rows)" : " (row by row)");
        const double f32 = max_error<float>(isa.gated_conv_float, c, d, layout, name + " float32");
        const double f64 = max_error<double>(isa.gated_conv_double, c, d, layout, name + " float64");
        if (!(f32 < 1e-5)) ++failures, std::printf("FAIL: %s: float32 error %g\n", name.c_str(), f32);
        if (!(f64 < 1e-12)) ++failures, std::printf("FAIL: %s: float64 error %g\n", name.c_str(), f64);
      }
    }
  }
  std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "passed", failures);
  return failures ? 1 : 0;
}
