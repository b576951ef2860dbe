"""rnnpool::inverted_residual (docs/spec.md section 7) against the composition of torch ops it fuses, on
random geometries (hypothesis), every tile size, both dtypes, odd layouts; its refusals; opcheck."""

import math
import os

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings, strategies as st

from rnnpool_ops import _ops

pytestmark = pytest.mark.skipif(not _ops.extension_available(), reason="the C++ extension is not built")

EXAMPLES = int(os.environ.get("RNNPOOL_HYPOTHESIS_EXAMPLES") or 400)
TOLERANCES = {torch.float64: dict(rtol=1e-10, atol=1e-10), torch.float32: dict(rtol=1e-4, atol=1e-5)}
CLAMPS = [(-math.inf, math.inf), (0.0, math.inf), (0.0, 6.0), (-0.5, 0.25)]


def reference(x, expand_weight, expand_bias, depthwise_weight, depthwise_bias, project_weight, project_bias, stride,
              padding, dilation, expand_clamp, depthwise_clamp, residual, tile_rows):
    """The block as torch ops on the whole map (tile_rows changes nothing but memory)."""
    e = x if expand_weight is None else F.conv2d(x, expand_weight[:, :, None, None], expand_bias)
    e = e.clamp(*expand_clamp)
    d = F.conv2d(e, depthwise_weight, depthwise_bias, stride, padding, dilation, depthwise_weight.shape[0])
    y = F.conv2d(d.clamp(*depthwise_clamp), project_weight[:, :, None, None], project_bias)
    return y + x if residual else y


def make_args(batch, channels, hidden, out_channels, height, width, kernel, stride, padding, dilation, expand,
              clamps, residual, tile_rows, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)

    hidden = hidden if expand else channels
    taps = kernel[0] * kernel[1]  # weights scaled by 1/sqrt(fan-in), as trained ones are, keeping outputs O(1)
    return [randn(batch, channels, height, width) * 2, randn(hidden, channels) / channels ** 0.5 if expand else None,
            randn(hidden) if expand else None, randn(hidden, 1, *kernel) / taps ** 0.5, randn(hidden),
            randn(out_channels, hidden) / hidden ** 0.5, randn(out_channels), list(stride), list(padding), list(dilation),
            list(clamps[0]), list(clamps[1]), residual, tile_rows]


@st.composite
def cases(draw):
    pair = lambda low, high: (draw(st.integers(low, high)), draw(st.integers(low, high)))  # noqa: E731
    kernel, stride, dilation, padding = pair(1, 4), pair(1, 3), pair(1, 3), pair(0, 3)
    height, width = pair(1, 13)
    spans = [size + 2 * p - d * (k - 1) for size, p, d, k in zip((height, width), padding, dilation, kernel)]
    if min(spans) < 1:
        padding = tuple(p + (1 - s + 1) // 2 if s < 1 else p for p, s in zip(padding, spans))
        height, width = max(height, 1), max(width, 1)
        spans = [size + 2 * p - d * (k - 1) for size, p, d, k in zip((height, width), padding, dilation, kernel)]
    out_size = [(s - 1) // st_ + 1 for s, st_ in zip(spans, stride)]
    channels = draw(st.integers(1, 9))
    same_shape = stride == (1, 1) and out_size == [height, width]
    residual = same_shape and draw(st.booleans())
    out_channels = channels if residual else draw(st.integers(1, 9))
    return dict(batch=draw(st.integers(0, 3)), channels=channels, hidden=draw(st.integers(1, 24)),
                out_channels=out_channels, height=height, width=width, kernel=kernel, stride=stride,
                padding=padding, dilation=dilation, expand=draw(st.booleans()),
                clamps=(draw(st.sampled_from(CLAMPS)), draw(st.sampled_from(CLAMPS))), residual=residual,
                tile_rows=draw(st.integers(1, out_size[0] + 2)), dtype=draw(st.sampled_from(list(TOLERANCES))),
                layout=draw(st.sampled_from(["contiguous", "channels_last", "sliced"])))


def with_layout(x, layout):
    if layout == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if layout == "sliced":  # a view with strides of its own
        return torch.cat([x, x], dim=3)[..., ::2]
    return x


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_matches_torch_ops(case):
    layout, dtype = case.pop("layout"), case["dtype"]
    args = make_args(**case)
    args[0] = with_layout(args[0], layout)
    with torch.no_grad():
        got = torch.ops.rnnpool.inverted_residual(*args)
        expected = reference(*args)
    assert got.shape == expected.shape and got.dtype == dtype and got.is_contiguous()
    torch.testing.assert_close(got, expected, **TOLERANCES[dtype])


MOBILENET_BLOCKS = {  # (C, hidden, C_out, H, W, stride, residual): the builders' blocks at 224x224
    "first_block_stride2": (64, 384, 64, 28, 28, 2, False),
    "residual_56": (24, 144, 24, 56, 56, 1, True),
    "residual_14": (96, 576, 96, 14, 14, 1, True),
    "odd_size": (32, 192, 64, 13, 27, 2, False),
}


@pytest.mark.parametrize("name", list(MOBILENET_BLOCKS))
@pytest.mark.parametrize("dtype", list(TOLERANCES))
def test_mobilenet_blocks_every_tile_size_agree(name, dtype):
    channels, hidden, out_channels, height, width, stride, residual = MOBILENET_BLOCKS[name]
    out_height = (height - 1) // stride + 1
    base = dict(batch=2, channels=channels, hidden=hidden, out_channels=out_channels, height=height, width=width,
                kernel=(3, 3), stride=(stride, stride), padding=(1, 1), dilation=(1, 1), expand=True,
                clamps=((0.0, 6.0), (0.0, 6.0)), residual=residual, dtype=dtype)
    args = make_args(tile_rows=1, **base)
    with torch.no_grad():
        expected = reference(*args)
        for tile_rows in sorted({1, 2, 3, out_height // 2 or 1, out_height, out_height + 5}):
            args[-1] = tile_rows
            torch.testing.assert_close(torch.ops.rnnpool.inverted_residual(*args), expected, **TOLERANCES[dtype])


def test_nan_passes_through_the_clamps():
    args = make_args(1, 2, 4, 3, 5, 5, (3, 3), (1, 1), (1, 1), (1, 1), True, ((0.0, 6.0), (0.0, 6.0)), False, 2,
                     torch.float64)
    args[0][0, 0, 2, 2] = math.nan
    with torch.no_grad():
        got, expected = torch.ops.rnnpool.inverted_residual(*args), reference(*args)
    assert torch.equal(got.isnan(), expected.isnan()) and got.isnan().any()
    torch.testing.assert_close(got.nan_to_num(), expected.nan_to_num(), **TOLERANCES[torch.float64])


def good_args(**changes):
    args = dict(zip(
        ["x", "expand_weight", "expand_bias", "depthwise_weight", "depthwise_bias", "project_weight", "project_bias",
         "stride", "padding", "dilation", "expand_clamp", "depthwise_clamp", "residual", "tile_rows"],
        make_args(2, 3, 8, 3, 6, 7, (3, 3), (1, 1), (1, 1), (1, 1), True, ((0.0, 6.0), (0.0, 6.0)), True, 2,
                  torch.float32)))
    args.update(changes)
    return list(args.values())


@pytest.mark.parametrize("changes, error, message", [
    (dict(x=torch.zeros(3, 6, 7)), ValueError, r"x must have shape \[N, C, H, W\]"),
    (dict(x=torch.zeros(2, 3, 6, 7, dtype=torch.int32)), TypeError, "x must be float32 or float64"),
    (dict(x=torch.zeros(2, 3, 0, 7)), ValueError, "at least one channel and one pixel"),
    (dict(expand_weight=torch.zeros(8, 4)), ValueError, r"expand_weight must have shape \[hidden, C\] with C = 3"),
    (dict(expand_bias=None), ValueError, "expand_weight and expand_bias must be given together"),
    (dict(expand_bias=torch.zeros(7)), ValueError, r"expand_bias must have shape \[8\]"),
    (dict(depthwise_weight=torch.zeros(8, 2, 3, 3)), ValueError, r"depthwise_weight must have shape \[hidden, 1"),
    (dict(depthwise_bias=torch.zeros(8, dtype=torch.float64)), TypeError, "depthwise_bias has dtype Double"),
    (dict(project_weight=torch.zeros(3, 9)), ValueError, r"project_weight must have shape \[C_out, hidden\]"),
    (dict(project_bias=torch.zeros(4)), ValueError, r"project_bias must have shape \[3\]"),
    (dict(stride=[0, 1]), ValueError, "stride must be >= 1"),
    (dict(padding=[-1, 0]), ValueError, "padding must be >= 0"),
    (dict(dilation=[1, 0]), ValueError, "dilation must be >= 1"),
    (dict(expand_clamp=[6.0, 0.0]), ValueError, "expand_clamp must be \\(low, high\\) with low <= high"),
    (dict(depthwise_clamp=[math.nan, 1.0]), ValueError, "depthwise_clamp must be \\(low, high\\)"),
    (dict(tile_rows=0), ValueError, "tile_rows must be >= 1"),
    (dict(padding=[0, 0], dilation=[4, 1]), ValueError, "does not fit x's padded map"),
    (dict(padding=[2 ** 62, 0], residual=False), ValueError, "is too large: the padded map"),
    (dict(dilation=[1, 2 ** 62], residual=False), ValueError, "is too large: the padded map or the dilated kernel"),
    (dict(padding=[2 ** 30, 2 ** 30], residual=False), ValueError, "over the limit of 2\\^40 bytes"),
    (dict(stride=[2, 2]), ValueError, "residual needs an output of x's shape"),
])
def test_bad_arguments_are_named(changes, error, message):
    with pytest.raises(error, match=message):
        torch.ops.rnnpool.inverted_residual(*good_args(**changes))


def test_inference_only():
    args = good_args()
    args[5] = args[5].requires_grad_()
    with pytest.raises(RuntimeError, match="rnnpool::inverted_residual is inference-only"):
        torch.ops.rnnpool.inverted_residual(*args)
    with torch.no_grad():
        torch.ops.rnnpool.inverted_residual(*args)
    with torch.inference_mode():
        torch.ops.rnnpool.inverted_residual(*good_args())


@pytest.mark.parametrize("expand", [True, False])
def test_opcheck(expand):
    args = make_args(2, 4, 8, 5, 6, 9, (3, 3), (2, 1), (1, 1), (1, 2), expand, ((0.0, 6.0), (0.0, math.inf)), False, 2,
                     torch.float32)
    torch.library.opcheck(torch.ops.rnnpool.inverted_residual, args)
