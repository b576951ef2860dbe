"""Functional forms of the RNNPool and ReX layers, with a choice of backend.

backend:
  "auto"       the fused C++ kernel when the extension is built, else the reference
  "cpp"        the fused C++ kernel (torch.ops.rnnpool.forward), CPU tensors
  "reference"  the unfused pure-PyTorch implementation (rnnpool_ops.reference)
"""

import torch
from torch.nn.modules.utils import _pair

from . import _ops, reference
from ._checks import check_sweep_args

BACKENDS = ("auto", "cpp", "reference")


def patch_sweep(x, rnn1, rnn2, proj_weight, proj_bias, kernel_size, stride=None, padding=0,
                cell="fastgrnn", gate="sigmoid", update="tanh", parts="RC", backend="auto"):
    """The op of SPEC sections 1-4 for any parts; see rnnpool2d and rex2d for the usual forms.

    rnn1/rnn2 are the cells' tensors in the op's order (rnnpool_ops.cells.cell_parameters).
    stride=None means stride = kernel_size, as in PyTorch's pooling layers.
    """
    kernel_size = _pair(kernel_size)
    stride = kernel_size if stride is None else _pair(stride)
    padding = _pair(padding)
    rnn1, rnn2 = list(rnn1), list(rnn2)
    args = (x, rnn1, rnn2, proj_weight, proj_bias, kernel_size, stride, padding, cell, gate, update, parts)
    check_sweep_args(*args)
    resolved = _resolve_backend(backend, x)
    if resolved == "reference":
        return reference.forward(*args)
    return _ops_forward(*args)


def _ops_forward(x, rnn1, rnn2, proj_weight, proj_bias, kernel_size, stride, padding, *config):
    return torch.ops.rnnpool.forward(x, rnn1, rnn2, proj_weight, proj_bias, list(kernel_size), list(stride),
                                     list(padding), *config)


def _resolve_backend(backend, x):
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "reference":
        return backend
    if backend == "auto":
        return "cpp" if _ops.extension_available() and x.device.type == "cpu" else "reference"
    _ops.require_extension()
    if x.device.type != "cpu":
        raise ValueError(f"backend='cpp' runs on CPU tensors, got x on {x.device}; use backend='auto' or 'reference'")
    return backend


def rnnpool2d(x, rnn1, rnn2, kernel_size, stride=None, padding=0, cell="fastgrnn", gate="sigmoid",
              update="tanh", backend="auto"):
    """RNNPool (NeurIPS 2020): [N, C, H, W] -> [N, 4*hidden2, H', W'], channels [qr_f, qr_b, qc_f, qc_b]."""
    return patch_sweep(x, rnn1, rnn2, None, None, kernel_size, stride, padding, cell, gate, update, "RC", backend)


def rex2d(x, rnn1, rnn2, proj_weight, proj_bias, kernel_size, stride=None, padding=0, cell="gru",
          gate="sigmoid", update="tanh", parts="RGC", backend="auto"):
    """ReX (AAAI 2022): [N, C, H, W] -> [N, 8*hidden2, H', W'], channels [V^R, V^G, V^C].

    parts drops blocks for the paper's ablations (e.g. "RC" has no V^G and needs no projection).
    """
    if "G" not in parts:
        proj_weight = proj_bias = None
    return patch_sweep(x, rnn1, rnn2, proj_weight, proj_bias, kernel_size, stride, padding, cell, gate, update,
                       parts, backend)
