// The rnnpool operator library: every schema of torch.ops.rnnpool in one place, and a small C API
// for choosing the CPU kernels' ISA build. Backends register their kernels in their own files
// (cpu/, gpu/) with TORCH_LIBRARY_IMPL; autograd and fake (meta) kernels are registered from Python
// in rnnpool_ops/_ops.py. Nothing here needs Python: the library (librnnpool_ops.so) is loaded by
// the Python package and by C++ programs alike (examples/aoti_runner).
#include <torch/library.h>

#include <string>

#include "cpu/cpu_isa.h"
#include "schemas.h"

namespace {

// The text a C API call hands back; valid until the calling thread's next call.
thread_local std::string c_api_text;

// Runs f (which sets c_api_text on success) and returns 0, or 1 with the message of a bad value
// (c10::ValueError), or 2 with the message of any other error.
template <class F>
int c_api_call(const char** text, F&& f) {
  int status = 0;
  try {
    f();
  } catch (const c10::ValueError& e) {
    c_api_text = e.what_without_backtrace();
    status = 1;
  } catch (const std::exception& e) {
    c_api_text = e.what();
    status = 2;
  }
  *text = c_api_text.c_str();
  return status;
}

}  // namespace

// The C API (rnnpool_ops/_ops.py calls it through ctypes; a C++ program may call it too). Each
// function returns 0 and sets *text to its result, or returns 1 (bad value) or 2 (other error)
// and sets *text to the message.
extern "C" {

// The ISA build the CPU kernels run (see cpu/cpu_isa.h).
__attribute__((visibility("default"))) int rnnpool_cpu_isa(const char** text) {
  return c_api_call(text, [] { c_api_text = rnnpool::active_cpu_isa().name; });
}

// Choose the ISA build by name ("auto": the best this CPU runs); *text is the previous name.
__attribute__((visibility("default"))) int rnnpool_set_cpu_isa(const char* name, const char** text) {
  return c_api_call(text, [name] {
    const std::string previous = rnnpool::active_cpu_isa().name;
    rnnpool::set_cpu_isa(name);
    c_api_text = previous;
  });
}

// The builds this CPU can run, best first, separated by spaces.
__attribute__((visibility("default"))) int rnnpool_available_cpu_isas(const char** text) {
  return c_api_call(text, [] {
    std::string names;
    for (const std::string& name : rnnpool::available_cpu_isas()) names += (names.empty() ? "" : " ") + name;
    c_api_text = names;
  });
}

}  // extern "C"

TORCH_LIBRARY(rnnpool, m) {
  // The patch sweep of RNNPool and ReX (docs/spec.md sections 1-4). rnn1/rnn2 hold the cell's parameters
  // in its own order (fastgrnn: W, U, bias_gate, bias_update, zeta, nu; gru: weight_ih, weight_hh,
  // bias_ih, bias_hh). parts picks the output blocks, in the order R, G, C: "RC" is RNNPool,
  // "RGC" is ReX; proj_weight/proj_bias (ReX's f_L) are required exactly when "G" is asked for.
  m.def("forward" SWEEP_FORWARD_SIGNATURE);
  // Gradients of forward for every tensor input; grad_proj is [] without "G", else [weight, bias].
  m.def("backward" SWEEP_BACKWARD_SIGNATURE);
  // DDI's gated-skip convolution (docs/spec.md section 5): y = m * act(scale * conv2d(x, weight, bias) + shift)
  // + (1 - m) * x with m[n, c] = layer_gate[n] * channel_gate[n, c]; a shape-keeping convolution
  // (weight [C, C/groups, kh, kw], odd kernel, stride 1, padding dilation * (k - 1) / 2); absent
  // optional tensors are ones (gates, scale) or zeros (bias, shift); activation "none" or "relu".
  // Wherever m is exactly 0 the convolution is skipped.
  m.def(
      "gated_skip_conv2d(Tensor x, Tensor weight, Tensor? bias, Tensor? layer_gate, Tensor? channel_gate, "
      "Tensor? scale, Tensor? shift, int[2] dilation, int groups, str activation) -> Tensor");
  // Its gradients, recomputing the whole convolution (gated-off channels included: the gate gradient
  // needs them). grad_x / grad_weight are computed where conv_grad_mask says; a gradient that is not
  // computed, or belongs to an absent input, is an empty tensor of shape [0].
  // MobileNetV2's inverted residual block for inference (docs/spec.md section 7): y = project_weight @
  // clamp(depthwise(clamp(expand_weight @ x + expand_bias)) + depthwise_bias) + project_bias (+ x when
  // residual), each clamp to its (low, high); no expand_weight/expand_bias: no expansion (the first
  // clamp still applies). The output is computed tile_rows rows at a time holding only the expanded
  // rows a tile reads (a tile's choice changes memory, not the result beyond rounding).
  m.def(
      "inverted_residual(Tensor x, Tensor? expand_weight, Tensor? expand_bias, Tensor depthwise_weight, "
      "Tensor depthwise_bias, Tensor project_weight, Tensor project_bias, int[2] stride, int[2] padding, "
      "int[2] dilation, float[2] expand_clamp, float[2] depthwise_clamp, bool residual, int tile_rows) -> Tensor");
  m.def(
      "gated_skip_conv2d_backward(Tensor grad_output, Tensor x, Tensor weight, Tensor? bias, Tensor? layer_gate, "
      "Tensor? channel_gate, Tensor? scale, Tensor? shift, int[2] dilation, int groups, str activation, "
      "bool[2] conv_grad_mask) -> (Tensor grad_x, Tensor grad_weight, Tensor grad_bias, Tensor grad_layer_gate, "
      "Tensor grad_channel_gate, Tensor grad_scale, Tensor grad_shift)");
}
