"""Pure-PyTorch patch sweep: the oracle every backend is tested against, and the unfused baseline.

It batches every row (and every column) of every patch into one sequence batch, so each RNN is a
short loop of cell steps over large matrices; autograd differentiates it.
"""

import torch
import torch.nn.functional as F

from ._checks import check_sweep_args
from .cells import step


def forward(
    x,
    rnn1,
    rnn2,
    proj_weight,
    proj_bias,
    kernel_size,
    stride,
    padding,
    cell,
    gate_nonlinearity,
    update_nonlinearity,
    parts,
):
    """RNNPool ("RC"), ReX ("RGC") or an ablation of them on x [N, C, H, W] -> [N, out, H', W'].

    Same signature and semantics as torch.ops.rnnpool.forward (see docs/spec.md).
    """
    n, out_channels, out_h, out_w = check_sweep_args(
        x,
        rnn1,
        rnn2,
        proj_weight,
        proj_bias,
        kernel_size,
        stride,
        padding,
        cell,
        gate_nonlinearity,
        update_nonlinearity,
        parts,
    )
    kh, kw = kernel_size
    channels = x.shape[1]
    # [N, C*kh*kw, L] -> [N, C, kh, kw, L]: element (n, c, i, j, l) is channel c of pixel (i, j)
    # of patch l, in the same order as the output's pixels.
    num_patches_per_image = out_h * out_w
    patches = F.unfold(x, kernel_size, padding=padding, stride=stride)
    patches = patches.view(n, channels, kh, kw, num_patches_per_image)
    num_patches = n * num_patches_per_image

    def run_rnn1(sequences):
        return _final_state(cell, rnn1, sequences, gate_nonlinearity, update_nonlinearity)

    def run_rnn2_both_ways(summaries):
        return _both_directions(cell, rnn2, summaries, gate_nonlinearity, update_nonlinearity)

    # RNN1 over time-major sequences: step t of the row pass holds pixel (i, t) of every row i of
    # every patch, step t of the column pass pixel (t, j); results as [patches, kh or kw, h1].
    if "R" in parts or "G" in parts:
        rows = run_rnn1(patches.permute(3, 0, 4, 2, 1).reshape(kw, num_patches * kh, channels))
        rows = rows.unflatten(0, (num_patches, kh))
    if "C" in parts or "G" in parts:
        columns = run_rnn1(patches.permute(2, 0, 4, 3, 1).reshape(kh, num_patches * kw, channels))
        columns = columns.unflatten(0, (num_patches, kw))

    blocks = []  # appended in the order R, G, C, which is the order `parts` lists them in
    if "R" in parts:
        blocks.append(run_rnn2_both_ways(rows))
    if "G" in parts:
        summaries = torch.cat([rows.flatten(1), columns.flatten(1)], dim=1)
        blocks.append(F.linear(summaries, proj_weight, proj_bias))
    if "C" in parts:
        blocks.append(run_rnn2_both_ways(columns))
    out = torch.cat(blocks, dim=1).view(n, out_h, out_w, out_channels)
    return out.permute(0, 3, 1, 2).contiguous()


def _final_state(kind, params, sequences, gate, update):
    """The cell's last state over time-major sequences [T, B, in], from a zero state."""
    h = None
    for x_t in sequences:
        h = step(kind, params, x_t, h, gate, update)
    return h


def _both_directions(kind, params, summaries, gate, update):
    """[q_forward, q_backward] of one RNN run over summaries [P, T, in] both ways: [P, 2*hidden].

    Both directions share the weights, so they run as one batch of 2P sequences.
    """
    sequences = summaries.transpose(0, 1)
    q = _final_state(kind, params, torch.cat([sequences, sequences.flip(0)], dim=1), gate, update)
    num = summaries.shape[0]
    return torch.cat([q[:num], q[num:]], dim=1)
