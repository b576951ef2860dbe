import types

import pytest
import torch
import torch.nn.functional as F
from edgeml_cases import CHANNELS, HIDDEN2, edgeml_rnnpool, edgeml_state_dict
from torch import nn
from torchvision import models as tv

from rnnpool_ops import ReX2d, RNNPool2d, analysis, models, swap

BATCH = 2


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are small: on a busy CPU, a second thread costs more in waiting than it gains."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_forward_backward(model, input_shape):
    x = torch.randn(BATCH, *input_shape, generator=torch.Generator().manual_seed(0))
    out = model(x)
    out.sum().backward()
    return out


def sweeps(model):
    return {name: m for name, m in model.named_modules() if isinstance(m, (RNNPool2d, ReX2d))}


def assert_report_consistent(report, before_parameters, model, input_shape):
    assert report.parameters_before == before_parameters
    assert report.parameters_after == analysis.count_parameters(model)
    assert report.parameters_change == report.parameters_after - before_parameters
    assert report.madds_after == analysis.multiply_adds(model, input_shape)
    assert report.peak_ram_after == analysis.peak_ram_bytes(model, input_shape)
    assert report.madds_change == report.madds_after - report.madds_before
    assert str(report)


def test_resnet18_pools_become_rnnpool():
    model, input_shape = tv.resnet18(weights=None, num_classes=10), (3, 64, 64)
    before = analysis.count_parameters(model)
    report = swap.swap_pooling(model, input_shape)
    assert [r.names for r in report.replaced] == [("maxpool",), ("avgpool",)]
    # F.1.3: intermediate pool -> patch 4, stride 2; F.1.2: final pool -> one patch, h1 = h2 = C/4.
    assert model.maxpool.kernel_size == (4, 4) and model.maxpool.stride == (2, 2)
    assert (model.maxpool.hidden1, model.maxpool.out_channels) == (16, 64)
    assert model.avgpool.kernel_size == (2, 2) and (model.avgpool.hidden1, model.avgpool.hidden2) == (128, 128)
    assert run_forward_backward(model, input_shape).shape == (BATCH, 10)
    assert_report_consistent(report, before, model, input_shape)


def test_densenet121_intermediate_pools_become_rex():
    model, input_shape = tv.densenet121(weights=None, num_classes=10), (3, 64, 64)
    before = analysis.count_parameters(model)
    report = swap.swap_pooling(model, input_shape, kind="rex")
    assert [r.names[0] for r in report.replaced] == [
        "features.pool0", "features.transition1.pool", "features.transition2.pool", "features.transition3.pool"]
    rex = model.features.transition1.pool
    assert isinstance(rex, ReX2d) and (rex.hidden1, rex.hidden2, rex.out_channels) == (32, 16, 128)
    assert run_forward_backward(model, input_shape).shape == (BATCH, 10)
    assert_report_consistent(report, before, model, input_shape)
    assert report.parameters_change > 0


def test_mobilenet_v2_early_blocks_become_rnnpool_stem():
    model, input_shape = tv.mobilenet_v2(weights=None, num_classes=10), (3, 64, 64)
    before = analysis.count_parameters(model)
    names = [f"features.{i}" for i in range(1, 7)]  # 32x32x32 -> 8x8x32, as 112x112 -> 28x28 in F.1.1
    stem = RNNPool2d(32, 16, 8, kernel_size=6, stride=4, padding=1)
    report = swap.replace_blocks(model, names, stem, input_shape)
    assert model.features[1] is stem and all(isinstance(model.features[i], nn.Identity) for i in range(2, 7))
    assert run_forward_backward(model, input_shape).shape == (BATCH, 10)
    assert_report_consistent(report, before, model, input_shape)
    assert report.madds_change < 0 and report.peak_ram_change < 0


def test_replace_blocks_checks_shape_and_order():
    model = tv.mobilenet_v2(weights=None, num_classes=10)
    with pytest.raises(ValueError, match="layer maps"):
        swap.replace_blocks(model, ["features.1", "features.2"], RNNPool2d(32, 4, 4, 6, 4, 1), (3, 64, 64))
    with pytest.raises(ValueError, match="names must be given in the order"):
        swap.replace_blocks(model, ["features.2", "features.1"], nn.Identity(), (3, 64, 64))
    with pytest.raises(ValueError, match="names"):
        swap.replace_blocks(model, "features.1", nn.Identity(), (3, 64, 64))
    with pytest.raises(TypeError, match="layer"):
        swap.replace_blocks(model, ["features.1"], "rnnpool", (3, 64, 64))


def test_project_builder_final_pool_becomes_rex_and_backends_switch():
    model, input_shape = models.mobilenetv2_rnnpool_vww(), (3, 96, 96)
    before = analysis.count_parameters(model)
    classifier_pool = next(name for name, m in model.named_modules() if isinstance(m, nn.AdaptiveAvgPool2d))
    report = swap.swap_pooling(model, input_shape, kind="rex", names=[classifier_pool])
    assert report.replaced[0].names == (classifier_pool,)
    assert model.get_submodule(classifier_pool).out_channels == model.get_submodule(classifier_pool).in_channels
    assert_report_consistent(report, before, model, input_shape)

    x = torch.randn(BATCH, *input_shape, generator=torch.Generator().manual_seed(0))
    assert swap.set_backend(model, "reference") == list(sweeps(model))
    expected = model.eval()(x)
    swap.set_backend(model, "cpp")
    assert all(m.backend == "cpp" for m in sweeps(model).values())
    torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)
    assert run_forward_backward(model.train(), input_shape).shape == (BATCH, 2)


def test_channels_not_divisible_get_a_1x1_convolution():
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.MaxPool2d(2))
    swap.swap_pooling(model, (3, 8, 8))
    assert isinstance(model[1][0], RNNPool2d) and isinstance(model[1][1], nn.Conv2d)
    assert run_forward_backward(model, (3, 8, 8)).shape == (BATCH, 6, 4, 4)


class FakeEdgeMLCell(nn.Module):
    def __init__(self, tensors):
        super().__init__()
        for name, tensor in tensors.items():
            self.register_parameter(name, nn.Parameter(tensor.clone()))


class FakeEdgeMLUnroll(nn.Module):
    def __init__(self, cell, bidirectional):
        super().__init__()
        self.RNNCell = cell
        if bidirectional:
            self.RNNCell_reverse = cell


class FakeEdgeMLRNNPool(nn.Module):
    """EdgeML's RNNPool parameter names and layouts; the state dict reaches each cell under its aliases too.

    Its forward cuts the patches out itself (in EdgeML the caller does) and runs EdgeML's computation.
    """

    def __init__(self, state_dict, patch, stride):
        super().__init__()
        self.patch, self.stride = patch, stride
        self.nRows = self.nCols = patch  # EdgeML's RNNPool(nRows, nCols, ...) keeps its patch size so
        for module, bidirectional in (("cell_rnn", False), ("cell_bidirrnn", True)):
            prefix = f"{module}.cell."
            cell = FakeEdgeMLCell({k[len(prefix):]: t for k, t in state_dict.items() if k.startswith(prefix)})
            holder = nn.Module()
            holder.cell, holder.unrollRNN = cell, FakeEdgeMLUnroll(cell, bidirectional)
            setattr(self, module, holder)

    def forward(self, x):
        n, channels, height, width = x.shape
        out_h, out_w = ((size - self.patch) // self.stride + 1 for size in (height, width))
        patches = F.unfold(x, self.patch, stride=self.stride).transpose(1, 2).reshape(-1, channels, self.patch,
                                                                                      self.patch)
        return edgeml_rnnpool(self.state_dict(), patches).view(n, out_h, out_w, -1).permute(0, 3, 1, 2)


class EdgeMLSignatureRNNPool(FakeEdgeMLRNNPool):
    """EdgeML's own calling convention: forward(patches [P*B, C, k, k], batch_size) -> [P*B, 4*h2]."""

    def forward(self, inputs, batch_size):
        return edgeml_rnnpool(self.state_dict(), inputs)


def edgeml_model(patch, stride):
    return nn.Sequential(
        nn.Conv2d(CHANNELS, CHANNELS, 1), FakeEdgeMLRNNPool(edgeml_state_dict(), patch, stride), nn.Flatten()
    ).double()


def test_edgeml_model_converts_with_identical_outputs():
    patch, stride, input_shape = 4, 2, (CHANNELS, 10, 8)
    model = edgeml_model(patch, stride)
    x = torch.randn(BATCH, *input_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    expected = model(x)
    before = analysis.count_parameters(model)
    report = swap.convert_edgeml_modules(model, patch, stride, input_shape=input_shape, backend="reference")
    assert report.replaced[0].names == ("1",) and isinstance(model[1], RNNPool2d)
    torch.testing.assert_close(model(x), expected, rtol=1e-12, atol=1e-12)
    model(x).sum().backward()
    assert report.parameters_change == 0 and report.parameters_before == before
    assert report.madds_after == analysis.multiply_adds(model, input_shape)


def test_edgeml_checkpoint_converts_to_layers():
    state_dict = {"stem.weight": torch.zeros(1), **edgeml_state_dict(prefix="backbone.pool.")}
    layers = swap.edgeml_layers(state_dict, 4, 2)
    assert list(layers) == ["backbone.pool"] and layers["backbone.pool"].kernel_size == (4, 4)


def test_bad_arguments_name_the_argument():
    model = tv.resnet18(weights=None)
    with pytest.raises(ValueError, match="kind"):
        swap.swap_pooling(model, (3, 64, 64), kind="renet")
    with pytest.raises(ValueError, match="backend"):
        swap.swap_pooling(model, (3, 64, 64), backend="cuda")
    with pytest.raises(ValueError, match="input_shape"):
        swap.swap_pooling(model, (64, 64))
    with pytest.raises(ValueError, match="names"):
        swap.swap_pooling(model, (3, 64, 64), names=["layer1"])
    with pytest.raises(ValueError, match="backend"):
        swap.set_backend(model, "gpu")
    with pytest.raises(ValueError, match="no RNNPool2d"):
        swap.set_backend(model, "cpp")
    with pytest.raises(ValueError, match="no EdgeML RNNPool"):
        swap.convert_edgeml_modules(model, 4, 2)
    with pytest.raises(ValueError, match="no nn.AvgPool2d"):
        swap.swap_pooling(nn.Sequential(nn.Conv2d(3, 3, 1)), (3, 8, 8))


# ---- issue 14, class 4: what swap and analysis must not change ----

def modes(model):
    return {name: m.training for name, m in model.named_modules()}


def frozen_bn_model():
    """A training model whose BatchNorm is frozen (eval mode), as fine-tuning does."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.MaxPool2d(2),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).train()
    model[1].eval()
    return model


def snapshot(model):
    return dict(model.named_modules()), {k: v.clone() for k, v in model.state_dict().items()}, modes(model)


def assert_unchanged(model, saved):
    modules, state, training = saved
    assert dict(model.named_modules()) == modules
    assert modes(model) == training
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_swap_and_analysis_keep_each_modules_mode():
    model = frozen_bn_model()
    expected = modes(model)
    analysis.multiply_adds(model, (3, 8, 8))
    analysis.peak_ram_bytes(model, (3, 8, 8))
    assert modes(model) == expected
    swap.swap_pooling(model, (3, 8, 8))
    assert not model[1].training and model[0].training and model[2].training and model[3].training


def test_replace_blocks_keeps_the_layers_modes():
    model = frozen_bn_model()
    layer = nn.Sequential(nn.BatchNorm2d(8).eval(), nn.MaxPool2d(2)).train()
    layer[0].eval()
    swap.replace_blocks(model, ["2"], layer, (3, 8, 8))
    assert layer.training and not layer[0].training and not model[1].training


class TutorialNet(nn.Module):
    """The PyTorch CIFAR-10 tutorial's network: one MaxPool2d module called at two sites."""

    def __init__(self):
        super().__init__()
        self.conv1, self.pool, self.conv2 = nn.Conv2d(3, 6, 5), nn.MaxPool2d(2, 2), nn.Conv2d(6, 16, 5)
        self.fc = nn.Linear(16 * 5 * 5, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        return self.fc(x.flatten(1))


def test_module_called_at_two_sites_is_refused_and_model_unchanged():
    model = TutorialNet()
    saved = snapshot(model)
    with pytest.raises(ValueError, match=r"pool: one module runs at 2 call sites \(inputs \[6, 28, 28\], \[16, 10, 10\]"):
        swap.swap_pooling(model, (3, 32, 32), names=["pool"])
    assert_unchanged(model, saved)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


class RefusesSweeps(nn.Module):
    """A forward that fails once its pool is no longer a MaxPool2d: the failure comes after replacing."""

    def __init__(self):
        super().__init__()
        self.conv, self.pool = nn.Conv2d(3, 4, 1), nn.MaxPool2d(2)

    def forward(self, x):
        if not isinstance(self.pool, nn.MaxPool2d):
            raise RuntimeError("this forward needs a MaxPool2d")
        return self.pool(self.conv(x))


def test_swap_failing_after_replacing_puts_everything_back():
    model = RefusesSweeps()
    saved = snapshot(model)
    with pytest.raises(ValueError, match=r"does not run on input_shape \(3, 8, 8\).*needs a MaxPool2d.*unchanged"):
        swap.swap_pooling(model, (3, 8, 8))
    assert_unchanged(model, saved)
    with pytest.raises(ValueError, match="gate"):  # a bad layer option fails before anything changes
        swap.swap_pooling(frozen_bn_model(), (3, 8, 8), gate="relu")


def test_model_without_parameters_swaps():
    model = nn.Sequential(nn.MaxPool2d(2))
    report = swap.swap_pooling(model, (4, 16, 16))
    assert isinstance(model[0], RNNPool2d) and report.parameters_before == 0
    assert model(torch.randn(1, 4, 16, 16)).shape == (1, 4, 8, 8)
    assert analysis.multiply_adds(nn.Sequential(nn.ReLU()), (3, 4, 4)) == 0


def test_input_size_bound_layer_names_the_swaps_input_shape():
    model = frozen_bn_model()
    swap.swap_pooling(model, (3, 8, 8))
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 4)
    with pytest.raises(ValueError, match=r"swap_pooling built this layer for input_shape \(3, 8, 8\) to replace "
                                         r"3 \(AdaptiveAvgPool2d\).*fit 4x4 maps only"):
        model(torch.randn(2, 3, 16, 16))
    # The MaxPool2d's replacement (patch 4, stride 2) does not depend on the input size.
    assert model[2](torch.randn(1, 8, 20, 12)).shape == (1, 8, 10, 6)


# ---- issue 14, class 5: what swap_pooling replaces by default ----

def test_torchvision_squeeze_excitation_pools_are_skipped_by_default():
    model, input_shape = tv.mobilenet_v3_small(weights=None, num_classes=10), (3, 64, 64)
    se_pools = [name for name, m in model.named_modules() if name.endswith("block.1.avgpool")
                or name.endswith("block.2.avgpool")]
    assert se_pools and all(isinstance(model.get_submodule(n), nn.AdaptiveAvgPool2d) for n in se_pools)
    report = swap.swap_pooling(model, input_shape)
    assert [r.names for r in report.replaced] == [("avgpool",)]
    skipped = {s.name: s.reason for s in report.skipped}
    assert sorted(skipped) == sorted(se_pools)
    assert all("squeeze-excitation pool (inside torchvision SqueezeExcitation" in r for r in skipped.values())
    assert f"skipped {se_pools[0]}: squeeze-excitation" in str(report)
    assert run_forward_backward(model, input_shape).shape == (BATCH, 10)


class OwnSqueezeExcitation(nn.Module):
    """Squeeze-excitation written by hand (no torchvision class): x * gate(pool(x))."""

    def __init__(self, channels):
        super().__init__()
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc(self.pool(x)))


def se_model():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), OwnSqueezeExcitation(8), nn.MaxPool2d(2),
                         nn.MaxPool2d(3, 1, 1), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(128, 2))


def test_squeeze_excitation_pattern_and_non_downsampling_pools_are_skipped_and_listed():
    model = se_model()
    report = swap.swap_pooling(model, (3, 8, 8))
    assert [r.names for r in report.replaced] == [("2",)]
    assert [s.name for s in report.skipped] == ["1.pool", "3", "4"]
    reasons = [s.reason for s in report.skipped]
    assert "squeeze-excitation pool (its output rescales its own input)" in reasons[0]
    assert reasons[1].startswith("does not downsample (4x4 -> 4x4)")  # a 3x3/s1 pool, as googlenet's
    assert reasons[2].startswith("does not downsample (4x4 -> 4x4)")  # as alexnet's AdaptiveAvgPool2d(6)
    assert "skipped 1.pool: squeeze-excitation" in str(report)
    assert isinstance(model[1].pool, nn.AdaptiveAvgPool2d) and isinstance(model[3], nn.MaxPool2d)


def test_options_include_them_and_names_are_obeyed_as_given():
    model = se_model()
    report = swap.swap_pooling(model, (3, 8, 8), include_squeeze_excitation=True, include_non_downsampling=True)
    assert [r.names[0] for r in report.replaced] == ["1.pool", "2", "3", "4"] and report.skipped == ()
    model = se_model()
    report = swap.swap_pooling(model, (3, 8, 8), names=["1.pool", "4"])
    assert [r.names[0] for r in report.replaced] == ["1.pool", "4"] and report.skipped == ()
    assert isinstance(model[1].pool, RNNPool2d) and isinstance(model[4], RNNPool2d)
    assert run_forward_backward(model, (3, 8, 8)).shape == (BATCH, 2)


def test_nothing_left_to_replace_lists_the_skipped_pools():
    with pytest.raises(ValueError, match=r"no pooling layer to replace: pool: one module runs at 2 call sites"):
        swap.swap_pooling(TutorialNet(), (3, 32, 32))
    unused = nn.Conv2d(3, 4, 1)
    unused.pool = nn.MaxPool2d(2)  # registered, never called
    with pytest.raises(ValueError, match=r"no pooling layer to replace: pool: it does not run in the model's forward"):
        swap.swap_pooling(unused, (3, 8, 8))


# ---- issue 14, class 6: EdgeML conversion ----

def two_rnnpool_model():
    """EdgeML's model_mobilenet_2rnnpool in small: a 4x4/stride-2 RNNPool, then a final one reading its
    3x3 map as one patch (EdgeML's RNNPool(7, 7, ...) at the end)."""
    return nn.Sequential(
        nn.Conv2d(CHANNELS, CHANNELS, 1), FakeEdgeMLRNNPool(edgeml_state_dict(), 4, 2),
        nn.Conv2d(4 * HIDDEN2, CHANNELS, 1), FakeEdgeMLRNNPool(edgeml_state_dict(seed=1), 3, 1), nn.Flatten(),
    ).double()


def test_each_edgeml_module_keeps_its_own_patch_size():
    model, input_shape = two_rnnpool_model(), (CHANNELS, 8, 8)
    x = torch.randn(BATCH, *input_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    expected = model(x)
    saved = snapshot(model)
    with pytest.raises(ValueError, match=r"kernel_size 4 for 3 disagrees with its own nRows x nCols = 3 x 3"):
        swap.convert_edgeml_modules(model, 4, 2)
    assert_unchanged(model, saved)
    report = swap.convert_edgeml_modules(model, stride={"1": 2}, input_shape=input_shape, backend="reference")
    assert (model[1].kernel_size, model[1].stride, model[3].kernel_size, model[3].stride) == ((4, 4), (2, 2),
                                                                                              (3, 3), (3, 3))
    torch.testing.assert_close(model(x), expected, rtol=1e-12, atol=1e-12)
    assert [r.names for r in report.replaced] == [("1",), ("3",)]


def test_edgeml_geometry_arguments_are_checked():
    model = two_rnnpool_model()
    with pytest.raises(ValueError, match=r"stride names \['pool'\], which are not EdgeML RNNPool modules; those are "
                                         r"\['1', '3'\]"):
        swap.convert_edgeml_modules(model, stride={"pool": 2})
    holder = nn.Sequential(nn.Identity(), EdgeMLSignatureRNNPool(edgeml_state_dict(), 4, 2))
    del holder[1].nRows
    with pytest.raises(ValueError, match="kernel_size is needed for 1: it has no nRows/nCols"):
        swap.convert_edgeml_modules(holder)
    with pytest.raises(ValueError, match="kernel_size is needed for backbone.pool: a state dict holds no patch size"):
        swap.edgeml_layers(edgeml_state_dict(prefix="backbone.pool."), None)


def test_edgeml_training_checkpoint_is_unwrapped():
    state_dict = {f"module.{key}": t for key, t in two_rnnpool_model().state_dict().items()}
    layers = swap.edgeml_layers({"model": state_dict, "epoch": 7}, {"1": 4, "3": 3}, stride={"1": 2})
    assert list(layers) == ["1", "3"] and layers["3"].kernel_size == (3, 3) and layers["1"].stride == (2, 2)
    layer = RNNPool2d.from_edgeml({"model": state_dict, "epoch": 7}, 4, 2, prefix="1.")
    assert torch.equal(layer.rnn1.W, layers["1"].rnn1.W)
    with pytest.raises(ValueError, match=r"no EdgeML RNNPool found .*the keys are: 'net', 'epoch'"):
        swap.edgeml_layers({"net": state_dict, "epoch": 7}, 4)


def test_from_edgeml_lists_the_prefixes_present():
    state_dict = two_rnnpool_model().state_dict()
    with pytest.raises(ValueError, match=r"no EdgeML RNNPool under prefix '': the state dict holds EdgeML RNNPools "
                                         r"under prefixes \['1.', '3.'\]"):
        RNNPool2d.from_edgeml(state_dict, 4)
    with pytest.raises(ValueError, match=r"no EdgeML RNNPool under prefix 'pool.'.*prefixes \['1.', '3.'\]"):
        RNNPool2d.from_edgeml(state_dict, 4, prefix="pool.")


class EdgeMLVWWStyle(nn.Module):
    """EdgeML's Visual Wake Words model (model_mobilenet_rnnpool.py) in small: its forward cuts the
    patches, runs EdgeML's RNNPool on them, folds the result back into a map and pads it by one."""

    def __init__(self):
        super().__init__()
        self.features_init = nn.Conv2d(3, CHANNELS, 3, 2, 1)
        self.unfold = nn.Unfold(kernel_size=(4, 4), stride=(2, 2))
        self.rnn_model = EdgeMLSignatureRNNPool(edgeml_state_dict(), 4, 2)
        self.fold = nn.Fold(kernel_size=(1, 1), output_size=(4, 4))
        self.features = nn.Conv2d(4 * HIDDEN2, 6, 1)
        self.classifier = nn.Linear(6, 2)

    def forward(self, x):
        batch_size = x.shape[0]
        x = self.features_init(x)
        patches = self.unfold(x)
        patches = torch.cat(torch.unbind(patches, dim=2), dim=0)
        patches = torch.reshape(patches, (-1, CHANNELS, 4, 4))
        output_x, output_y = (x.shape[2] - 4) // 2 + 1, (x.shape[3] - 4) // 2 + 1
        rnn_x = self.rnn_model(patches, int(batch_size) * output_x * output_y)
        x = torch.stack(torch.split(rnn_x, split_size_or_sections=int(batch_size), dim=0), dim=2)
        x = self.fold(x)
        x = F.pad(x, (0, 1, 0, 1), mode="replicate")
        x = self.features(x)
        return self.classifier(x.mean([2, 3]))


def adapted_forward(self, x):
    """docs/edgeml.md's adaptation: the fused layer takes the map (no unfold, no fold); the pad stays."""
    x = self.features_init(x)
    x = self.rnn_model(x)
    x = F.pad(x, (0, 1, 0, 1), mode="replicate")
    x = self.features(x)
    return self.classifier(x.mean([2, 3]))


def test_worked_example_adapting_an_edgeml_forward():
    model, input_shape = EdgeMLVWWStyle().double(), (3, 22, 22)
    x = torch.randn(BATCH, *input_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    expected = model(x)
    saved = snapshot(model)
    # The converted layer cannot take the patches this forward cuts: refused, the model as it was.
    with pytest.raises(ValueError, match=r"does not run on input_shape \(3, 22, 22\).*unchanged.*adapt the model's "
                                         r"forward \(docs/edgeml.md\)"):
        swap.convert_edgeml_modules(model, stride=2, input_shape=input_shape)
    assert_unchanged(model, saved)
    torch.testing.assert_close(model(x), expected, rtol=0, atol=0)

    swap.convert_edgeml_modules(model, stride=2, backend="reference")
    model.forward = types.MethodType(adapted_forward, model)
    torch.testing.assert_close(model(x), expected, rtol=1e-12, atol=1e-12)
    assert analysis.multiply_adds(model, input_shape) > 0


def test_more_pools_that_cannot_or_should_not_be_replaced():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(8))  # 4x4 -> 8x8: upsamples
    report = swap.swap_pooling(model, (3, 8, 8))
    assert [s.name for s in report.skipped] == ["2"] and report.skipped[0].reason.startswith(
        "does not downsample (4x4 -> 8x8)")

    class Unpooling(nn.Module):
        def __init__(self):
            super().__init__()
            self.pool, self.unpool = nn.MaxPool2d(2, return_indices=True), nn.MaxUnpool2d(2)

        def forward(self, x):
            return self.unpool(*self.pool(x))

    model = Unpooling()
    with pytest.raises(ValueError, match=r"pool: it returns indices \(return_indices=True\)"):
        swap.swap_pooling(model, (4, 8, 8), names=["pool"])
    assert isinstance(model.pool, nn.MaxPool2d)
    with pytest.raises(TypeError, match="include_squeeze_excitation must be True or False"):
        swap.swap_pooling(se_model(), (3, 8, 8), include_squeeze_excitation="yes")
    with pytest.raises(TypeError, match=r"input_shape \(one sample's C, H, W\)\[1\] must be an int"):
        swap.swap_pooling(se_model(), (3, 8.0, 8))
    with pytest.raises(ValueError, match=r"input_shape\[0\] must be an int >= 1"):
        analysis.multiply_adds(se_model(), (0, 8, 8))


def test_new_layers_take_the_replaced_modules_mode_and_failed_traces_keep_modes():
    model = frozen_bn_model().eval()
    swap.swap_pooling(model, (3, 8, 8))
    assert not any(m.training for m in model.modules())

    class Fails(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm2d(3)

        def forward(self, x):
            raise RuntimeError("no forward today")

    broken = Fails().train()
    broken.bn.eval()
    with pytest.raises(RuntimeError, match="no forward today"):
        analysis.multiply_adds(broken, (3, 4, 4))
    assert broken.training and not broken.bn.training
