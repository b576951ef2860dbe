"""torch.ops.rnnpool.forward / backward (the fused C++ CPU kernels) against the reference."""

import pytest
import torch

from argument_cases import BAD_ARGS, valid_args
from sweep_cases import GEOMETRIES, HIDDEN2, VARIANTS, convert, forward_and_grads, in_float64, make_args, tensor_inputs
from tensor_layouts import NON_CONTIGUOUS_LAYOUTS, non_contiguous
from rnnpool_ops import functional, reference
from rnnpool_ops.cells import parameter_shapes

def fused(args):
    return torch.ops.rnnpool.forward(*args.values())


def assert_matches_reference(args, rtol, atol):
    """The fused op against the reference computed in float64 on the same values, so that only
    the fused kernel's rounding is measured."""
    exact = in_float64(args)
    want, want_grads, grad_output = forward_and_grads(lambda a: reference.forward(**a), exact)
    got, got_grads, _ = forward_and_grads(fused, args, grad_output.to(args["x"].dtype))
    want, want_grads = want.to(got.dtype), [g.to(got.dtype) for g in want_grads]
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol)
    for i, (g, w) in enumerate(zip(got_grads, want_grads)):
        torch.testing.assert_close(g, w, rtol=rtol, atol=atol, msg=lambda m: f"gradient of input {i}: {m}")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_float64_matches_reference(geometry, variant):
    assert_matches_reference(make_args(geometry, variant, torch.float64), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_float32_matches_reference(geometry, variant):
    # docs/spec.md section 6 tolerances; gradients sum over many patches, so they get a little more room.
    args = make_args(geometry, variant, torch.float32, seed=1)
    assert_matches_reference(args, rtol=1e-4, atol=1e-5 if args["x"].numel() < 400 else 2e-5)


@pytest.mark.parametrize("variant", ["rnnpool_fastgrnn", "rex_gru"])
def test_larger_hidden_sizes_and_many_groups(variant):
    # More patches than one lane group, hidden sizes that are not multiples of the lane width.
    args = make_args("odd_stride1", variant, torch.float64, hidden=(17, 9))
    assert_matches_reference(args, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("layout", NON_CONTIGUOUS_LAYOUTS)
def test_non_contiguous_inputs(layout):
    args = make_args("padding", "rex_gru", torch.float64)
    args["x"] = non_contiguous(args["x"].detach(), layout).requires_grad_()
    args["rnn1"][1] = args["rnn1"][1].detach().t().contiguous().t().requires_grad_()  # non-contiguous weight
    assert_matches_reference(args, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("variant", ["rnnpool_fastgrnn", "rex_gru"])
def test_empty_batch(variant):
    args = make_args("overlap", variant)
    args["x"] = args["x"].detach()[:0].requires_grad_()
    out = fused(args)
    assert out.shape == (0, 4 * HIDDEN2 if variant == "rnnpool_fastgrnn" else 8 * HIDDEN2, 3, 3)
    grads = torch.autograd.grad(out.sum(), tensor_inputs(args), allow_unused=True)
    assert grads[0].shape == args["x"].shape
    assert all(g is None or not g.any() for g in grads[1:])


@pytest.mark.parametrize("variant", ["rnnpool_fastgrnn", "rnnpool_quantised", "rex_gru", "rex_fastgrnn"])
def test_gradcheck(variant):
    args = make_args("nonsquare_gaps", variant, torch.float64, hidden=(3, 2))
    args["x"] = args["x"].detach()[:1].requires_grad_()
    inputs = tensor_inputs(args)
    n1, n2 = len(args["rnn1"]), len(args["rnn2"])

    def run(x, *params):
        a = dict(args, x=x, rnn1=list(params[:n1]), rnn2=list(params[n1:n1 + n2]))
        if args["proj_weight"] is not None:
            a.update(proj_weight=params[-2], proj_bias=params[-1])
        return fused(a)

    assert torch.autograd.gradcheck(run, inputs, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("variant", ["rnnpool_fastgrnn", "rex_gru", "global_only"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck(variant, dtype):
    args = make_args("padding", variant, dtype)
    result = torch.library.opcheck(torch.ops.rnnpool.forward.default, tuple(args.values()))
    assert set(result.values()) == {"SUCCESS"}, result


def test_opcheck_backward_op():
    args = make_args("overlap", "rex_gru")
    grad_output = torch.randn_like(fused(args))
    detached = {k: (v.detach() if isinstance(v, torch.Tensor) else
                    [t.detach() for t in v] if isinstance(v, list) and v and isinstance(v[0], torch.Tensor) else v)
                for k, v in args.items()}
    result = torch.library.opcheck(torch.ops.rnnpool.backward.default, (grad_output, *detached.values()),
                                   test_utils=("test_schema", "test_faketensor"))
    assert set(result.values()) == {"SUCCESS"}, result


@pytest.mark.parametrize("variant", ["rnnpool_fastgrnn", "rex_gru"])
def test_compile_fullgraph_forward_and_backward(variant):
    torch._dynamo.reset()
    args = make_args("overlap", variant, torch.float32)
    other = {k: v for k, v in args.items() if k not in ("x", "rnn1", "rnn2", "proj_weight", "proj_bias")}

    def layer(x, rnn1, rnn2, proj_weight, proj_bias):
        return functional.patch_sweep(x, rnn1, rnn2, proj_weight, proj_bias, other["kernel_size"], other["stride"],
                                      other["padding"], other["cell"], other["gate_nonlinearity"],
                                      other["update_nonlinearity"], other["parts"], backend="cpp").square().sum()

    inputs = (args["x"], args["rnn1"], args["rnn2"], args["proj_weight"], args["proj_bias"])
    eager = layer(*inputs)
    eager_grads = torch.autograd.grad(eager, tensor_inputs(args))
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")(*inputs)
    compiled_grads = torch.autograd.grad(compiled, tensor_inputs(args))
    torch.testing.assert_close(compiled, eager)
    for g, w in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(g, w)


def test_compile_inductor_matches_eager():
    torch._dynamo.reset()
    args = make_args("padding", "rex_gru", torch.float32)
    rest = list(args.values())[1:]

    def layer(x):
        return torch.relu(torch.ops.rnnpool.forward(x * 2, *rest)) + 1

    x = args["x"].detach()
    torch.testing.assert_close(torch.compile(layer, fullgraph=True)(x), layer(x), rtol=1e-5, atol=1e-6)


def test_export():
    args = make_args("overlap", "rnnpool_fastgrnn", torch.float32)
    rest = [[t.detach() for t in v] if isinstance(v, list) and isinstance(v[0], torch.Tensor) else v
            for v in list(args.values())[1:]]

    class Layer(torch.nn.Module):
        def forward(self, x):
            return torch.ops.rnnpool.forward(x, *rest)

    x = args["x"].detach()
    program = torch.export.export(Layer(), (x,))
    assert any("rnnpool.forward" in str(node.target) for node in program.graph.nodes)
    torch.testing.assert_close(program.module()(x), Layer()(x))


# Shapes that the CPU op schedules differently on one thread and on several: a batch in one chunk
# (its phases spread over the threads), a single sample, small maps (one patch each) in one
# backward chunk, in three (the backward takes at most the 16 samples that fill a lane group per
# chunk: one after another, phases spread) and in four (whole chunks per thread), and a chunk per
# sample (whole chunks per thread).
THREADING_SHAPES = {
    "batch": ((7, 5, 13, 11), (3, 2), 1, (8, 4)),
    "one_sample": ((1, 3, 40, 37), 4, 2, (8, 4)),
    "small_maps_one_chunk": ((13, 3, 4, 4), 4, 4, (8, 4)),
    "small_maps": ((45, 3, 4, 4), 4, 4, (8, 4)),
    "small_maps_chunk_per_thread": ((64, 3, 4, 4), 4, 4, (8, 4)),
    "sample_per_chunk": ((3, 4, 112, 112), 6, 4, (16, 8)),
}


@pytest.mark.parametrize("shape", list(THREADING_SHAPES))
@pytest.mark.parametrize("variant", ["rnnpool_fastgrnn", "rex_gru"])
def test_same_result_for_any_thread_count(variant, shape):
    size, kernel, stride, hidden = THREADING_SHAPES[shape]
    args = make_args((*size, kernel, stride, 0), variant, torch.float32, hidden=hidden)
    grad_output = torch.randn_like(fused(args))
    threads = torch.get_num_threads()
    try:
        results = []
        for count in (1, max(2, threads)):
            torch.set_num_threads(count)
            out, grads, _ = forward_and_grads(fused, args, grad_output)
            results.append((out, grads))
    finally:
        torch.set_num_threads(threads)
    (out1, grads1), (out2, grads2) = results
    assert torch.equal(out1, out2)
    for a, b in zip(grads1, grads2):
        assert torch.equal(a, b)


# ---- bad input reaching the C++ op directly (no Python checks in front of it) ----

# The argument each BAD_ARGS case is about, as the C++ message must name it.
CPP_ARGUMENT = {
    "x_rank": "x", "x_integer": "x", "kernel_zero": "kernel_size", "stride_zero": "stride",
    "stride_three_ints": "stride", "padding_negative": "padding", "patch_larger_than_padded_input": "kernel_size",
    "cell_unknown": "cell", "gate_unknown": "gate_nonlinearity", "update_unknown": "update_nonlinearity",
    "gru_nonlinearity": "update_nonlinearity", "parts_out_of_order": "parts", "parts_empty": "parts",
    "parts_repeated": "parts", "rnn1_length": "rnn1", "rnn1_input_size": "rnn1.W", "rnn1_W_rank": "rnn1.W",
    "rnn1_U_shape": "rnn1.U", "rnn1_zeta_scalar": "rnn1.zeta", "rnn2_input_size": "rnn2.W",
    "gru_weight_rows": "rnn1.weight_ih", "rnn1_dtype": "rnn1.bias_update", "proj_weight_missing": "proj_weight",
    "proj_weight_shape": "proj_weight", "proj_bias_shape": "proj_bias", "proj_without_G": "proj_weight",
}


@pytest.mark.parametrize("case", CPP_ARGUMENT)
def test_op_rejects_bad_input_naming_the_argument(case):
    change, _, _ = BAD_ARGS[case]
    args = valid_args()
    args.update(change(args))
    with pytest.raises((ValueError, TypeError, RuntimeError), match=CPP_ARGUMENT[case].replace(".", r"\.")):
        torch.ops.rnnpool.forward(*args.values())


def test_op_rejects_parameters_on_another_device():
    args = valid_args()
    args["rnn2"][5] = torch.zeros(1, device="meta")
    with pytest.raises((ValueError, RuntimeError), match="rnn2"):
        torch.ops.rnnpool.forward(*args.values())


def test_backward_op_rejects_wrong_grad_output_shape():
    args = valid_args()
    with pytest.raises(ValueError, match="grad_output must have shape"):
        torch.ops.rnnpool.backward(torch.zeros(2, 16, 3, 5), *args.values())


# ---- the CPU kernel build (ISA) in use ----

def run_python(code, **env):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_cpu_isa_defaults_to_the_best_available_build():
    import rnnpool_ops

    available = rnnpool_ops.available_cpu_isas()
    assert available[-1] == "scalar" and set(available) <= {"avx512", "avx2", "neon", "scalar"}
    result = run_python("import rnnpool_ops; print(rnnpool_ops.cpu_isa())", RNNPOOL_CPU_ISA="auto")
    assert result.stdout.strip() == available[0], result.stderr


def test_rnnpool_cpu_isa_environment_variable_forces_each_build():
    import rnnpool_ops

    for isa in rnnpool_ops.available_cpu_isas():
        result = run_python("import rnnpool_ops; print(rnnpool_ops.cpu_isa())", RNNPOOL_CPU_ISA=isa)
        assert result.stdout.strip() == isa, result.stderr


def test_unknown_cpu_isa_is_a_clear_error():
    import rnnpool_ops

    result = run_python("import rnnpool_ops; rnnpool_ops.cpu_isa()", RNNPOOL_CPU_ISA="sse9")
    assert result.returncode != 0
    assert "RNNPOOL_CPU_ISA must be 'auto' or one of the builds compiled for this machine" in result.stderr
    assert "got 'sse9'" in result.stderr
    with pytest.raises(ValueError, match="cpu_isa must be 'auto' or one of the builds"):
        rnnpool_ops.set_cpu_isa("sse9")


@pytest.mark.parametrize("variant", ["rnnpool_quantised", "rex_gru"])
@pytest.mark.parametrize("isa", ["scalar", "avx2", "avx512", "neon"])
def test_every_isa_build_matches_the_reference(isa, variant):
    """Forward and gradients through each ISA build chosen at run time with set_cpu_isa."""
    import rnnpool_ops

    if isa not in rnnpool_ops.available_cpu_isas():
        pytest.skip(f"this machine cannot run the {isa} build")
    previous = rnnpool_ops.set_cpu_isa(isa)
    try:
        assert rnnpool_ops.cpu_isa() == isa
        assert_matches_reference(make_args("wide_image", variant, torch.float32), rtol=1e-4, atol=1e-4)
    finally:
        rnnpool_ops.set_cpu_isa(previous)


def test_large_batch_is_processed_in_chunks_with_the_same_result():
    # 400x400 with GRU hidden 8: ~20 MB of intermediates per sample, so the forward works on
    # chunks of 3 samples (64 MB budget); each sample alone must give bitwise the same output.
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, 1, 400, 400, generator=gen)
    rnn1 = [0.5 * torch.randn(s, generator=gen) for s in parameter_shapes("gru", 1, 8)]
    rnn2 = [0.5 * torch.randn(s, generator=gen) for s in parameter_shapes("gru", 8, 4)]
    config = ([2, 2], [2, 2], [0, 0], "gru", "sigmoid", "tanh", "RC")
    whole = torch.ops.rnnpool.forward(x, rnn1, rnn2, None, None, *config)
    alone = torch.cat([torch.ops.rnnpool.forward(x[i:i + 1], rnn1, rnn2, None, None, *config) for i in range(4)])
    assert torch.equal(whole, alone)
