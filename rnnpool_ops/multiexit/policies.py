"""Exit policies, vectorised over the batch.

A policy sees one exit's outputs for every sample still running and returns which of them stop there:
`decide(exit_index, output, state) -> (stop [B] bool, state)`. Its state is a tuple of batch-first
tensors, so early-exit inference can drop stopped rows from it along with the batch. The last exit
always takes the samples that reach it; policies are never asked there.

- MaxSoftmaxPolicy: stop when the top softmax score >= threshold (SDN; T-RECX eq. 1).
- EntropyPolicy: stop when the softmax entropy < threshold (BranchyNet; DDI sec. 3.2).
- ConsistencyPolicy: ReX's CBEE (eq. 10): stop when the argmax is unchanged for k consecutive exits.
- ConsistencyRegressionPolicy: CBEE for regression (eq. 11): |g_i - g_{i-1}| < eta for k exits.
- HardBudgetPolicy: stop at the last exit whose cost fits a budget (DDI's hard constraint).
- calibrate_budget: per-exit thresholds meeting an expected budget on held-out data (MSDNet's
  budgeted batch classification, DDI's RADI).
"""

import math
from numbers import Real

import torch

from .. import _validate
from ._checks import check_exit_costs, check_exit_outputs, check_policy, decide_checked


class ExitPolicy:
    """Base class: no state."""

    def initial_state(self, batch_size, device):
        return ()

    def decide(self, exit_index, output, state):
        raise NotImplementedError


class _ConfidencePolicy(ExitPolicy):
    """Stop where a per-sample confidence score passes a threshold (one number, or one per exit).

    THRESHOLDS: the range a threshold must lie in (keywords of _validate.real).
    """

    def __init__(self, threshold):
        self.threshold = self._thresholds(threshold)

    @classmethod
    def _thresholds(cls, threshold):
        if isinstance(threshold, Real) and not isinstance(threshold, bool):
            return _validate.real("threshold", threshold, **cls.THRESHOLDS)
        if isinstance(threshold, (str, bytes)) or not hasattr(threshold, "__iter__"):
            raise TypeError(f"threshold must be a number or a sequence of per-exit numbers, got "
                            f"{type(threshold).__name__} {threshold!r}")
        values = tuple(_validate.real(f"threshold[{j}]", t, **cls.THRESHOLDS) for j, t in enumerate(threshold))
        if not values:
            raise ValueError("threshold must be a number or a non-empty sequence of per-exit numbers")
        return values

    def threshold_at(self, exit_index):
        if isinstance(self.threshold, float):
            return self.threshold
        if exit_index >= len(self.threshold):
            raise ValueError(f"threshold has {len(self.threshold)} values, no value for exit {exit_index}")
        return self.threshold[exit_index]

    def decide(self, exit_index, output, state):
        return self.passes(self.score(output), self.threshold_at(exit_index)), state


class MaxSoftmaxPolicy(_ConfidencePolicy):
    """Stop when max softmax >= threshold: SDN's confidence, T-RECX eq. 1 (rho).

    threshold in [0, 1], or math.inf: never stop there.
    """

    THRESHOLDS = dict(low=0.0, high=1.0, infinite=(math.inf,))

    @staticmethod
    def score(output):
        return torch.softmax(output, dim=-1).amax(dim=-1)

    @staticmethod
    def passes(score, threshold):
        return score >= threshold


class EntropyPolicy(_ConfidencePolicy):
    """Stop when the softmax entropy (nats) < threshold: BranchyNet, DDI's uncertainty threshold T.

    threshold >= 0 (0: never stop there), or math.inf: always.
    """

    THRESHOLDS = dict(low=0.0, infinite=(math.inf,))

    @staticmethod
    def score(output):
        log_p = torch.log_softmax(output, dim=-1)
        return -(log_p.exp() * log_p).sum(dim=-1)

    @staticmethod
    def passes(score, threshold):
        return score < threshold


class ConsistencyPolicy(ExitPolicy):
    """ReX's consistency-based early exit (CBEE, eq. 10) for classification.

    N_i = N_{i-1} + 1 when argmax(p_i) == argmax(p_{i-1}), else 0 (N_0 = 0); stop when N_i reaches k.
    Ties inside one output go to the lowest class index (torch.argmax). With k >= the number of exits
    no sample can stop early.
    """

    def __init__(self, k):
        self.k = _validate.integer("k", k, 1)

    def initial_state(self, batch_size, device):
        return (torch.full((batch_size,), -1, dtype=torch.long, device=device),
                torch.zeros(batch_size, dtype=torch.long, device=device))

    def decide(self, exit_index, output, state):
        previous, count = state
        prediction = output.argmax(dim=-1)
        same = (prediction == previous) & (exit_index > 0)
        count = torch.where(same, count + 1, torch.zeros_like(count))
        return count >= self.k, (prediction, count)


class ConsistencyRegressionPolicy(ExitPolicy):
    """CBEE for regression (ReX eq. 11): N_i grows while |g_i - g_{i-1}| < eta; stop at N_i = k.

    Outputs of more than one value per sample count as unchanged when every value moved less than eta.
    """

    def __init__(self, k, eta):
        self.k = _validate.integer("k", k, 1)
        self.eta = _validate.real("eta", eta, 0.0, low_open=True)

    def initial_state(self, batch_size, device):
        return (torch.full((batch_size, 0), math.nan, device=device),
                torch.zeros(batch_size, dtype=torch.long, device=device))

    def decide(self, exit_index, output, state):
        previous, count = state
        value = output.reshape(output.shape[0], math.prod(output.shape[1:]))  # -1 is ambiguous for 0 rows
        if exit_index == 0:
            same = torch.zeros(value.shape[0], dtype=torch.bool, device=value.device)
        else:
            same = ((value - previous).abs() < self.eta).all(dim=-1)
        count = torch.where(same, count + 1, torch.zeros_like(count))
        return count >= self.k, (value, count)


class HardBudgetPolicy(ExitPolicy):
    """Stop at the last exit whose cumulative cost fits `budget` (anytime prediction, DDI's RADI).

    exit_madds: cumulative cost of each exit (MultiExitNetwork.exit_madds). Before that exit, `policy`
    (if given) may stop samples earlier.
    """

    def __init__(self, exit_madds, budget, policy=None):
        costs = check_exit_costs(exit_madds)
        budget = _validate.real("budget", budget, 0.0)
        if policy is not None:
            check_policy(policy)
        affordable = [i for i, cost in enumerate(costs) if cost <= budget]
        if not affordable:
            raise ValueError(f"budget {budget} is below the first exit's cost {costs[0]}")
        self.last_exit = affordable[-1]
        self.policy = policy

    def initial_state(self, batch_size, device):
        return self.policy.initial_state(batch_size, device) if self.policy else ()

    def decide(self, exit_index, output, state):
        if self.policy is None:
            stop = torch.zeros(output.shape[0], dtype=torch.bool, device=output.device)
        else:
            stop, state = decide_checked(self.policy, exit_index, output, state)
        if exit_index >= self.last_exit:
            stop = torch.ones_like(stop)
        return stop, state


def assign_exits(policy, exit_outputs):
    """The exit each sample takes under `policy`, from every exit's outputs (list of [N, ...]).

    The same decisions early-exit inference makes, computed on the whole batch at once: for sweeping
    a policy over held-out outputs without re-running the network.
    """
    check_policy(policy)
    check_exit_outputs(exit_outputs)
    n = exit_outputs[0].shape[0]
    device = exit_outputs[0].device
    exit_index = torch.full((n,), len(exit_outputs) - 1, dtype=torch.long, device=device)
    running = torch.ones(n, dtype=torch.bool, device=device)
    state = policy.initial_state(n, device)
    for j, output in enumerate(exit_outputs[:-1]):
        stop, state = decide_checked(policy, j, output, state)
        exit_index[running & stop] = j
        running &= ~stop
    return exit_index


def _expected_cost(ratio, costs):
    weights = [ratio ** j for j in range(len(costs))]
    return sum(w * c for w, c in zip(weights, costs)) / sum(weights)


def calibrate_budget(exit_outputs, exit_madds, budget, score="max_softmax"):
    """Per-exit thresholds whose expected cost on these held-out outputs meets `budget` (MSDNet).

    As in MSDNet's budgeted batch classification, the fraction of samples leaving at exit j follows
    q_j proportional to r**j; r is found by bisection so that sum_j q_j * cost_j = budget. Then, exit by
    exit, the q_j * N still-running samples with the highest confidence leave, and the threshold is the
    score of the last of them. Returns a MaxSoftmaxPolicy (score="max_softmax") or EntropyPolicy
    ("entropy") holding one threshold per exit.
    """
    kinds = {"max_softmax": MaxSoftmaxPolicy, "entropy": EntropyPolicy}
    if score not in kinds:
        raise ValueError(f"score must be one of {sorted(kinds)}, got {score!r}")
    check_exit_outputs(exit_outputs)
    costs = check_exit_costs(exit_madds, len(exit_outputs))
    budget = _validate.real("budget", budget, 0.0)
    if budget < costs[0]:
        raise ValueError(f"budget {budget} is below the first exit's cost {costs[0]}")
    kind = kinds[score]
    never = math.inf if kind is MaxSoftmaxPolicy else 0.0  # thresholds no score passes
    if budget >= costs[-1]:
        return kind([never] * (len(costs) - 1))
    low, high = -50.0, 50.0  # log r; expected cost rises with r from costs[0] to costs[-1]
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if _expected_cost(math.exp(middle), costs) < budget else (low, middle)
    weights = [math.exp(low * j) for j in range(len(costs))]
    fractions = [w / sum(weights) for w in weights]
    n = exit_outputs[0].shape[0]
    running = torch.ones(n, dtype=torch.bool)
    thresholds = []
    for j, output in enumerate(exit_outputs[:-1]):
        confidence = kind.score(output.detach().cpu())
        ordered = confidence if kind is MaxSoftmaxPolicy else -confidence  # higher: more confident
        ordered = torch.where(running, ordered, torch.full_like(ordered, -math.inf))
        leaving = min(int(math.floor(fractions[j] * n)), int(running.sum()))
        if leaving == 0:
            thresholds.append(never)
            continue
        top = torch.topk(ordered, leaving).indices
        # Entropy rounds to slightly below 0 for a saturated softmax: thresholds stay >= 0.
        thresholds.append(confidence[top[-1]].item() if kind is MaxSoftmaxPolicy else
                          max(0.0, math.nextafter(confidence[top[-1]].item(), math.inf)))
        running &= ~kind.passes(confidence, thresholds[-1])
    return kind(thresholds)
