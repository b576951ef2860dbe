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


class ExitPolicy:
    """Base class: no state."""

    def initial_state(self, batch_size, device):
        return ()

    def decide(self, exit_index, output, state):
        raise NotImplementedError


def _thresholds(threshold):
    if isinstance(threshold, Real):
        return float(threshold)
    values = tuple(float(t) for t in threshold)
    if not values:
        raise ValueError("threshold must be a number or a non-empty sequence of per-exit numbers")
    return values


class _ConfidencePolicy(ExitPolicy):
    """Stop where a per-sample confidence score passes a threshold (one number, or one per exit)."""

    def __init__(self, threshold):
        self.threshold = _thresholds(threshold)

    def threshold_at(self, exit_index):
        if isinstance(self.threshold, float):
            return self.threshold
        if exit_index >= len(self.threshold):
            raise ValueError(f"threshold has {len(self.threshold)} values, no value for exit {exit_index}")
        return self.threshold[exit_index]

    def decide(self, exit_index, output, state):
        return self.passes(self.score(output), self.threshold_at(exit_index)), state


class MaxSoftmaxPolicy(_ConfidencePolicy):
    """Stop when max softmax >= threshold: SDN's confidence, T-RECX eq. 1 (rho)."""

    @staticmethod
    def score(output):
        return torch.softmax(output, dim=-1).amax(dim=-1)

    @staticmethod
    def passes(score, threshold):
        return score >= threshold


class EntropyPolicy(_ConfidencePolicy):
    """Stop when the softmax entropy (nats) < threshold: BranchyNet, DDI's uncertainty threshold T."""

    @staticmethod
    def score(output):
        log_p = torch.log_softmax(output, dim=-1)
        return -(log_p.exp() * log_p).sum(dim=-1)

    @staticmethod
    def passes(score, threshold):
        return score < threshold


def _check_count(k):
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int (consecutive unchanged exits), got {k!r}")
    return k


class ConsistencyPolicy(ExitPolicy):
    """ReX's consistency-based early exit (CBEE, eq. 10) for classification.

    N_i = N_{i-1} + 1 when argmax(p_i) == argmax(p_{i-1}), else 0 (N_0 = 0); stop when N_i reaches k.
    Ties inside one output go to the lowest class index (torch.argmax). With k >= the number of exits
    no sample can stop early.
    """

    def __init__(self, k):
        self.k = _check_count(k)

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
        self.k = _check_count(k)
        if not isinstance(eta, Real) or not eta > 0:
            raise ValueError(f"eta must be a positive number, got {eta!r}")
        self.eta = float(eta)

    def initial_state(self, batch_size, device):
        return (torch.full((batch_size, 0), math.nan, device=device),
                torch.zeros(batch_size, dtype=torch.long, device=device))

    def decide(self, exit_index, output, state):
        previous, count = state
        value = output.reshape(output.shape[0], -1)
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
        costs = [float(c) for c in exit_madds]
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
            stop, state = self.policy.decide(exit_index, output, state)
        if exit_index >= self.last_exit:
            stop = torch.ones_like(stop)
        return stop, state


def assign_exits(policy, exit_outputs):
    """The exit each sample takes under `policy`, from every exit's outputs (list of [N, ...]).

    The same decisions early-exit inference makes, computed on the whole batch at once: for sweeping
    a policy over held-out outputs without re-running the network.
    """
    n = exit_outputs[0].shape[0]
    device = exit_outputs[0].device
    exit_index = torch.full((n,), len(exit_outputs) - 1, dtype=torch.long, device=device)
    running = torch.ones(n, dtype=torch.bool, device=device)
    state = policy.initial_state(n, device)
    for j, output in enumerate(exit_outputs[:-1]):
        stop, state = policy.decide(j, output, state)
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
    costs = [float(c) for c in exit_madds]
    if len(costs) != len(exit_outputs):
        raise ValueError(f"exit_madds has {len(costs)} costs for {len(exit_outputs)} exits")
    if budget < costs[0]:
        raise ValueError(f"budget {budget} is below the first exit's cost {costs[0]}")
    kind = kinds[score]
    never = math.inf if kind is MaxSoftmaxPolicy else -math.inf
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
        thresholds.append(confidence[top[-1]].item() if kind is MaxSoftmaxPolicy else
                          math.nextafter(confidence[top[-1]].item(), math.inf))
        running &= ~kind.passes(confidence, thresholds[-1])
    return kind(thresholds)
