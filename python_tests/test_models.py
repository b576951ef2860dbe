"""Builders against the papers' tables (parameters, MAdds, peak RAM), and their forward shapes.

Paper values are checked within 3% where our count reproduces the paper's convention. Where it does
not, the test pins our own count and the comment says what the paper's figure cannot be (docs/multiexit.md
has the table).
"""

import pytest
import torch
from torch import nn

from rnnpool_ops import GatedSkipConv2d, ReX2d, RNNPool2d
from rnnpool_ops.analysis import count_parameters, layer_costs, multiply_adds, peak_ram_bytes
from rnnpool_ops.models import (ddi_resnet, dscnn_trecx, gate_masks, mobilenetv1_trecx, mobilenetv2,
                                mobilenetv2_rnnpool, mobilenetv2_rnnpool_vww, mobilenetv2_vww, resnet8_trecx,
                                rex_mobilenetv2)
from rnnpool_ops.models.blocks import Classifier
from rnnpool_ops.models.ddi import GatedBlock, branch_positions
from rnnpool_ops.multiexit import (MaxSoftmaxPolicy, MultiExitNetwork, SDNHead, TRecXExitHead, assign_exits,
                                   ddi_adaptive_loss, ddi_resource_loss)

IMAGE = (3, 224, 224)


def close(ours, paper, tolerance=0.03):
    return abs(ours - paper) <= tolerance * paper


@pytest.fixture(scope="module")
def imagenet10():
    return {"base": mobilenetv2(), "rnnpool": mobilenetv2_rnnpool()}


def test_mobilenetv2_imagenet10_matches_rnnpool_table_1(imagenet10):
    base = imagenet10["base"]
    assert close(count_parameters(base), 2.20e6)  # 2,236,682 (+1.7%)
    assert close(multiply_adds(base, IMAGE), 0.30e9)  # 299.5M
    assert peak_ram_bytes(base, IMAGE) == 2_408_448  # 2.29 MB: 112x112x(32+16) floats


def test_mobilenetv2_rnnpool_imagenet10_table_1(imagenet10):
    model = imagenet10["rnnpool"]
    assert isinstance(model[1], RNNPool2d) and model[1].out_channels == 64  # Table 10, h1 = h2 = 16
    assert (model[1].hidden1, model[1].hidden2, model[1].kernel_size, model[1].stride) == (16, 16, (6, 6), (4, 4))
    assert peak_ram_bytes(model, IMAGE) == 250_880  # 0.24 MB: 28x28x64 in + 14x14x64 out (appendix E.2.2)
    # Not within 3% of Table 1 (2.00M, 0.23G): Table 10's layout keeps every layer from the c=64 row on,
    # so it cannot drop 0.2M parameters below the base (2.24M); the layers outside RNNPool alone cost
    # 214.3M MAdds, and RNNPool itself, counted as Algorithm 1 runs it, 53.0M.
    assert count_parameters(model) == 2_216_686
    madds = multiply_adds(model, IMAGE)
    assert madds == 267_268_992 and madds - 52_985_856 == 214_283_136


def test_vww_pair_table_2():
    base, pooled = mobilenetv2_vww(), mobilenetv2_rnnpool_vww()
    assert base[0][0].out_channels == 8 and base[-1].linear.in_features == 320  # EdgeML's VWW model
    assert isinstance(pooled[1], RNNPool2d) and pooled[1].hidden1 == pooled[1].hidden2 == 8  # Table 9
    # Table 2 counts 296K / 255K parameters, 53.2M / 37.7M MAdds. The base is within 3% once BN's
    # running statistics are counted (Keras' convention); its MAdds and the RNNPool model's parameters
    # are not reproducible from the stated layout (8-channel stem, 320 last channels): pinned here.
    assert close(count_parameters(base, batch_norm_statistics=True), 296e3)
    assert multiply_adds(base, IMAGE) == 48_322_480
    assert count_parameters(pooled) == 281_902 and multiply_adds(pooled, IMAGE) == 41_028_144


def test_rex_mobilenetv2_six_exits_table_1():
    model = rex_mobilenetv2()
    assert isinstance(model, MultiExitNetwork) and model.num_exits == 6
    rex = model.stages[0][1]
    assert isinstance(rex, ReX2d) and (rex.hidden1, rex.hidden2, rex.kernel_size, rex.stride) == (16, 8, (6, 6), (4, 4))
    assert rex.out_channels == 64
    assert all(isinstance(head, SDNHead) for head in model.heads[:-1])
    backbone = nn.Sequential(*model.stages, model.heads[-1])
    assert peak_ram_bytes(model, IMAGE) == 250_880  # ReX Table 2: 245 KB
    # ReX Table 2 (3.1M, 0.24G) counts neither the internal classifiers (SDN's add ~11M at 1000
    # classes) nor, it seems, what Table 1 lists: pinned, as for RNNPool.
    assert count_parameters(backbone) == 3_492_728
    costs = model.exit_madds(IMAGE)
    assert len(costs) == 6 and costs == sorted(costs)
    assert multiply_adds(backbone, IMAGE) == 361_261_440


def test_rex_mobilenetv2_forward_and_rex_heads():
    model = rex_mobilenetv2(num_classes=7, head="rex", input_size=64)
    outputs = model(torch.randn(2, 3, 64, 64))
    assert [o.shape for o in outputs] == [(2, 7)] * 6
    with pytest.raises(ValueError, match="head must be one of"):
        rex_mobilenetv2(head="msdnet")
    with pytest.raises(ValueError, match="num_classes must be an int >= 1"):
        mobilenetv2(num_classes=0)


@pytest.mark.parametrize("build, shape, final_channels, classes, params, flops, trecx_params", [
    # T-RECX Table 1 (Keras counts: BN moving statistics included; FLOPs = 2 x MAdds).
    (resnet8_trecx, (3, 32, 32), 64, 10, 78.7e3, 25.28e6, 89.7e3),
    (dscnn_trecx, (1, 49, 10), 64, 12, 24.9e3, 5.54e6, 28.2e3),
    (mobilenetv1_trecx, (3, 96, 96), 256, 2, 221.7e3, 15.69e6, 226.2e3),
])
def test_trecx_models_table_1(build, shape, final_channels, classes, params, flops, trecx_params):
    model = build()
    assert isinstance(model.heads[0], TRecXExitHead) and model.num_exits == 2
    baseline = nn.Sequential(*model.stages, Classifier(final_channels, classes))
    assert close(count_parameters(baseline, batch_norm_statistics=True), params)
    assert close(count_parameters(model, batch_norm_statistics=True), trecx_params)
    # T-RECX's FLOPs come from TensorFlow's profiler, which also counts batch norm and bias additions:
    # ResNet-8 is within 3%, the depthwise models (more, cheaper layers) 4-5% above our 2 x MAdds.
    ours = 2 * multiply_adds(baseline, shape)
    assert ours <= flops and close(ours, flops, 0.05)
    outputs = model(torch.randn(2, *shape))
    assert [o.shape for o in outputs] == [(2, classes)] * 2


def test_ddi_resnet38_structure_and_table_2_cost():
    model = ddi_resnet(38)
    assert model.num_exits == 7 and branch_positions(6) == (2, 5) and branch_positions(8) == (2, 6)  # Fig. 4
    gated = [m for m in model.modules() if isinstance(m, GatedBlock)]
    assert len(gated) == 6 + 5 + 5  # stages 2 and 3 start with an ungated, downsampling block
    assert all(isinstance(conv, GatedSkipConv2d) for block in gated for conv in block.convs)
    assert len({id(block.layer_gate.lstm) for block in gated}) == 1  # one LSTM for all layer gates
    # DDI Table 2's budgets are its base ResNets' FLOPs (2 x MAdds): ResNet-38 170M, ResNet-26 110M.
    # (ResNet-20's 84M and ResNet-14's 59M are 3% and 10% above the same count: rounded budgets.)
    for depth, flops in ((38, 170e6), (26, 110e6)):
        costs = layer_costs(ddi_resnet(depth), (3, 32, 32))
        backbone = sum(c.madds for c in costs if "gate" not in c.name and c.scope.startswith("stages"))
        assert close(2 * backbone, flops)
    with pytest.raises(ValueError, match="depth must be 6n\\+2"):
        ddi_resnet(40)


def test_ddi_gates_train_and_skip():
    torch.manual_seed(0)
    model = ddi_resnet(14, num_classes=4)
    x, y = torch.randn(6, 3, 32, 32), torch.randint(0, 4, (6,))
    outputs = model(x)
    masks = gate_masks(model)
    assert len(masks) == 2 * 4 and masks[0].shape == (6, 16)
    loss = ddi_adaptive_loss(outputs, y) + ddi_resource_loss(masks, [1.0] * len(masks), alpha=0.1)
    loss.backward()
    lstm = next(m for m in model.modules() if isinstance(m, GatedBlock)).layer_gate.lstm
    assert lstm.weight_ih.grad is not None and lstm.weight_ih.grad.abs().sum() > 0  # straight-through
    block = next(m for m in model.modules() if isinstance(m, GatedBlock))
    with torch.no_grad():
        block.layer_gate.head.bias.fill_(-1e4)  # layer gate shut: the block is the identity
        features = torch.randn(3, 16, 8, 8)
        state = (features, torch.zeros(3, 10), torch.zeros(3, 10))
        assert torch.equal(block(state)[0], features)


def test_ddi_early_exit_compacts_the_gate_state():
    torch.manual_seed(0)
    model = ddi_resnet(14, num_classes=4).eval()
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        outputs = model(x)
        policy = MaxSoftmaxPolicy(float(torch.softmax(outputs[0], -1).amax(-1).median()))
        result = model.infer(x, policy)
    expected = assign_exits(policy, outputs)
    assert torch.equal(result.exit_index, expected) and (expected == 0).any() and (expected > 0).any()
    torch.testing.assert_close(result.outputs, torch.stack(outputs)[expected, torch.arange(8)])
