"""The patch sweep's forward and backward on the Triton kernels (kernels.py) plus torch GEMMs.

Forward, per chunk of samples:
 1. xp = every pixel's RNN1 input projection, once (W x, or weight_ih x without its bias), channels
    last [n, H+2ph, W+2pw, gates*h1]; padding pixels project to exactly 0, so a sequence crossing
    the border reads zeros there but still runs the cell step, as the reference on F.unfold does.
 2. RNN1 kernel launches, one for the row sequences (kh per patch, kw steps, left to right) and one
    for the columns (kw per patch, kh steps, top to bottom), each only when `parts` needs it; final
    states are the summaries S [P, kh+kw, h1] (rows first), P = patches of the chunk.
 3. s2 = S @ W2_in^T (torch), once per summary for both directions.
 4. RNN2 kernel launches, one per R / C block: per patch a forward and a backward sequence over the
    block's summaries; final states go straight to the output's channels (qr_f, qr_b / qc_f, qc_b).
 5. V^G = S.flatten(1) @ proj_weight^T + proj_bias (torch), into its channels.
The kernels run only the recurrences, where a fused loop pays off; the projections are dense GEMMs
that torch already runs at full speed, and the CUDA backend splits the work the same way, so each
is a second opinion on the other.

Backward recomputes the forward (the op saves only its inputs), this time storing every sequence's
state before each step. The backward kernels run the sequences last step first, from d(final
state), recompute each step's gates from the stored state, and write per step the gradient of the
step's input projection (plus GRU's d(W_hn h + b_hn)) and, for FastGRNN, per-sequence sums for the
biases, zeta and nu. torch then reduces them: recurrent weights as one GEMM of step gradients by
stored states, biases as sums, RNN2's input gradients summed per summary (each is read by a forward
and a backward sequence), RNN1's scattered back to pixels with F.fold (the transpose of the
forward's patch extraction; deterministic, unlike atomics) and then through W_in to x and W_in.
The stored states and step gradients are the backward's main workspace, so the batch is processed
in chunks of samples that fit WORKSPACE_BYTES.

float16 / bfloat16 inputs are computed in float32 and the results cast back.
"""

import torch
import torch.nn.functional as F

from .._checks import check_sweep_args, output_channels
from . import kernels
from .kernels import Sequences

# Intermediates of one chunk of samples (estimated by _bytes_per_sample) stay below this.
WORKSPACE_BYTES = 1 << 30


def forward(x, rnn1, rnn2, proj_weight, proj_bias, kernel_size, stride, padding, cell, gate_nonlinearity,
            update_nonlinearity, parts, *, workspace_bytes=WORKSPACE_BYTES):
    """torch.ops.rnnpool.forward's result (docs/spec.md sections 1-4), computed with the Triton kernels."""
    plan = _Plan(x, rnn1, rnn2, proj_weight, proj_bias, kernel_size, stride, padding, cell, gate_nonlinearity,
                 update_nonlinearity, parts)
    cells = _Cells(plan, rnn1, rnn2, proj_weight, proj_bias)
    out = x.new_empty(plan.output_shape, dtype=plan.dtype)
    for n0, n1 in plan.chunks(workspace_bytes, backward=False):
        xc = x[n0:n1].to(plan.dtype)
        summaries, _ = _run_rnn1(plan, cells, xc, store_states=False)
        if plan.rnn2_blocks:
            s2 = _rnn2_inputs(plan, cells, summaries)
            for block in plan.rnn2_blocks:
                seqs = plan.rnn2_sequences(block, n0, n1, x.device)
                kernels.sweep_forward(s2, seqs, out, cells.recurrent2, plan.h2, *plan.cell_config)
        if "G" in parts:
            projected = F.linear(summaries.flatten(1), cells.proj_weight, cells.proj_bias)
            per_pixel = projected.view(n1 - n0, plan.patches_per_image, -1)
            plan.global_channels(out, n0, n1).copy_(per_pixel.transpose(1, 2))
    return out.to(x.dtype)


def backward(grad_output, x, rnn1, rnn2, proj_weight, proj_bias, kernel_size, stride, padding, cell,
             gate_nonlinearity, update_nonlinearity, parts, *, workspace_bytes=WORKSPACE_BYTES):
    """torch.ops.rnnpool.backward's result: (grad_x, [grad of each rnn1 tensor], [... rnn2], grad_proj)
    with grad_proj [] without "G", else [grad_proj_weight, grad_proj_bias]."""
    plan = _Plan(x, rnn1, rnn2, proj_weight, proj_bias, kernel_size, stride, padding, cell, gate_nonlinearity,
                 update_nonlinearity, parts)
    if tuple(grad_output.shape) != plan.output_shape:
        raise ValueError(f"grad_output must have the output's shape {list(plan.output_shape)}, "
                         f"got {list(grad_output.shape)}")
    cells = _Cells(plan, rnn1, rnn2, proj_weight, proj_bias)
    grad_output = grad_output.to(plan.dtype).contiguous()
    grads = _Gradients(cells)
    grad_x = x.new_empty(x.shape, dtype=plan.dtype)
    for n0, n1 in plan.chunks(workspace_bytes, backward=True):
        xc = x[n0:n1].to(plan.dtype)
        summaries, passes = _run_rnn1(plan, cells, xc, store_states=True)
        grad_summaries = torch.zeros_like(summaries)
        if "G" in parts:
            grad_global = plan.global_channels(grad_output, n0, n1).transpose(1, 2).reshape(summaries.shape[0], -1)
            flat = summaries.flatten(1)
            grads.proj[0].addmm_(grad_global.t(), flat)
            grads.proj[1] += grad_global.sum(0)
            grad_summaries += (grad_global @ cells.proj_weight).view_as(summaries)
        if plan.rnn2_blocks:
            _rnn2_backward(plan, cells, grads, summaries, grad_summaries, grad_output, n0, n1)
        grad_x[n0:n1] = _rnn1_backward(plan, cells, grads, xc, passes, grad_summaries)
    return (grad_x.to(x.dtype), *grads.cast_to(rnn1, rnn2, proj_weight, proj_bias))


def _run_rnn1(plan, cells, xc, store_states):
    """RNN1 over the chunk xc: (summaries [P, kh+kw, h1], (xp, [(rows, seqs, states)] per pass)), the
    states (before each step) stored only with store_states."""
    xp = torch.matmul(xc.permute(0, 2, 3, 1), cells.input_weight1.t())
    if plan.padding != (0, 0):
        xp = F.pad(xp, (0, 0, plan.padding[1], plan.padding[1], plan.padding[0], plan.padding[0]))
    xp = xp.contiguous()
    n = xc.shape[0]
    summaries = xc.new_empty((n * plan.patches_per_image, plan.num_summaries, plan.h1))
    passes = []
    for rows in plan.rnn1_passes:
        seqs = plan.rnn1_sequences(rows, n, xc.device)
        states = xc.new_empty((seqs.count, seqs.steps, plan.h1)) if store_states else None
        kernels.sweep_forward(xp, seqs, summaries, cells.recurrent1, plan.h1, *plan.cell_config, states=states)
        passes.append((rows, seqs, states))
    return summaries, (xp, passes)


def _rnn2_inputs(plan, cells, summaries):
    """RNN2's input projections of the summaries it reads, [P, hi - lo, gates*h2]."""
    return torch.matmul(summaries[:, plan.lo:plan.hi], cells.input_weight2.t()).contiguous()


def _rnn2_backward(plan, cells, grads, summaries, grad_summaries, grad_output, n0, n1):
    """Adds RNN2's parameter gradients to grads and its summary gradients to grad_summaries."""
    s2 = _rnn2_inputs(plan, cells, summaries)
    grad_s2 = torch.zeros_like(s2)
    for block in plan.rnn2_blocks:
        seqs = plan.rnn2_sequences(block, n0, n1, s2.device)
        states = s2.new_empty((seqs.count, seqs.steps, plan.h2))
        kernels.sweep_forward(s2, seqs, None, cells.recurrent2, plan.h2, *plan.cell_config, states=states)
        records = kernels.sweep_backward(s2, seqs, grad_output, states, cells.recurrent2, plan.h2,
                                         *plan.cell_config)
        grads.add_recurrent(grads.rnn2, cells.coef2, plan.h2, states, *records)
        # Per patch: the forward sequence read summary k at step k, the backward one at step T-1-k.
        per_patch = records[0].view(-1, 2, seqs.steps, s2.shape[2])
        first = plan.first_summary(block) - plan.lo
        grad_s2[:, first:first + seqs.steps] = per_patch[:, 0] + per_patch[:, 1].flip(1)
    used = summaries[:, plan.lo:plan.hi]
    grads.rnn2[0].addmm_(grad_s2.flatten(0, 1).t(), used.flatten(0, 1))
    grad_summaries[:, plan.lo:plan.hi] += grad_s2 @ cells.input_weight2


def _rnn1_backward(plan, cells, grads, xc, rnn1_run, grad_summaries):
    """Adds RNN1's parameter gradients to grads; returns the chunk's grad_x."""
    xp, passes = rnn1_run
    n = xc.shape[0]
    kh, kw = plan.kernel_size
    # Gradient of each patch pixel's input projection, as F.unfold lays patches out: [n, L, kh, kw, gates*h1].
    pixel_grads = 0
    for rows, seqs, states in passes:
        records = kernels.sweep_backward(xp, seqs, grad_summaries, states, cells.recurrent1, plan.h1,
                                         *plan.cell_config)
        grads.add_recurrent(grads.rnn1, cells.coef1, plan.h1, states, *records)
        steps = records[0].view(n, plan.patches_per_image, seqs.count // (n * plan.patches_per_image), seqs.steps, -1)
        pixel_grads = pixel_grads + (steps if rows else steps.transpose(2, 3))
    width = pixel_grads.shape[-1]
    columns = pixel_grads.permute(0, 4, 2, 3, 1).reshape(n, width * kh * kw, plan.patches_per_image)
    grad_xp = F.fold(columns, xc.shape[2:], plan.kernel_size, padding=plan.padding, stride=plan.stride)
    grad_xp = grad_xp.flatten(2)  # [n, gates*h1, H*W]
    grads.rnn1[0] += torch.einsum("ngp,ncp->gc", grad_xp, xc.flatten(2))
    return torch.matmul(cells.input_weight1.t(), grad_xp).view(xc.shape)


class _Plan:
    """The geometry of one call: sizes, which sequences run, and their addresses (kernels.Sequences)."""

    def __init__(self, x, rnn1, rnn2, proj_weight, proj_bias, kernel_size, stride, padding, cell, gate, update,
                 parts):
        self.output_shape = check_sweep_args(x, rnn1, rnn2, proj_weight, proj_bias, kernel_size, stride, padding,
                                             cell, gate, update, parts)
        self.dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        self.kernel_size, self.stride, self.padding = tuple(kernel_size), tuple(stride), tuple(padding)
        self.cell, self.parts = cell, parts
        self.cell_config = (cell, gate, update)
        self.gates = 3 if cell == "gru" else 1
        self.h1 = rnn1[1].shape[-1]
        self.h2 = rnn2[1].shape[-1]
        kh, kw = self.kernel_size
        _, self.out_channels, out_h, out_w = self.output_shape
        self.patches_per_image = out_h * out_w
        self.num_summaries = kh + kw
        self.height, self.width = x.shape[2:]
        self.padded_width = self.width + 2 * self.padding[1]
        self.padded_height = self.height + 2 * self.padding[0]
        self.out_w = out_w
        rows_needed, columns_needed = "R" in parts or "G" in parts, "C" in parts or "G" in parts
        self.rnn1_passes = [rows for rows, needed in ((True, rows_needed), (False, columns_needed)) if needed]
        # Summaries RNN2 and f_L read: rows [0, kh), columns [kh, kh+kw); a contiguous range for any parts.
        self.lo = 0 if rows_needed else kh
        self.hi = kh + kw if columns_needed else kh
        self.rnn2_blocks = [block for block in "RC" if block in parts]

    def first_summary(self, block):
        return 0 if block == "R" else self.kernel_size[0]

    def channel_offset(self, block):
        return output_channels(self.parts[:self.parts.index(block)], self.h2)

    def global_channels(self, tensor, n0, n1):
        """The V^G channels of samples n0..n1 of an output-shaped tensor, as [n, 4*h2, H'*W']."""
        start = self.channel_offset("G")
        return tensor.view(tensor.shape[0], self.out_channels, -1)[n0:n1, start:start + 4 * self.h2]

    def rnn1_sequences(self, rows, n, device):
        """RNN1's row (rows=True) or column sequences of every patch of n samples, patch-major."""
        kh, kw = self.kernel_size
        sh, sw = self.stride
        width = self.padded_width
        arange = lambda size: torch.arange(size, device=device, dtype=torch.int64)  # noqa: E731
        out_h = self.patches_per_image // self.out_w
        corner = ((arange(n)[:, None, None] * self.padded_height + arange(out_h)[:, None] * sh) * width
                  + arange(self.out_w) * sw).reshape(-1, 1)  # top-left pixel of each patch
        count, steps, across, along, first = (kh, kw, width, 1, 0) if rows else (kw, kh, 1, width, kh)
        pixel_row = self.gates * self.h1
        in_base = ((corner + arange(count) * across) * pixel_row).reshape(-1)
        patches = corner.shape[0]
        final_base = ((arange(patches)[:, None] * self.num_summaries + first + arange(count)) * self.h1).reshape(-1)
        return Sequences(in_base, torch.full_like(in_base, along * pixel_row), final_base, 1, steps)

    def rnn2_sequences(self, block, n0, n1, device):
        """RNN2's forward and backward sequence over block's summaries of each patch of samples n0..n1;
        final states at their output channels (hidden unit stride H'*W')."""
        arange = lambda size: torch.arange(size, device=device, dtype=torch.int64)  # noqa: E731
        steps = self.kernel_size[0] if block == "R" else self.kernel_size[1]
        read = self.hi - self.lo
        pixels = self.patches_per_image
        patch = arange((n1 - n0) * pixels)[:, None]
        start = patch * read + self.first_summary(block) - self.lo
        row = self.gates * self.h2
        in_base = (torch.cat([start, start + steps - 1], dim=1) * row).reshape(-1)
        in_step = torch.tensor([row, -row], device=device).repeat(patch.shape[0])
        channel = self.channel_offset(block) + arange(2) * self.h2
        final_base = (((n0 + patch // pixels) * self.out_channels + channel) * pixels + patch % pixels).reshape(-1)
        return Sequences(in_base, in_step, final_base, pixels, steps)

    def chunks(self, workspace_bytes, backward):
        """(n0, n1) sample ranges whose intermediates fit workspace_bytes (at least one sample each)."""
        n = self.output_shape[0]
        size = max(1, workspace_bytes // self._bytes_per_sample(backward))
        return [(n0, min(n, n0 + size)) for n0 in range(0, n, size)]

    def _bytes_per_sample(self, backward):
        kh, kw = self.kernel_size
        row1, row2 = self.gates * self.h1, self.gates * self.h2
        patches, summaries = self.patches_per_image, self.num_summaries
        elements = (self.padded_height * self.padded_width * row1  # xp
                    + patches * summaries * (self.h1 + row2) + patches * 4 * self.h2)  # S, s2, V^G
        index_bytes = patches * (summaries + 4) * 3 * 8
        if backward:
            rnn1_steps, rnn2_steps = 2 * kh * kw, 2 * summaries  # per patch, over both passes
            elements += (patches * rnn1_steps * (2 * self.h1 + 2 * row1)  # states, step gradients, fold input
                         + self.height * self.width * row1  # fold output
                         + patches * rnn2_steps * (2 * self.h2 + row2)  # RNN2's states and step gradients
                         + patches * summaries * (self.h1 + row2))  # their gradients
        return elements * torch.finfo(self.dtype).bits // 8 + index_bytes


class _Cells:
    """The parameters in the compute dtype, split as the kernels and GEMMs take them."""

    def __init__(self, plan, rnn1, rnn2, proj_weight, proj_bias):
        def cast(tensor):
            return tensor.to(plan.dtype).contiguous()

        self.input_weight1, self.recurrent1, self.coef1 = self._split(plan.cell, [cast(t) for t in rnn1])
        self.input_weight2, self.recurrent2, self.coef2 = self._split(plan.cell, [cast(t) for t in rnn2])
        self.proj_weight = None if proj_weight is None else cast(proj_weight)
        self.proj_bias = None if proj_bias is None else cast(proj_bias)

    @staticmethod
    def _split(cell, params):
        """(input weight, recurrent (w_hh, bias_a, bias_b, coef) for the kernels, coef or None)."""
        if cell == "fastgrnn":
            weight, u, bias_gate, bias_update, zeta, nu = params
            coef = torch.cat([zeta, nu]).sigmoid()  # sigmoid(zeta), sigmoid(nu)
            return weight, (u, bias_gate, bias_update, coef), coef
        weight_ih, weight_hh, bias_ih, bias_hh = params
        return weight_ih, (weight_hh, bias_ih, bias_hh, bias_ih), None  # the gru kernels read no coef


class _Gradients:
    """Gradient accumulators over chunks, in the compute dtype, in the op's parameter order."""

    def __init__(self, cells):
        def zeros(tensors):
            return [torch.zeros_like(t) for t in tensors]

        self.rnn1 = zeros([cells.input_weight1, *cells.recurrent1[:3], *self._extra(cells.coef1)])
        self.rnn2 = zeros([cells.input_weight2, *cells.recurrent2[:3], *self._extra(cells.coef2)])
        self.proj = [] if cells.proj_weight is None else zeros([cells.proj_weight, cells.proj_bias])

    @staticmethod
    def _extra(coef):
        return [] if coef is None else [coef[:1], coef[1:]]  # zeta, nu

    @staticmethod
    def add_recurrent(grads, coef, hidden, states, grad_x, grad_hn, sums):
        """Adds one launch's recurrent weight and bias gradients (see kernels.sweep_backward)."""
        states = states.flatten(0, 1)
        steps = grad_x.flatten(0, 1)
        if coef is not None:  # fastgrnn: d pre = d(W x + U h) for U; bias, zeta and nu sums per sequence
            grads[1].addmm_(steps.t(), states)
            total = sums.sum(0)
            grads[2] += total[:hidden]
            grads[3] += total[hidden:2 * hidden]
            grads[4] += total[2 * hidden] * coef[0] * (1 - coef[0])
            grads[5] += total[2 * hidden + 1] * coef[1] * (1 - coef[1])
            return
        # gru: d(W_hh h + b_hh) is grad_x's r and z gates and grad_hn for n
        grad_hn = grad_hn.flatten(0, 1)
        grads[1][:2 * hidden].addmm_(steps[:, :2 * hidden].t(), states)
        grads[1][2 * hidden:].addmm_(grad_hn.t(), states)
        grads[2] += steps.sum(0)
        grads[3][:2 * hidden] += steps[:, :2 * hidden].sum(0)
        grads[3][2 * hidden:] += grad_hn.sum(0)

    def cast_to(self, rnn1, rnn2, proj_weight, proj_bias):
        """(grad_rnn1, grad_rnn2, grad_proj) in the dtypes of the given tensors."""
        def cast(grads, like):
            return [g.to(t.dtype) for g, t in zip(grads, like)]

        proj = [] if proj_weight is None else [proj_weight, proj_bias]
        return cast(self.rnn1, rnn1), cast(self.rnn2, rnn2), cast(self.proj, proj)
