"""rnnpool_ops.streaming: the streamed model computes what the model computes, and refuses what it cannot."""

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from rnnpool_ops import RNNPool2d, ReX2d, swap
from rnnpool_ops.models import mobilenetv2_rnnpool, mobilenetv2_rnnpool_vww, rex_mobilenetv2
from rnnpool_ops.multiexit import ConsistencyPolicy, MaxSoftmaxPolicy
from rnnpool_ops.streaming import StreamedModel, StreamedMultiExitNetwork, stream
from rnnpool_ops.streaming.plan import flatten

TINY_BUDGET = 1  # byte: one-row stripes and tiles, expansions in chunks of one channel


def randomized(model, seed=0, dtype=torch.float64):
    """model in eval mode with batch norms given random statistics and affine parameters (the defaults
    would let a wrong fold pass)."""
    generator = torch.Generator().manual_seed(seed)
    model = model.to(dtype)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            for tensor in (module.weight, module.bias, module.running_mean):
                tensor.data.copy_(torch.randn(tensor.shape, generator=generator, dtype=dtype) * 0.5)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator, dtype=dtype) + 0.5)
    return model.eval()


def relative_error(ours, theirs):
    return ((ours - theirs).abs().max() / theirs.abs().max()).item()


def assert_streams_exactly(model, shape, batch=2, seed=1, **options):
    streamed = stream(model, shape, **options)
    x = torch.randn(batch, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = model(x)
        got = streamed(x)
    if isinstance(expected, list):
        assert len(got) == len(expected)
        for ours, theirs in zip(got, expected):
            assert relative_error(ours, theirs) < 1e-10
    else:
        assert got.shape == expected.shape
        assert relative_error(got, expected) < 1e-10
    return streamed


@pytest.mark.parametrize("budget", [None, TINY_BUDGET])
def test_mobilenetv2_rnnpool_224(budget):
    model = randomized(mobilenetv2_rnnpool())
    streamed = assert_streams_exactly(model, (3, 224, 224), memory_budget=budget)
    report = streamed.report()
    assert "in stripes of" in report and "tiled" in report and "folded into the pool" in report
    tiled = [layer.how for layer in streamed.plan if "tiled" in layer.how]
    if budget == TINY_BUDGET:  # not even one row of the fused kernel fits: torch ops, chunked expansions
        assert "expanded channels at a time" in report and "fused" not in report
    else:
        assert tiled and all(how.endswith("in the fused kernel") for how in tiled)


@pytest.mark.parametrize("shape", [(3, 97, 131), (3, 64, 40), (3, 33, 250)])
def test_odd_sizes(shape):
    assert_streams_exactly(randomized(mobilenetv2_rnnpool_vww()), shape, batch=3)
    assert_streams_exactly(randomized(mobilenetv2_rnnpool(width_mult=0.5)), shape, batch=1, memory_budget=TINY_BUDGET)


def test_float32_within_spec_tolerance():
    model = randomized(mobilenetv2_rnnpool_vww(), dtype=torch.float32)
    streamed = stream(model, (3, 96, 112))
    x = torch.randn(2, 3, 96, 112)
    with torch.no_grad():
        torch.testing.assert_close(streamed(x), model(x), rtol=1e-4, atol=1e-5)


def test_rex_multi_exit_forward_and_infer():
    model = randomized(rex_mobilenetv2(num_classes=10, input_size=64, head="rex"))
    streamed = assert_streams_exactly(model, (3, 64, 64), batch=4, memory_budget=TINY_BUDGET)
    assert isinstance(streamed, StreamedMultiExitNetwork)
    x = torch.randn(6, 3, 64, 64, dtype=torch.float64)
    for policy in (ConsistencyPolicy(k=2), MaxSoftmaxPolicy(0.2)):
        with torch.no_grad():
            expected, got = model.infer(x, policy), streamed.infer(x, policy)
        assert torch.equal(got.exit_index, expected.exit_index)
        assert torch.equal(got.madds, expected.madds)
        assert relative_error(got.outputs, expected.outputs) < 1e-10


def torchvision_rnnpool_mobilenetv2():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.mobilenet_v2(num_classes=10)
    layer = RNNPool2d(32, 16, 8, kernel_size=6, stride=4, padding=1)
    swap.replace_blocks(model, [f"features.{i}" for i in range(1, 7)], layer, (3, 224, 224))
    return model


def test_torchvision_mobilenetv2_after_replace_blocks():
    model = torchvision_rnnpool_mobilenetv2()
    with pytest.raises(TypeError, match="MobileNetV2 whose forward code cannot be seen"):
        stream(model.eval(), (3, 224, 224))
    sequential = randomized(nn.Sequential(model.features, nn.AdaptiveAvgPool2d(1), nn.Flatten(1), model.classifier))
    streamed = assert_streams_exactly(sequential, (3, 160, 192), memory_budget=TINY_BUDGET)
    assert "tiled" in streamed.report()


def test_layers_before_the_pool_striped():
    # Pools, dilation, replicate padding and a stride before a ReX layer with its projection.
    model = randomized(nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=2, dilation=2, padding_mode="replicate"), nn.BatchNorm2d(8), nn.Hardswish(),
        nn.MaxPool2d(3, 2, 1), nn.Conv2d(8, 8, 5, 1, 2, groups=8), nn.ReLU(), nn.AvgPool2d(2, 1, 1),
        nn.BatchNorm2d(8), nn.SiLU(), ReX2d(8, 6, 4, kernel_size=(5, 4), stride=(3, 2), padding=(2, 1)),
        nn.Conv2d(32, 16, 1), nn.BatchNorm2d(16), nn.ReLU6(), nn.AdaptiveMaxPool2d(1), nn.Flatten(1)))
    for budget in (None, TINY_BUDGET, 10 ** 9):
        assert_streams_exactly(model, (3, 41, 37), memory_budget=budget)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(kernel=st.integers(1, 5), stride=st.integers(1, 3), dilation=st.integers(1, 2),
       pool_kernel=st.integers(2, 6), pool_stride=st.integers(1, 4), pool_padding=st.integers(0, 2),
       height=st.integers(12, 40), width=st.integers(12, 40), budget=st.sampled_from([None, TINY_BUDGET, 5000]))
def test_random_geometry(kernel, stride, dilation, pool_kernel, pool_stride, pool_padding, height, width, budget):
    pool_padding = min(pool_padding, pool_kernel - 1)
    padding = dilation * (kernel - 1) // 2
    model = randomized(nn.Sequential(
        nn.Conv2d(2, 4, kernel, stride, padding, dilation), nn.BatchNorm2d(4), nn.ReLU(),
        RNNPool2d(4, 3, 2, pool_kernel, pool_stride, pool_padding), nn.Conv2d(8, 8, 3, padding=1), nn.Tanh()))
    with torch.no_grad():
        try:
            model(torch.zeros(1, 2, height, width, dtype=torch.float64))
        except (RuntimeError, ValueError):
            return  # the model itself cannot take this size
    assert_streams_exactly(model, (2, height, width), memory_budget=budget)


class Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x) * 2


def test_unsupported_layer_before_the_pool_is_named_or_run_plainly():
    model = randomized(nn.Sequential(nn.Conv2d(3, 4, 3), Custom(), nn.ReLU(), RNNPool2d(4, 4, 4, 4, 4)))
    with pytest.raises(ValueError, match=r"1 \(Custom\).*forward code cannot be seen"):
        stream(model, (3, 30, 30))
    streamed = assert_streams_exactly(model, (3, 30, 30), unsupported="plain")
    assert "plain (cannot be split into rows)" in streamed.report()


def test_refusals():
    model = randomized(mobilenetv2_rnnpool_vww())
    with pytest.raises(ValueError, match="training mode"):
        stream(model.train(), (3, 64, 64))
    model.eval()
    streamed = stream(model, (3, 64, 64))
    with pytest.raises(RuntimeError, match="inference-only"):
        streamed.train()
    streamed.eval()  # train(False) is fine
    with pytest.raises(RuntimeError, match="must not require grad"):
        streamed(torch.randn(1, 3, 64, 64, dtype=torch.float64, requires_grad=True))
    with pytest.raises(ValueError, match=r"streamed for inputs \[N, 3, 64, 64\]"):
        streamed(torch.randn(1, 3, 64, 72, dtype=torch.float64))
    with pytest.raises(ValueError, match="float64"):
        streamed(torch.randn(1, 3, 64, 64))
    out = streamed(torch.randn(1, 3, 64, 64, dtype=torch.float64))  # autograd on: still no graph
    assert not out.requires_grad
    with pytest.raises(ValueError, match="holds no RNNPool2d or ReX2d"):
        stream(nn.Sequential(nn.Conv2d(3, 3, 1)).eval(), (3, 8, 8))
    with pytest.raises(ValueError, match=r"inside 0 \(Holder\)"):
        stream(nn.Sequential(Holder()).eval(), (3, 8, 8))
    with pytest.raises(ValueError, match="unsupported must be one of"):
        stream(model, (3, 64, 64), unsupported="skip")
    with pytest.raises(ValueError, match="memory_budget"):
        stream(model, (3, 64, 64), memory_budget=0)


class Holder(nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = RNNPool2d(3, 4, 4, 2)

    def forward(self, x):
        return self.pool(x)


def test_shares_parameters_and_plans_each_layer():
    model = randomized(mobilenetv2_rnnpool_vww())
    streamed = stream(model, (3, 96, 96))
    assert isinstance(streamed, StreamedModel)
    assert streamed.units[0].sweep is model[1]
    assert model[-1].linear.weight in set(streamed.parameters())
    names = [name for layer in streamed.plan for name in layer.names]
    expected = [name for name, _ in flatten(model)]
    assert names == expected


def test_empty_batch_and_non_contiguous_inputs():
    model = randomized(mobilenetv2_rnnpool_vww())
    streamed = stream(model, (3, 64, 48))
    x = torch.randn(2, 3, 48, 64, dtype=torch.float64).transpose(2, 3)
    with torch.no_grad():
        assert streamed(torch.zeros(0, 3, 64, 48, dtype=torch.float64)).shape == (0, 2)
        for layout in (x, x.contiguous(memory_format=torch.channels_last)):
            assert relative_error(streamed(layout), model(layout)) < 1e-10


def test_errors_name_the_layer():
    model = randomized(mobilenetv2_rnnpool_vww())
    with pytest.raises(ValueError, match=r"cannot run on inputs of input_shape \(4, 64, 64\): its layer 0.0 \(Conv2d\)"):
        stream(model, (4, 64, 64))
    unfoldable = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False),
                               RNNPool2d(4, 4, 4, 4)).eval()
    with pytest.raises(ValueError, match=r"1 \(BatchNorm2d\): a batch norm without running statistics"):
        stream(unfoldable, (3, 20, 20))
    swapped = randomized(nn.Sequential(nn.Conv2d(3, 4, 3), RNNPool2d(4, 4, 4, 4)))
    swapped[1].fix_input_size((18, 18), "swap_pooling(input_shape=(3, 20, 20))")
    with pytest.raises(ValueError, match=r"swap_pooling\(input_shape=\(3, 20, 20\)\)"):
        stream(swapped, (3, 24, 24))
    assert_streams_exactly(swapped, (3, 20, 20))


def test_an_inverted_residual_of_another_shape_runs_plainly_after_the_pool():
    from rnnpool_ops.models.blocks import InvertedResidual

    odd = InvertedResidual(16, 16, 1, 2)
    odd.conv[0][0] = nn.Conv2d(16, 32, 1, groups=2, bias=False)  # a grouped expansion: not the tiled form
    model = randomized(nn.Sequential(RNNPool2d(3, 4, 4, 4, 2), odd, InvertedResidual(16, 8, 2, 3)))
    streamed = assert_streams_exactly(model, (3, 30, 26))
    assert [layer.how.split(",")[0] for layer in streamed.plan[1:]] == ["plain", "tiled"]


def test_a_batch_norm_without_statistics_after_the_pool_runs_plainly():
    # It normalises each batch by itself, so it cannot be folded into the pool's tiles.
    head = randomized(nn.Sequential(RNNPool2d(3, 4, 4, 4, 2), nn.Conv2d(16, 8, 1)))
    model = nn.Sequential(*head, nn.BatchNorm2d(8, track_running_stats=False).double(), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1)).eval()
    streamed = assert_streams_exactly(model, (3, 22, 30), batch=3)
    assert [layer.how for layer in streamed.plan[1:3]] == ["plain", "plain"]


def test_an_inverted_residual_with_another_activation_runs_as_torch_ops_in_tiles():
    model = randomized(mobilenetv2_rnnpool())
    model[2].conv[1][2] = nn.Hardswish().eval()  # not a clamp, which the fused kernel runs
    plan = assert_streams_exactly(model, (3, 224, 224), batch=1).plan
    assert "tiled" in plan[1].how and "fused" not in plan[1].how
    assert plan[2].how.endswith("in the fused kernel")
