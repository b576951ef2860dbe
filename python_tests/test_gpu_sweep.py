"""The GPU algorithm of the sweep (csrc/gpu/) against the reference:

- torch.ops.rnnpool_emulated, the same pipeline and kernel code run on the CPU, so CI checks the
  algorithm without a GPU (see csrc/testing/emulated_ops.cpp), in three schedules:
  "loop" (each sequence's units in turn) and "threads_in_order" / "threads_reversed" (each GPU
  block's threads as fibers switched at every barrier, in either order: a missing barrier fails one);
- "cuda": torch.ops.rnnpool on CUDA tensors, the real kernels; skipped without a GPU.
"""

import os

import pytest
import torch

from rnnpool_ops import _ops, reference
from rnnpool_ops.cells import cell_nonlinearities, cell_parameters
from edgeml_cases import golden_layer
from sweep_cases import GEOMETRIES, VARIANTS, convert, forward_and_grads, in_float64, make_args, tensor_inputs
from tensor_layouts import NON_CONTIGUOUS_LAYOUTS, non_contiguous

EMULATED_SCHEDULES = {"loop": "loop", "threads_in_order": "forward", "threads_reversed": "reverse"}
OPS = {"cuda": torch.ops.rnnpool, **{name: torch.ops.rnnpool_emulated for name in EMULATED_SCHEDULES}}
DEVICES = {name: "cuda" if name == "cuda" else "cpu" for name in OPS}


@pytest.fixture(params=[*EMULATED_SCHEDULES, "cuda"])
def impl(request, monkeypatch):
    if request.param in EMULATED_SCHEDULES:
        require_emulated_ops()
        monkeypatch.setenv("RNNPOOL_EMULATED_SCHEDULE", EMULATED_SCHEDULES[request.param])
    if request.param == "cuda":
        if not torch.cuda.is_available():
            pytest.skip("no GPU: the CUDA kernels are checked through the emulated path only")
        if not _ops.cuda_kernels_available():
            if os.environ.get("RNNPOOL_SKIP_CUDA") == "1":
                pytest.skip("the extension was built with RNNPOOL_SKIP_CUDA=1")
            pytest.fail("a GPU is present but the extension has no CUDA kernels: rebuild with nvcc available")
    return request.param


def require_emulated_ops():
    if not _ops.emulated_ops_available():
        pytest.skip("the library was built without the test-only ops (RNNPOOL_BUILD_TEST_OPS=1 builds them)")


def on_device(args, device):
    """The same arguments with every tensor a leaf on `device`."""
    return convert(args, lambda t: t.detach().to(device).requires_grad_(t.requires_grad))


def run_op(impl, args):
    return OPS[impl].forward(*args.values())


def assert_matches_reference(impl, args, rtol, atol):
    """Forward and every gradient of the implementation against the reference in float64 on the same values."""
    want, want_grads, grad_output = forward_and_grads(lambda a: reference.forward(**a), in_float64(args))
    dtype = args["x"].dtype
    got, got_grads, _ = forward_and_grads(lambda a: run_op(impl, a), on_device(args, DEVICES[impl]),
                                          grad_output.to(DEVICES[impl], dtype))
    assert got.device.type == DEVICES[impl] and got.dtype == dtype
    torch.testing.assert_close(got.cpu(), want.to(dtype), rtol=rtol, atol=atol)
    for i, (g, w) in enumerate(zip(got_grads, want_grads)):
        torch.testing.assert_close(g.cpu(), w.to(dtype), rtol=rtol, atol=atol,
                                   msg=lambda m: f"gradient of input {i}: {m}")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_float64_matches_reference(impl, geometry, variant):
    assert_matches_reference(impl, make_args(geometry, variant, torch.float64), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_float32_matches_reference(impl, geometry, variant):
    args = make_args(geometry, variant, torch.float32, seed=1)
    assert_matches_reference(impl, args, rtol=1e-4, atol=1e-5 if args["x"].numel() < 400 else 2e-5)


@pytest.mark.parametrize("hidden", [(17, 9), (33, 70), (1, 1)])
@pytest.mark.parametrize("variant", ["rnnpool_fastgrnn", "rex_gru"])
def test_hidden_sizes_and_teams_per_block(impl, variant, hidden):
    # 128 / hidden teams share a GPU block: several, one, and a team wider than a warp.
    args = make_args("odd_stride1", variant, torch.float64, hidden=hidden)
    assert_matches_reference(impl, args, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("layout", NON_CONTIGUOUS_LAYOUTS)
def test_non_contiguous_inputs(impl, layout):
    args = make_args("padding", "rex_gru", torch.float64)
    args["x"] = non_contiguous(args["x"].detach(), layout).requires_grad_()
    args["rnn1"][1] = args["rnn1"][1].detach().t().contiguous().t().requires_grad_()
    assert_matches_reference(impl, args, rtol=1e-10, atol=1e-10)


def test_backward_in_chunks_of_samples(impl, monkeypatch):
    # A workspace of one sample's records: the backward runs sample by sample and sums.
    monkeypatch.setenv("RNNPOOL_BACKWARD_WORKSPACE_BYTES", "1")
    args = make_args("wide_image", "rex_fastgrnn", torch.float64)
    assert_matches_reference(impl, args, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("variant", ["rnnpool_fastgrnn", "rex_gru"])
def test_empty_batch(impl, variant):
    args = on_device(make_args("overlap", variant), DEVICES[impl])
    args["x"] = args["x"].detach()[:0].requires_grad_()
    out = run_op(impl, args)
    assert out.shape[0] == 0
    grads = torch.autograd.grad(out.sum(), tensor_inputs(args), allow_unused=True)
    assert grads[0].shape == args["x"].shape
    assert all(g is None or not g.any() for g in grads[1:])


@pytest.mark.parametrize("variant", ["rnnpool_fastgrnn", "rnnpool_quantised", "rex_gru", "rex_fastgrnn"])
def test_gradcheck(impl, variant):
    args = on_device(make_args("nonsquare_gaps", variant, torch.float64, hidden=(3, 2)), DEVICES[impl])
    args["x"] = args["x"].detach()[:1].requires_grad_()
    n1, n2 = len(args["rnn1"]), len(args["rnn2"])

    def run(x, *params):
        a = dict(args, x=x, rnn1=list(params[:n1]), rnn2=list(params[n1:n1 + n2]))
        if args["proj_weight"] is not None:
            a.update(proj_weight=params[-2], proj_bias=params[-1])
        return run_op(impl, a)

    assert torch.autograd.gradcheck(run, tensor_inputs(args), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("variant", ["rnnpool_fastgrnn", "rex_gru", "global_only"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck(impl, variant, dtype):
    args = on_device(make_args("padding", variant, dtype), DEVICES[impl])
    result = torch.library.opcheck(OPS[impl].forward.default, tuple(args.values()))
    assert set(result.values()) == {"SUCCESS"}, result


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_golden_edgeml_trace(impl, golden, dtype):
    layer = golden_layer(golden, dtype, "reference").to(DEVICES[impl])
    x = torch.tensor(golden["input_hwc"], dtype=dtype).permute(2, 0, 1).unsqueeze(0).to(DEVICES[impl])
    out = OPS[impl].forward(x, cell_parameters(layer.rnn1), cell_parameters(layer.rnn2), None, None,
                            list(layer.kernel_size), list(layer.stride), list(layer.padding), "fastgrnn",
                            *cell_nonlinearities(layer.rnn1), "RC")
    torch.testing.assert_close(out.flatten().cpu(), torch.tensor(golden["output"], dtype=dtype), rtol=0, atol=1e-6)


def test_bad_arguments_name_the_argument(impl):
    args = on_device(make_args("overlap", "rex_gru", torch.float32), DEVICES[impl])
    bad = dict(args, rnn1=[p.detach() for p in args["rnn1"][:3]])
    with pytest.raises(ValueError, match="rnn1 must hold 4 tensors"):
        run_op(impl, bad)
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        run_op(impl, dict(args, x=args["x"].detach().to(torch.int32)))


# ---- CUDA only ------------------------------------------------------------------------------

cuda_only = pytest.mark.skipif(not torch.cuda.is_available() or not _ops.cuda_kernels_available(),
                               reason="needs a GPU and the extension's CUDA kernels")


@cuda_only
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_compute_in_float32(dtype):
    args = make_args("padding", "rex_gru", torch.float32, seed=2)
    want = reference.forward(**in_float64(args))
    got = run_op("cuda", convert(args, lambda t: t.detach().to("cuda", dtype)))
    assert got.dtype == dtype
    tol = 1e-2 if dtype == torch.float16 else 5e-2
    torch.testing.assert_close(got.float().cpu(), want.float(), rtol=tol, atol=tol)


@cuda_only
def test_inputs_on_other_devices_are_rejected():
    args = on_device(make_args("overlap", "rnnpool_fastgrnn", torch.float32), "cuda")
    args["rnn2"] = [p.detach().cpu() for p in args["rnn2"]]
    with pytest.raises(ValueError, match="rnn2.W must be on the device of x"):
        run_op("cuda", args)


@cuda_only
def test_hidden_size_limit_is_a_clear_error():
    args = on_device(make_args("one_output_pixel", "rnnpool_fastgrnn", torch.float32, hidden=(600, 2)), "cuda")
    with pytest.raises(ValueError, match="hidden sizes up to 512"):
        run_op("cuda", args)


@cuda_only
def test_runs_on_the_current_stream_and_device_guard():
    args = on_device(make_args("wide_image", "rex_gru", torch.float32), "cuda")
    want = run_op("cuda", args)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        got = run_op("cuda", args)
    stream.synchronize()
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@cuda_only
@pytest.mark.parametrize("variant", ["rnnpool_fastgrnn", "rex_gru"])
def test_compile_reduce_overhead_on_a_side_stream(variant):
    torch._dynamo.reset()
    args = on_device(make_args("overlap", variant, torch.float32), "cuda")
    tensors = (args["x"], args["rnn1"], args["rnn2"], args["proj_weight"], args["proj_bias"])
    config = [v for k, v in args.items() if k not in ("x", "rnn1", "rnn2", "proj_weight", "proj_bias")]

    def layer(x, rnn1, rnn2, proj_weight, proj_bias):
        return torch.ops.rnnpool.forward(x, rnn1, rnn2, proj_weight, proj_bias, *config).square().sum()

    eager = layer(*tensors)
    eager_grads = torch.autograd.grad(eager, tensor_inputs(args))
    compiled_layer = torch.compile(layer, mode="reduce-overhead", fullgraph=True)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # CUDA graphs are recorded after warm-up runs
            compiled = compiled_layer(*tensors)
            compiled_grads = torch.autograd.grad(compiled, tensor_inputs(args))
    torch.cuda.current_stream().wait_stream(stream)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
    for g, w in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


def test_unknown_emulated_schedule_is_a_clear_error(monkeypatch):
    require_emulated_ops()
    monkeypatch.setenv("RNNPOOL_EMULATED_SCHEDULE", "sideways")
    with pytest.raises(ValueError, match="RNNPOOL_EMULATED_SCHEDULE must be 'loop', 'forward' or 'reverse'"):
        run_op("loop", make_args("overlap", "rnnpool_fastgrnn"))
