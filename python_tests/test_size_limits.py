"""Sizes derived from user integers (issue 14, item 1): padded extents, output sizes and workspaces
that overflow int64 or exceed the allocation limit (2^40 bytes) raise ValueError naming the
arguments, before any allocation and fast, in every op and every backend's checks; the C++ checks
(csrc/core/checked_size.h) and the Python ones (_checks.py, gated_skip/_checks.py) agree exactly;
and huge but representable dilations run in memory bounded by the input."""

import os
import re
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F

from argument_cases import valid_args
from rnnpool_ops import _ops, functional, reference
from rnnpool_ops._checks import check_sweep_args
from rnnpool_ops.gated_skip import _checks as gated_checks
from rnnpool_ops.gated_skip import composite as gated_composite
from rnnpool_ops.gated_skip import gated_skip_conv2d
from rnnpool_ops.gated_skip import reference as gated_reference

pytestmark = pytest.mark.skipif(not _ops.extension_available(), reason="needs the compiled extension")

BIG = 1 << 62

# Sweep geometries (changes to argument_cases.valid_args: x [2, 3, 5, 6], kernel (2, 3), stride
# (2, 1), padding (1, 0), h1 4, h2 2, ReX) and the start of the error each must raise (None: valid).
SWEEP_CASES = {
    "issue_huge_kernel_and_padding": ({"kernel_size": (1 << 40, 1 << 40), "padding": (1 << 39, 1 << 39)},
                                      "kernel_size .* need a workspace of more than 2\\^63 bytes"),
    "issue_padding_overflows": ({"padding": (BIG, 0)}, "padding \\[4611686018427387904, 0\\] is too large"),
    "padding_overflows_width": ({"padding": (0, (1 << 63) - 1)}, "padding .* is too large"),
    # The padded image is 2^63 - 1 rows (fits), two patches high; its area does not fit.
    "padding_just_fits": ({"padding": ((1 << 62) - 3, 0), "kernel_size": (2, 3), "stride": (1 << 62, 1)},
                          "kernel_size .* need a workspace of more than 2\\^63 bytes"),
    "kernel_product_overflows": ({"kernel_size": (1 << 32, 1 << 32), "padding": (1 << 31, 1 << 31)},
                                 "kernel_size .* need a workspace of more than 2\\^63 bytes"),
    "output_too_large": ({"kernel_size": (1, 1), "stride": (1, 1), "padding": (1 << 19, 1 << 19)},
                         "kernel_size .* give an output of"),
    "workspace_too_large": ({"kernel_size": (1 << 16, 1 << 16), "stride": (1 << 16, 1 << 16),
                             "padding": (1 << 15, 1 << 15)}, "kernel_size .* need a workspace of \\d+ bytes"),
    "large_but_valid": ({"kernel_size": (64, 64), "stride": (64, 64), "padding": (32, 32)}, None),
    "stride_beyond_everything": ({"stride": ((1 << 63) - 1, (1 << 63) - 1)}, None),
}


def sweep_args(change):
    args = valid_args()
    args.update(change)
    args.update({k: list(v) for k, v in args.items() if k in ("kernel_size", "stride", "padding")})
    if "kernel_size" in change:
        kh, kw = args["kernel_size"]
        args["proj_weight"] = None
        args["proj_bias"] = None
        args["parts"] = "RC"  # the projection's shape would depend on kh + kw
    return args


def cpp_check(op_namespace, args):
    """The C++ checks' verdict without running the sweep: the backward op checks the arguments,
    then refuses a grad_output of the wrong shape. Returns ("ok", output shape) or ("error", text)."""
    wrong = torch.zeros(1, 1, 1, 1)
    try:
        op_namespace.backward(wrong, *args.values())
    except ValueError as error:
        text = str(error).splitlines()[0]
        shape = re.match(r"grad_output must have shape \[(.*)\], got", text)
        if shape:
            return "ok", tuple(int(v) for v in shape.group(1).split(", "))
        return "error", text
    raise AssertionError("the backward op accepted a wrong grad_output")


def python_check(args):
    try:
        return "ok", tuple(check_sweep_args(*args.values()))
    except ValueError as error:
        return "error", str(error)


@pytest.mark.parametrize("case", SWEEP_CASES)
def test_sweep_checks_agree_between_cpp_and_python(case):
    change, pattern = SWEEP_CASES[case]
    args = sweep_args(change)
    want = python_check(args)
    if pattern is None:
        assert want[0] == "ok", want
    else:
        assert want[0] == "error" and re.match(pattern, want[1]), want
    assert cpp_check(torch.ops.rnnpool, args) == want
    if _ops.emulated_ops_available():
        assert cpp_check(torch.ops.rnnpool_emulated, args) == want


def test_the_limit_is_the_same_on_both_sides():
    # Both sides must flip from accepting to refusing at the same padding.
    def verdicts(pad):
        args = sweep_args({"kernel_size": (1, 1), "stride": (1, 1), "padding": (pad, pad)})
        return python_check(args)[0], cpp_check(torch.ops.rnnpool, args)[0]

    low, high = 0, 1 << 20
    assert verdicts(low) == ("ok", "ok") and verdicts(high) == ("error", "error")
    while high - low > 1:
        mid = (low + high) // 2
        python_verdict, cpp_verdict = verdicts(mid)
        assert python_verdict == cpp_verdict, mid
        low, high = (mid, high) if python_verdict == "ok" else (low, mid)
    assert 1 << 14 < low < 1 << 16  # a limit of 2^40 bytes (about 25,600 here), far below int64 overflow


def warm_up(point, args):
    """One call with valid arguments first, so that the timing leaves out first-use costs."""
    try:
        point(args)
    except Exception:  # noqa: BLE001 (the Triton kernels do not run on CPU tensors here)
        pass


def sweep_entry_points():
    """Every way to run the sweep with the op's arguments: each op and backward op, each backend."""
    def functional_call(a):
        return functional.patch_sweep(a["x"], a["rnn1"], a["rnn2"], a["proj_weight"], a["proj_bias"],
                                      a["kernel_size"], a["stride"], a["padding"], a["cell"],
                                      a["gate_nonlinearity"], a["update_nonlinearity"], a["parts"])

    def fake(op):
        def run(a):
            from torch._subclasses.fake_tensor import FakeTensorMode

            with FakeTensorMode(allow_non_fake_inputs=True):
                return op(*a.values())
        return run

    grad = torch.zeros(2, 16, 3, 4)  # valid_args' output
    points = {
        "cpp_forward": lambda a: torch.ops.rnnpool.forward(*a.values()),
        "cpp_backward": lambda a: torch.ops.rnnpool.backward(grad, *a.values()),
        "reference": lambda a: reference.forward(*a.values()),
        "functional": functional_call,
        "fake_forward": fake(torch.ops.rnnpool.forward),
    }
    if _ops.emulated_ops_available():
        points["emulated_forward"] = lambda a: torch.ops.rnnpool_emulated.forward(*a.values())
        points["emulated_backward"] = lambda a: torch.ops.rnnpool_emulated.backward(grad, *a.values())
    try:
        from rnnpool_ops.triton_sweep import sweep as triton_sweep

        points["triton_forward"] = lambda a: triton_sweep.forward(*a.values())
        points["triton_backward"] = lambda a: triton_sweep.backward(grad, *a.values())
    except ImportError:
        pass
    return points


SWEEP_POINTS = sweep_entry_points()
REFUSED_SWEEP_CASES = [name for name, (_, pattern) in SWEEP_CASES.items() if pattern is not None]


@pytest.mark.parametrize("point", SWEEP_POINTS)
@pytest.mark.parametrize("case", REFUSED_SWEEP_CASES)
def test_every_sweep_entry_point_refuses_fast(case, point):
    change, pattern = SWEEP_CASES[case]
    args = sweep_args(change)
    warm_up(SWEEP_POINTS[point], valid_args())
    start = time.perf_counter()
    with pytest.raises(ValueError, match=pattern):
        SWEEP_POINTS[point](args)
    assert time.perf_counter() - start < 0.5


def test_python_checks_refuse_integers_beyond_int64():
    # The ops take int64; a larger Python int must not reach them (or wrap).
    with pytest.raises(ValueError, match=r"padding must fit int64"):
        check_sweep_args(*sweep_args({"padding": (1 << 64, 0)}).values())
    with pytest.raises(ValueError, match=r"dilation must fit int64"):
        gated_checks.dilation_pair(1 << 63)


# ---- the gated-skip convolution ----

def gated_args(dilation, kernel=3, shape=(2, 4, 6, 6), seed=0):
    gen = torch.Generator().manual_seed(seed)
    n, c, h, w = shape
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    return dict(x=torch.randn(shape, generator=gen, dtype=torch.float64),
                weight=torch.randn(c, c, kh, kw, generator=gen, dtype=torch.float64),
                bias=torch.randn(c, generator=gen, dtype=torch.float64),
                layer_gate=None, channel_gate=torch.rand(n, c, generator=gen, dtype=torch.float64),
                scale=None, shift=None, dilation=list(dilation), groups=1, activation="relu")


# dilation, kernel, start of the error (None: valid)
GATED_CASES = {
    "issue_2_61": ((1 << 61, 1 << 61), 3, None),
    "issue_2_62": ((1 << 62, 1 << 62), 3, r"dilation \[4611686018427387904, 4611686018427387904\] is too large"),
    "product_overflows": ((1, 1 << 62), 5, r"dilation .* is too large for the kernel \[5, 5\]"),
    "max_dilation_kernel_1": (((1 << 63) - 1, (1 << 63) - 1), 1, None),
    "just_fits": (((1 << 62) - 4, 1), 3, None),  # 6 + 2 * (2^62 - 4) = 2^63 - 2
    "just_overflows": (((1 << 62) - 2, 1), 3, r"dilation .* is too large"),  # 2^63 + 2
    "dilation_3000": ((3000, 3000), 3, None),
}


def gated_cpp_check(args):
    """The C++ checks' verdict without the convolution (see cpp_check)."""
    try:
        torch.ops.rnnpool.gated_skip_conv2d_backward(torch.zeros(1), *args.values(), [True, True])
    except ValueError as error:
        text = str(error).splitlines()[0]
        return ("ok", None) if text.startswith("grad_output must have the shape of x") else ("error", text)
    raise AssertionError("the backward op accepted a wrong grad_output")


def gated_python_check(args):
    try:
        gated_checks.check_gated_skip_args(*args.values())
        return "ok", None
    except ValueError as error:
        return "error", str(error)


@pytest.mark.parametrize("case", GATED_CASES)
def test_gated_skip_checks_agree_between_cpp_and_python(case):
    dilation, kernel, pattern = GATED_CASES[case]
    args = gated_args(dilation, kernel)
    want = gated_python_check(args)
    if pattern is None:
        assert want == ("ok", None)
    else:
        assert want[0] == "error" and re.match(pattern, want[1]), want
    assert gated_cpp_check(args) == want


def gated_entry_points():
    def fake(a):
        from torch._subclasses.fake_tensor import FakeTensorMode

        with FakeTensorMode(allow_non_fake_inputs=True):
            return torch.ops.rnnpool.gated_skip_conv2d(*a.values())

    def functional_call(backend):
        def run(a):
            a = dict(a)
            x, weight, bias, layer_gate, channel_gate = (a.pop(k) for k in ("x", "weight", "bias", "layer_gate",
                                                                             "channel_gate"))
            return gated_skip_conv2d(x, weight, bias, layer_gate, channel_gate, backend=backend, **a)
        return run

    return {
        "cpu_forward": lambda a: torch.ops.rnnpool.gated_skip_conv2d(*a.values()),
        "cpu_backward": lambda a: torch.ops.rnnpool.gated_skip_conv2d_backward(
            torch.zeros_like(a["x"]), *a.values(), [True, True]),
        "fake_forward": fake,
        "functional_fused": functional_call("fused"),
        "functional_reference": functional_call("reference"),
    }


GATED_POINTS = gated_entry_points()


@pytest.mark.parametrize("point", GATED_POINTS)
@pytest.mark.parametrize("case", [name for name, case in GATED_CASES.items() if case[2] is not None])
def test_every_gated_skip_entry_point_refuses_fast(case, point):
    dilation, kernel, pattern = GATED_CASES[case]
    warm_up(GATED_POINTS[point], gated_args((1, 1)))
    start = time.perf_counter()
    with pytest.raises(ValueError, match=pattern):
        GATED_POINTS[point](gated_args(dilation, kernel))
    assert time.perf_counter() - start < 0.5


def only_reaching_taps(args):
    """The reference on the taps that can read a pixel (what every huge dilation reduces to)."""
    weight, dilation, _ = gated_composite.reaching_taps(args["weight"], args["dilation"], args["x"].shape[2:])
    return gated_reference.gated_skip_conv2d(**{**args, "weight": weight, "dilation": dilation})


@pytest.mark.parametrize("dilation, kernel, shape", [
    ((1 << 61, 1 << 61), 3, (2, 4, 6, 6)),    # the segmentation fault
    ((3000, 3000), 3, (2, 4, 6, 6)),          # the 1 GB
    ((3000, 2), (5, 7), (1, 3, 5, 9)),        # one side huge, the other partly reaching
    ((2, 3), (7, 5), (2, 2, 7, 4)),           # taps beyond the image on both sides
    ((4, 1), (9, 3), (1, 2, 4, 20)),          # only the centre row of taps reaches
    ((((1 << 63) - 1), 1), (1, 3), (1, 2, 3, 3)),
])
def test_huge_dilations_match_the_reference(dilation, kernel, shape):
    args = gated_args(dilation, kernel, shape)
    tensors = ("x", "weight", "bias", "channel_gate")
    leaves = {k: args[k].clone().requires_grad_() for k in tensors}
    want = only_reaching_taps({**args, **leaves})
    grad_output = torch.randn_like(want)
    want_grads = torch.autograd.grad(want, [leaves[k] for k in tensors], grad_output)
    leaves = {k: args[k].clone().requires_grad_() for k in tensors}
    got = gated_skip_conv2d(**{**args, **leaves}, backend="fused")
    got_grads = torch.autograd.grad(got, [leaves[k] for k in tensors], grad_output)
    torch.testing.assert_close(got, want)
    for k, g, w in zip(tensors, got_grads, want_grads):
        if k == "weight":
            # The taps that read only padding get a zero gradient; the others match.
            full = torch.zeros_like(args["weight"])
            kh, kw = args["weight"].shape[2:]
            th, tw = w.shape[2:]
            full[:, :, (kh - th) // 2 : (kh + th) // 2, (kw - tw) // 2 : (kw + tw) // 2] = w
            w = full
        torch.testing.assert_close(g, w, msg=lambda m: f"gradient of {k}: {m}")
    if max(dilation) < 1 << 40:  # the reference's F.conv2d, untrimmed, agrees too
        torch.testing.assert_close(gated_reference.gated_skip_conv2d(**args), got)


@pytest.mark.parametrize("dilation, kernel, shape", [
    ((3000, 3000), 3, (2, 4, 6, 6)),
    ((3000, 2), (5, 7), (1, 3, 5, 9)),
    ((2, 3), (7, 5), (2, 2, 7, 4)),
])
def test_composite_forward_and_backward_match_the_cpu_kernels(dilation, kernel, shape):
    # The composite is the CUDA path; on CPU tensors it must agree with the CPU kernels, huge dilations too.
    args = gated_args(dilation, kernel, shape)
    torch.testing.assert_close(gated_composite.forward(*args.values()), torch.ops.rnnpool.gated_skip_conv2d(*args.values()))
    grad_output = torch.randn_like(args["x"])
    want = torch.ops.rnnpool.gated_skip_conv2d_backward(grad_output, *args.values(), [True, True])
    got = gated_composite.backward(grad_output, *args.values(), [True, True])
    for name, g, w in zip(("x", "weight", "bias", "layer_gate", "channel_gate", "scale", "shift"), got, want):
        torch.testing.assert_close(g, w, msg=lambda m: f"gradient of {name}: {m}")


def test_reaching_taps_match_the_full_convolution():
    gen = torch.Generator().manual_seed(3)
    for k in (1, 3, 5, 7):
        for d in (1, 2, 3, 5, 8):
            for h, w in ((1, 1), (3, 8), (6, 6), (9, 2)):
                x = torch.randn(1, 2, h, w, generator=gen, dtype=torch.float64)
                weight = torch.randn(2, 2, k, k, generator=gen, dtype=torch.float64)
                pad = d * (k - 1) // 2
                trimmed, dil, _ = gated_composite.reaching_taps(weight, (d, d), (h, w))
                tpad = [t * (s - 1) // 2 for t, s in zip(dil, trimmed.shape[2:])]
                torch.testing.assert_close(F.conv2d(x, trimmed, padding=tpad, dilation=dil),
                                           F.conv2d(x, weight, padding=pad, dilation=d))


PEAK_MEMORY_SCRIPT = """
import resource, torch
from rnnpool_ops import GatedSkipConv2d
x = torch.randn(2, 4, 6, 6)
torch.manual_seed(0)
GatedSkipConv2d(4, 3, dilation=1)(x).sum().backward()  # warm up: every allocation but the workspace's
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for threads in (1, torch.get_num_threads()):
    torch.set_num_threads(threads)
    for dilation in (3000, 2**40, 2**61):
        GatedSkipConv2d(4, 3, dilation=dilation)(x).sum().backward()
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_dilation_3000_needs_no_more_memory_than_dilation_1():
    # Before: a padded copy of C * (6 + 2d)^2 values per thread, about 1 GB at d = 3000.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-c", PEAK_MEMORY_SCRIPT], capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) < 20  # MB of peak memory growth
