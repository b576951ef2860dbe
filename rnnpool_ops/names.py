"""The names the sweep's string arguments take, defined once for the Python side (the checks, the
cells, the layers, the Triton kernels' codes). The C++ op parses the same names in
csrc/sweep_args.cpp; python_tests/test_names.py checks that it accepts exactly these.
"""

# The cells, each with the names of its tensors in the order of the op's Tensor[] arguments (the
# modules' attribute names).
PARAMETER_NAMES = {
    "fastgrnn": ("W", "U", "bias_gate", "bias_update", "zeta", "nu"),
    "gru": ("weight_ih", "weight_hh", "bias_ih", "bias_hh"),
}
CELLS = tuple(PARAMETER_NAMES)

# FastGRNN's gate and update nonlinearities (EdgeML's names).
NONLINEARITIES = ("sigmoid", "tanh", "quantSigm", "quantTanh")
# nn.GRUCell has these built in; a GRU cell accepts no others.
GRU_NONLINEARITIES = ("sigmoid", "tanh")

# The output blocks R, G, C: any non-empty subset, in that order ("RC" RNNPool, "RGC" ReX).
PARTS = ("R", "G", "C", "RG", "RC", "GC", "RGC")
