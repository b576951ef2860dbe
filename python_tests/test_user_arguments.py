"""Issue 14, class 7: constructor and option arguments a user gets wrong are refused at once, with an
error naming the argument (TypeError for a wrong type, ValueError for a value out of range)."""

import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import rnnpool_ops
from rnnpool_ops import FastGRNNCell, GatedSkipConv2d, ReX2d, RNNPool2d, models
from rnnpool_ops.multiexit import (BranchClassifier, EarlyViewClassifier, MultiExitNetwork, PatchSweepHead, SDNHead,
                                   TRecXExitHead, ddi_resource_loss, sdn_weights, sync_early_view)

NAN = float("nan")
EXIT_HEAD = TRecXExitHead(8, 3, 16, width=8)

BAD = [
    (lambda: GatedSkipConv2d(0), ValueError, "channels must be an int >= 1, got 0"),
    (lambda: GatedSkipConv2d(4.0), TypeError, "channels must be an int, got float"),
    (lambda: GatedSkipConv2d(4, kernel_size=3.0), TypeError, "kernel_size must be an int or 2 ints"),
    (lambda: GatedSkipConv2d(4, kernel_size=(3, 4)), ValueError, r"kernel_size must be odd .*got \[3, 4\]"),
    (lambda: GatedSkipConv2d(4, kernel_size=(3, 3, 3)), TypeError, "kernel_size must be an int or 2 ints"),
    (lambda: GatedSkipConv2d(4, groups=0), ValueError, "groups must be an int >= 1"),
    (lambda: GatedSkipConv2d(4, dilation=0), ValueError, "dilation must be >= 1"),
    (lambda: GatedSkipConv2d(4, bias="yes"), TypeError, "bias must be a bool"),
    (lambda: RNNPool2d(4, -1, 4, 3), ValueError, "hidden1 must be an int >= 1, got -1"),
    (lambda: RNNPool2d(4, 4, 0, 3), ValueError, "hidden2 must be an int >= 1, got 0"),
    (lambda: RNNPool2d(4.5, 4, 4, 3), TypeError, "in_channels must be an int, got float"),
    (lambda: RNNPool2d(4, 4, 4, 0), ValueError, "kernel_size must be >= 1"),
    (lambda: RNNPool2d(4, 4, 4, 3, stride=(1, 0)), ValueError, "stride must be >= 1"),
    (lambda: RNNPool2d(4, 4, 4, 3, padding=-1), ValueError, "padding must be >= 0"),
    (lambda: ReX2d(4, 4, 4, (3, "3")), TypeError, "kernel_size must be an int or 2 ints"),
    (lambda: FastGRNNCell(0, 4), ValueError, "input_size must be an int >= 1"),
    (lambda: FastGRNNCell(4, 4, zeta_init=NAN), ValueError, "zeta_init must be a finite number"),
    (lambda: SDNHead(8, 0, 8), ValueError, "num_classes must be an int >= 1"),
    (lambda: SDNHead(8, 3, (8, 0)), ValueError, "in_size must be >= 1"),
    (lambda: TRecXExitHead(8, 3, 4, pool=4), ValueError, "TRecXExitHead: in_size is too small"),
    (lambda: TRecXExitHead(8, 3, 16, kernel_size=2.0), TypeError, "kernel_size must be an int"),
    (lambda: EarlyViewClassifier(8, 3, 8, EXIT_HEAD, stride=0), ValueError, "stride must be an int >= 1"),
    (lambda: EarlyViewClassifier(8, 3, 8, "head"), TypeError, "exit_head must be a TRecXExitHead"),
    (lambda: BranchClassifier(8, 3, depth=0), ValueError, "depth must be an int >= 1"),
    (lambda: PatchSweepHead(8, 3, 4, 0, 4), ValueError, "hidden1 must be an int >= 1"),
    (lambda: MultiExitNetwork([torch.nn.Identity()], {True: torch.nn.Identity()}), ValueError, "heads keys must be"),
    (lambda: MultiExitNetwork([torch.nn.Identity()], {0: "head"}), TypeError, "heads must map stage indices"),
    (lambda: sync_early_view(None, 0, 10, fraction=NAN), ValueError, "fraction must be a finite number"),
    (lambda: sdn_weights(0, 10.0, [0.5]), TypeError, "num_epochs must be an int"),
    (lambda: ddi_resource_loss([torch.ones(2)], [1.0], NAN), ValueError, "alpha must be a finite number"),
    (lambda: models.mobilenetv2(width_mult=NAN), ValueError, "width_mult must be a finite number"),
    (lambda: models.mobilenetv2(num_classes=2.0), TypeError, "num_classes must be an int"),
    (lambda: models.mobilenetv2(dropout=1.5), ValueError, "dropout must be a finite number in"),
    (lambda: models.mobilenetv2_rnnpool(hidden=0), ValueError, "hidden must be an int >= 1"),
    (lambda: models.rex_mobilenetv2(input_size=16), ValueError, "input_size must be at least 32"),
    (lambda: models.resnet8_trecx(num_classes=0), ValueError, "num_classes must be an int >= 1"),
    (lambda: models.ddi_resnet("38"), TypeError, "depth must be an int"),
    (lambda: models.ddi_resnet(38, num_classes=-1), ValueError, "num_classes must be an int >= 1"),
]


@pytest.mark.parametrize("make, error, match", BAD, ids=[case[2][:40] for case in BAD])
def test_bad_constructor_arguments_name_the_argument(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_gated_skip_takes_a_rectangular_odd_kernel():
    """The op takes kh != kw (both odd): a tuple kernel_size works and matches the convolution."""
    layer = GatedSkipConv2d(4, kernel_size=(3, 5), activation=None)
    assert layer.kernel_size == (3, 5) and layer.weight.shape == (4, 4, 3, 5)
    x = torch.randn(2, 4, 6, 7)
    expected = F.conv2d(x, layer.weight, layer.bias, padding=(1, 2))
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected, rtol=1e-4, atol=1e-5)
    assert GatedSkipConv2d(4, kernel_size=3).kernel_size == (3, 3)


def test_numpy_style_integers_are_ints():
    numpy = pytest.importorskip("numpy")
    layer = RNNPool2d(numpy.int64(4), 4, 4, numpy.int64(2))
    assert layer.kernel_size == (2, 2) and type(layer.in_channels) is int


@pytest.mark.skipif(not rnnpool_ops.extension_available(), reason="needs the compiled library")
def test_set_cpu_isa_refuses_empty_and_non_str_names():
    with pytest.raises(TypeError, match="set_cpu_isa: name must be a str, 'auto' or one of available_cpu_isas"):
        rnnpool_ops.set_cpu_isa(None)
    with pytest.raises(ValueError, match="cpu_isa must be 'auto' or one of the builds .*got ''"):
        rnnpool_ops.set_cpu_isa("")
    previous = rnnpool_ops.set_cpu_isa("auto")
    rnnpool_ops.set_cpu_isa(previous)


@pytest.mark.skipif(not rnnpool_ops.extension_available(), reason="needs the compiled library")
def test_empty_cpu_isa_environment_variable_is_an_error():
    code = "import rnnpool_ops; rnnpool_ops.cpu_isa()"
    env = {"RNNPOOL_CPU_ISA": "", "PYTHONPATH": ":".join(sys.path)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "RNNPOOL_CPU_ISA must be 'auto' or one of the builds compiled for this machine" in result.stderr
    assert "got ''" in result.stderr


def test_infinite_thresholds_stay_meaningful():
    from rnnpool_ops.multiexit import EntropyPolicy, MaxSoftmaxPolicy

    assert MaxSoftmaxPolicy(math.inf).threshold == math.inf and EntropyPolicy(math.inf).threshold == math.inf
