"""Argument checks for the gated-skip convolution, shared by every backend and the fake kernel.

Each error names the argument at fault and the shape or value it should have.
"""

import torch

from .._checks import INT64_MAX, MAX_ALLOCATION_BYTES, check_image_input, check_int64, describe_bytes

ACTIVATIONS = ("none", "relu")


def normalize_activation(activation):
    """None and "none" both mean identity; returns the op's spelling ("none" or "relu")."""
    name = "none" if activation is None else activation
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be None, 'none' or 'relu', got {activation!r}")
    return name


def dilation_pair(dilation):
    pair = (dilation, dilation) if isinstance(dilation, int) and not isinstance(dilation, bool) else dilation
    if (
        not isinstance(pair, (list, tuple))
        or len(pair) != 2
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in pair)
    ):
        raise TypeError(f"dilation must be an int or 2 ints (height, width), got {dilation!r}")
    check_int64("dilation", pair)
    if min(pair) < 1:
        raise ValueError(f"dilation must be >= 1, got {list(pair)}")
    return tuple(pair)


def check_gated_skip_args(x, weight, bias, layer_gate, channel_gate, scale, shift, dilation, groups, activation):
    """Validate the op's arguments (docs/spec.md section 5); the output has the shape of x."""
    check_image_input(x)
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be an int >= 1, got {groups!r}")
    check_int64("groups", [groups])
    n, c = x.shape[:2]
    if c % groups:
        raise ValueError(f"groups ({groups}) must divide the channels of x ({c}), x is {list(x.shape)}")
    dilation = dilation_pair(dilation)
    normalize_activation(activation)
    _check_tensor("weight", weight, x)
    if weight.dim() != 4 or tuple(weight.shape[:2]) != (c, c // groups):
        raise ValueError(
            f"weight must have shape [C, C/groups, kh, kw] = [{c}, {c // groups}, kh, kw], got {list(weight.shape)}"
        )
    if weight.shape[2] % 2 == 0 or weight.shape[3] % 2 == 0:
        raise ValueError(f"weight's kernel must be odd in both dimensions (shape-keeping padding), got "
                         f"{list(weight.shape[2:])}")
    _check_sizes(x, weight, dilation)
    for name, tensor, shape in (
        ("bias", bias, (c,)),
        ("scale", scale, (c,)),
        ("shift", shift, (c,)),
        ("layer_gate", layer_gate, (n,)),
        ("channel_gate", channel_gate, (n, c)),
    ):
        if tensor is None:
            continue
        _check_tensor(name, tensor, x)
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{name} must have shape {list(shape)} for x {list(x.shape)}, got {list(tensor.shape)}")


def _check_sizes(x, weight, dilation):
    """The rule of csrc/gated_skip_args.cpp check_gated_skip_sizes: the padded input must fit int64
    (the kernels skip the taps that reach only padding, so any representable dilation runs in
    memory bounded by x), and the output, of x's shape, the allocation limit."""
    padded = [size + 2 * (d * (k - 1) // 2) for size, d, k in zip(x.shape[2:], dilation, weight.shape[2:])]
    if max(padded) > INT64_MAX:
        raise ValueError(f"dilation {list(dilation)} is too large for the kernel {list(weight.shape[2:])}: the padded "
                         f"input (H + dilation * (kh - 1), W + dilation * (kw - 1)) of x {list(x.shape)} does not "
                         "fit int64")
    output = x.numel() * x.element_size()
    if output > MAX_ALLOCATION_BYTES:
        raise ValueError(f"x {list(x.shape)} gives an output of {describe_bytes(output)}, over the limit of 2^40 bytes")


def _check_tensor(name, tensor, x):
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a tensor or None, got {type(tensor).__name__}")
    if tensor.device != x.device:
        raise ValueError(f"{name} is on {tensor.device} but x is on {x.device}: all tensors must share a device")
    if tensor.dtype != x.dtype:
        raise TypeError(f"{name} has dtype {tensor.dtype} but x has {x.dtype}: all tensors must share a dtype")
