"""An image without pixels or channels (H, W or C = 0; issue 14, item 7): every backend of every op
raises the same ValueError naming x (before: the fused sweep returned bias-only output from patches
of pure padding, the reference raised a RuntimeError from F.unfold, the emulated op failed in a
reshape). An empty batch (N = 0) stays valid and gives an empty output everywhere."""

import pytest
import torch

from sweep_cases import make_args
from rnnpool_ops import _ops, reference
from rnnpool_ops._checks import check_sweep_args, output_channels
from rnnpool_ops.gated_skip import _checks as gated_checks
from rnnpool_ops.gated_skip import gated_skip_conv2d

pytestmark = pytest.mark.skipif(not _ops.extension_available(), reason="needs the compiled extension")

MESSAGE = r"x must have at least one channel and one pixel \(C, H, W >= 1\), got \[{}\]"
# (N, C, H, W), all with padding so that patches of padding alone would exist.
EMPTY_IMAGES = {"no_rows": (2, 3, 0, 6), "no_columns": (2, 3, 5, 0), "no_pixels": (1, 2, 0, 0),
                "no_channels": (2, 0, 5, 6)}


def sweep_args(shape):
    n, c, h, w = shape
    return make_args((n, c, h, w, 2, 1, 1), "rex_fastgrnn")


def sweep_backends():
    def grad_for(args):
        n, c, h, w = args["x"].shape
        return torch.zeros(n, output_channels("RGC", 3), h + 1, w + 1, dtype=args["x"].dtype)

    points = {
        "cpp_forward": lambda a: torch.ops.rnnpool.forward(*a.values()),
        "cpp_backward": lambda a: torch.ops.rnnpool.backward(grad_for(a), *a.values()),
        "reference": lambda a: reference.forward(**a),
        "python_checks": lambda a: check_sweep_args(**a),  # the fake kernels' checks
    }
    if _ops.emulated_ops_available():
        points["emulated_forward"] = lambda a: torch.ops.rnnpool_emulated.forward(*a.values())
        points["emulated_backward"] = lambda a: torch.ops.rnnpool_emulated.backward(grad_for(a), *a.values())
    try:
        from rnnpool_ops.triton_sweep import sweep as triton_sweep

        points["triton_forward"] = lambda a: triton_sweep.forward(**a)
        points["triton_backward"] = lambda a: triton_sweep.backward(grad_for(a), **a)
    except ImportError:
        pass
    return points


SWEEP_BACKENDS = sweep_backends()


@pytest.mark.parametrize("backend", SWEEP_BACKENDS)
@pytest.mark.parametrize("image", EMPTY_IMAGES)
def test_sweep_refuses_an_empty_image(image, backend):
    shape = EMPTY_IMAGES[image]
    with pytest.raises(ValueError, match=MESSAGE.format(", ".join(map(str, shape)))):
        SWEEP_BACKENDS[backend](sweep_args(shape))


@pytest.mark.parametrize("backend", [b for b in SWEEP_BACKENDS if b in ("cpp_forward", "reference",
                                                                        "emulated_forward")])
def test_sweep_empty_batch_stays_valid(backend):
    args = sweep_args((0, 3, 5, 6))
    out = SWEEP_BACKENDS[backend](args)
    assert out.shape == (0, output_channels("RGC", 3), 6, 7)


def gated_args(shape):
    n, c, h, w = shape
    return dict(x=torch.zeros(shape), weight=torch.zeros(c, c, 3, 3), bias=torch.zeros(c), layer_gate=None,
                channel_gate=torch.ones(n, c), scale=None, shift=None, dilation=[1, 1], groups=1,
                activation="relu")


def gated_call(backend):
    def run(a):
        a = dict(a)
        x, weight, bias, layer_gate, channel_gate = (a.pop(k) for k in ("x", "weight", "bias", "layer_gate",
                                                                         "channel_gate"))
        return gated_skip_conv2d(x, weight, bias, layer_gate, channel_gate, backend=backend, **a)
    return run


GATED_BACKENDS = {
    "cpu_forward": lambda a: torch.ops.rnnpool.gated_skip_conv2d(*a.values()),
    "cpu_backward": lambda a: torch.ops.rnnpool.gated_skip_conv2d_backward(torch.zeros_like(a["x"]), *a.values(),
                                                                            [True, True]),
    "fused": gated_call("fused"),
    "reference": gated_call("reference"),
    "python_checks": lambda a: gated_checks.check_gated_skip_args(*a.values()),  # fake and CUDA kernels' checks
}


@pytest.mark.parametrize("backend", GATED_BACKENDS)
@pytest.mark.parametrize("image", EMPTY_IMAGES)
def test_gated_skip_refuses_an_empty_image(image, backend):
    shape = EMPTY_IMAGES[image]
    with pytest.raises(ValueError, match=MESSAGE.format(", ".join(map(str, shape)))):
        GATED_BACKENDS[backend](gated_args(shape))


@pytest.mark.parametrize("backend", ["cpu_forward", "fused", "reference"])
def test_gated_skip_empty_batch_stays_valid(backend):
    assert GATED_BACKENDS[backend](gated_args((0, 3, 5, 6))).shape == (0, 3, 5, 6)
