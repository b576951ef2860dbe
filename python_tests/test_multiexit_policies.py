"""Exit policies on hand-made logit sequences: thresholds, CBEE (ties, k beyond the exits), budgets."""

import math

import pytest
import torch

from rnnpool_ops.multiexit import (ConsistencyPolicy, ConsistencyRegressionPolicy, EntropyPolicy,
                                   HardBudgetPolicy, MaxSoftmaxPolicy, assign_exits, calibrate_budget)


def logits_for(classes, confident=True, num_classes=3):
    """One logit row per sample: a large margin on `classes[i]` (or a small one when not confident)."""
    out = torch.zeros(len(classes), num_classes)
    out[torch.arange(len(classes)), torch.tensor(classes)] = 5.0 if confident else 0.1
    return out


def test_max_softmax_threshold_is_inclusive_and_per_exit():
    a = torch.tensor([[math.log(3.0), 0.0, 0.0], [0.0, 0.0, 0.0]])  # softmax max 0.6 and 1/3
    policy = MaxSoftmaxPolicy(0.6)
    stop, _ = policy.decide(0, a, ())
    assert stop.tolist() == [True, False]  # T-RECX eq. 1: >= rho
    policy = MaxSoftmaxPolicy([0.9, 0.3])
    assert policy.decide(0, a, ())[0].tolist() == [False, False]
    assert policy.decide(1, a, ())[0].tolist() == [True, True]
    with pytest.raises(ValueError, match="no value for exit 2"):
        policy.decide(2, a, ())


def test_entropy_threshold():
    uniform, peaked = torch.zeros(1, 4), torch.tensor([[20.0, 0, 0, 0]])
    policy = EntropyPolicy(math.log(4))  # strictly below: the uniform row (entropy log 4) stays
    stop, _ = policy.decide(0, torch.cat([uniform, peaked]), ())
    assert stop.tolist() == [False, True]
    assert EntropyPolicy.score(uniform).item() == pytest.approx(math.log(4))


def test_cbee_counts_consecutive_agreements():
    # Sample 0 predicts 1,1,1,1 (stops at exit 2 with k=2); sample 1: 0,1,1,2 (never twice unchanged
    # after a change... N: 0,0,1,0); sample 2: 2,2,0,0 (N: 0,1,0,1).
    sequence = [logits_for([1, 0, 2]), logits_for([1, 1, 2]), logits_for([1, 1, 0]), logits_for([1, 2, 0])]
    assert assign_exits(ConsistencyPolicy(2), sequence).tolist() == [2, 3, 3]
    assert assign_exits(ConsistencyPolicy(1), sequence).tolist() == [1, 2, 1]


def test_cbee_ties_go_to_the_lowest_class():
    tie = torch.tensor([[1.0, 1.0, 0.0]])  # argmax 0 (first maximum)
    assert assign_exits(ConsistencyPolicy(1), [tie, logits_for([0]), logits_for([1])]).tolist() == [1]
    assert assign_exits(ConsistencyPolicy(1), [tie, logits_for([1]), logits_for([1])]).tolist() == [2]


def test_cbee_with_k_beyond_the_exits_never_stops_early():
    same = [logits_for([0, 1])] * 3
    assert assign_exits(ConsistencyPolicy(3), same).tolist() == [2, 2]
    assert assign_exits(ConsistencyPolicy(10), same).tolist() == [2, 2]
    assert assign_exits(ConsistencyPolicy(2), same).tolist() == [2, 2]  # N reaches 2 only at the last exit


def test_cbee_regression_uses_eta():
    g = [torch.tensor([[1.0], [1.0]]), torch.tensor([[1.05], [2.0]]), torch.tensor([[1.08], [2.01]]),
         torch.tensor([[0.0], [0.0]])]
    assert assign_exits(ConsistencyRegressionPolicy(1, eta=0.1), g).tolist() == [1, 2]
    assert assign_exits(ConsistencyRegressionPolicy(2, eta=0.1), g).tolist() == [2, 3]
    assert assign_exits(ConsistencyRegressionPolicy(1, eta=0.005), g).tolist() == [3, 3]


NAN, INF = float("nan"), float("inf")
OUTPUTS = [torch.zeros(1, 2)] * 2


@pytest.mark.parametrize("make, error, match", [
    (lambda: ConsistencyPolicy(0), ValueError, "k must be an int >= 1"),
    (lambda: ConsistencyPolicy(1.5), TypeError, "k must be an int, got float"),
    (lambda: ConsistencyPolicy(True), TypeError, "k must be an int, got bool"),
    (lambda: ConsistencyRegressionPolicy(1, eta=0), ValueError, r"eta must be a finite number in \(0.0, inf\]"),
    (lambda: ConsistencyRegressionPolicy(1, eta=NAN), ValueError, "eta must be a finite number"),
    (lambda: MaxSoftmaxPolicy([]), ValueError, "threshold must be"),
    (lambda: MaxSoftmaxPolicy(NAN), ValueError, r"threshold must be a finite number in \[0.0, 1.0\] or inf, got nan"),
    (lambda: MaxSoftmaxPolicy(1.5), ValueError, r"threshold must be a finite number in \[0.0, 1.0\]"),
    (lambda: MaxSoftmaxPolicy([0.5, -INF]), ValueError, r"threshold\[1\] must be a finite number"),
    (lambda: MaxSoftmaxPolicy("0.9"), TypeError, "threshold must be a number or a sequence of per-exit numbers, "
                                                  "got str '0.9'"),
    (lambda: MaxSoftmaxPolicy(["0.9"]), TypeError, r"threshold\[0\] must be a real number, got str"),
    (lambda: EntropyPolicy(-0.1), ValueError, "threshold must be a finite number in"),
    (lambda: EntropyPolicy(None), TypeError, "threshold must be a number or a sequence"),
    (lambda: HardBudgetPolicy([10, 20], budget=5), ValueError, "budget 5.0 is below the first exit's cost"),
    (lambda: HardBudgetPolicy([10, 20], budget=NAN), ValueError, "budget must be a finite number"),
    (lambda: HardBudgetPolicy([10, NAN], budget=15), ValueError, r"exit_madds\[1\] must be a finite number"),
    (lambda: HardBudgetPolicy([20, 10], budget=15), ValueError, "exit_madds must be cumulative"),
    (lambda: HardBudgetPolicy([], budget=15), ValueError, "exit_madds has 0 costs"),
    (lambda: HardBudgetPolicy([10, 20], 15, policy="max"), TypeError, "policy must be an ExitPolicy"),
    (lambda: calibrate_budget(OUTPUTS, [1, 2], 1.5, score="margin"), ValueError, "score must be one of"),
    (lambda: calibrate_budget(OUTPUTS, [1, 2, 3], 1.5), ValueError, "exit_madds has 3 costs for 2 exits"),
    (lambda: calibrate_budget(OUTPUTS, [1, 2], NAN), ValueError, r"budget must be a finite number in \[0.0, inf\], got nan"),
    (lambda: calibrate_budget(OUTPUTS, [1, 2], "2"), TypeError, "budget must be a real number"),
    (lambda: calibrate_budget([torch.zeros(1, 2), torch.zeros(1, 3)], [1, 2], 1.5), ValueError,
     r"exit 1's output is \[B, 3\] torch.float32, but exit 0's is \[B, 2\]"),
    (lambda: calibrate_budget([], [], 1.5), TypeError, "exit_outputs must be a non-empty list"),
])
def test_bad_arguments_name_the_argument(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_hard_budget_stops_at_the_last_affordable_exit():
    outputs = [logits_for([0, 1], confident=False)] * 4
    assert assign_exits(HardBudgetPolicy([10, 20, 30, 40], 25), outputs).tolist() == [1, 1]
    assert assign_exits(HardBudgetPolicy([10, 20, 30, 40], 100), outputs).tolist() == [3, 3]
    # With an inner policy, confident samples may stop before the budget's exit.
    mixed = [torch.cat([logits_for([0]), logits_for([1], confident=False)])] * 4
    policy = HardBudgetPolicy([10, 20, 30, 40], 35, MaxSoftmaxPolicy(0.9))
    assert assign_exits(policy, mixed).tolist() == [0, 2]


def test_calibrated_budget_meets_the_expected_cost():
    gen = torch.Generator().manual_seed(0)
    outputs = [torch.randn(1000, 10, generator=gen) * (j + 1) for j in range(4)]
    costs = [1.0, 2.0, 3.0, 4.0]
    for score in ("max_softmax", "entropy"):
        for budget in (1.5, 2.5, 3.2):
            policy = calibrate_budget(outputs, costs, budget, score=score)
            realised = torch.tensor(costs)[assign_exits(policy, outputs)].mean().item()
            assert budget - 0.05 <= realised <= budget + 0.01, (score, budget, realised)
    never = calibrate_budget(outputs, costs, 4.0)
    assert assign_exits(never, outputs).eq(3).all()
