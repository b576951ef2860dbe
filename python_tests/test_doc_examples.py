"""The Python examples of README.md and docs/edgeml.md run as written (issue 14): every ```python block
of a file, in order, in one namespace.

What they read from disk or import from EdgeML is stood in for: torch.load returns an EdgeML training
checkpoint ({'model': DataParallel state dict, 'epoch': ...}) of random weights, and
model_mobilenet_rnnpool (EdgeML's Visual Wake Words model file) is a stand-in with that model's
attribute names and geometry (an 8-channel stem to 112x112, 6x6 patches at stride 4 folded back to
27x27, a replicate pad to 28x28, the bottlenecks from 32 channels) and with EdgeML's RNNPool calling
convention, state-dict keys and computation (edgeml_cases.edgeml_rnnpool). The adapted forward the
docs show is then checked against the patch-based one in float64, to 1e-6.
"""

import re
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from edgeml_cases import EDGEML_SCOPES, edgeml_cell_tensors, edgeml_rnnpool
from torch import nn

from rnnpool_ops import RNNPool2d, _ops, swap
from rnnpool_ops.models.blocks import conv_bn_act
from rnnpool_ops.models.mobilenetv2 import AFTER_POOL, bottlenecks, make_divisible

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT_FILE = "model_mobilenet_rnnpool.pth"


def python_blocks(path):
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.DOTALL | re.MULTILINE)


class StandInCell(nn.Module):
    """An EdgeML FastGRNNCell's tensors, in its layouts (x @ W, h @ U, biases [1, h])."""

    def __init__(self, input_size, hidden):
        super().__init__()
        generator = torch.Generator().manual_seed(int(torch.randint(1 << 30, ())))
        for name, tensor in edgeml_cell_tensors(input_size, hidden, generator).items():
            self.register_parameter(name, nn.Parameter(tensor.float()))


class StandInRNNPool(nn.Module):
    """EdgeML's RNNPool(nRows, nCols, nHiddenDims, nHiddenDimsBiDir, inputDims): forward(patches
    [P, C, nRows, nCols], P) -> [P, 4 * nHiddenDimsBiDir]; each cell's state-dict keys under 'cell.' and
    again under its unrolled RNN's aliases, as EdgeML's module has them."""

    def __init__(self, nRows, nCols, nHiddenDims, nHiddenDimsBiDir, inputDims):
        super().__init__()
        self.nRows, self.nCols = nRows, nCols
        for module, size in (("cell_rnn", (inputDims, nHiddenDims)),
                             ("cell_bidirrnn", (nHiddenDims, nHiddenDimsBiDir))):
            holder, cell = nn.Module(), StandInCell(*size)
            holder.cell, holder.unrollRNN = cell, nn.Module()
            for scope in EDGEML_SCOPES[module][1:]:  # "unrollRNN.RNNCell" (and "unrollRNN.RNNCell_reverse")
                setattr(holder.unrollRNN, scope.split(".")[1], cell)
            setattr(self, module, holder)

    def forward(self, inputs, batch_size):
        assert inputs.shape[0] == batch_size  # EdgeML's batch_size is the number of patches
        weights = {key: tensor.detach().double().cpu() for key, tensor in self.state_dict().items()}
        return edgeml_rnnpool(weights, inputs.double().cpu()).to(device=inputs.device, dtype=inputs.dtype)


class StandInMobileNetV2(nn.Module):
    """EdgeML's VWW MobileNetV2 with one RNNPool; its forward does the patch bookkeeping as EdgeML's
    does (unbind and cat the unfolded patches, split and stack the RNNPool's rows, fold)."""

    def __init__(self, num_classes=1000, width_mult=0.5, last_channel=1280):
        super().__init__()
        self.features_init = conv_bn_act(3, 8, 3, 2)
        self.unfold = nn.Unfold(kernel_size=(6, 6), stride=(4, 4))
        self.rnn_model = StandInRNNPool(6, 6, 8, 8, 8)
        self.fold = nn.Fold(kernel_size=(1, 1), output_size=(27, 27))
        blocks, channels = bottlenecks(AFTER_POOL, 32, width_mult)
        self.last_channel = make_divisible(last_channel * max(1.0, width_mult))
        self.features = nn.Sequential(*blocks, conv_bn_act(channels, self.last_channel, 1))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(self.last_channel, num_classes))

    def forward(self, x):
        batch = x.shape[0]
        x = self.features_init(x)
        patches = torch.cat(torch.unbind(self.unfold(x), dim=2), dim=0).reshape(-1, 8, 6, 6)
        rows = self.rnn_model(patches, patches.shape[0])
        x = self.fold(torch.stack(torch.split(rows, batch, dim=0), dim=2))
        x = F.pad(x, (0, 1, 0, 1), mode="replicate")
        return self.classifier(self.features(x).mean([2, 3]))


def mobilenetv2_rnnpool(pretrained=False, **kwargs):
    assert not pretrained
    return StandInMobileNetV2(**kwargs)


def vww_model():
    return mobilenetv2_rnnpool(num_classes=2, width_mult=0.35, last_channel=320)


def training_checkpoint():
    """What EdgeML's VWW training script saves: the DataParallel model's state dict under 'model'."""
    trained = vww_model()
    with torch.no_grad():  # statistics other than the defaults, so that loading them matters
        for module in trained.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return {"model": {f"module.{key}": value for key, value in trained.state_dict().items()}, "acc": 90.0,
            "epoch": 30}


@pytest.fixture
def stand_ins(monkeypatch):
    """torch.load and EdgeML's model file, stood in for; returns the checkpoint torch.load gives."""
    torch.manual_seed(0)
    checkpoint = training_checkpoint()

    def load(f, *args, **kwargs):
        if str(f) != CHECKPOINT_FILE:
            raise FileNotFoundError(f"the doc examples load {CHECKPOINT_FILE} only, got {f!r}")
        return checkpoint

    module = types.ModuleType("model_mobilenet_rnnpool")
    module.mobilenetv2_rnnpool = mobilenetv2_rnnpool
    module.MobileNetV2 = StandInMobileNetV2
    monkeypatch.setitem(sys.modules, "model_mobilenet_rnnpool", module)
    monkeypatch.setattr(torch, "load", load)
    return checkpoint


def run_blocks(path, after_block=None):
    """Every python block of `path`, in order, in one namespace; after_block(code, namespace) after each."""
    blocks = python_blocks(path)
    assert blocks, f"no python block in {path}"
    namespace = {"__name__": "doc_example"}
    for number, code in enumerate(blocks, 1):
        exec(compile(code, f"{path.name}, python block {number}", "exec"), namespace)
        if after_block is not None:
            after_block(code, namespace)
    return namespace


def assert_adapted_forward_matches(forward, checkpoint):
    """The docs' adapted forward on the converted model gives the patch-based forward's outputs (float64)."""
    model = vww_model()
    model.load_state_dict({key.removeprefix("module."): value for key, value in checkpoint["model"].items()})
    model = model.double().eval()
    x = torch.randn(2, 3, 224, 224, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
        swap.convert_edgeml_modules(model, stride=4)
        assert isinstance(model.rnn_model, RNNPool2d) and model.rnn_model.kernel_size == (6, 6)
        model.forward = types.MethodType(forward, model)
        got = model(x)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(not _ops.extension_available(), reason="the README calls torch.ops.rnnpool.forward")
def test_readme_examples_run(stand_ins):
    pytest.importorskip("torchvision")
    seen = []

    def check(code, namespace):
        if "convert_edgeml_modules" in code:
            seen.append(code)
            assert isinstance(namespace["model"].rnn_model, RNNPool2d)
            assert_adapted_forward_matches(namespace["forward"], stand_ins)

    run_blocks(ROOT / "README.md", check)
    assert len(seen) == 1, "the README's EdgeML example (convert_edgeml_modules) was not found"


def test_edgeml_doc_examples_run(stand_ins):
    namespace = run_blocks(ROOT / "docs" / "edgeml.md")
    # The before/after comparison ran in the doc (float32); here the same forward again, in float64.
    torch.testing.assert_close(namespace["after"], namespace["before"], rtol=1e-4, atol=1e-5)
    assert_adapted_forward_matches(namespace["forward"], stand_ins)
    # The doc's outline of EdgeML's patch-based forward is what the stand-in (EdgeML's order) computes.
    model = vww_model().eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        outline = types.MethodType(namespace["edgeml_forward"], model)(x)
        torch.testing.assert_close(outline, model(x), rtol=1e-6, atol=1e-6)
    assert list(namespace["layers"]) == ["rnn_model"]
    assert isinstance(namespace["layer"], RNNPool2d) and namespace["layer"].kernel_size == (6, 6)
