"""The Triton patch sweep (rnnpool_ops.triton_sweep) under the Triton interpreter, on CPU tensors, against
the reference: the output and every gradient, both cells, all parts, awkward geometries and dtypes.

TRITON_INTERPRET must be set before triton is first imported, so this file runs in its own process:

    python -m pytest python_tests/interpreter/triton_sweep_checks.py -q

The interpreter runs every kernel operation in numpy, so the shapes are tiny. The triton_op's
fake-tensor and torch.compile paths do not work on CPU tensors; python_tests/test_triton_gpu.py
covers them on a GPU.
"""

import os
import sys

# Another interpreter file of the same pytest run may have set it and imported triton already.
assert "triton" not in sys.modules or os.environ.get("TRITON_INTERPRET") == "1", \
    "triton was imported before TRITON_INTERPRET could be set"
os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

from sweep_cases import INTERPRETER_GEOMETRIES, VARIANTS, assert_matches_reference, detached, make_args, tensor_inputs  # noqa: E402
from tensor_layouts import non_contiguous  # noqa: E402
from rnnpool_ops import ReX2d, RNNPool2d, _ops, functional  # noqa: E402
from rnnpool_ops._checks import check_sweep_args  # noqa: E402
from rnnpool_ops.cells import parameter_shapes, step  # noqa: E402
from rnnpool_ops.triton_sweep import kernels, load, sweep  # noqa: E402

load()  # registers rnnpool::forward_triton / backward_triton
FLOAT64 = dict(rtol=1e-10, atol=1e-10)
FLOAT32 = dict(rtol=1e-4, atol=1e-5)  # docs/spec.md section 6


def run_sweep(args, grad_output, **options):
    """sweep.forward and sweep.backward called directly (no autograd)."""
    plain = detached(args)
    out = sweep.forward(**plain, **options)
    grad_x, grad_rnn1, grad_rnn2, grad_proj = sweep.backward(grad_output, **plain, **options)
    return out, [grad_x, *grad_rnn1, *grad_rnn2, *grad_proj]


def run_op(args, grad_output):
    """torch.ops.rnnpool.forward_triton with its registered autograd."""
    out = torch.ops.rnnpool.forward_triton(*args.values())
    return out, list(torch.autograd.grad(out, tensor_inputs(args), grad_output))


@pytest.mark.parametrize("variant", VARIANTS)
def test_float64_every_variant(variant):
    assert_matches_reference(run_sweep, make_args("overlap", variant), **FLOAT64)


@pytest.mark.parametrize("variant", ["rnnpool_fastgrnn", "rex_gru"])
@pytest.mark.parametrize("geometry", [g for g in INTERPRETER_GEOMETRIES if g != "overlap"])
def test_float64_every_geometry(geometry, variant):
    assert_matches_reference(run_sweep, make_args(geometry, variant), **FLOAT64)


@pytest.mark.parametrize("variant", VARIANTS)
def test_float32_every_variant(variant):
    assert_matches_reference(run_sweep, make_args("nonsquare_gaps", variant, torch.float32, seed=1), **FLOAT32)


@pytest.mark.parametrize("variant", ["rnnpool_fastgrnn", "rex_gru"])
@pytest.mark.parametrize("geometry", ["overlap", "padding"])
def test_float32_geometries(geometry, variant):
    assert_matches_reference(run_sweep, make_args(geometry, variant, torch.float32, seed=2), **FLOAT32)


@pytest.mark.parametrize("variant", ["rnnpool_fastgrnn", "rex_gru"])
def test_hidden_sizes_past_one_tile(variant):
    # h1 = 17 pads to a 32-wide tile, h2 = 16 fills one exactly.
    assert_matches_reference(run_sweep, make_args("padding", variant, hidden=(17, 16)), **FLOAT64)


@pytest.mark.parametrize("layout", ["channels_last", "sliced"])
def test_non_contiguous_x(layout):
    args = make_args("padding", "rex_gru")
    args["x"] = non_contiguous(args["x"].detach(), layout).requires_grad_()
    args["rnn1"][1] = args["rnn1"][1].detach().t().contiguous().t().requires_grad_()  # non-contiguous weight
    assert_matches_reference(run_sweep, args, **FLOAT64)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float16, 1e-3), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("variant", ["rnnpool_fastgrnn", "rex_gru"])
def test_half_precision_computes_in_float32(variant, dtype, tolerance):
    # The output and gradients are float32 results rounded to dtype: within its rounding of the reference.
    def run(args, grad_output):
        out, grads = run_sweep(args, grad_output)
        assert out.dtype == dtype and all(g.dtype == dtype for g in grads)
        return out, grads

    assert_matches_reference(run, make_args("padding", variant, dtype), rtol=tolerance, atol=tolerance)


def test_batch_chunks_give_the_same_result():
    args = make_args("overlap", "rex_gru")
    grad_output = torch.randn(2, 24, 3, 3, dtype=torch.float64)
    whole = run_sweep(args, grad_output)
    one_sample_chunks = run_sweep(args, grad_output, workspace_bytes=1)
    # Equal up to rounding: the GEMMs' blocking depends on the chunk's size.
    torch.testing.assert_close(one_sample_chunks[0], whole[0], **FLOAT64)
    for a, b in zip(one_sample_chunks[1], whole[1]):
        torch.testing.assert_close(a, b, **FLOAT64)


@pytest.mark.parametrize("variant", ["rnnpool_fastgrnn", "rex_gru"])
def test_empty_batch(variant):
    args = make_args("overlap", variant)
    args["x"] = args["x"].detach()[:0]
    out, grads = run_sweep(args, torch.zeros(check_sweep_args(**args), dtype=torch.float64))
    assert out.shape[0] == 0 and grads[0].shape == args["x"].shape
    assert not any(g.any() for g in grads[1:])


def test_op_autograd_and_layers_with_backend_triton():
    assert_matches_reference(run_op, make_args("nonsquare_gaps", "rex_gru"), **FLOAT64)
    x = torch.randn(2, 3, 8, 7, dtype=torch.float64, requires_grad=True)
    assert functional._resolve_backend("triton", x) == "triton"
    for layer in (RNNPool2d(3, 4, 3, (3, 2), padding=1), ReX2d(3, 4, 2, 3, stride=2, parts="GC")):
        layer = layer.double()
        results = []
        for backend in ("triton", "reference"):
            layer.backend = backend
            out = layer(x)
            results.append((out, torch.autograd.grad(out.square().sum(), [x, *layer.parameters()])))
        torch.testing.assert_close(results[0][0], results[1][0], **FLOAT64)
        for a, b in zip(results[0][1], results[1][1]):
            torch.testing.assert_close(a, b, **FLOAT64)


@pytest.mark.skipif(not _ops.extension_available(), reason="the C++ extension is not built")
def test_schema_matches_the_cpp_op():
    for name in ("forward", "backward"):
        cpp = getattr(torch.ops.rnnpool, name).default._schema
        ours = getattr(torch.ops.rnnpool, f"{name}_triton").default._schema
        assert str(ours).replace(f"{name}_triton(", f"{name}(") == str(cpp)


def test_bad_arguments_raise_the_shared_checks():
    args = detached(make_args("overlap", "rex_gru"))
    with pytest.raises(ValueError, match=r"proj_weight must have shape \[4\*h2, \(kh\+kw\)\*h1\]"):
        sweep.forward(**dict(args, proj_weight=args["proj_weight"][:, 1:]))
    with pytest.raises(ValueError, match="grad_output must have the output's shape"):
        sweep.backward(torch.zeros(1), **args)


def reference_sequences(cell, params, inputs, gate, update):
    """Final states of sequences [B, T, in] with the reference cell step, inputs already projected:
    weight_ih / W is the identity, so each step's input is its projection."""
    h = None
    for t in range(inputs.shape[1]):
        h = step(cell, params, inputs[:, t], h, gate, update)
    return h


@pytest.mark.parametrize("cell, gate, update", [("fastgrnn", "quantSigm", "quantTanh"), ("gru", "sigmoid", "tanh"),
                                                ("fastgrnn", "sigmoid", "tanh")])
def test_launchers_on_hand_made_sequences(cell, gate, update):
    """The launchers with arbitrary addresses: sequences of one buffer read forwards and backwards,
    overlapping, final states written with a stride; gradients of each step's projection, the
    recurrent weights and biases against autograd on the reference cell. Projections of exactly
    -1 and 1 sit on the quantised nonlinearities' kinks (with U = 0 and zero biases the
    activations see them unchanged), where the slope must be 0."""
    hidden, steps, count = 3, 4, 5
    gates = 3 if cell == "gru" else 1
    row = gates * hidden
    gen = torch.Generator().manual_seed(0)
    xp = torch.randn(40 * row, dtype=torch.float64, generator=gen)
    xp[::3] = 1.0
    xp[1::7] = -1.0
    in_base = torch.tensor([0, 9, 20, 3, 33], dtype=torch.int64) * row
    in_step = torch.tensor([1, -2, 1, 3, -1], dtype=torch.int64) * row
    final_stride = count
    seqs = kernels.Sequences(in_base, in_step, torch.arange(count, dtype=torch.int64), final_stride, steps)
    params = [0.5 * torch.randn(s, dtype=torch.float64, generator=gen) for s in parameter_shapes(cell, row, hidden)]
    params[0] = torch.eye(row, dtype=torch.float64)
    kinks = gate == "quantSigm"
    if kinks:
        for p in params[1:4]:  # U, bias_gate, bias_update
            p.zero_()
    _, recurrent, coef = sweep._Cells._split(cell, params)

    positions = in_base[:, None] + torch.arange(steps) * in_step[:, None]  # start of each step's projection
    gathered = xp[positions[..., None] + torch.arange(row)].requires_grad_()  # [count, steps, row]
    leaves = [p.requires_grad_() for p in params[1:]]
    want = reference_sequences(cell, [params[0], *leaves], gathered, gate, update)

    final = torch.zeros(hidden * final_stride, dtype=torch.float64)
    states = torch.empty(count, steps, hidden, dtype=torch.float64)
    kernels.sweep_forward(xp, seqs, final, recurrent, hidden, cell, gate, update, states=states)
    torch.testing.assert_close(final.view(hidden, count).t(), want.detach(), **FLOAT64)

    grad_final = torch.randn(hidden * final_stride, dtype=torch.float64, generator=gen)
    want_grads = torch.autograd.grad(want, [gathered, *leaves], grad_final.view(hidden, count).t())
    grad_x, grad_hn, sums = kernels.sweep_backward(xp, seqs, grad_final, states, recurrent, hidden, cell, gate,
                                                   update)
    torch.testing.assert_close(grad_x, want_grads[0], **FLOAT64)
    grads = [torch.zeros_like(p) for p in params]
    sweep._Gradients.add_recurrent(grads, coef, hidden, states, grad_x, grad_hn, sums)
    for got, expected in zip(grads[1:], want_grads[1:]):
        torch.testing.assert_close(got, expected, **FLOAT64)
    if kinks:  # they really were hit, and got slope 0
        on_kink = gathered.detach().abs() == 1.0
        assert on_kink.any() and (grad_x[on_kink] == 0).all()
