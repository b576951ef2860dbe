"""Property-based tests (hypothesis): the fused ops against the reference on drawn arguments.

The sweep: batch (empty too), channels, image size, kernel, stride and padding per dimension,
hidden sizes, cell, nonlinearities, parts, dtype and a non-contiguous layout of x. The gated-skip
convolution: batch, groups, channels, image size, odd kernel per dimension, dilation (huge ones
too), the gates (absent, soft, hard 0/1), bias, folded scale/shift, activation, dtype, layout.
Each example checks the output and every gradient against the reference computed in float64.

A fixed seed (derandomize) keeps CI deterministic; the default budget, SWEEP_EXAMPLES +
GATED_EXAMPLES = 2,500 examples, takes about half a minute on two cores. A longer run on demand:
    RNNPOOL_HYPOTHESIS_EXAMPLES=20000 python -m pytest python_tests/test_properties.py
(that many examples per test).
"""

import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweep_cases import assert_matches_reference, make_args, tensor_inputs
from tensor_layouts import NON_CONTIGUOUS_LAYOUTS, non_contiguous
from rnnpool_ops import _ops
from rnnpool_ops.gated_skip import gated_skip_conv2d
from rnnpool_ops.names import PARTS

pytestmark = pytest.mark.skipif(not _ops.extension_available(), reason="needs the compiled extension")

_OVERRIDE = os.environ.get("RNNPOOL_HYPOTHESIS_EXAMPLES")
SWEEP_EXAMPLES = int(_OVERRIDE) if _OVERRIDE else 1500
GATED_EXAMPLES = int(_OVERRIDE) if _OVERRIDE else 1000

TOLERANCES = {torch.float64: dict(rtol=1e-9, atol=1e-9), torch.float32: dict(rtol=1e-4, atol=1e-5)}


def _settings(examples):
    return settings(max_examples=examples, derandomize=True, deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def with_layout(x, layout):
    """x in the drawn layout; a layout that leaves this shape contiguous (one channel, one pixel)
    keeps x as it is."""
    if layout == "contiguous":
        return x
    try:
        y = non_contiguous(x.detach(), layout)
    except AssertionError:
        return x
    return y.requires_grad_(x.requires_grad)


@st.composite
def sweep_cases(draw):
    n = draw(st.integers(0, 2))
    c = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    kernel = (draw(st.integers(1, min(4, h + 2 * padding[0]))), draw(st.integers(1, min(4, w + 2 * padding[1]))))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    cell = draw(st.sampled_from(["fastgrnn", "gru"]))
    if cell == "gru":
        gate, update = "sigmoid", "tanh"
    else:
        nonlinearities = ["sigmoid", "tanh", "quantSigm", "quantTanh"]
        gate, update = draw(st.sampled_from(nonlinearities)), draw(st.sampled_from(nonlinearities))
    parts = draw(st.sampled_from(PARTS))
    hidden = (draw(st.integers(1, 5)), draw(st.integers(1, 4)))
    # The quantised nonlinearities' kinks make float32-vs-float64 gradients differ at the
    # breakpoints; they run in float64.
    quantised = "quant" in gate + update
    dtype = torch.float64 if quantised else draw(st.sampled_from([torch.float32, torch.float64]))
    layout = draw(st.sampled_from(["contiguous", *NON_CONTIGUOUS_LAYOUTS]))
    seed = draw(st.integers(0, 2**16))
    return (n, c, h, w, kernel, stride, padding), (cell, gate, update, parts), hidden, dtype, layout, seed


def run_fused_sweep(args, grad_output):
    out = torch.ops.rnnpool.forward(*args.values())
    inputs = tensor_inputs(args)
    grads = torch.autograd.grad(out, inputs, grad_output, allow_unused=True, materialize_grads=True)
    return out, list(grads)


@_settings(SWEEP_EXAMPLES)
@given(sweep_cases())
def test_sweep_matches_reference(case):
    geometry, variant, hidden, dtype, layout, seed = case
    args = make_args(geometry, variant, dtype=dtype, seed=seed, hidden=hidden)
    args["x"] = with_layout(args["x"], layout)
    assert_matches_reference(run_fused_sweep, args, **TOLERANCES[dtype])


GATED_TENSORS = ("x", "weight", "bias", "layer_gate", "channel_gate", "scale", "shift")


@st.composite
def gated_cases(draw):
    n = draw(st.integers(0, 2))
    groups = draw(st.integers(1, 3))
    c = groups * draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    kernel = (draw(st.sampled_from([1, 3, 5])), draw(st.sampled_from([1, 3, 5])))
    dilation = tuple(draw(st.one_of(st.integers(1, 4), st.sampled_from([6, 3000, 2**60]))) for _ in range(2))
    gates = draw(st.sampled_from(["absent", "soft", "hard"]))
    present = {name: draw(st.booleans()) for name in ("layer_gate", "channel_gate", "bias", "scale", "shift")}
    activation = draw(st.sampled_from(["none", "relu"]))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    layout = draw(st.sampled_from(["contiguous", *NON_CONTIGUOUS_LAYOUTS]))
    seed = draw(st.integers(0, 2**16))
    return (n, c, h, w), groups, kernel, dilation, gates, present, activation, dtype, layout, seed


def make_gated_args(case):
    (n, c, h, w), groups, kernel, dilation, gates, present, activation, dtype, layout, seed = case
    gen = torch.Generator().manual_seed(seed)

    def leaf(*shape, kind="normal"):
        if kind == "normal":
            values = torch.randn(*shape, generator=gen, dtype=torch.float64)
        elif kind == "soft":
            values = torch.rand(*shape, generator=gen, dtype=torch.float64)
        else:  # hard 0/1 gates: the fused op skips the zeros
            values = (torch.rand(*shape, generator=gen, dtype=torch.float64) > 0.5).double()
        return values.to(dtype).requires_grad_()

    use_gates = gates != "absent"
    args = dict(
        x=leaf(n, c, h, w),
        weight=leaf(c, c // groups, *kernel),
        bias=leaf(c) if present["bias"] else None,
        layer_gate=leaf(n, kind=gates) if use_gates and present["layer_gate"] else None,
        channel_gate=leaf(n, c, kind=gates) if use_gates and present["channel_gate"] else None,
        scale=leaf(c) if present["scale"] else None,
        shift=leaf(c) if present["shift"] else None,
    )
    args["x"] = with_layout(args["x"], layout)
    options = dict(dilation=dilation, groups=groups, activation=activation)
    return args, options


def gated_forward_and_grads(args, options, backend, grad_output=None):
    out = gated_skip_conv2d(args["x"], args["weight"], args["bias"], args["layer_gate"], args["channel_gate"],
                            scale=args["scale"], shift=args["shift"], backend=backend, **options)
    if grad_output is None:
        grad_output = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    inputs = [args[k] for k in GATED_TENSORS if args[k] is not None]
    grads = torch.autograd.grad(out, inputs, grad_output, allow_unused=True, materialize_grads=True)
    return out, grads, grad_output


@_settings(GATED_EXAMPLES)
@given(gated_cases())
def test_gated_skip_matches_reference(case):
    args, options = make_gated_args(case)
    dtype = args["x"].dtype
    got, got_grads, grad_output = gated_forward_and_grads(args, options, "fused")
    exact = {k: None if t is None else t.detach().double().requires_grad_() for k, t in args.items()}
    want, want_grads, _ = gated_forward_and_grads(exact, options, "reference", grad_output.double())
    tolerance = TOLERANCES[dtype]
    torch.testing.assert_close(got, want.to(dtype), **tolerance)
    names = [k for k in GATED_TENSORS if args[k] is not None]
    for name, g, w in zip(names, got_grads, want_grads):
        torch.testing.assert_close(g, w.to(dtype), **tolerance, msg=lambda m: f"gradient of {name}: {m}")
