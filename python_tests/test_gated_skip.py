"""The gated-skip convolution (docs/spec.md section 5): the fused op against the unfused reference, its
gradients, opcheck, torch.compile, real skipping of gated-off work, bad input, and the module."""

import pytest
import torch
import torch.nn.functional as F
from tensor_layouts import NON_CONTIGUOUS_LAYOUTS, non_contiguous

from rnnpool_ops import GatedSkipConv2d, hard_gate
from rnnpool_ops.gated_skip import _ops, gated_skip_conv2d, reference

requires_op = pytest.mark.skipif(not _ops.fused_available("cpu"), reason="the C++ extension is not built")

# name: (N, C, H, W, kernel, groups, dilation)
GEOMETRIES = {
    "k3": (2, 6, 7, 5, 3, 1, 1),
    "k1": (3, 4, 5, 6, 1, 1, 1),
    "batch1_nonsquare": (1, 5, 4, 9, 3, 1, 1),
    "depthwise": (2, 6, 6, 7, 3, 6, 1),
    "groups2": (2, 8, 5, 5, 3, 2, 1),
    "k5_dilation2": (2, 4, 9, 8, 5, 1, 2),
    "depthwise_k5_dilation2": (2, 3, 7, 6, 5, 3, 2),
    "kernel_beyond_image": (2, 3, 2, 3, 5, 1, 1),
    # Several tiles of output channels (gated_conv.h); rows of two whole registers, which the kernel
    # runs row by row, and wider rows with a partial register, which it runs across the row ends.
    "rows_of_32": (2, 20, 3, 32, 3, 1, 1),
    "wide_many_channels": (2, 28, 4, 37, 3, 1, 1),
    "wide_groups_dilated": (1, 30, 5, 35, 3, 2, 2),
}
GATES = ("absent", "soft", "hard", "layer_only_hard", "channel_only_soft", "all_off", "all_on")


def make_gates(kind, n, c, dtype, gen):
    """(layer_gate, channel_gate) of the given kind; hard gates mix zeros and ones."""
    def hard(*shape):
        return (torch.rand(*shape, generator=gen) > 0.4).to(dtype)

    def soft(*shape):
        return torch.rand(*shape, generator=gen, dtype=dtype)

    return {
        "absent": lambda: (None, None),
        "soft": lambda: (soft(n), soft(n, c)),
        "hard": lambda: (hard(n), hard(n, c)),
        "layer_only_hard": lambda: (hard(n), None),
        "channel_only_soft": lambda: (None, soft(n, c)),
        "all_off": lambda: (torch.zeros(n, dtype=dtype), hard(n, c)),
        "all_on": lambda: (torch.ones(n, dtype=dtype), torch.ones(n, c, dtype=dtype)),
    }[kind]()


def make_args(geometry, gates="soft", dtype=torch.float64, seed=0, bias=True, folded_bn=False, activation="relu",
              requires_grad=True):
    n, c, h, w, k, groups, dilation = GEOMETRIES[geometry]
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0, offset=0.0):
        return scale * torch.randn(*shape, generator=gen, dtype=dtype) + offset

    layer_gate, channel_gate = make_gates(gates, n, c, dtype, gen)
    args = dict(
        x=rand(n, c, h, w),
        weight=rand(c, c // groups, k, k, scale=0.4),
        bias=rand(c) if bias else None,
        layer_gate=layer_gate,
        channel_gate=channel_gate,
        scale=rand(c, scale=0.3, offset=1.0) if folded_bn else None,
        shift=rand(c, scale=0.3) if folded_bn else None,
        dilation=dilation,
        groups=groups,
        activation=activation,
    )
    if requires_grad:
        for key in TENSOR_KEYS:
            if args[key] is not None:
                args[key].requires_grad_()
    return args


TENSOR_KEYS = ("x", "weight", "bias", "layer_gate", "channel_gate", "scale", "shift")


def run_fused(args):
    return gated_skip_conv2d(**args, backend="fused")


def forward_and_grads(run, args, grad_output):
    out = run(args)
    inputs = [args[k] for k in TENSOR_KEYS if args[k] is not None and args[k].requires_grad]
    if not inputs:
        return out, []
    return out, torch.autograd.grad(out, inputs, grad_output)


def assert_matches_reference(args, rtol, atol):
    gen = torch.Generator().manual_seed(123)
    grad_output = torch.randn(args["x"].shape, generator=gen, dtype=args["x"].dtype)
    want, want_grads = forward_and_grads(lambda a: reference.gated_skip_conv2d(**a), args, grad_output)
    got, got_grads = forward_and_grads(run_fused, args, grad_output)
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol)
    names = [k for k in TENSOR_KEYS if args[k] is not None and args[k].requires_grad]
    for name, g, w in zip(names, got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=rtol, atol=atol, msg=lambda m: f"gradient of {name}: {m}")


@requires_op
@pytest.mark.parametrize("gates", GATES)
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_float64_matches_reference(geometry, gates):
    assert_matches_reference(make_args(geometry, gates), rtol=1e-10, atol=1e-10)


@requires_op
@pytest.mark.parametrize("activation", ["relu", None])
@pytest.mark.parametrize("geometry", ["k3", "depthwise", "groups2", "k5_dilation2", "rows_of_32",
                                      "wide_many_channels"])
def test_float32_folded_bn_and_activation(geometry, activation):
    args = make_args(geometry, "hard", torch.float32, seed=1, folded_bn=True, activation=activation)
    assert_matches_reference(args, rtol=1e-4, atol=1e-5)


@requires_op
@pytest.mark.parametrize("gates", ["hard", "soft", "absent"])
@pytest.mark.parametrize("geometry", ["k3", "depthwise", "groups2", "rows_of_32", "wide_many_channels",
                                      "wide_groups_dilated"])
def test_inference_matches_reference(geometry, gates):
    args = make_args(geometry, gates, torch.float32, seed=2, requires_grad=False)
    with torch.no_grad():
        torch.testing.assert_close(run_fused(args), reference.gated_skip_conv2d(**args), rtol=1e-4, atol=1e-5)


@requires_op
def test_forward_independent_of_thread_count():
    # Batches of at least one sample per thread are split by sample, smaller ones by rows of each
    # sample: the two schedules run the same tiles and must agree exactly.
    args = make_args("wide_many_channels", "hard", torch.float32, seed=3, requires_grad=False)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        by_sample = run_fused(args)
        torch.set_num_threads(args["x"].shape[0] + 2)
        by_rows = run_fused(args)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(by_sample, by_rows)


@requires_op
def test_no_bias():
    assert_matches_reference(make_args("groups2", "soft", bias=False, folded_bn=True), rtol=1e-10, atol=1e-10)


@requires_op
@pytest.mark.parametrize("layout", NON_CONTIGUOUS_LAYOUTS)
def test_non_contiguous_inputs(layout):
    args = make_args("k3", "soft", requires_grad=False)
    args["x"] = non_contiguous(args["x"], layout)
    args["weight"] = args["weight"].transpose(0, 1).contiguous().transpose(0, 1)
    args["channel_gate"] = args["channel_gate"].t().contiguous().t()
    assert not args["weight"].is_contiguous() and not args["channel_gate"].is_contiguous()
    for key in TENSOR_KEYS:
        if args[key] is not None:
            args[key].requires_grad_()
    assert_matches_reference(args, rtol=1e-10, atol=1e-10)


@requires_op
def test_empty_batch():
    args = make_args("k3", "soft")
    for key in ("x", "layer_gate", "channel_gate"):
        args[key] = args[key].detach()[:0].requires_grad_()
    out = run_fused(args)
    assert out.shape == args["x"].shape
    grads = torch.autograd.grad(out.sum(), [args[k] for k in TENSOR_KEYS if args[k] is not None])
    assert all(not g.any() for g in grads)


@requires_op
@pytest.mark.parametrize("gates", ["soft", "hard", "absent"])
@pytest.mark.parametrize("geometry", ["batch1_nonsquare", "depthwise", "groups2", "k5_dilation2"])
def test_gradcheck(geometry, gates):
    args = make_args(geometry, gates, folded_bn=True)
    names = [k for k in TENSOR_KEYS if args[k] is not None]

    def run(*tensors):
        return run_fused(dict(args, **dict(zip(names, tensors))))

    assert torch.autograd.gradcheck(run, [args[k] for k in names], fast_mode=True)


@requires_op
@pytest.mark.parametrize("case", ["all_optional", "none_optional", "depthwise_hard", "dilated_layer_gate"])
def test_opcheck(case):
    geometry, gates, bias, bn = {
        "all_optional": ("k3", "soft", True, True),
        "none_optional": ("groups2", "absent", False, False),
        "depthwise_hard": ("depthwise", "hard", True, False),
        "dilated_layer_gate": ("k5_dilation2", "layer_only_hard", False, True),
    }[case]
    a = make_args(geometry, gates, bias=bias, folded_bn=bn)
    op_args = ([a[k] for k in TENSOR_KEYS] + [[a["dilation"]] * 2, a["groups"], a["activation"]])
    torch.library.opcheck(torch.ops.rnnpool.gated_skip_conv2d, op_args)


@requires_op
def test_compile_fullgraph():
    torch.manual_seed(0)
    layer = GatedSkipConv2d(6, 3, groups=3, backend="fused")
    x = torch.randn(3, 6, 5, 7, requires_grad=True)
    logits = torch.randn(3, 6, requires_grad=True)

    def step(x, logits):
        return layer(x, hard_gate(logits[:, 0]), hard_gate(logits)).square().sum()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    want = step(x, logits)
    want_grads = torch.autograd.grad(want, [x, logits, layer.weight])
    got = compiled(x, logits)
    got_grads = torch.autograd.grad(got, [x, logits, layer.weight])
    torch.testing.assert_close(got, want)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w)


@requires_op
def test_compile_inductor_module_inference():
    torch._dynamo.reset()
    torch.manual_seed(0)
    layer = GatedSkipConv2d(4, 3, backend="fused").eval()
    x, logits = torch.randn(2, 4, 6, 5), torch.randn(2, 4)

    def run(x, logits):
        return layer(x * 2, channel_gate=hard_gate(logits)) + 1

    with torch.no_grad():
        torch.testing.assert_close(torch.compile(run, fullgraph=True)(x, logits), run(x, logits), rtol=1e-5,
                                   atol=1e-6)


# Skipping: a gated-off sample or channel must not touch the convolution at all. NaN weights prove it:
# any multiply-add with them would put a NaN into the output.
@requires_op
@pytest.mark.parametrize("geometry", ["k3", "depthwise", "groups2"])
def test_gated_off_channels_do_no_multiply_adds(geometry):
    args = make_args(geometry, "hard", torch.float32, requires_grad=False)
    n, c = args["x"].shape[:2]
    args["layer_gate"] = torch.ones(n)
    off = torch.arange(c) % 3 == 1  # gated off in every sample
    args["channel_gate"][:, off] = 0
    poisoned = dict(args, weight=args["weight"].clone(), bias=args["bias"].clone())
    poisoned["weight"][off] = float("nan")
    poisoned["bias"][off] = float("nan")
    with torch.no_grad():
        got = run_fused(poisoned)
        want = reference.gated_skip_conv2d(**args)
    assert torch.equal(got[:, off], args["x"][:, off])
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@requires_op
@pytest.mark.parametrize("geometry", ["k3", "rows_of_32"])
def test_relu_keeps_nan(geometry):
    args = make_args(geometry, "soft", torch.float32, requires_grad=False)
    args["x"][0, 1, 2, 2] = float("nan")  # reaches its 3x3 neighbourhood in every active channel
    with torch.no_grad():
        want = reference.gated_skip_conv2d(**args)
        assert want.isnan().any()
        torch.testing.assert_close(run_fused(args), want, rtol=1e-4, atol=1e-5, equal_nan=True)


@requires_op
@pytest.mark.parametrize("geometry", ["k3", "depthwise", "k1"])
def test_zero_active_is_an_exact_copy(geometry):
    args = make_args(geometry, "all_off", torch.float32, requires_grad=False)
    args["weight"] = torch.full_like(args["weight"], float("nan"))
    with torch.no_grad():
        assert torch.equal(run_fused(args), args["x"])


@requires_op
def test_gated_off_samples_skip_the_convolution():
    args = make_args("k3", "layer_only_hard", torch.float32, requires_grad=False)
    args["layer_gate"] = torch.tensor([0.0, 1.0])
    x = args["x"].clone()
    x[0] = float("nan")  # only the skipped sample: copied as it is, never convolved into the other
    with torch.no_grad():
        got = run_fused(dict(args, x=x))
    assert torch.equal(got[0].isnan(), torch.ones_like(got[0], dtype=torch.bool))
    torch.testing.assert_close(got[1:], reference.gated_skip_conv2d(**dict(args, x=x[1:], layer_gate=args["layer_gate"][1:])))


def valid_op_args():
    return dict(
        x=torch.zeros(2, 4, 5, 6), weight=torch.zeros(4, 2, 3, 3), bias=torch.zeros(4),
        layer_gate=torch.ones(2), channel_gate=torch.ones(2, 4), scale=torch.ones(4), shift=torch.zeros(4),
        dilation=[1, 1], groups=2, activation="relu",
    )


BAD_ARGS = {
    "x_rank": ({"x": torch.zeros(4, 5, 6)}, ValueError, r"x must .*\[N, C, H, W\]"),
    "x_integer": ({"x": torch.zeros(2, 4, 5, 6, dtype=torch.int32)}, TypeError, r"x must .*float"),
    "weight_shape": ({"weight": torch.zeros(4, 4, 3, 3)}, ValueError, r"weight must have shape .*\[4, 2, kh, kw\]"),
    "weight_rank": ({"weight": torch.zeros(4, 2, 3)}, ValueError, r"weight must have shape"),
    "even_kernel": ({"weight": torch.zeros(4, 2, 2, 3)}, ValueError, r"weight.*odd"),
    "weight_dtype": ({"weight": torch.zeros(4, 2, 3, 3, dtype=torch.float64)}, TypeError, r"weight .*dtype"),
    "groups_not_dividing": ({"groups": 3}, ValueError, r"groups \(3\) must divide"),
    "groups_zero": ({"groups": 0}, ValueError, r"groups must be"),
    "bias_shape": ({"bias": torch.zeros(3)}, ValueError, r"bias must have shape \[4\]"),
    "scale_shape": ({"scale": torch.zeros(4, 1)}, ValueError, r"scale must have shape \[4\]"),
    "shift_dtype": ({"shift": torch.zeros(4, dtype=torch.float64)}, TypeError, r"shift .*dtype"),
    "layer_gate_shape": ({"layer_gate": torch.ones(3)}, ValueError, r"layer_gate must have shape \[2\]"),
    "channel_gate_shape": ({"channel_gate": torch.ones(4, 2)}, ValueError, r"channel_gate must have shape \[2, 4\]"),
    "channel_gate_dtype": ({"channel_gate": torch.ones(2, 4, dtype=torch.float64)}, TypeError,
                           r"channel_gate .*dtype"),
    "dilation_zero": ({"dilation": [0, 1]}, ValueError, r"dilation must be >= 1"),
    "activation": ({"activation": "tanh"}, ValueError, r"activation must be"),
}


@pytest.mark.parametrize("case", BAD_ARGS)
def test_bad_arguments_functional(case):
    changes, error, pattern = BAD_ARGS[case]
    with pytest.raises(error, match=pattern):
        gated_skip_conv2d(**dict(valid_op_args(), **changes))


@requires_op
@pytest.mark.parametrize("case", BAD_ARGS)
def test_bad_arguments_raw_op(case):
    # The C++ checks, reached when the op is called directly (no Python checks on the way).
    changes, error, pattern = BAD_ARGS[case]
    a = dict(valid_op_args(), **changes)
    with pytest.raises(error, match=pattern):
        torch.ops.rnnpool.gated_skip_conv2d(*a.values())


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend must be one of"):
        gated_skip_conv2d(**dict(valid_op_args(), backend="gpu"))


# The module and the hard gate.


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_module_matches_stock_pytorch(backend):
    torch.manual_seed(0)
    layer = GatedSkipConv2d(6, kernel_size=3, groups=2, dilation=2, backend=backend)
    conv = torch.nn.Conv2d(6, 6, 3, padding=2, dilation=2, groups=2)
    conv.load_state_dict({"weight": layer.weight, "bias": layer.bias})
    x = torch.randn(4, 6, 7, 8)
    layer_gate, channel_gate = torch.tensor([1.0, 0.0, 1.0, 0.5]), torch.rand(4, 6)
    m = (layer_gate[:, None] * channel_gate)[:, :, None, None]
    torch.testing.assert_close(layer(x, layer_gate, channel_gate), m * F.relu(conv(x)) + (1 - m) * x)
    assert layer(x).shape == x.shape
    assert tuple(layer.weight.shape) == (6, 3, 3, 3) and tuple(layer.bias.shape) == (6,)


def test_module_without_bias_or_activation():
    layer = GatedSkipConv2d(4, kernel_size=1, bias=False, activation=None)
    assert layer.bias is None
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(layer(x), F.conv2d(x, layer.weight))


def test_fold_batch_norm():
    torch.manual_seed(0)
    layer = GatedSkipConv2d(5, kernel_size=3)
    bn = torch.nn.BatchNorm2d(5)
    bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2)
    torch.nn.init.uniform_(bn.weight, 0.5, 1.5), torch.nn.init.uniform_(bn.bias, -0.5, 0.5)
    bn.eval()
    layer.fold_batch_norm(bn)
    x, channel_gate = torch.randn(3, 5, 6, 6), (torch.rand(3, 5) > 0.5).float()
    m = channel_gate[:, :, None, None]
    conv = F.conv2d(x, layer.weight, layer.bias, padding=1)
    with torch.no_grad():
        torch.testing.assert_close(layer(x, channel_gate=channel_gate), m * F.relu(bn(conv)) + (1 - m) * x)


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(kernel_size=2), "kernel_size must be odd"),
    (dict(groups=3), "groups"),
    (dict(activation="gelu"), "activation must be"),
    (dict(backend="cuda"), "backend must be one of"),
])
def test_module_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        GatedSkipConv2d(4, **kwargs)


def test_hard_gate_forward_and_straight_through_gradient():
    logits = torch.tensor([-2.0, -0.0, 0.0, 1e-6, 3.0], dtype=torch.float64, requires_grad=True)
    gate = hard_gate(logits)
    assert gate.dtype == logits.dtype
    assert gate.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    grad_output = torch.arange(1.0, 6.0, dtype=torch.float64)
    (grad,) = torch.autograd.grad(gate, logits, grad_output)
    s = torch.sigmoid(logits.detach())
    torch.testing.assert_close(grad, grad_output * s * (1 - s))


# CUDA: the Triton forward and the composite backward (no GPU on the CI machine: these skip there).
requires_cuda = pytest.mark.skipif(not (torch.cuda.is_available() and _ops.fused_available("cuda")),
                                   reason="needs a CUDA GPU and the built extension")


def to_cuda(args):
    return {k: v.detach().cuda().requires_grad_(v.requires_grad) if isinstance(v, torch.Tensor) else v
            for k, v in args.items()}


@requires_cuda
@pytest.mark.parametrize("gates", ["soft", "hard", "absent", "all_off"])
@pytest.mark.parametrize("geometry", ["k3", "depthwise", "groups2", "k5_dilation2", "batch1_nonsquare"])
def test_cuda_matches_reference(geometry, gates):
    assert_matches_reference(to_cuda(make_args(geometry, gates, torch.float32, folded_bn=True)), rtol=1e-4,
                             atol=1e-4)
    assert_matches_reference(to_cuda(make_args(geometry, gates, torch.float64)), rtol=1e-10, atol=1e-10)


@requires_cuda
@pytest.mark.parametrize("geometry", ["k3", "depthwise"])
def test_cuda_gated_off_channels_do_no_multiply_adds(geometry):
    args = to_cuda(make_args(geometry, "hard", torch.float32, requires_grad=False))
    off = torch.arange(args["x"].shape[1], device="cuda") % 2 == 0
    args["channel_gate"][:, off] = 0
    poisoned = dict(args, weight=args["weight"].clone())
    poisoned["weight"][off] = float("nan")
    with torch.no_grad():
        got = run_fused(poisoned)
    assert torch.equal(got[:, off], args["x"][:, off])
    torch.testing.assert_close(got, reference.gated_skip_conv2d(**args), rtol=1e-4, atol=1e-5)


@requires_op
@pytest.mark.parametrize("gates", ["soft", "hard", "absent", "layer_only_hard"])
@pytest.mark.parametrize("geometry", ["k3", "depthwise", "k5_dilation2"])
def test_composite_backward_matches_cpu_kernel(geometry, gates):
    # The CUDA backward's math (composite.py), checked on CPU against the C++ backward.
    from rnnpool_ops.gated_skip import composite

    a = make_args(geometry, gates, folded_bn=True, requires_grad=False)
    grad_output = torch.randn_like(a["x"])
    op_args = [a[k] for k in TENSOR_KEYS] + [[a["dilation"]] * 2, a["groups"], a["activation"], [True, True]]
    want = torch.ops.rnnpool.gated_skip_conv2d_backward(grad_output, *op_args)
    got = composite.backward(grad_output, *op_args)
    for name, g, w in zip(TENSOR_KEYS, got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10, msg=lambda m: f"gradient of {name}: {m}")
