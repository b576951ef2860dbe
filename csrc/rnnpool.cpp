// The rnnpool operator library: every schema in one place. Backends register their kernels in
// their own files (cpu/, cuda/, sequences/) with TORCH_LIBRARY_IMPL; autograd and fake (meta) kernels are
// registered from Python in rnnpool_ops/_ops.py.
#include <Python.h>
#include <torch/library.h>

#include "cpu/cpu_isa.h"

namespace {

// Runs f, turning a c10 error into the matching Python exception.
template <class F>
PyObject* calling_python(F&& f) {
  try {
    return f();
  } catch (const c10::ValueError& e) {
    PyErr_SetString(PyExc_ValueError, e.what_without_backtrace());
  } catch (const c10::Error& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what_without_backtrace());
  }
  return nullptr;
}

// rnnpool_ops._C.cpu_isa(): the ISA build of the CPU kernels in use (see cpu/cpu_isa.h).
PyObject* cpu_isa(PyObject*, PyObject*) {
  return calling_python([] { return PyUnicode_FromString(rnnpool::active_cpu_isa().name); });
}

// rnnpool_ops._C.set_cpu_isa(name)
PyObject* set_cpu_isa(PyObject*, PyObject* name) {
  const char* text = PyUnicode_AsUTF8(name);
  if (!text) return nullptr;
  return calling_python([text] {
    rnnpool::set_cpu_isa(text);
    Py_RETURN_NONE;
  });
}

// rnnpool_ops._C.available_cpu_isas(): the builds this CPU can run, best first.
PyObject* available_cpu_isas(PyObject*, PyObject*) {
  return calling_python([]() -> PyObject* {
    const std::vector<std::string> names = rnnpool::available_cpu_isas();
    PyObject* list = PyList_New(static_cast<Py_ssize_t>(names.size()));
    if (!list) return nullptr;
    for (size_t i = 0; i < names.size(); ++i)
      PyList_SET_ITEM(list, static_cast<Py_ssize_t>(i), PyUnicode_FromString(names[i].c_str()));
    return list;
  });
}

PyMethodDef methods[] = {
    {"cpu_isa", cpu_isa, METH_NOARGS, "The ISA build of the CPU kernels in use."},
    {"set_cpu_isa", set_cpu_isa, METH_O, "Choose the ISA build of the CPU kernels ('auto' for the best)."},
    {"available_cpu_isas", available_cpu_isas, METH_NOARGS, "The ISA builds this CPU can run, best first."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

// Importing rnnpool_ops._C loads this library and runs the registrations below.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, methods};
  return PyModule_Create(&module);
}

// The sweep's signatures, shared by rnnpool:: and rnnpool_emulated:: below.
#define SWEEP_FORWARD_SIGNATURE                                                                  \
  "(Tensor x, Tensor[] rnn1, Tensor[] rnn2, Tensor? proj_weight, Tensor? proj_bias, "           \
  "int[2] kernel_size, int[2] stride, int[2] padding, str cell, str gate_nonlinearity, "        \
  "str update_nonlinearity, str parts) -> Tensor"
#define SWEEP_BACKWARD_SIGNATURE                                                                 \
  "(Tensor grad_output, Tensor x, Tensor[] rnn1, Tensor[] rnn2, Tensor? proj_weight, "          \
  "Tensor? proj_bias, int[2] kernel_size, int[2] stride, int[2] padding, str cell, "            \
  "str gate_nonlinearity, str update_nonlinearity, str parts) "                                 \
  "-> (Tensor grad_x, Tensor[] grad_rnn1, Tensor[] grad_rnn2, Tensor[] grad_proj)"

TORCH_LIBRARY(rnnpool, m) {
  // The patch sweep of RNNPool and ReX (SPEC sections 1-4). rnn1/rnn2 hold the cell's parameters
  // in its own order (fastgrnn: W, U, bias_gate, bias_update, zeta, nu; gru: weight_ih, weight_hh,
  // bias_ih, bias_hh). parts picks the output blocks, in the order R, G, C: "RC" is RNNPool,
  // "RGC" is ReX; proj_weight/proj_bias (ReX's f_L) are required exactly when "G" is asked for.
  m.def("forward" SWEEP_FORWARD_SIGNATURE);
  // Gradients of forward for every tensor input; grad_proj is [] without "G", else [weight, bias].
  m.def("backward" SWEEP_BACKWARD_SIGNATURE);
  // DDI's gated-skip convolution (SPEC section 5): y = m * act(scale * conv2d(x, weight, bias) + shift)
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
  m.def(
      "gated_skip_conv2d_backward(Tensor grad_output, Tensor x, Tensor weight, Tensor? bias, Tensor? layer_gate, "
      "Tensor? channel_gate, Tensor? scale, Tensor? shift, int[2] dilation, int groups, str activation, "
      "bool[2] conv_grad_mask) -> (Tensor grad_x, Tensor grad_weight, Tensor grad_bias, Tensor grad_layer_gate, "
      "Tensor grad_channel_gate, Tensor grad_scale, Tensor grad_shift)");
}

// The CUDA algorithm (csrc/sequences/pipeline.cpp) run on the CPU, its kernels replaced by a loop
// over the same per-sequence code (csrc/sequences/emulated_runner.cpp): for tests without a GPU.
TORCH_LIBRARY(rnnpool_emulated, m) {
  m.def("forward" SWEEP_FORWARD_SIGNATURE);
  m.def("backward" SWEEP_BACKWARD_SIGNATURE);
}
