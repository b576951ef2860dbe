"""Functional forms of the RNNPool and ReX layers, with a choice of backend.

backend:
  "auto"       CPU tensors: "cpp" when the extension is built, else "reference". CUDA tensors: "cpp"
               when the extension has its CUDA kernel, else "triton" when triton imports, else
               "reference". Tensors on other devices: "reference".
  "cpp"        the fused C++ op torch.ops.rnnpool.forward: CPU tensors, and CUDA tensors when the
               extension was built with its CUDA kernel
  "triton"     torch.ops.rnnpool.forward_triton, Triton kernels for the recurrences plus torch GEMMs
               (rnnpool_ops.triton_sweep): CUDA tensors; CPU tensors only under TRITON_INTERPRET=1
               (the Triton interpreter: slow, for tests)
  "reference"  the unfused pure-PyTorch implementation (rnnpool_ops.reference), any device
"""

import os

import torch
from torch.nn.modules.utils import _pair

from . import _ops, reference, triton_sweep
from ._checks import check_sweep_args

BACKENDS = ("auto", "cpp", "triton", "reference")


def patch_sweep(x, rnn1, rnn2, proj_weight, proj_bias, kernel_size, stride=None, padding=0,
                cell="fastgrnn", gate="sigmoid", update="tanh", parts="RC", backend="auto"):
    """The op of docs/spec.md sections 1-4 for any parts; see rnnpool2d and rex2d for the usual forms.

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
    op = torch.ops.rnnpool.forward if resolved == "cpp" else torch.ops.rnnpool.forward_triton
    x, rnn1, rnn2, proj_weight, proj_bias, kernel_size, stride, padding, *config = args
    return op(x, rnn1, rnn2, proj_weight, proj_bias, list(kernel_size), list(stride), list(padding), *config)


def _resolve_backend(backend, x):
    """The backend that runs x: "cpp", "triton" or "reference" (see the module docstring)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "reference":
        return backend
    device = x.device.type
    if backend == "auto":
        if _cpp_runs_on(device):
            return "cpp"
        return "triton" if device == "cuda" and triton_sweep.available() else "reference"
    if backend == "cpp":
        _ops.require_extension()
        if not _cpp_runs_on(device):
            cuda = "it has" if _CPP_HAS_CUDA_KERNEL else "this build has no"
            raise ValueError(f"backend='cpp' runs on CPU tensors, and on CUDA tensors when the extension is built "
                             f"with its CUDA kernel ({cuda} CUDA kernel); got x on {x.device}; use backend='auto', "
                             "'triton' or 'reference'")
        return backend
    if device != "cuda" and not (device == "cpu" and _triton_interpreter()):
        raise ValueError(f"backend='triton' runs on CUDA tensors (CPU tensors only with TRITON_INTERPRET=1 set "
                         f"before triton is imported), got x on {x.device}; use backend='auto' or 'reference'")
    if not triton_sweep.available():
        raise RuntimeError(f"backend='triton' needs triton ({triton_sweep.unavailable_reason()}); use "
                           "backend='auto' or 'reference'")
    return backend


def _cpp_runs_on(device_type):
    if not _ops.extension_available():
        return False
    return device_type == "cpu" or (device_type == "cuda" and _CPP_HAS_CUDA_KERNEL)


def _triton_interpreter():
    return os.environ.get("TRITON_INTERPRET") == "1"


# Looked up once (the extension registers its kernels when it loads, before this module runs), so
# torch.compile reads a constant instead of tracing a dispatcher query.
_CPP_HAS_CUDA_KERNEL = _ops.cuda_kernels_available()


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
