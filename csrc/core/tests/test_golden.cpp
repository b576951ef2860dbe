// EdgeML's recorded Visual Wake Words RNNPool patch (python_tests/data, trained weights, one 6x6x8
// input and its 32 outputs) through every ISA build the CPU supports: under qemu this is the NEON
// build against EdgeML's own numbers.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "../kernel.h"

using namespace rnnpool;

namespace {

// Just enough JSON for the trace: objects, arrays, numbers and strings (strings are skipped).
struct Json {
  std::vector<double> numbers;  // a number, or a (nested) array of numbers flattened
  std::map<std::string, Json> fields;

  const Json& operator[](const std::string& key) const {
    auto it = fields.find(key);
    if (it == fields.end()) throw std::runtime_error("golden trace has no field '" + key + "'");
    return it->second;
  }
  double number() const { return numbers.at(0); }
};

class JsonParser {
 public:
  explicit JsonParser(std::string text) : s_(std::move(text)) {}
  Json parse() {
    Json j;
    value(j);
    return j;
  }

 private:
  void skip_space() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  char peek() {
    skip_space();
    if (i_ >= s_.size()) throw std::runtime_error("golden trace: unexpected end of JSON");
    return s_[i_];
  }
  std::string string() {
    std::string out;
    for (++i_; s_.at(i_) != '"'; ++i_) {
      if (s_[i_] == '\\') ++i_;
      out += s_.at(i_);
    }
    ++i_;
    return out;
  }
  void value(Json& into) {
    const char c = peek();
    if (c == '{') {
      ++i_;
      while (peek() != '}') {
        const std::string key = string();
        if (peek() != ':') throw std::runtime_error("golden trace: expected ':'");
        ++i_;
        value(into.fields[key]);
        if (peek() == ',') ++i_;
      }
      ++i_;
    } else if (c == '[') {
      ++i_;
      while (peek() != ']') {
        value(into);  // arrays of numbers flatten into one list
        if (peek() == ',') ++i_;
      }
      ++i_;
    } else if (c == '"') {
      string();
    } else {
      size_t used = 0;
      into.numbers.push_back(std::stod(s_.substr(i_, 40), &used));
      i_ += used;
    }
  }
  std::string s_;
  size_t i_ = 0;
};

// EdgeML stores zeta and nu after the sigmoid; the op takes the raw values.
double logit(double p) { return std::log(p / (1 - p)); }

struct Cell {
  std::vector<float> W, U, bias_gate, bias_update, zeta, nu;
  std::vector<const float*> pointers() const {
    return {W.data(), U.data(), bias_gate.data(), bias_update.data(), zeta.data(), nu.data()};
  }
};

Cell load_cell(const Json& j) {
  auto floats = [](const Json& v) { return std::vector<float>(v.numbers.begin(), v.numbers.end()); };
  return Cell{floats(j["W"]), floats(j["U"]), floats(j["bias_gate"]), floats(j["bias_update"]),
              {float(logit(j["sigmoid_zeta"].number()))}, {float(logit(j["sigmoid_nu"].number()))}};
}

}  // namespace

int main() {
  const std::string path = std::string(RNNPOOL_GOLDEN_DIR) + "/edgeml_vww_rnnpool_trace.json";
  std::ifstream file(path);
  if (!file) {
    std::printf("FAILED: golden trace not found at %s\n", path.c_str());
    return 1;
  }
  std::stringstream text;
  text << file.rdbuf();
  const Json trace = JsonParser(text.str()).parse();
  const int64_t C = int64_t(trace["input_channels"].number()), k = int64_t(trace["patch"].number());
  const int64_t h1 = int64_t(trace["h1"].number()), h2 = int64_t(trace["h2"].number());
  const Cell rnn1 = load_cell(trace["rnn1"]), rnn2 = load_cell(trace["rnn2"]);
  const std::vector<double>& hwc = trace["input_hwc"].numbers;
  const std::vector<double>& want = trace["output"].numbers;

  std::vector<float> chw(C * k * k);  // [rows, cols, channels] -> [channels, rows, cols]
  for (int64_t y = 0; y < k; ++y)
    for (int64_t x = 0; x < k; ++x)
      for (int64_t c = 0; c < C; ++c) chw[(c * k + y) * k + x] = float(hwc[(y * k + x) * C + c]);

  const SweepShape shape{1, C, k, k, k, k, k, k, 0, 0, h1, h2, true, false, true};
  const std::vector<const float*> p1 = rnn1.pointers(), p2 = rnn2.pointers();
  const SweepParams<float> params{p1.data(), p2.data(), nullptr, nullptr, Nonlinearity::Sigmoid, Nonlinearity::Tanh};
  int failures = 0;
  for (const CpuIsa& isa : compiled_cpu_isas()) {
    if (!isa.supported) {
      std::printf("SKIPPED: this CPU cannot run the %s build\n", isa.name);
      continue;
    }
    const std::unique_ptr<SweepKernel<float>> sweep = isa.make_float(CellKind::FastGRNN, shape, params);
    std::vector<float> buffer(sweep->forward_buffer_size(1)), out(shape.out_channels());
    sweep->forward(chw.data(), 1, out.data(), buffer.data(), serial_for);
    double err = 0;
    for (size_t i = 0; i < want.size(); ++i) err = std::max(err, std::fabs(double(out[i]) - want[i]));
    const bool ok = out.size() == want.size() && err < 1e-5;
    failures += !ok;
    std::printf("%s %-7s EdgeML VWW patch: %zu outputs, max abs error %.2e (bound 1e-5)\n", ok ? "ok  " : "FAIL",
                isa.name, out.size(), err);
  }
  return failures ? 1 : 0;
}
