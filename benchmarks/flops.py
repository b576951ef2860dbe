"""Multiply-add counts of the patch sweep from its shapes, for GFLOP/s figures (2 FLOPs per MAC;
element-wise gate math not counted).

The pieces are shared by two ways of doing the work:
- sweep_macs: every patch runs its own kh row and kw column sequences, as the GPU backends (Triton,
  CUDA) do; only the input projection is done once per pixel. This is the op's work per patch.
- benchmarks.cases.forward_flops: the CPU kernel's floor, where overlapping patches also share RNN1
  sequences.
"""

# Input projections per cell: FastGRNN shares W (and U) between its gate and its update, GRU has
# three blocks (r, z, n).
GATE_BLOCKS = {"fastgrnn": 1, "gru": 3}


def input_projection_macs(channels, hidden1, cell):
    """RNN1's input projection of one pixel (W x or weight_ih x)."""
    return GATE_BLOCKS[cell] * hidden1 * channels


def recurrence_macs(hidden, cell):
    """The recurrent product (U h or weight_hh h) of one cell step."""
    return GATE_BLOCKS[cell] * hidden * hidden


def pooling_macs(kernel_size, hidden1, hidden2, cell, parts):
    """Per patch, after RNN1: RNN2's input projection of each summary it reads (once for both
    directions) and its recurrence in both directions, and ReX's f_L for V^G."""
    kh, kw = kernel_size
    summaries_read = kh * ("R" in parts) + kw * ("C" in parts)
    rnn2 = summaries_read * (GATE_BLOCKS[cell] * hidden2 * hidden1 + 2 * recurrence_macs(hidden2, cell))
    projection = (kh + kw) * hidden1 * 4 * hidden2 if "G" in parts else 0
    return rnn2 + projection


def patch_macs(kernel_size, hidden1, hidden2, cell, parts):
    """One patch's MACs besides the per-pixel input projection: RNN1's recurrence over the patch's
    own row sequences (when R or G is asked for) and column sequences (C or G), then pooling_macs."""
    kh, kw = kernel_size
    passes = ("R" in parts or "G" in parts) + ("C" in parts or "G" in parts)
    rnn1 = passes * kh * kw * recurrence_macs(hidden1, cell)
    return rnn1 + pooling_macs(kernel_size, hidden1, hidden2, cell, parts)


def sweep_macs(batch, channels, height, width, kernel_size, stride, padding, hidden1, hidden2, cell, parts):
    """The forward's MACs with per-patch sequences (the GPU backends' way): each pixel's input
    projection once, patch_macs per patch."""
    out_h, out_w = ((size + 2 * pad - k) // s + 1 for size, k, s, pad in zip((height, width), kernel_size, stride,
                                                                             padding))
    pixels = batch * height * width * input_projection_macs(channels, hidden1, cell)
    return pixels + batch * out_h * out_w * patch_macs(kernel_size, hidden1, hidden2, cell, parts)
