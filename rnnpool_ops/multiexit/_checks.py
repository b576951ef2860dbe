"""Checks of what multi-exit inference gets from its parts: heads' outputs, policies' masks, exit costs.

Each error names the exit (and the policy) at fault.
"""

import torch
from torch.utils._pytree import tree_leaves

from .. import _validate


def check_exit_output(exit_index, output, rows, like=None):
    """An exit's output must be a tensor with `rows` rows, shaped and typed as `like` (an earlier exit's).

    Outputs are gathered into one tensor: a head of another width would be broadcast into it silently.
    """
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"exit {exit_index}'s output must be a tensor [B, ...], got {type(output).__name__}")
    if output.dim() == 0 or output.shape[0] != rows:
        raise ValueError(f"exit {exit_index}'s output has shape {list(output.shape)}, expected {rows} rows "
                         "(one per sample)")
    if like is not None and (output.shape[1:] != like.shape[1:] or output.dtype != like.dtype):
        raise ValueError(f"exit {exit_index}'s output is [B, {', '.join(map(str, output.shape[1:]))}] "
                         f"{output.dtype}, but exit 0's is [B, {', '.join(map(str, like.shape[1:]))}] {like.dtype}: "
                         "every exit must give outputs of one shape and dtype")


def check_exit_outputs(exit_outputs):
    """Every exit's outputs (a non-empty list of [N, ...] tensors) alike, as check_exit_output."""
    if isinstance(exit_outputs, torch.Tensor) or not isinstance(exit_outputs, (list, tuple)) or not exit_outputs:
        raise TypeError(f"exit_outputs must be a non-empty list of per-exit tensors [N, ...], got "
                        f"{type(exit_outputs).__name__}")
    first = exit_outputs[0]
    if not isinstance(first, torch.Tensor) or first.dim() == 0:
        raise TypeError(f"exit 0's output must be a tensor [N, ...], got {type(first).__name__}")
    for j, output in enumerate(exit_outputs[1:], 1):
        check_exit_output(j, output, first.shape[0], first)


def check_policy(policy, argument="policy"):
    """A policy has initial_state and decide (an ExitPolicy, or one shaped like it)."""
    if not all(callable(getattr(policy, method, None)) for method in ("initial_state", "decide")):
        raise TypeError(f"{argument} must be an ExitPolicy (initial_state and decide), got {type(policy).__name__}")
    return policy


def check_exit_index(exit_index, num_exits):
    """exit_index: an integer tensor of exits in [0, num_exits) (an index -1 would wrap to the last)."""
    exit_index = torch.as_tensor(exit_index)
    if exit_index.is_floating_point() or exit_index.dtype == torch.bool or exit_index.is_complex():
        raise TypeError(f"exit_index must hold integer exit numbers, got {exit_index.dtype}")
    if exit_index.numel() and not (0 <= int(exit_index.min()) and int(exit_index.max()) < num_exits):
        raise ValueError(f"exit_index must lie in [0, {num_exits}), got values from {int(exit_index.min())} to "
                         f"{int(exit_index.max())}")
    return exit_index


def decide_checked(policy, exit_index, output, state):
    """policy.decide, its stop mask checked: a bool tensor [B], B the rows of `output`, on its device;
    its state a tuple of batch-first tensors, which inference compacts with the batch.

    An integer 0/1 mask would index rows instead of selecting them.
    """
    decision = policy.decide(exit_index, output, state)
    name = f"{type(policy).__name__}.decide at exit {exit_index}"
    if not isinstance(decision, tuple) or len(decision) != 2:
        raise TypeError(f"{name} must return (stop, state), got {type(decision).__name__}")
    stop, state = decision
    if not isinstance(stop, torch.Tensor) or stop.dtype != torch.bool:
        what = stop.dtype if isinstance(stop, torch.Tensor) else type(stop).__name__
        raise TypeError(f"{name} must return stop as a torch.bool tensor [B] (a comparison, or mask.bool()), "
                        f"got {what}")
    if tuple(stop.shape) != (output.shape[0],) or stop.device != output.device:
        raise ValueError(f"{name} returned stop of shape {list(stop.shape)} on {stop.device}, but the exit's "
                         f"output has {output.shape[0]} rows on {output.device}: one flag per row")
    leaves = tree_leaves(state)
    if not isinstance(state, tuple) or any(not isinstance(t, torch.Tensor) or t.dim() == 0
                                           or t.shape[0] != output.shape[0] for t in leaves):
        raise ValueError(f"{name} must return its state as a tuple of batch-first tensors with {output.shape[0]} "
                         "rows (inference drops stopped rows from them)")
    return stop, state


def check_exit_costs(exit_madds, num_exits=None):
    """exit_madds as floats: cumulative costs, finite, >= 0 and non-decreasing, one per exit."""
    if isinstance(exit_madds, (str, bytes)) or not hasattr(exit_madds, "__len__"):
        raise TypeError(f"exit_madds must be a sequence of per-exit costs, got {type(exit_madds).__name__}")
    costs = [_validate.real(f"exit_madds[{j}]", float(c) if isinstance(c, torch.Tensor) else c, 0.0)
             for j, c in enumerate(exit_madds)]
    if not costs or (num_exits is not None and len(costs) != num_exits):
        raise ValueError(f"exit_madds has {len(costs)} costs for {num_exits or 'at least 1'} exits")
    if any(later < earlier for earlier, later in zip(costs, costs[1:])):
        raise ValueError(f"exit_madds must be cumulative (non-decreasing), got {costs}")
    return costs
