"""Argument checks for the patch sweep, shared by every backend.

Each error names the argument at fault and the shape or value it should have.
"""

import torch

from .cells import PARAMETER_NAMES, check_cell, parameter_shapes
from .names import PARTS as VALID_PARTS

# No op asks for more than this in one workspace or output; sizes are checked as int64 (the op's
# integers). Same rules and limits as csrc/core/checked_size.h (python_tests/test_size_limits.py).
MAX_ALLOCATION_BYTES = 1 << 40
INT64_MAX = (1 << 63) - 1

# Output blocks in the order the output stacks them; `parts` lists a non-empty subset in this order.
_BLOCK_WIDTHS = {"R": 2, "G": 4, "C": 2}  # in units of RNN2's hidden size


def output_channels(parts, hidden2):
    """Channels of the sweep's output for `parts` and RNN2 hidden size `hidden2`."""
    return sum(_BLOCK_WIDTHS[block] for block in parts) * hidden2


def check_sweep_args(
    x,
    rnn1,
    rnn2,
    proj_weight,
    proj_bias,
    kernel_size,
    stride,
    padding,
    cell,
    gate_nonlinearity,
    update_nonlinearity,
    parts,
):
    """Validate the op's arguments; return the output shape (N, out_channels, H', W')."""
    check_image_input(x)
    kernel_size = _int_pair("kernel_size", kernel_size, minimum=1)
    stride = _int_pair("stride", stride, minimum=1)
    padding = _int_pair("padding", padding, minimum=0)
    check_cell(cell, gate_nonlinearity, update_nonlinearity)
    if parts not in VALID_PARTS:
        raise ValueError(
            f"parts must be one of {VALID_PARTS} (blocks R, G, C in that order), got {parts!r}"
        )
    out_h, out_w = _output_size(x, kernel_size, stride, padding)
    hidden1 = _check_cell_params("rnn1", rnn1, cell, x.shape[1], x)
    hidden2 = _check_cell_params("rnn2", rnn2, cell, hidden1, x)
    _check_sweep_sizes(x, kernel_size, stride, padding, parts, hidden1, hidden2, out_h, out_w)
    _check_projection(proj_weight, proj_bias, parts, kernel_size, hidden1, hidden2, x)
    return x.shape[0], output_channels(parts, hidden2), out_h, out_w


def check_image_input(x):
    """x must be a floating-point [N, C, H, W] tensor with C, H, W >= 1 (shared by every op's checks;
    an image without pixels has no patch, not a patch of padding; the batch may be empty)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor [N, C, H, W], got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"x must be a 4-D tensor [N, C, H, W], got shape {list(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must have a floating-point dtype, got {x.dtype}")
    if min(x.shape[1:]) < 1:
        raise ValueError(f"x must have at least one channel and one pixel (C, H, W >= 1), got {list(x.shape)}")


def describe_bytes(size):
    """"N bytes" for an error message (csrc/core/checked_size.h describe_bytes)."""
    return f"{size} bytes" if size <= INT64_MAX else "more than 2^63 bytes"


def check_int64(name, values):
    """The ops take int64 integers: a larger Python int cannot reach them."""
    if any(abs(v) > INT64_MAX for v in values):
        raise ValueError(f"{name} must fit int64, got {list(values)}")


def _int_pair(name, value, minimum):
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise TypeError(f"{name} must be 2 ints (height, width), got {value!r}")
    check_int64(name, value)
    if min(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum} in both dimensions, got {list(value)}")
    return tuple(value)


def _output_size(x, kernel_size, stride, padding):
    padded = [size + 2 * pad for size, pad in zip(x.shape[2:], padding)]
    if max(padded) > INT64_MAX:
        raise ValueError(f"padding {list(padding)} is too large: the padded input (H + 2 * padding, W + 2 * padding) "
                         f"of x {list(x.shape)} does not fit int64")
    if any(k > size for k, size in zip(kernel_size, padded)):
        raise ValueError(
            f"kernel_size {list(kernel_size)} is larger than the padded input {padded} "
            f"(x [N, C, H, W] = {list(x.shape)}, padding {list(padding)})"
        )
    return tuple((size - k) // s + 1 for size, k, s in zip(padded, kernel_size, stride))


def _check_sweep_sizes(x, kernel_size, stride, padding, parts, hidden1, hidden2, out_h, out_w):
    """The output and a bound of every backend's per-sample workspace must fit MAX_ALLOCATION_BYTES
    (the rule of csrc/sweep_args.cpp check_sweep_sizes: the padded image plus kh + kw sequences of
    up to max(kh, kw) steps per patch, at most C + 12 * hidden values per step)."""
    n, c, h, w = x.shape
    (kh, kw), (ph, pw), item = kernel_size, padding, x.element_size()
    where = f"kernel_size {list(kernel_size)}, stride {list(stride)} and padding {list(padding)} on x {list(x.shape)}"
    blocks = output_channels(parts, 1)
    output = n * blocks * hidden2 * out_h * out_w * item
    if output > MAX_ALLOCATION_BYTES:
        raise ValueError(f"{where} give an output of [{n}, {blocks} * {hidden2}, {out_h}, {out_w}]: "
                         f"{describe_bytes(output)}, over the limit of 2^40 bytes")
    steps = out_h * out_w * (kh + kw) * max(kh, kw)
    workspace = ((h + 2 * ph) * (w + 2 * pw) + steps) * (c + 12 * max(hidden1, hidden2)) * item
    if workspace > MAX_ALLOCATION_BYTES:
        raise ValueError(f"{where} need a workspace of {describe_bytes(workspace)} per sample, over the limit of "
                         "2^40 bytes")


def _check_cell_params(name, params, kind, input_size, x):
    """Check one cell's tensor list; return its hidden size."""
    names = PARAMETER_NAMES[kind]
    if not isinstance(params, (list, tuple)) or len(params) != len(names):
        raise ValueError(
            f"{name} must be a list of {len(names)} tensors [{', '.join(names)}] for the "
            f"{kind} cell, got {_describe(params)}"
        )
    for index, tensor in enumerate(params):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(
                f"{name}[{index}] ({names[index]}) must be a tensor, got {type(tensor).__name__}"
            )
    hidden = _hidden_size(name, params[0], kind, input_size)
    for index, (tensor, shape) in enumerate(
        zip(params, parameter_shapes(kind, input_size, hidden))
    ):
        label = f"{name}[{index}] ({names[index]})"
        if tuple(tensor.shape) != shape:
            raise ValueError(
                f"{label} must have shape {list(shape)} (input size {input_size}, hidden size "
                f"{hidden}), got {list(tensor.shape)}"
            )
        _check_like_x(label, tensor, x)
    return hidden


def _hidden_size(name, first, kind, input_size):
    """The hidden size the cell's input weight implies (its rows, over 3 gates for GRU)."""
    gates = 3 if kind == "gru" else 1
    rows = first.shape[0] if first.dim() == 2 else 0
    if rows == 0 or rows % gates:
        rows_text = "3*hidden" if gates == 3 else "hidden"
        raise ValueError(
            f"{name}[0] ({PARAMETER_NAMES[kind][0]}) must have shape [{rows_text}, {input_size}] "
            f"with hidden >= 1, got {list(first.shape)}"
        )
    return rows // gates


def _check_projection(proj_weight, proj_bias, parts, kernel_size, hidden1, hidden2, x):
    given = {"proj_weight": proj_weight, "proj_bias": proj_bias}
    if "G" not in parts:
        for name, tensor in given.items():
            if tensor is not None:
                raise ValueError(f"{name} must be None when parts ({parts!r}) has no 'G' block")
        return
    expected = {
        "proj_weight": ("[4*h2, (kh+kw)*h1]", (4 * hidden2, sum(kernel_size) * hidden1)),
        "proj_bias": ("[4*h2]", (4 * hidden2,)),
    }
    for name, tensor in given.items():
        formula, shape = expected[name]
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(
                f"{name} must be a tensor {formula} = {list(shape)} when parts has 'G', got "
                f"{type(tensor).__name__}"
            )
        if tuple(tensor.shape) != shape:
            raise ValueError(
                f"{name} must have shape {formula} = {list(shape)}, got {list(tensor.shape)}"
            )
        _check_like_x(name, tensor, x)


def _check_like_x(label, tensor, x):
    if tensor.device != x.device:
        raise ValueError(
            f"{label} is on {tensor.device} but x is on {x.device}: all tensors must share a device"
        )
    if tensor.dtype != x.dtype:
        raise TypeError(
            f"{label} has dtype {tensor.dtype} but x has {x.dtype}: all tensors must share a dtype"
        )


def _describe(value):
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__} of length {len(value)}"
    return type(value).__name__
