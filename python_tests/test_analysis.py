"""Cost analysis on hand-computed cases: parameters, MAdds (conv, linear, RNNPool, ReX, LSTM), peak RAM."""

from torch import nn

from rnnpool_ops import ReX2d, RNNPool2d
from rnnpool_ops.analysis import (count_parameters, exit_multiply_adds, layer_costs, multiply_adds,
                                  patch_sweep_madds, peak_ram_bytes)
from rnnpool_ops.models.blocks import InvertedResidual, ResidualBlock
from rnnpool_ops.multiexit import MultiExitNetwork


def test_parameters_with_and_without_bn_statistics():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    assert count_parameters(model) == 3 * 4 * 9 + 4 + 2 * 4
    assert count_parameters(model, batch_norm_statistics=True) == 3 * 4 * 9 + 4 + 4 * 4


def test_conv_linear_and_lstm_madds():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Conv2d(8, 8, 3, padding=1, groups=8),
                          nn.Flatten(), nn.Linear(8 * 4 * 4, 5))
    assert multiply_adds(model, (3, 8, 8)) == 8 * 16 * 27 + 8 * 16 * 9 + 128 * 5
    assert [c.name for c in layer_costs(model, (3, 8, 8))] == ["0", "1", "3"]

    class Gate(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(6, 10)

        def forward(self, x):
            return self.lstm(x.unsqueeze(0))[0]

    assert multiply_adds(Gate(), (6,)) == 4 * 10 * (6 + 10)


def test_patch_sweep_madds_follow_algorithm_1():
    pool = RNNPool2d(4, 3, 2, kernel_size=(3, 2))
    # per patch: RNN1 over 3 rows of 2 and 2 columns of 3 (12 steps of h1(C + h1)), RNN2 4 passes over
    # 3 + 3 + 2 + 2 = 10 summaries (10 steps of h2(h1 + h2)).
    per_patch = 12 * 3 * (4 + 3) + 10 * 2 * (3 + 2)
    assert patch_sweep_madds(pool, 5, 6) == 30 * per_patch
    assert multiply_adds(pool, (4, 15, 12)) == 30 * per_patch
    rex = ReX2d(4, 3, 2, kernel_size=(3, 2))
    per_patch = 3 * 12 * 3 * (4 + 3) + 3 * 10 * 2 * (3 + 2) + (3 + 2) * 3 * 4 * 2  # GRU gates x3; f_L
    assert patch_sweep_madds(rex, 1, 1) == per_patch
    assert patch_sweep_madds(ReX2d(4, 3, 2, kernel_size=(3, 2), parts="G"), 1, 1) == 3 * 12 * 3 * 7 + 5 * 3 * 8


def test_peak_ram_rules():
    # An inverted residual holds input + output; a residual block the larger; a 1x1 conv its input.
    block = nn.Sequential(InvertedResidual(8, 4, 1, 6), ResidualBlock(4, 16, 2), nn.Conv2d(16, 64, 1))
    assert peak_ram_bytes(block, (8, 10, 10), bytes_per_element=1) == 800 + 400
    assert peak_ram_bytes(nn.Sequential(ResidualBlock(4, 16, 2)), (4, 10, 10), 1) == max(400, 16 * 25)
    # Everything before RNNPool runs patch by patch: the big stem output (16x32x32) is never held.
    streamed = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), RNNPool2d(16, 4, 4, 4), nn.Conv2d(16, 4, 3))
    assert peak_ram_bytes(streamed, (3, 32, 32), 1) == 16 * 64 + 4 * 36
    assert peak_ram_bytes(nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.AdaptiveAvgPool2d(1)), (3, 32, 32), 1) == (
        3 + 16) * 1024


def test_exit_madds_are_cumulative():
    model = MultiExitNetwork([nn.Linear(4, 4), nn.Linear(4, 2), nn.Linear(2, 2)],
                             {0: nn.Linear(4, 3), 2: nn.Linear(2, 3)})
    assert exit_multiply_adds(model, (4,)) == [16 + 12, 16 + 8 + 4 + 12 + 6]
    assert model.training and model.exit_madds((4,)) == [28, 46]  # the trace restores the mode
