"""MultiExitNetwork: training forward, and early-exit inference that drops exited rows (compaction)."""

import math

import pytest
import torch
from torch import nn

from rnnpool_ops.multiexit import (ConsistencyPolicy, ConsistencyRegressionPolicy, EntropyPolicy, ExitPolicy,
                                   HardBudgetPolicy, MaxSoftmaxPolicy, MultiExitNetwork, assign_exits,
                                   calibrate_budget)


class StopRows(ExitPolicy):
    """Stops the samples whose first feature equals the exit index (a label planted in the input)."""

    def decide(self, exit_index, output, state):
        return output[:, 0] == exit_index, state


class Recorder(nn.Module):
    """A stage that records the batch size of every call and passes its input through."""

    def __init__(self):
        super().__init__()
        self.batch_sizes = []
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        self.batch_sizes.append(x.shape[0])
        return x * self.scale


class FirstFeatures(nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :3]


def network(num_stages=3, exit_stages=(0, 1, 2)):
    model = MultiExitNetwork([Recorder() for _ in range(num_stages)], {i: FirstFeatures() for i in exit_stages})
    model.exit_madds((4,))  # traced once (one sample) and cached: keep it out of the records
    for stage in model.stages:
        stage.batch_sizes.clear()
    return model


def test_forward_returns_every_exit():
    model = network(4, (1, 3))
    outputs = model(torch.randn(5, 4))
    assert len(outputs) == 2 and model.num_exits == 2 and model.exit_stages == (1, 3)
    assert [stage.batch_sizes for stage in model.stages] == [[5]] * 4


def test_half_the_batch_exiting_first_halves_later_stages():
    model = network()
    x = torch.zeros(8, 4)
    x[::2, 0] = 0  # rows 0, 2, 4, 6 stop at exit 0
    x[1::2, 0] = 2  # the others run to the last exit
    x[:, 1] = torch.arange(8.0)  # a tag to check the scatter order
    result = model.infer(x, StopRows())
    assert [stage.batch_sizes for stage in model.stages] == [[8], [4], [4]]
    assert result.exit_index.tolist() == [0, 2] * 4
    assert result.outputs[:, 1].tolist() == list(range(8))
    assert model.exit_madds((4,)) == [0, 0, 0]  # no multiply-adds in these stages
    assert result.madds.tolist() == [0.0] * 8


def test_stages_after_everyone_left_do_not_run():
    model = network()
    result = model.infer(torch.zeros(6, 4), StopRows())
    assert [stage.batch_sizes for stage in model.stages] == [[6], [], []]
    assert result.exit_index.tolist() == [0] * 6


def test_stages_without_exit_run_on_the_compacted_batch():
    model = network(4, (0, 3))
    x = torch.zeros(4, 4)
    x[:3, 0] = 1  # exit 1 is the last exit: only row 3 stops at exit 0
    model.infer(x, StopRows())
    assert [stage.batch_sizes for stage in model.stages] == [[4], [3], [3], [3]]


def test_inference_matches_assign_exits_and_costs():
    torch.manual_seed(0)
    stages = [nn.Sequential(nn.Linear(6, 6), nn.Tanh()) for _ in range(3)]
    model = MultiExitNetwork(stages, {i: nn.Linear(6, 4) for i in range(3)})
    x = torch.randn(64, 6)
    outputs = model(x)
    for policy in (MaxSoftmaxPolicy(0.4), ConsistencyPolicy(1)):
        result = model.infer(x, policy)
        expected = assign_exits(policy, outputs)
        assert torch.equal(result.exit_index, expected)
        taken = torch.stack(outputs)[expected, torch.arange(64)]
        torch.testing.assert_close(result.outputs, taken)
        costs = torch.tensor(model.exit_madds((6,)), dtype=torch.float64)
        assert costs.tolist() == [36 + 24, 72 + 48, 108 + 72]
        assert torch.equal(result.madds, costs[expected])


@pytest.mark.parametrize("stages, heads, match", [
    ([], {0: nn.Identity()}, "stages must hold at least one module"),
    ([nn.Identity()], {}, "heads must be a non-empty dict"),
    ([nn.Identity()], [nn.Identity()], "heads must be a non-empty dict"),
    ([nn.Identity()] * 2, {0: nn.Identity()}, "heads must include the last stage"),
    ([nn.Identity()] * 2, {1: nn.Identity(), 2: nn.Identity()}, r"heads keys must be stage indices in \[0, 2\)"),
])
def test_bad_construction_is_rejected(stages, heads, match):
    with pytest.raises(ValueError, match=match):
        MultiExitNetwork(stages, heads)


def test_infer_keeps_each_modules_mode():
    """exit_madds traces the network in eval mode: a BatchNorm frozen in a training model stays frozen."""
    bn = nn.BatchNorm1d(4).eval()
    model = MultiExitNetwork([nn.Sequential(nn.Linear(4, 4), bn), nn.Linear(4, 4)],
                             {0: nn.Linear(4, 3), 1: nn.Linear(4, 3)}).train()
    bn.eval()
    model.infer(torch.randn(5, 4), MaxSoftmaxPolicy(0.5))
    assert not bn.training and model.training and model.stages[1].training


class IntegerMask(ExitPolicy):
    """Returns the stop decisions as 0/1 integers, which would index rows rather than select them."""

    def decide(self, exit_index, output, state):
        return (output[:, 0] > 0).long(), state


class ShortMask(ExitPolicy):
    def decide(self, exit_index, output, state):
        return torch.ones(output.shape[0] + 1, dtype=torch.bool), state


def linear_network(widths=(3, 3, 3)):
    return MultiExitNetwork([nn.Linear(4, 4) for _ in widths], {i: nn.Linear(4, w) for i, w in enumerate(widths)})


@pytest.mark.parametrize("policy, error, match", [
    (IntegerMask(), TypeError, r"IntegerMask.decide at exit 0 must return stop as a torch.bool tensor \[B\].*"
                               "got torch.int64"),
    (ShortMask(), ValueError, r"ShortMask.decide at exit 0 returned stop of shape \[6\].*5 rows"),
])
def test_policy_masks_are_checked(policy, error, match):
    model, x = linear_network(), torch.randn(5, 4)
    with pytest.raises(error, match=match):
        model.infer(x, policy)
    with pytest.raises(error, match=match):
        assign_exits(policy, model(x))
    with pytest.raises(error, match=match):  # an inner policy too
        model.infer(x, HardBudgetPolicy(model.exit_madds((4,)), 1e9, policy))


def test_head_of_another_width_is_refused_naming_the_exit():
    model = linear_network((3, 3, 1))
    with pytest.raises(ValueError, match=r"exit 2's output is \[B, 1\] torch.float32, but exit 0's is \[B, 3\]"):
        model.infer(torch.randn(5, 4), MaxSoftmaxPolicy(math.inf))
    with pytest.raises(ValueError, match="exit 2's output"):
        assign_exits(MaxSoftmaxPolicy(0.5), model(torch.randn(5, 4)))


@pytest.mark.parametrize("policy", [MaxSoftmaxPolicy(0.5), EntropyPolicy(0.5), ConsistencyPolicy(1),
                                    ConsistencyRegressionPolicy(1, 0.1), HardBudgetPolicy([1, 2, 3], 2)],
                         ids=lambda p: type(p).__name__)
def test_every_policy_takes_an_empty_batch(policy):
    model, x = linear_network(), torch.zeros(0, 4)
    result = model.infer(x, policy)
    assert result.outputs.shape == (0, 3) and result.exit_index.shape == (0,) and result.madds.shape == (0,)
    assert assign_exits(policy, model(x)).shape == (0,)


def test_calibrated_entropy_never_threshold_is_valid():
    outputs = [torch.randn(10, 3)] * 2
    policy = calibrate_budget(outputs, [1.0, 2.0], 2.0, score="entropy")
    assert policy.threshold == (0.0,) and assign_exits(policy, outputs).eq(1).all()


class ListState(ExitPolicy):
    """Keeps a Python list as state: inference could not drop stopped rows from it."""

    def decide(self, exit_index, output, state):
        return output[:, 0] > 0, ([1.0] * output.shape[0],)


def test_policy_state_and_type_are_checked():
    model, x = linear_network(), torch.randn(5, 4)
    with pytest.raises(ValueError, match="ListState.decide at exit 0 must return its state as a tuple of batch-first "
                                         "tensors with 5 rows"):
        model.infer(x, ListState())
    with pytest.raises(TypeError, match="policy must be an ExitPolicy .*got float"):
        model.infer(x, 0.5)
    with pytest.raises(TypeError, match="policy must be an ExitPolicy"):
        assign_exits("max_softmax", model(x))
