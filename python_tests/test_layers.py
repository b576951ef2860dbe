"""RNNPool2d / ReX2d modules: construction, backends, EdgeML checkpoints, the golden trace."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

import rnnpool_ops
from rnnpool_ops import FastGRNNCell, ReX2d, RNNPool2d, functional
from edgeml_cases import CHANNELS, HIDDEN2, edgeml_rnnpool, edgeml_state_dict, golden_layer


def randomise(module, seed=0):
    """Random parameters: the default zeta=100, nu=-100 saturate and hide mistakes."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module


def test_rnnpool2d_defaults():
    layer = RNNPool2d(8, 6, 5, kernel_size=(3, 4))
    assert layer.stride == (3, 4) and layer.padding == (0, 0)
    assert layer.out_channels == 20
    assert isinstance(layer.rnn1, FastGRNNCell) and isinstance(layer.rnn2, FastGRNNCell)
    assert (layer.rnn1.input_size, layer.rnn1.hidden_size, layer.rnn2.input_size) == (8, 6, 6)
    assert not hasattr(layer, "proj")
    assert layer(torch.randn(2, 8, 9, 12)).shape == (2, 20, 3, 3)


def test_rex2d_defaults():
    layer = ReX2d(8, 16, 8, kernel_size=6, stride=4)
    assert isinstance(layer.rnn1, nn.GRUCell) and isinstance(layer.proj, nn.Linear)
    assert layer.proj.in_features == 12 * 16 and layer.proj.out_features == 32
    assert layer.out_channels == 64  # ReX Table 1: 8 * h2
    assert layer(torch.randn(1, 8, 26, 30)).shape == (1, 64, 6, 7)


@pytest.mark.parametrize("parts, channels", [("RC", 32), ("GC", 48), ("G", 32), ("R", 16)])
def test_rex2d_ablations_shrink_output(parts, channels):
    layer = ReX2d(3, 4, 8, kernel_size=2, parts=parts)
    assert layer.out_channels == channels
    assert hasattr(layer, "proj") == ("G" in parts)
    assert layer(torch.randn(1, 3, 4, 4)).shape == (1, channels, 2, 2)


@pytest.mark.parametrize("make", [
    lambda: RNNPool2d(3, 5, 4, (3, 2), stride=(2, 1), padding=1, gate="quantSigm", update="quantTanh"),
    lambda: RNNPool2d(3, 5, 4, 3, stride=2, cell="gru"),
    lambda: ReX2d(3, 5, 4, (2, 3), stride=(1, 2), padding=(0, 1)),
    lambda: ReX2d(3, 5, 4, 3, cell="fastgrnn"),
])
def test_backends_agree_forward_and_backward(make):
    layer = randomise(make().double())
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64, requires_grad=True)
    results = {}
    for backend in ("cpp", "reference"):
        layer.backend = backend
        out = layer(x)
        grads = torch.autograd.grad(out.square().sum(), [x, *layer.parameters()])
        results[backend] = (out, grads)
    torch.testing.assert_close(results["cpp"][0], results["reference"][0], rtol=1e-10, atol=1e-10)
    for a, b in zip(results["cpp"][1], results["reference"][1]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_auto_backend_uses_extension():
    assert rnnpool_ops.extension_available()
    assert functional._resolve_backend("auto", torch.zeros(1)) == "cpp"


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="backend must be one of"):
        RNNPool2d(3, 4, 4, 2, backend="cuda-ish")
    layer = RNNPool2d(3, 4, 4, 2)
    layer.backend = "fast"
    with pytest.raises(ValueError, match="backend must be one of"):
        layer(torch.randn(1, 3, 4, 4))


def test_gru_cell_weights_copied_from_nn_grucell():
    """ReX's cells are plain nn.GRUCell: weights from any nn.GRUCell load as they are, and V^G is
    f_L of RNN1's row and column summaries computed with that cell."""
    layer = randomise(ReX2d(3, 4, 2, 2).double())
    donor = randomise(nn.GRUCell(3, 4).double(), seed=3)
    layer.rnn1.load_state_dict(donor.state_dict())
    x = torch.randn(1, 3, 2, 2, dtype=torch.float64)

    def summary(pixels):
        h = torch.zeros(1, 4, dtype=torch.float64)
        for p in pixels:
            h = donor(p, h)
        return h

    rows = [summary([x[:, :, i, j] for j in range(2)]) for i in range(2)]
    cols = [summary([x[:, :, i, j] for i in range(2)]) for j in range(2)]
    v_g = layer.proj(torch.cat(rows + cols, dim=1))
    for backend in ("cpp", "reference"):
        layer.backend = backend
        torch.testing.assert_close(layer(x)[:, 4:12, 0, 0], v_g)  # after V^R (2 * h2 channels)


@pytest.mark.parametrize("backend", ["cpp", "reference"])
@pytest.mark.parametrize("rank", [None, 2], ids=["full_rank", "low_rank"])
def test_from_edgeml_reproduces_edgeml_rnnpool(backend, rank):
    state_dict = edgeml_state_dict(rank=rank, prefix="features.3.")
    layer = RNNPool2d.from_edgeml(state_dict, kernel_size=4, stride=2, prefix="features.3.", backend=backend)
    assert layer.out_channels == 4 * HIDDEN2
    x = torch.randn(2, CHANNELS, 10, 8, dtype=torch.float64)
    out = layer.double()(x)
    patches = F.unfold(x, 4, stride=2).transpose(1, 2).reshape(-1, CHANNELS, 4, 4)
    unprefixed = {k[len("features.3."):]: v for k, v in state_dict.items()}
    expected = edgeml_rnnpool(unprefixed, patches).view(2, out.shape[2], out.shape[3], -1).permute(0, 3, 1, 2)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["cpp", "reference"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_golden_edgeml_trace_through_rnnpool2d(golden, backend, dtype):
    layer = golden_layer(golden, dtype, backend)
    x = torch.tensor(golden["input_hwc"], dtype=dtype).permute(2, 0, 1).unsqueeze(0)  # [1, C, 6, 6]
    out = layer(x).flatten()
    torch.testing.assert_close(out, torch.tensor(golden["output"], dtype=dtype), rtol=0, atol=1e-6)


def test_golden_patch_tiled_with_stride_and_padding(golden):
    """The trained layer on a larger image: every patch of the fused op matches the reference."""
    layer = golden_layer(golden, torch.float32, "cpp")
    x = torch.randn(3, golden["input_channels"], 23, 17)
    layer.stride, layer.padding = (4, 3), (1, 2)
    out = layer(x)
    layer.backend = "reference"
    torch.testing.assert_close(out, layer(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", ["cpp", "reference"])
def test_empty_batch_through_layer(backend):
    layer = ReX2d(3, 4, 2, 2, backend=backend)
    x = torch.zeros(0, 3, 4, 4, requires_grad=True)
    out = layer(x)
    assert out.shape == (0, 16, 2, 2)
    out.sum().backward()
    assert x.grad.shape == x.shape


def test_functional_forms_match_layers():
    layer = randomise(ReX2d(3, 4, 2, (2, 3), stride=1))
    x = torch.randn(1, 3, 5, 5)
    from rnnpool_ops.cells import cell_parameters
    out = functional.rex2d(x, cell_parameters(layer.rnn1), cell_parameters(layer.rnn2), layer.proj.weight,
                           layer.proj.bias, (2, 3), stride=1)
    torch.testing.assert_close(out, layer(x))
    pool = randomise(RNNPool2d(3, 4, 2, 2))
    out = functional.rnnpool2d(x[..., :4, :4], cell_parameters(pool.rnn1), cell_parameters(pool.rnn2), 2)
    torch.testing.assert_close(out, pool(x[..., :4, :4]))


def test_cpp_backend_rejects_non_cpu_tensors():
    layer = RNNPool2d(3, 4, 2, 2, backend="cpp").to("meta")
    with pytest.raises(ValueError, match="backend='cpp' runs on CPU tensors, and on CUDA tensors when the "
                                         "extension is built with its CUDA kernel .*got x on meta"):
        layer(torch.zeros(1, 3, 4, 4, device="meta"))


def fake_cuda_tensor():
    """A tensor whose device is CUDA, without a GPU: backend resolution looks at the device only."""
    with FakeTensorMode():
        return torch.empty(1, device="cuda")


@pytest.mark.parametrize("cpp_cuda, triton_ok, expected", [
    (True, True, "cpp"), (False, True, "triton"), (False, False, "reference"),
])
def test_auto_backend_on_cuda_tensors(monkeypatch, cpp_cuda, triton_ok, expected):
    monkeypatch.setattr(functional, "_CPP_HAS_CUDA_KERNEL", cpp_cuda)
    monkeypatch.setattr(functional.triton_sweep, "available", lambda: triton_ok)
    assert functional._resolve_backend("auto", fake_cuda_tensor()) == expected


def test_cpp_backend_on_cuda_tensors_needs_the_cuda_kernel(monkeypatch):
    x = fake_cuda_tensor()
    monkeypatch.setattr(functional, "_CPP_HAS_CUDA_KERNEL", False)
    with pytest.raises(ValueError, match=r"\(this build has no CUDA kernel\); got x on cuda"):
        functional._resolve_backend("cpp", x)
    monkeypatch.setattr(functional, "_CPP_HAS_CUDA_KERNEL", True)
    assert functional._resolve_backend("cpp", x) == "cpp"


def test_triton_backend_device_rules(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    for x in (torch.zeros(1), torch.zeros(1, device="meta")):
        with pytest.raises(ValueError, match=f"backend='triton' runs on CUDA tensors .*got x on {x.device.type}"):
            functional._resolve_backend("triton", x)
    monkeypatch.setattr(functional.triton_sweep, "available", lambda: False)
    with pytest.raises(RuntimeError, match="backend='triton' needs triton"):
        functional._resolve_backend("triton", fake_cuda_tensor())


def test_import_and_fallbacks_without_triton():
    """A machine without triton: the package imports, "auto" never picks Triton, asking for it says why."""
    script = textwrap.dedent("""
        import sys

        class NoTriton:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "triton":
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)

        sys.meta_path.insert(0, NoTriton())
        import torch
        from rnnpool_ops import RNNPool2d, functional, triton_sweep

        assert not triton_sweep.available() and "No module named 'triton'" in triton_sweep.unavailable_reason()
        assert RNNPool2d(3, 4, 4, 2)(torch.randn(1, 3, 4, 4)).shape == (1, 16, 2, 2)
    """)
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
