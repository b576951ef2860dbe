"""Evaluation helpers and the benefit curve (data and PNG) on a tiny multi-exit model."""

import pytest
import torch
from torch import nn

from rnnpool_ops.multiexit import (ConsistencyPolicy, MaxSoftmaxPolicy, MultiExitNetwork, average_cost,
                                   benefit_curve, cumulative_accuracy, exit_histogram, per_exit_accuracy,
                                   plot_benefit_curve)

TARGET = torch.tensor([0, 1, 1, 0])


def one_hot_logits(predictions):
    return 4.0 * nn.functional.one_hot(torch.tensor(predictions), 2).float()


def test_accuracies_histogram_and_cost():
    outputs = [one_hot_logits([0, 0, 0, 1]), one_hot_logits([1, 1, 0, 1]), one_hot_logits([0, 1, 1, 1])]
    assert per_exit_accuracy(outputs, TARGET) == [0.25, 0.25, 0.75]
    assert cumulative_accuracy(outputs, TARGET) == [0.25, 0.5, 0.75]
    assert exit_histogram(torch.tensor([0, 2, 2, 1]), 4).tolist() == [1, 1, 2, 0]
    assert average_cost(torch.tensor([0, 2, 2, 1]), [10, 20, 30]) == pytest.approx(22.5)


def test_benefit_curve_on_a_tiny_model(tmp_path):
    torch.manual_seed(0)
    model = MultiExitNetwork([nn.Sequential(nn.Linear(4, 8), nn.ReLU()), nn.Sequential(nn.Linear(8, 8), nn.ReLU())],
                             {0: nn.Linear(8, 2), 1: nn.Linear(8, 2)})
    x, target = torch.randn(50, 4), torch.randint(0, 2, (50,))
    with torch.no_grad():
        outputs = model(x)
    costs = model.exit_madds((4,))
    assert costs == [32 + 16, 32 + 16 + 64 + 16]
    values = [i / 10 for i in range(11)]
    curve = benefit_curve(outputs, target, costs, MaxSoftmaxPolicy, values)
    assert curve.values == values and len(curve.accuracy) == len(curve.average_madds) == 11
    assert curve.exit_rates[0] == [1.0, 0.0]  # rho = 0: everyone leaves early
    assert curve.average_madds[0] == costs[0] and curve.average_madds[-1] <= costs[1]
    assert curve.accuracy[0] == pytest.approx(per_exit_accuracy(outputs, target)[0])
    assert all(a <= b for a, b in zip(curve.average_madds, curve.average_madds[1:]))  # higher rho, later exits
    result = model.infer(x, MaxSoftmaxPolicy(values[6]))  # the network run agrees with the sweep's point
    assert result.madds.mean().item() == pytest.approx(curve.average_madds[6])
    path = plot_benefit_curve(curve, tmp_path / "benefit.png", label="max softmax", baseline=(costs[1], 0.5))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
    k_curve = benefit_curve(outputs, target, costs, ConsistencyPolicy, [1, 2])
    assert k_curve.exit_rates[1] == [0.0, 1.0]  # k = 2 > exits - 1: nobody leaves early


def test_benefit_curve_checks_outputs_and_costs():
    outputs = [one_hot_logits([0, 0, 0, 1])] * 2
    with pytest.raises(ValueError, match="exit_madds has 3 costs for 2 exits"):
        benefit_curve(outputs, TARGET, [1, 2, 3], MaxSoftmaxPolicy, [0.5])
    with pytest.raises(ValueError, match=r"exit 1's output has shape \[3, 2\], expected 4 rows"):
        benefit_curve([outputs[0], outputs[0][:3]], TARGET, [1, 2], MaxSoftmaxPolicy, [0.5])
    with pytest.raises(TypeError, match="num_exits must be an int"):
        exit_histogram(torch.tensor([0, 1]), 2.0)


def test_exit_indices_are_checked():
    with pytest.raises(ValueError, match=r"exit_index must lie in \[0, 2\), got values from -1 to 1"):
        average_cost(torch.tensor([-1, 1]), [1.0, 2.0])
    with pytest.raises(ValueError, match=r"exit_index must lie in \[0, 2\)"):
        exit_histogram(torch.tensor([0, 2]), 2)
    with pytest.raises(TypeError, match="exit_index must hold integer exit numbers"):
        average_cost(torch.tensor([0.0, 1.0]), [1.0, 2.0])
    assert average_cost(torch.tensor([0, 1]), [1.0, 3.0]) == 2.0
