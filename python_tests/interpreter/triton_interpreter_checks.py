"""The gated-skip op's Triton kernel under the Triton interpreter, on CPU tensors, against the reference.

TRITON_INTERPRET must be set before triton is first imported, so this file runs in its own process
(`run.sh test` does it) and its name keeps the main pytest run from collecting it:

    python -m pytest python_tests/interpreter/triton_interpreter_checks.py -q
"""

import os
import sys

# Another interpreter file of the same pytest run may have set it and imported triton already.
assert "triton" not in sys.modules or os.environ.get("TRITON_INTERPRET") == "1", \
    "triton was imported before TRITON_INTERPRET could be set"
os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

from rnnpool_ops.gated_skip import composite, reference  # noqa: E402
from rnnpool_ops.gated_skip.triton_kernels import gated_skip_conv2d_forward  # noqa: E402

# name: (N, C, H, W, kernel, groups, dilation)
GEOMETRIES = {
    "k3": (2, 4, 5, 6, 3, 1, 1),
    "k1_two_channel_tiles": (1, 20, 3, 4, 1, 1, 1),
    "depthwise": (2, 3, 4, 5, 3, 3, 1),
    "groups2": (2, 6, 4, 3, 3, 2, 1),
    "k5_dilation2": (1, 2, 6, 7, 5, 1, 2),
}


def make_args(geometry, gates, dtype, seed=0):
    n, c, h, w, k, groups, dilation = GEOMETRIES[geometry]
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=gen, dtype=dtype)
    channel_gate = {
        "soft": torch.rand(n, c, generator=gen, dtype=dtype),
        "hard": (torch.rand(n, c, generator=gen) > 0.5).to(dtype),
        "off": torch.zeros(n, c, dtype=dtype),
    }[gates]
    return dict(
        x=x, weight=0.5 * torch.randn(c, c // groups, k, k, generator=gen, dtype=dtype),
        bias=torch.randn(c, generator=gen, dtype=dtype), layer_gate=torch.rand(n, generator=gen, dtype=dtype).ceil(),
        channel_gate=channel_gate, scale=1 + 0.2 * torch.randn(c, generator=gen, dtype=dtype),
        shift=0.2 * torch.randn(c, generator=gen, dtype=dtype), dilation=(dilation, dilation), groups=groups,
        activation="relu",
    )


def run_triton(a, block_p=8):
    m, alpha, beta = composite.gate_and_epilogue(a["x"], a["bias"], a["layer_gate"], a["channel_gate"], a["scale"],
                                                 a["shift"])
    return gated_skip_conv2d_forward(a["x"].contiguous(), a["weight"].contiguous(), alpha.contiguous(),
                                     beta.contiguous(), m.contiguous(), a["dilation"], a["activation"] == "relu",
                                     block_p=block_p)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("gates", ["soft", "hard"])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_triton_forward_matches_reference(geometry, gates, dtype):
    a = make_args(geometry, gates, dtype)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(run_triton(a), reference.gated_skip_conv2d(**a), **tol)


def test_one_pixel_tile_covers_the_plane():
    a = make_args("k3", "soft", torch.float32)
    torch.testing.assert_close(run_triton(a, block_p=128), reference.gated_skip_conv2d(**a), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("geometry", ["k3", "depthwise", "groups2"])
def test_gated_off_filters_are_never_read(geometry):
    a = make_args(geometry, "hard", torch.float32)
    off = torch.arange(a["x"].shape[1]) % 2 == 0
    a["channel_gate"][:, off] = 0
    poisoned = dict(a, weight=a["weight"].clone())
    poisoned["weight"][off] = float("nan")
    got = run_triton(poisoned)
    assert torch.equal(got[:, off], a["x"][:, off])
    torch.testing.assert_close(got, reference.gated_skip_conv2d(**a), rtol=1e-4, atol=1e-5)


def test_all_gated_off_is_an_exact_copy():
    a = make_args("groups2", "off", torch.float32)
    a["weight"].fill_(float("nan"))
    assert torch.equal(run_triton(a), a["x"])


def test_relu_keeps_nan():
    a = make_args("k3", "soft", torch.float32)
    a["x"][0, 1, 2, 2] = float("nan")  # reaches its 3x3 neighbourhood in every active channel
    want = reference.gated_skip_conv2d(**a)
    assert want.isnan().any()
    torch.testing.assert_close(run_triton(a), want, rtol=1e-4, atol=1e-5, equal_nan=True)
