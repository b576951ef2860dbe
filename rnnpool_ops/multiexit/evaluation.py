"""Evaluation of multi-exit networks: accuracies, exit histogram, average cost and the benefit curve.

The benefit curve (T-RECX sec. 6.1, Fig. 4) is accuracy against average cost over a sweep of a
policy's threshold (T-RECX: rho from 0 to 1 in steps of 0.01; ReX Fig. 4: the count k).
"""

from dataclasses import dataclass

import torch

from .._validate import integer
from ._checks import check_exit_costs, check_exit_index, check_exit_outputs
from .policies import assign_exits


def accuracy(outputs, target):
    """Top-1 accuracy of outputs [N, classes] against target [N]."""
    return (outputs.argmax(dim=-1) == target).float().mean().item()


def per_exit_accuracy(exit_outputs, target):
    """Each exit's standalone accuracy (every sample forced out there; T-RECX's Acc_standalone)."""
    return [accuracy(output, target) for output in exit_outputs]


def cumulative_accuracy(exit_outputs, target):
    """Entry j: share of samples some exit 0..j classifies correctly (the last entry is ReX's
    "cumulative Top-1 accuracy on all classifiers")."""
    correct = torch.zeros_like(target, dtype=torch.bool)
    result = []
    for output in exit_outputs:
        correct |= output.argmax(dim=-1) == target
        result.append(correct.float().mean().item())
    return result


def exit_histogram(exit_index, num_exits):
    """How many samples took each exit."""
    exit_index = check_exit_index(exit_index, integer("num_exits", num_exits, 1))
    return torch.bincount(exit_index.flatten(), minlength=num_exits)


def average_cost(exit_index, exit_madds):
    """Mean cumulative MAdds of the exits taken (ReX's average FLOPs over the test set)."""
    costs = check_exit_costs(exit_madds)
    exit_index = check_exit_index(exit_index, len(costs))
    return torch.as_tensor(costs, dtype=torch.float64, device=exit_index.device)[exit_index].mean().item()


@dataclass
class BenefitCurve:
    """values[i]: the policy parameter; accuracy[i], average_madds[i], exit_rates[i] (share per exit)."""

    values: list
    accuracy: list
    average_madds: list
    exit_rates: list


def benefit_curve(exit_outputs, target, exit_madds, make_policy, values):
    """Sweep `make_policy(value)` over values on all-exit outputs (forward() of held-out data)."""
    check_exit_outputs(exit_outputs)
    check_exit_costs(exit_madds, len(exit_outputs))
    outputs = torch.stack(list(exit_outputs))  # [exits, N, classes]
    n = target.shape[0]
    curve = BenefitCurve([], [], [], [])
    for value in values:
        exit_index = assign_exits(make_policy(value), exit_outputs)
        taken = outputs[exit_index, torch.arange(n, device=target.device)]
        curve.values.append(value)
        curve.accuracy.append(accuracy(taken, target))
        curve.average_madds.append(average_cost(exit_index, exit_madds))
        curve.exit_rates.append((exit_histogram(exit_index, len(exit_outputs)).double() / n).tolist())
    return curve


def plot_benefit_curve(curve, path, label="policy", baseline=None):
    """Write accuracy vs average MAdds to a PNG at `path`; baseline: optional (madds, accuracy) marked x."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on CI machines
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 3.5))
    axes.plot([m / 1e6 for m in curve.average_madds], [100 * a for a in curve.accuracy], marker=".", label=label)
    if baseline is not None:
        axes.plot(baseline[0] / 1e6, 100 * baseline[1], "kx", markersize=9, label="baseline")
    axes.set_xlabel("average MAdds (millions)")
    axes.set_ylabel("accuracy (%)")
    axes.set_title("Benefit curve")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
