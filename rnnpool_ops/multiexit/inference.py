"""Batched early-exit inference that saves real compute.

After each exit the policy decides which samples stop; those rows are removed from the batch (and from
the policy's state) before the next stage runs, and their outputs are scattered back to their original
positions. A batch where half the samples stop at the first exit runs every later stage on half the
batch. The last exit takes every sample still running. What stages pass on may be a tensor or a tuple
of batch-first tensors (DDI's features and LSTM gate state); every one of them is compacted.
"""

from dataclasses import dataclass

import torch

from ._checks import check_exit_costs, check_exit_output, check_policy, decide_checked


@dataclass
class ExitResult:
    """outputs[i]: sample i's output at the exit it took; exit_index[i]: that exit; madds[i]: its cost."""

    outputs: torch.Tensor
    exit_index: torch.Tensor
    madds: torch.Tensor


def _select(value, keep):
    if isinstance(value, (tuple, list)):
        return type(value)(_select(item, keep) for item in value)
    return value[keep]


def early_exit_inference(model, x, policy, exit_madds):
    """Run `model` (a MultiExitNetwork) on x under `policy`; exit_madds: cumulative MAdds per exit."""
    check_policy(policy)
    costs = check_exit_costs(exit_madds, model.num_exits)
    n = x.shape[0]
    rows = torch.arange(n, device=x.device)  # original position of each row still running
    state = policy.initial_state(n, x.device)
    exit_index = torch.full((n,), -1, dtype=torch.long, device=x.device)
    outputs = None
    last_exit = model.num_exits - 1
    for exit_number, (head, stage_index) in enumerate(zip(model.heads, model.exit_stages)):
        first_stage = model.exit_stages[exit_number - 1] + 1 if exit_number else 0
        for stage in model.stages[first_stage: stage_index + 1]:
            x = stage(x)
        out = head(x)
        check_exit_output(exit_number, out, rows.shape[0], outputs)
        if exit_number == last_exit:
            stop = torch.ones(out.shape[0], dtype=torch.bool, device=out.device)
        else:
            stop, state = decide_checked(policy, exit_number, out, state)
        if outputs is None:
            outputs = out.new_empty((n, *out.shape[1:]))
        outputs[rows[stop]] = out[stop]
        exit_index[rows[stop]] = exit_number
        keep = ~stop
        if not keep.any():
            break
        x, rows, state = _select(x, keep), rows[keep], _select(state, keep)
    madds = torch.as_tensor(costs, dtype=torch.float64, device=rows.device)[exit_index]
    return ExitResult(outputs, exit_index, madds)
