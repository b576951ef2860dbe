"""gated_skip_conv2d with a choice of backend.

backend:
  "auto"       the fused op (torch.ops.rnnpool.gated_skip_conv2d) when it is available for x's
               device, else the reference
  "fused"      the fused op: C++ on CPU, Triton on CUDA (see _ops.py)
  "reference"  the unfused pure-PyTorch implementation (reference.py)
"""

import torch

from . import _ops, reference
from ._checks import check_gated_skip_args, dilation_pair, normalize_activation

BACKENDS = ("auto", "fused", "reference")


def gated_skip_conv2d(x, weight, bias=None, layer_gate=None, channel_gate=None, *, scale=None, shift=None,
                      dilation=1, groups=1, activation="relu", backend="auto"):
    """y = m * act(scale * conv2d(x, weight, bias) + shift) + (1 - m) * x with m = layer_gate * channel_gate.

    x [N, C, H, W]; weight [C, C/groups, kh, kw] with odd kh, kw; the convolution keeps the shape
    (stride 1, padding dilation * (k - 1) / 2). bias, scale, shift [C] (scale/shift: a folded
    batch norm, applied before the activation); layer_gate [N], channel_gate [N, C]; any of them may
    be None (gates: all ones). With hard 0/1 gates the fused op skips the convolution wherever m = 0.
    """
    activation = normalize_activation(activation)
    args = (x, weight, bias, layer_gate, channel_gate, scale, shift, dilation_pair(dilation), groups, activation)
    check_gated_skip_args(*args)
    if _resolve_backend(backend, x) == "reference":
        return reference.gated_skip_conv2d(*args)
    x, weight, bias, layer_gate, channel_gate, scale, shift, dilation, groups, activation = args
    return torch.ops.rnnpool.gated_skip_conv2d(x, weight, bias, layer_gate, channel_gate, scale, shift,
                                               list(dilation), groups, activation)


def _resolve_backend(backend, x):
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "reference":
        return backend
    available = _ops.fused_available(x.device.type)
    if backend == "auto":
        return "fused" if available else "reference"
    if not available:
        raise RuntimeError(f"the fused gated-skip op is not available for {x.device.type} tensors "
                           f"({_ops.unavailable_reason(x.device.type)}); use backend='auto' or 'reference'")
    return backend
