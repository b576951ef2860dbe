"""Triton kernels for the recurrent part of the patch sweep, and their launchers.

Each program runs BLOCK independent sequences of one cell side by side: the hidden states are a
[BLOCK, BLOCK_H] register tile, the recurrent weights (U, or weight_hh's three gate blocks) are
loaded once per program, and every step is one [BLOCK, H] x [H, H] product per weight block plus
element-wise gate math. Everything else of the sweep (input projections, index bookkeeping, weight
gradients) is torch, in sweep.py.

A sequence is addressed by offsets, which makes one kernel serve both RNNs and every direction:
step t of sequence b reads its input projection (W x, or weight_ih x without bias) at
`xp + in_base[b] + t * in_step[b]` (the hidden units of a step are contiguous; a negative step
reads backwards), and its final state goes to `final + final_base[b] + j * final_stride` for hidden
unit j (stride 1 for a summary buffer, H'*W' for a channel of an NCHW output). The backward kernel
reads d(final state) from the same place in the output's gradient.

Numerics: the compute dtype is the tensors' (float32 or float64). Products use tl.dot with IEEE
float32 inputs (TF32 would lose the 1e-4 agreement docs/spec.md asks for). tanh is built from tl.exp, as
libdevice is not available under the interpreter; quantSigm/quantTanh have slope 0 outside their
linear range and at its ends, as torch's hardtanh.

Launchers run the autotuned kernels on CUDA tensors and a fixed block size on CPU tensors (only
meaningful under TRITON_INTERPRET=1); they go through torch.library.wrap_triton, so inside a
triton_op torch.compile traces them.
"""

from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

from ..names import CELLS, NONLINEARITIES

# The kernels' integer codes for the names (rnnpool_ops/names.py): their position there. The kernels
# branch on them (CELL == 0 is FastGRNN; GATE / UPDATE 0..3 are sigmoid, tanh, quantSigm, quantTanh).
CELL_CODES = {name: code for code, name in enumerate(CELLS)}
NONLINEARITY_CODES = {name: code for code, name in enumerate(NONLINEARITIES)}
# Sequences per program under the interpreter: there, each program costs Python overhead per
# operation, so fewer, larger programs are faster.
INTERPRETER_BLOCK = 64
# GPU configurations to try per hidden size (the autotuning key); tl.dot needs BLOCK >= 16.
AUTOTUNE_CONFIGS = [
    triton.Config({"BLOCK": block}, num_warps=warps)
    for block, warps in ((16, 1), (32, 2), (32, 4), (64, 4), (128, 4), (128, 8))
]


@triton.jit
def _tanh(a):
    # exp of a non-positive argument never overflows; the sign is put back afterwards.
    e = tl.exp(-2.0 * tl.abs(a))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(a < 0, -t, t)


@triton.jit
def _activate(a, KIND: tl.constexpr):
    if KIND == 0:
        y = tl.sigmoid(a)
    elif KIND == 1:
        y = _tanh(a)
    elif KIND == 2:
        y = tl.minimum(tl.maximum((a + 1.0) * 0.5, 0.0), 1.0)
    else:
        y = tl.minimum(tl.maximum(a, -1.0), 1.0)
    return y


@triton.jit
def _slope(a, y, KIND: tl.constexpr):
    """d activate(a) / da, from the argument a and the value y = activate(a)."""
    if KIND == 0:
        d = y * (1.0 - y)
    elif KIND == 1:
        d = 1.0 - y * y
    elif KIND == 2:
        half = (a + 1.0) * 0.5
        d = tl.where((half > 0.0) & (half < 1.0), 0.5, 0.0).to(a.dtype)
    else:
        d = tl.where((a > -1.0) & (a < 1.0), 1.0, 0.0).to(a.dtype)
    return d


@triton.jit
def _matmul(a, b):
    return tl.dot(a, b, input_precision="ieee")


@triton.jit
def _load_transposed_block(w_ptr, block, H, BLOCK_H: tl.constexpr):
    """Rows [block*H, (block+1)*H) of a [*, H] weight, transposed and zero padded to BLOCK_H."""
    k = tl.arange(0, BLOCK_H)[:, None]  # input unit
    j = tl.arange(0, BLOCK_H)[None, :]  # output unit
    return tl.load(w_ptr + (block * H + j) * H + k, mask=(k < H) & (j < H), other=0.0)


@triton.jit
def _load_vector(ptr, block, H, BLOCK_H: tl.constexpr):
    unit = tl.arange(0, BLOCK_H)
    return tl.load(ptr + block * H + unit, mask=unit < H, other=0.0)[None, :]


@triton.jit
def _load_gru_parameters(w_hh_ptr, bias_ih_ptr, bias_hh_ptr, H, BLOCK_H: tl.constexpr):
    """weight_hh's r, z, n blocks (transposed, for h @ W^T) and bias_ih's and bias_hh's r, z, n parts."""
    w_r = _load_transposed_block(w_hh_ptr, 0, H, BLOCK_H)
    w_z = _load_transposed_block(w_hh_ptr, 1, H, BLOCK_H)
    w_n = _load_transposed_block(w_hh_ptr, 2, H, BLOCK_H)
    bi_r = _load_vector(bias_ih_ptr, 0, H, BLOCK_H)
    bi_z = _load_vector(bias_ih_ptr, 1, H, BLOCK_H)
    bi_n = _load_vector(bias_ih_ptr, 2, H, BLOCK_H)
    bh_r = _load_vector(bias_hh_ptr, 0, H, BLOCK_H)
    bh_z = _load_vector(bias_hh_ptr, 1, H, BLOCK_H)
    bh_n = _load_vector(bias_hh_ptr, 2, H, BLOCK_H)
    return w_r, w_z, w_n, bi_r, bi_z, bi_n, bh_r, bh_z, bh_n


@triton.jit
def _fastgrnn_gates(x_t, h, u_t, bias_gate, bias_update, GATE: tl.constexpr, UPDATE: tl.constexpr):
    """(gate argument, z, update argument, h~) of a FastGRNN step."""
    pre = x_t + _matmul(h, u_t)
    a_gate = pre + bias_gate
    a_update = pre + bias_update
    return a_gate, _activate(a_gate, GATE), a_update, _activate(a_update, UPDATE)


@triton.jit
def _gru_gates(x_r, x_z, x_n, h, w_r, w_z, w_n, b_r, b_z, b_n):
    """(r, z, n, W_hn h + b_hn) of a GRU step; x_* already hold their bias_ih."""
    h_n = _matmul(h, w_n) + b_n
    r = tl.sigmoid(x_r + _matmul(h, w_r) + b_r)
    z = tl.sigmoid(x_z + _matmul(h, w_z) + b_z)
    n = _tanh(x_n + r * h_n)
    return r, z, n, h_n


@triton.jit
def _program_sequences(in_base_ptr, in_step_ptr, num_seq, H, BLOCK: tl.constexpr, BLOCK_H: tl.constexpr):
    """This program's BLOCK sequences: their indices, which exist, the hidden units, the [BLOCK, BLOCK_H]
    mask of real (sequence, unit) pairs, and each unit's input offset at step 0 and the offset per step."""
    seq = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    seq_ok = seq < num_seq
    unit = tl.arange(0, BLOCK_H)
    mask = seq_ok[:, None] & (unit < H)[None, :]
    in_base = tl.load(in_base_ptr + seq, mask=seq_ok, other=0)[:, None] + unit[None, :]
    in_step = tl.load(in_step_ptr + seq, mask=seq_ok, other=0)[:, None]
    return seq, seq_ok, unit, mask, in_base, in_step


@triton.jit
def _sweep_forward_kernel(
    xp_ptr, in_base_ptr, in_step_ptr,
    final_ptr, final_base_ptr, final_stride,
    states_ptr,
    w_hh_ptr, bias_a_ptr, bias_b_ptr, coef_ptr,
    num_seq, T, H,
    CELL: tl.constexpr, GATE: tl.constexpr, UPDATE: tl.constexpr,
    STORE_STATES: tl.constexpr, WRITE_FINAL: tl.constexpr,
    BLOCK: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """Runs sequences from a zero state. fastgrnn: w_hh = U, bias_a/b = bias_gate/update, coef =
    [sigmoid(zeta), sigmoid(nu)]; gru: w_hh = weight_hh, bias_a/b = bias_ih/hh, coef unused.
    STORE_STATES writes the state before every step to states [num_seq, T, H] (for the backward)."""
    seq, seq_ok, unit, mask, in_base, in_step = _program_sequences(in_base_ptr, in_step_ptr, num_seq, H, BLOCK,
                                                                   BLOCK_H)
    state_rows = seq.to(tl.int64)[:, None] * T * H + unit[None, :]
    h = tl.zeros((BLOCK, BLOCK_H), dtype=xp_ptr.dtype.element_ty)
    if CELL == 0:
        u_t = _load_transposed_block(w_hh_ptr, 0, H, BLOCK_H)
        bias_gate = _load_vector(bias_a_ptr, 0, H, BLOCK_H)
        bias_update = _load_vector(bias_b_ptr, 0, H, BLOCK_H)
        s_zeta = tl.load(coef_ptr)
        s_nu = tl.load(coef_ptr + 1)
        for t in range(0, T):
            if STORE_STATES:
                tl.store(states_ptr + state_rows + t * H, h, mask=mask)
            x_t = tl.load(xp_ptr + in_base + t * in_step, mask=mask, other=0.0)
            _, z, _, h_tilde = _fastgrnn_gates(x_t, h, u_t, bias_gate, bias_update, GATE, UPDATE)
            h = z * h + (s_zeta * (1.0 - z) + s_nu) * h_tilde
    else:
        w_r, w_z, w_n, bi_r, bi_z, bi_n, bh_r, bh_z, bh_n = _load_gru_parameters(w_hh_ptr, bias_a_ptr, bias_b_ptr, H,
                                                                                   BLOCK_H)
        for t in range(0, T):
            if STORE_STATES:
                tl.store(states_ptr + state_rows + t * H, h, mask=mask)
            x_ptrs = xp_ptr + in_base + t * in_step
            x_r = tl.load(x_ptrs, mask=mask, other=0.0) + bi_r
            x_z = tl.load(x_ptrs + H, mask=mask, other=0.0) + bi_z
            x_n = tl.load(x_ptrs + 2 * H, mask=mask, other=0.0) + bi_n
            _, z, n, _ = _gru_gates(x_r, x_z, x_n, h, w_r, w_z, w_n, bh_r, bh_z, bh_n)
            h = (1.0 - z) * n + z * h
    if WRITE_FINAL:
        final_base = tl.load(final_base_ptr + seq, mask=seq_ok, other=0)[:, None]
        tl.store(final_ptr + final_base + unit[None, :] * final_stride, h, mask=mask)


@triton.jit
def _sweep_backward_kernel(
    xp_ptr, in_base_ptr, in_step_ptr,
    dfinal_ptr, final_base_ptr, final_stride,
    states_ptr, grad_x_ptr, grad_hn_ptr, sums_ptr,
    w_hh_ptr, bias_a_ptr, bias_b_ptr, coef_ptr,
    num_seq, T, H,
    CELL: tl.constexpr, GATE: tl.constexpr, UPDATE: tl.constexpr,
    BLOCK: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """Back through the sequences, last step first, from d(final state) and the states the forward
    kernel stored. Writes per step the gradient of the step's input projection, grad_x
    [num_seq, T, gates*H] (fastgrnn: d pre = d(W x + U h); gru: d(weight_ih x + bias_ih), gates
    r, z, n), for gru also grad_hn [num_seq, T, H] = d(W_hn h + b_hn) (its r and z parts equal
    grad_x's); for fastgrnn per sequence sums [num_seq, 2H + 2]: d bias_gate, d bias_update,
    d sigmoid(zeta), d sigmoid(nu)."""
    seq, seq_ok, unit, mask, in_base, in_step = _program_sequences(in_base_ptr, in_step_ptr, num_seq, H, BLOCK,
                                                                   BLOCK_H)
    seq64 = seq.to(tl.int64)[:, None]
    final_base = tl.load(final_base_ptr + seq, mask=seq_ok, other=0)[:, None]
    dh = tl.load(dfinal_ptr + final_base + unit[None, :] * final_stride, mask=mask, other=0.0)
    if CELL == 0:
        u_t = _load_transposed_block(w_hh_ptr, 0, H, BLOCK_H)
        u = tl.trans(u_t)
        bias_gate = _load_vector(bias_a_ptr, 0, H, BLOCK_H)
        bias_update = _load_vector(bias_b_ptr, 0, H, BLOCK_H)
        s_zeta = tl.load(coef_ptr)
        s_nu = tl.load(coef_ptr + 1)
        sum_gate = tl.zeros((BLOCK, BLOCK_H), dtype=dh.dtype)
        sum_update = tl.zeros((BLOCK, BLOCK_H), dtype=dh.dtype)
        sum_zeta = tl.zeros((BLOCK, BLOCK_H), dtype=dh.dtype)
        sum_nu = tl.zeros((BLOCK, BLOCK_H), dtype=dh.dtype)
        for step in range(0, T):
            t = T - 1 - step
            h = tl.load(states_ptr + (seq64 * T + t) * H + unit[None, :], mask=mask, other=0.0)
            x_t = tl.load(xp_ptr + in_base + t * in_step, mask=mask, other=0.0)
            a_gate, z, a_update, h_tilde = _fastgrnn_gates(x_t, h, u_t, bias_gate, bias_update, GATE, UPDATE)
            # h' = z h + (s_zeta (1 - z) + s_nu) h~
            d_gate = dh * (h - s_zeta * h_tilde) * _slope(a_gate, z, GATE)
            d_update = dh * (s_zeta * (1.0 - z) + s_nu) * _slope(a_update, h_tilde, UPDATE)
            d_pre = d_gate + d_update
            tl.store(grad_x_ptr + (seq64 * T + t) * H + unit[None, :], d_pre, mask=mask)
            sum_gate += d_gate
            sum_update += d_update
            sum_zeta += dh * (1.0 - z) * h_tilde
            sum_nu += dh * h_tilde
            dh = dh * z + _matmul(d_pre, u)
        sums = sums_ptr + seq.to(tl.int64) * (2 * H + 2)
        tl.store(sums[:, None] + unit[None, :], sum_gate, mask=mask)
        tl.store(sums[:, None] + H + unit[None, :], sum_update, mask=mask)
        tl.store(sums + 2 * H, tl.sum(sum_zeta, axis=1), mask=seq_ok)
        tl.store(sums + 2 * H + 1, tl.sum(sum_nu, axis=1), mask=seq_ok)
    else:
        w_r, w_z, w_n, bi_r, bi_z, bi_n, bh_r, bh_z, bh_n = _load_gru_parameters(w_hh_ptr, bias_a_ptr, bias_b_ptr, H,
                                                                                   BLOCK_H)
        w_r_back = tl.trans(w_r)
        w_z_back = tl.trans(w_z)
        w_n_back = tl.trans(w_n)
        for step in range(0, T):
            t = T - 1 - step
            h = tl.load(states_ptr + (seq64 * T + t) * H + unit[None, :], mask=mask, other=0.0)
            x_ptrs = xp_ptr + in_base + t * in_step
            x_r = tl.load(x_ptrs, mask=mask, other=0.0) + bi_r
            x_z = tl.load(x_ptrs + H, mask=mask, other=0.0) + bi_z
            x_n = tl.load(x_ptrs + 2 * H, mask=mask, other=0.0) + bi_n
            r, z, n, h_n = _gru_gates(x_r, x_z, x_n, h, w_r, w_z, w_n, bh_r, bh_z, bh_n)
            # h' = (1 - z) n + z h,  n = tanh(x_n + r h_n)
            d_n = dh * (1.0 - z) * (1.0 - n * n)
            d_r = d_n * h_n * r * (1.0 - r)
            d_z = dh * (h - n) * z * (1.0 - z)
            d_hn = d_n * r
            grad_x = grad_x_ptr + (seq64 * T + t) * (3 * H) + unit[None, :]
            tl.store(grad_x, d_r, mask=mask)
            tl.store(grad_x + H, d_z, mask=mask)
            tl.store(grad_x + 2 * H, d_n, mask=mask)
            tl.store(grad_hn_ptr + (seq64 * T + t) * H + unit[None, :], d_hn, mask=mask)
            dh = dh * z + _matmul(d_r, w_r_back) + _matmul(d_z, w_z_back) + _matmul(d_hn, w_n_back)


_forward_tuned = triton.autotune(
    AUTOTUNE_CONFIGS, key=["H", "CELL", "GATE", "UPDATE", "STORE_STATES", "WRITE_FINAL"]
)(_sweep_forward_kernel)
_backward_tuned = triton.autotune(AUTOTUNE_CONFIGS, key=["H", "CELL", "GATE", "UPDATE"])(_sweep_backward_kernel)


@dataclass(frozen=True)
class Sequences:
    """Where a launch's sequences read their steps and keep their final states (see the module
    docstring): in_base, in_step, final_base are int64 [num_seq] tensors; steps per sequence."""

    in_base: torch.Tensor
    in_step: torch.Tensor
    final_base: torch.Tensor
    final_stride: int
    steps: int

    @property
    def count(self):
        return self.in_base.shape[0]


def _launch(plain, tuned, args, constants, num_seq, hidden, device):
    block_h = max(16, triton.next_power_of_2(hidden))
    if device.type == "cuda":
        grid = lambda meta: (triton.cdiv(num_seq, meta["BLOCK"]),)  # noqa: E731
        wrap_triton(tuned)[grid](*args, **constants, BLOCK_H=block_h)
    else:
        wrap_triton(plain)[(triton.cdiv(num_seq, INTERPRETER_BLOCK),)](
            *args, **constants, BLOCK=INTERPRETER_BLOCK, BLOCK_H=block_h
        )


def _cell_constants(cell, gate, update):
    return dict(CELL=CELL_CODES[cell], GATE=NONLINEARITY_CODES[gate], UPDATE=NONLINEARITY_CODES[update])


def sweep_forward(xp, seqs, final, recurrent, hidden, cell, gate, update, states=None):
    """Run seqs over the input projections xp; final states into `final` unless it is None.

    recurrent = (w_hh, bias_a, bias_b, coef) as _sweep_forward_kernel takes them, all contiguous
    and of xp's dtype. states: None or a [count, steps, hidden] tensor for the states before each
    step.
    """
    if seqs.count == 0:
        return
    args = (xp, seqs.in_base, seqs.in_step, xp if final is None else final, seqs.final_base, seqs.final_stride,
            xp if states is None else states, *recurrent, seqs.count, seqs.steps, hidden)
    constants = dict(_cell_constants(cell, gate, update), STORE_STATES=states is not None,
                     WRITE_FINAL=final is not None)
    _launch(_sweep_forward_kernel, _forward_tuned, args, constants, seqs.count, hidden, xp.device)


def sweep_backward(xp, seqs, grad_final, states, recurrent, hidden, cell, gate, update):
    """Gradients of seqs' per-step records from d(final state) (grad_final, addressed like the
    forward's final) and the states sweep_forward stored.

    Returns (grad_x [count, steps, gates*hidden], grad_hn [count, steps, hidden] or None,
    sums [count, 2*hidden + 2] or None): see _sweep_backward_kernel.
    """
    count, steps = seqs.count, seqs.steps
    gru = cell == "gru"
    grad_x = xp.new_empty((count, steps, (3 if gru else 1) * hidden))
    grad_hn = xp.new_empty((count, steps, hidden)) if gru else None
    sums = None if gru else xp.new_empty((count, 2 * hidden + 2))
    if count == 0:
        return grad_x, grad_hn, sums
    # Pointers a cell does not use get xp, which no kernel writes, so no written buffer is passed twice.
    args = (xp, seqs.in_base, seqs.in_step, grad_final, seqs.final_base, seqs.final_stride, states, grad_x,
            xp if grad_hn is None else grad_hn, xp if sums is None else sums, *recurrent, count, steps, hidden)
    _launch(_sweep_backward_kernel, _backward_tuned, args, _cell_constants(cell, gate, update), count, hidden,
            xp.device)
    return grad_x, grad_hn, sums
