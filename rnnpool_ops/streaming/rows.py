"""Row layers: a layer computed for a range of its output rows from the input rows that range needs.

Every layer the streamer splits into rows becomes one of these, with batch norm folded in:
- Pointwise: an activation or a per-channel affine map (a batch norm with no convolution before it);
- Window: a convolution or a max/average pool, whose vertical kernel, stride, padding and dilation say
  which input rows an output row reads;
- InvertedResidual: MobileNetV2's block (expand 1x1, depthwise, project 1x1, residual) computed from its
  input rows without the expanded map of the whole block: in chunks of expanded channels if asked.

`rows(x, top, bottom, owned)` computes the output rows that x yields, where x holds the input rows
needed except `top` rows above the map and `bottom` rows below it, which are the layer's own padding.
`owned` says x is a temporary of the streamer's, which an activation may overwrite.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import _ops


class Unsupported(ValueError):
    """A layer the streamer cannot split into rows; the message says why."""


def input_rows(a, b, kernel, stride, padding, dilation):
    """The input rows [lo, hi) (unclipped, padding counts as rows outside the map) that output rows
    [a, b) of a sliding window read."""
    return a * stride - padding, (b - 1) * stride - padding + dilation * (kernel - 1) + 1


def conv1x1(x, weight, bias=None):
    """A 1x1 convolution as a matrix product: on row slices F.conv2d copies and unfolds, 2-3x slower."""
    n, channels, height, width = x.shape
    out = torch.matmul(weight.view(weight.shape[0], channels), x.reshape(n, channels, height * width))
    if bias is not None:
        out.add_(bias[:, None])
    return out.view(n, weight.shape[0], height, width)


class Pointwise:
    """An elementwise layer: output row i reads input row i."""

    def __init__(self, apply):
        self.apply = apply  # apply(t, owned) -> t

    def input_rows(self, a, b):
        return a, b

    def rows(self, x, top, bottom, owned):
        return self.apply(x, owned)


class Window:
    """A convolution (weight, bias with batch norm folded in) or a pool, vertically split."""

    def __init__(self, kind, kernel, stride, padding, dilation, weight=None, bias=None, groups=1,
                 pad_mode="constant", options=None):
        self.kind, self.weight, self.bias, self.groups = kind, weight, bias, groups
        self.kernel, self.stride, self.padding, self.dilation = kernel, stride, padding, dilation
        self.pad_mode = pad_mode
        self.options = options or {}

    def input_rows(self, a, b):
        return input_rows(a, b, self.kernel[0], self.stride[0], self.padding[0], self.dilation[0])

    def rows(self, x, top, bottom, owned):
        pad_width = self.padding[1]
        if self.pad_mode == "replicate":  # the whole padding by hand: replicate is not a conv option
            x = F.pad(x, (pad_width, pad_width, top, bottom), mode="replicate")
            pad_width = 0
        elif top or bottom:
            x = F.pad(x, (0, 0, top, bottom), value=-math.inf if self.kind == "max" else 0.0)
        padding = (0, pad_width)
        if self.kind == "conv" and self.kernel == (1, 1) and self.stride == (1, 1) and self.groups == 1 \
                and padding == (0, 0):
            return conv1x1(x, self.weight, self.bias)
        if self.kind == "conv":
            return F.conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)
        if self.kind == "max":
            return F.max_pool2d(x, self.kernel, self.stride, padding, self.dilation)
        return F.avg_pool2d(x, self.kernel, self.stride, padding, **self.options)


class InvertedResidual:
    """expand (a 1x1 Window, or None when the expansion is 1) + activation, depthwise Window +
    activation, project (1x1 Window), plus the input when `residual`.

    `fused`: whether the C++ kernel rnnpool::inverted_residual runs it (clamp activations, float32 or
    float64 on the CPU), which keeps the depthwise halo between tiles; else torch ops in tiles,
    `chunk` expanded channels at a time."""

    def __init__(self, expand, expand_act, depthwise, depthwise_act, project, residual):
        self.expand, self.expand_act = expand, expand_act
        self.depthwise, self.depthwise_act = depthwise, depthwise_act
        self.project, self.residual = project, residual
        self.hidden = depthwise.weight.shape[0]
        self.chunk = self.hidden  # expanded channels computed at a time (the streamer may lower it)
        weight = depthwise.weight
        self.fused = (isinstance(expand_act, Clamp) and isinstance(depthwise_act, Clamp) and weight.device.type == "cpu"
                      and weight.dtype in (torch.float32, torch.float64) and _ops.extension_available())

    def input_rows(self, a, b):
        return self.depthwise.input_rows(a, b)

    def run_fused(self, x, tile_rows):
        """The whole block on x (all its rows), tile_rows output rows at a time."""
        expand, depthwise = self.expand, self.depthwise
        return torch.ops.rnnpool.inverted_residual(
            x, None if expand is None else expand.weight.flatten(1), None if expand is None else expand.bias,
            depthwise.weight, depthwise.bias, self.project.weight.flatten(1), self.project.bias,
            list(depthwise.stride), list(depthwise.padding), list(depthwise.dilation),
            [self.expand_act.low, self.expand_act.high], [self.depthwise_act.low, self.depthwise_act.high],
            self.residual, tile_rows)

    def rows(self, x, top, bottom, owned):
        out = None
        for start in range(0, self.hidden, self.chunk):
            part = slice(start, min(start + self.chunk, self.hidden))
            if self.expand is None:
                hidden = self.expand_act(x[:, part], False)
            else:
                hidden = self.expand_act(conv1x1(x, self.expand.weight[part], self.expand.bias[part]), True)
            hidden = F.pad(hidden, (0, 0, top, bottom)) if top or bottom else hidden
            depthwise = self.depthwise
            hidden = F.conv2d(hidden, depthwise.weight[part], depthwise.bias[part], depthwise.stride,
                              (0, depthwise.padding[1]), depthwise.dilation, part.stop - part.start)
            hidden = self.depthwise_act(hidden, True)
            projected = conv1x1(hidden, self.project.weight[:, part])
            out = projected if out is None else out.add_(projected)
        out.add_(self.project.bias[:, None, None])
        if self.residual:  # stride 1: output row i is input row i, `padding - top` rows into x
            offset = self.depthwise.padding[0] - top
            out.add_(x[:, :, offset:offset + out.shape[2]])
        return out


def run_rows(layer, x, a, b, height):
    """Output rows [a, b) of `layer` from x, which holds all `height` rows of its input."""
    lo, hi = layer.input_rows(a, b)
    start, stop = max(lo, 0), min(hi, height)
    return layer.rows(x[:, :, start:stop], start - lo, hi - stop, False)


def chain_rows(layers, heights, x, a, b):
    """Output rows [a, b) of layers run in order, from x holding the first one's whole input;
    heights[i] is the input height of layers[i]. Only the rows each layer needs are computed."""
    pads = []
    for layer, height in zip(reversed(layers), reversed(heights)):
        lo, hi = layer.input_rows(a, b)
        a, b = max(lo, 0), min(hi, height)
        pads.append((a - lo, hi - b))
    t, owned = x[:, :, a:b], False
    for layer, (top, bottom) in zip(layers, reversed(pads)):
        t, owned = layer.rows(t, top, bottom, owned), True
    return t


# ---------------------------------------------------------------------------------------------------
# From modules to row layers


def _inplace(function, inplace_function):
    return lambda t, owned: inplace_function(t) if owned else function(t)


class Clamp:
    """An activation that clamps to [low, high] (identity, ReLU, ReLU6, Hardtanh): the fused block
    kernel (rnnpool::inverted_residual) runs these itself."""

    def __init__(self, low=-math.inf, high=math.inf):
        self.low, self.high = float(low), float(high)

    @property
    def identity(self):
        return self.low == -math.inf and self.high == math.inf

    def __call__(self, t, owned):
        if self.identity:
            return t
        return t.clamp_(self.low, self.high) if owned else t.clamp(self.low, self.high)


no_activation = Clamp()


def activation(module):
    """apply(t, owned) for an elementwise torch.nn module (in place on the streamer's temporaries), or
    None (a subclass may have changed its forward)."""
    if not type(module).__module__.startswith("torch.nn."):
        return None
    if isinstance(module, (nn.Identity, nn.Dropout, nn.Dropout2d)):
        return Clamp()
    if isinstance(module, nn.ReLU):
        return Clamp(0.0)
    if isinstance(module, nn.Hardtanh):  # ReLU6 too
        return Clamp(module.min_val, module.max_val)
    if isinstance(module, nn.Sigmoid):
        return _inplace(torch.sigmoid, torch.sigmoid_)
    if isinstance(module, nn.Tanh):
        return _inplace(torch.tanh, torch.tanh_)
    if isinstance(module, nn.Hardswish):
        return lambda t, owned: F.hardswish(t, inplace=owned)
    if isinstance(module, nn.SiLU):
        return lambda t, owned: F.silu(t, inplace=owned)
    if isinstance(module, nn.LeakyReLU):
        return lambda t, owned: F.leaky_relu(t, module.negative_slope, inplace=owned)
    if isinstance(module, (nn.GELU, nn.Hardsigmoid, nn.ELU, nn.PReLU, nn.Mish)):
        return lambda t, owned: module(t)
    return None


def foldable(bn):
    """Whether an eval-mode batch norm is a fixed per-channel affine map."""
    return bn.track_running_stats and bn.running_mean is not None


def batch_norm_affine(bn):
    """(scale, shift) of an eval-mode batch norm, y = x * scale + shift per channel."""
    if not foldable(bn):
        raise Unsupported("a batch norm without running statistics (track_running_stats=False) normalises "
                          "each batch by itself")
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale.detach(), shift.detach()


def conv_window(conv, bn=None):
    """A Window for a Conv2d, with the batch norm that follows it folded in."""
    if not isinstance(conv.padding, tuple) or conv.padding_mode not in ("zeros", "replicate"):
        raise Unsupported(f"padding={conv.padding!r}, padding_mode={conv.padding_mode!r} (supported: numeric "
                          "padding with padding_mode 'zeros' or 'replicate')")
    weight = conv.weight.detach()
    bias = conv.bias.detach() if conv.bias is not None else weight.new_zeros(weight.shape[0])
    if bn is not None:
        scale, shift = batch_norm_affine(bn)
        weight, bias = weight * scale[:, None, None, None], bias * scale + shift
    return Window("conv", conv.kernel_size, conv.stride, conv.padding, conv.dilation, weight, bias, conv.groups,
                  "replicate" if conv.padding_mode == "replicate" else "constant")


def pool_window(pool):
    """A Window for a MaxPool2d or AvgPool2d."""
    pair = nn.modules.utils._pair
    if pool.ceil_mode:
        raise Unsupported("ceil_mode=True")
    kernel, stride, padding = pair(pool.kernel_size), pair(pool.stride or pool.kernel_size), pair(pool.padding)
    if isinstance(pool, nn.MaxPool2d):
        if pool.return_indices:
            raise Unsupported("return_indices=True")
        return Window("max", kernel, stride, padding, pair(pool.dilation))
    if padding != (0, 0) and not pool.count_include_pad:
        raise Unsupported("padding with count_include_pad=False")
    return Window("avg", kernel, stride, padding, (1, 1),
                  options={"count_include_pad": pool.count_include_pad, "divisor_override": pool.divisor_override})


def affine(bn):
    scale, shift = batch_norm_affine(bn)
    scale, shift = scale[:, None, None], shift[:, None, None]
    return Pointwise(lambda t, owned: t.mul_(scale).add_(shift) if owned else t * scale + shift)


def is_pointwise(layer):
    """A layer whose output row i and column j read only input pixel (i, j)."""
    return isinstance(layer, Pointwise) or (isinstance(layer, Window) and layer.kind == "conv"
                                            and layer.kernel == (1, 1) and layer.stride == (1, 1)
                                            and layer.padding == (0, 0))
