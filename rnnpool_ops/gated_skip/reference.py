"""The unfused gated-skip convolution in plain PyTorch (docs/spec.md section 5): the tests' oracle and the
benchmark's baseline. It always computes the whole convolution, then blends."""

import torch
import torch.nn.functional as F

from ._checks import dilation_pair, normalize_activation


def gate_product(x, layer_gate=None, channel_gate=None):
    """m[n, c] = layer_gate[n] * channel_gate[n, c] as [N, C, 1, 1]; an absent gate is all ones."""
    n, c = x.shape[:2]
    m = x.new_ones(n, c)
    if layer_gate is not None:
        m = m * layer_gate[:, None]
    if channel_gate is not None:
        m = m * channel_gate
    return m[:, :, None, None]


def gated_skip_conv2d(x, weight, bias=None, layer_gate=None, channel_gate=None, scale=None, shift=None,
                      dilation=1, groups=1, activation="relu"):
    """y = m * act(scale * conv2d(x, weight, bias) + shift) + (1 - m) * x, conv keeping the shape."""
    dilation = dilation_pair(dilation)
    padding = tuple(d * (k - 1) // 2 for d, k in zip(dilation, weight.shape[2:]))
    z = F.conv2d(x, weight, bias, padding=padding, dilation=dilation, groups=groups)
    if scale is not None:
        z = z * scale[:, None, None]
    if shift is not None:
        z = z + shift[:, None, None]
    if normalize_activation(activation) == "relu":
        z = torch.relu(z)
    m = gate_product(x, layer_gate, channel_gate)
    return m * z + (1 - m) * x
