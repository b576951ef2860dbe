"""The Triton backend (rnnpool::forward_triton) on a GPU: against the reference on random shapes, in
float32, float64, float16 and bfloat16, every gradient; opcheck; torch.compile without graph breaks;
autotuning. Skipped without a CUDA GPU (python_tests/interpreter/triton_sweep_checks.py runs the same
kernels on CPU under the Triton interpreter)."""

import random

import pytest
import torch
from torch import nn

from sweep_cases import VARIANTS, assert_matches_reference, detached, make_args, tensor_inputs
from rnnpool_ops import RNNPool2d, ReX2d, functional, triton_sweep

# Short-circuits: without a GPU, triton is not imported into this process.
pytestmark = pytest.mark.skipif(not torch.cuda.is_available() or not triton_sweep.available(),
                                reason="needs a CUDA GPU and triton")
FLOAT32 = dict(rtol=1e-4, atol=1e-5)  # docs/spec.md section 6


def run_op(args, grad_output):
    out = torch.ops.rnnpool.forward_triton(*args.values())
    return out, list(torch.autograd.grad(out, tensor_inputs(args), grad_output))


def random_geometry(rng):
    """(N, C, H, W, kernel, stride, padding): non-square, overlapping or with gaps, padded or not."""
    kernel = (rng.randint(1, 6), rng.randint(1, 6))
    stride = (rng.randint(1, 6), rng.randint(1, 6))
    padding = (rng.randint(0, kernel[0] - 1), rng.randint(0, kernel[1] - 1))
    height = rng.randint(max(1, kernel[0] - 2 * padding[0]), 20)
    width = rng.randint(max(1, kernel[1] - 2 * padding[1]), 20)
    return rng.randint(1, 5), rng.randint(1, 6), height, width, kernel, stride, padding


@pytest.mark.parametrize("seed", range(16))
def test_random_shapes_float32(seed):
    rng = random.Random(seed)
    args = make_args(random_geometry(rng), rng.choice(list(VARIANTS)), torch.float32, seed=seed,
                     hidden=(rng.randint(1, 40), rng.randint(1, 24)), device="cuda")
    # Gradients sum over many patches and steps: a little more absolute room than the outputs.
    assert_matches_reference(run_op, args, rtol=1e-4, atol=3e-5)


@pytest.mark.parametrize("variant", ["rnnpool_quantised", "rex_gru", "global_only"])
def test_float64(variant):
    args = make_args("overlap", variant, torch.float64, device="cuda")
    assert_matches_reference(run_op, args, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float16, 1e-3), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("variant", ["rnnpool_fastgrnn", "rex_gru"])
def test_half_precision_inputs(variant, dtype, tolerance):
    args = make_args("padding", variant, dtype, device="cuda")
    assert_matches_reference(run_op, args, rtol=tolerance, atol=tolerance)


def test_many_programs_and_chunks():
    """A batch whose sequences fill many programs, also run in one-sample chunks."""
    args = make_args((17, 5, 23, 19, (6, 5), (4, 3), (1, 2)), "rex_gru", torch.float32, hidden=(16, 8), device="cuda")
    assert_matches_reference(run_op, args, **FLOAT32)
    from rnnpool_ops.triton_sweep import sweep

    plain = detached(args)
    torch.testing.assert_close(sweep.forward(**plain, workspace_bytes=1), sweep.forward(**plain), **FLOAT32)


@pytest.mark.parametrize("variant", ["rnnpool_fastgrnn", "rex_gru", "global_only"])
def test_opcheck(variant):
    args = make_args("padding", variant, torch.float32, device="cuda")
    result = torch.library.opcheck(torch.ops.rnnpool.forward_triton.default, tuple(args.values()))
    assert set(result.values()) == {"SUCCESS"}, result
    plain = detached(args)
    grad_output = torch.randn_like(torch.ops.rnnpool.forward_triton(*plain.values()))
    result = torch.library.opcheck(torch.ops.rnnpool.backward_triton.default, (grad_output, *plain.values()),
                                   test_utils=("test_schema", "test_faketensor"))
    assert set(result.values()) == {"SUCCESS"}, result


def small_model(backend):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        RNNPool2d(8, 8, 6, (4, 3), stride=2, backend=backend),
        ReX2d(24, 8, 4, 2, backend=backend), nn.Flatten(), nn.LazyLinear(5),
    ).cuda()


def test_compile_fullgraph_forward_and_backward():
    """fullgraph=True fails on any graph break; inductor traces into the triton_op's kernels."""
    torch._dynamo.reset()
    model = small_model("triton")
    x = torch.randn(4, 3, 18, 16, device="cuda", requires_grad=True)
    eager = model(x)
    eager_grads = torch.autograd.grad(eager.square().sum(), [x, *model.parameters()])
    compiled = torch.compile(model, fullgraph=True)(x)
    compiled_grads = torch.autograd.grad(compiled.square().sum(), [x, *model.parameters()])
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
    for got, want in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_auto_backend_on_cuda():
    x = torch.zeros(1, device="cuda")
    expected = "cpp" if functional._CPP_HAS_CUDA_KERNEL else "triton"
    assert functional._resolve_backend("auto", x) == expected
    if not functional._CPP_HAS_CUDA_KERNEL:
        with pytest.raises(ValueError, match="backend='cpp' runs on CPU tensors"):
            functional._resolve_backend("cpp", x)


def test_launchers_autotune_per_hidden_size():
    from rnnpool_ops.triton_sweep import kernels

    for hidden in ((5, 3), (24, 16)):
        args = make_args("overlap", "rnnpool_fastgrnn", torch.float32, hidden=hidden, device="cuda")
        out, _ = run_op(args, torch.ones(args["x"].shape[0], 4 * hidden[1], 3, 3, device="cuda"))
    for tuned in (kernels._forward_tuned, kernels._backward_tuned):
        tried = {key[0] for key in tuned.cache}  # the key starts with H
        assert {5, 3, 24, 16} <= tried
        assert all(config.kwargs["BLOCK"] in (16, 32, 64, 128) for config in tuned.cache.values())
