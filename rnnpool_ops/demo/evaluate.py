"""Early-exit evaluation under each policy: accuracy, exit histogram, average MAdds, benefit curves."""

from dataclasses import dataclass
from pathlib import Path

import torch

from ..multiexit import (ConsistencyPolicy, EntropyPolicy, MaxSoftmaxPolicy, benefit_curve, exit_histogram,
                         per_exit_accuracy, plot_benefit_curve)


@dataclass(frozen=True)
class PolicyChoice:
    make: type
    setting: float  # the operating point reported in the table
    describe: str  # how the setting reads, formatted with it
    sweep: tuple  # the benefit curve's values


POLICIES = {
    "confidence": PolicyChoice(MaxSoftmaxPolicy, 0.9, "max softmax >= {}",
                               tuple(round(0.3 + 0.02 * i, 2) for i in range(36)) + (0.999,)),
    "entropy": PolicyChoice(EntropyPolicy, 0.3, "entropy < {} nats", tuple(round(0.05 * i, 2) for i in range(45))),
    "cbee": PolicyChoice(ConsistencyPolicy, 2, "k = {} unchanged exits", (1, 2, 3, 4)),
}


def _millions(madds):
    return f"{madds / 1e6:.3f}M"


def evaluate(model, split, policy_names, out_dir):
    """Print per-exit accuracies and one row per policy; write a benefit-curve PNG per policy."""
    images, labels = split.images, split.labels
    device = next(model.parameters()).device
    images, labels = images.to(device), labels.to(device)
    exit_madds = model.exit_madds(images.shape[1:])
    with torch.no_grad():
        exit_outputs = model(images)
    standalone = per_exit_accuracy(exit_outputs, labels)
    print(f"\nTest set: {len(labels)} images")
    print("exit                      " + "".join(f"{j:>10}" for j in range(model.num_exits)))
    print("cumulative MAdds          " + "".join(f"{_millions(m):>10}" for m in exit_madds))
    print("standalone accuracy       " + "".join(f"{100 * a:>9.1f}%" for a in standalone))

    print(f"\n{'policy':<11} {'setting':<24} {'accuracy':>8} {'avg MAdds':>10} {'of full':>8}  exit histogram")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for name in policy_names:
        choice = POLICIES[name]
        with torch.no_grad():
            result = model.infer(images, choice.make(choice.setting))
        correct = (result.outputs.argmax(dim=-1) == labels).float().mean().item()
        average = result.madds.mean().item()
        histogram = exit_histogram(result.exit_index.cpu(), model.num_exits).tolist()
        print(f"{name:<11} {choice.describe.format(choice.setting):<24} {100 * correct:>7.1f}% "
              f"{_millions(average):>10} {100 * average / exit_madds[-1]:>7.0f}%  {histogram}")
        curve = benefit_curve([o.cpu() for o in exit_outputs], labels.cpu(), exit_madds, choice.make, choice.sweep)
        path = Path(out_dir) / f"benefit_curve_{name}.png"
        plot_benefit_curve(curve, path, label=name, baseline=(exit_madds[-1], standalone[-1]))
        print(f"{'':<11} benefit curve -> {path}")
