"""GatedSkipConv2d (DDI's gated residual convolution) and the straight-through hard gate."""

import math

import torch
from torch import nn

from .. import _validate
from . import functional
from ._checks import dilation_pair, normalize_activation


class _HardGate(torch.autograd.Function):
    """Forward: 1 where logits > 0, else 0. Backward: the gradient of sigmoid(logits) (straight-through)."""

    @staticmethod
    def forward(logits):
        return (logits > 0).to(logits.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        (logits,) = inputs
        ctx.save_for_backward(logits)

    @staticmethod
    def backward(ctx, grad_output):
        (logits,) = ctx.saved_tensors
        s = torch.sigmoid(logits)
        return grad_output * s * (1 - s)


def hard_gate(logits):
    """Hard 0/1 gate with the straight-through sigmoid gradient, as DDI's gating networks use it.

    The zeros are exact, so the fused op skips the work they gate.
    """
    return _HardGate.apply(logits)


class GatedSkipConv2d(nn.Module):
    """y = m * act(conv(x)) + (1 - m) * x with m = layer_gate[n] * channel_gate[n, c] (DDI eq. 3).

    The module holds the shape-keeping convolution (channels -> channels, stride 1, odd kernel,
    "same" padding) and, after fold_batch_norm, a per-channel scale/shift applied before the
    activation. The gates are forward inputs, produced by the caller's gating networks; either may be
    None (all ones). backend: "auto" | "fused" | "reference" (see functional.py).
    """

    def __init__(self, channels, kernel_size=3, groups=1, dilation=1, bias=True, activation="relu", backend="auto"):
        super().__init__()
        channels = _validate.integer("channels", channels, 1)
        kernel_size = _validate.integer_pair("kernel_size", kernel_size, 1)
        if min(k % 2 for k in kernel_size) == 0:
            raise ValueError(f"kernel_size must be odd and >= 1 in both dimensions (shape-keeping padding), got "
                             f"{list(kernel_size)}")
        groups = _validate.integer("groups", groups, 1)
        if channels % groups:
            raise ValueError(f"groups ({groups}) must be >= 1 and divide channels ({channels})")
        dilation_pair(dilation)
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be a bool, got {type(bias).__name__}")
        if backend not in functional.BACKENDS:
            raise ValueError(f"backend must be one of {functional.BACKENDS}, got {backend!r}")
        self.channels, self.kernel_size, self.groups, self.dilation = channels, kernel_size, groups, dilation
        self.activation = normalize_activation(activation)
        self.backend = backend
        self.weight = nn.Parameter(torch.empty(channels, channels // groups, *kernel_size))
        self.bias = nn.Parameter(torch.empty(channels)) if bias else None
        self.register_buffer("scale", None)
        self.register_buffer("shift", None)
        self.reset_parameters()

    def reset_parameters(self):
        # nn.Conv2d's initialisation.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            nn.init.uniform_(self.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    @torch.no_grad()
    def fold_batch_norm(self, bn):
        """Take an inference-mode BatchNorm2d that follows the convolution in as scale/shift (applied before act)."""
        if bn.num_features != self.channels or bn.running_mean is None:
            raise ValueError(f"bn must be a BatchNorm2d over {self.channels} channels with running statistics")
        scale = torch.rsqrt(bn.running_var + bn.eps)
        shift = -bn.running_mean * scale
        if bn.affine:
            scale, shift = scale * bn.weight, shift * bn.weight + bn.bias
        self.scale = scale.to(self.weight)
        self.shift = shift.to(self.weight)

    def forward(self, x, layer_gate=None, channel_gate=None):
        return functional.gated_skip_conv2d(
            x, self.weight, self.bias, layer_gate, channel_gate, scale=self.scale, shift=self.shift,
            dilation=self.dilation, groups=self.groups, activation=self.activation, backend=self.backend,
        )

    def extra_repr(self):
        return (f"{self.channels}, kernel_size={self.kernel_size}, groups={self.groups}, dilation={self.dilation}, "
                f"bias={self.bias is not None}, activation={self.activation!r}, backend={self.backend!r}")
