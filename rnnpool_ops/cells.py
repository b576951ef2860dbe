"""The recurrent cells RNNPool and ReX run: FastGRNN (EdgeML) and GRU (torch.nn.GRUCell).

The per-step math lives here once, in `step`; the reference sweep and `FastGRNNCell` both call it.
"""

import torch
import torch.nn.functional as F
from torch import nn

from . import _validate, names
from .names import GRU_NONLINEARITIES, PARAMETER_NAMES


def quant_sigm(a):
    """EdgeML's piecewise-linear sigmoid, clamp((a + 1) / 2, 0, 1)."""
    # hardtanh rather than torch.clamp: its gradient is 0 at the bounds in every torch version,
    # as docs/spec.md asks, while torch.clamp's was 1 there before torch 2.14.
    return F.hardtanh((a + 1) / 2, 0.0, 1.0)


def quant_tanh(a):
    """EdgeML's piecewise-linear tanh, clamp(a, -1, 1)."""
    return F.hardtanh(a, -1.0, 1.0)


# Each of names.NONLINEARITIES as a function.
NONLINEARITIES = dict(zip(names.NONLINEARITIES, (torch.sigmoid, torch.tanh, quant_sigm, quant_tanh)))


def nonlinearity(name, argument="nonlinearity"):
    """The function EdgeML calls `name`; `argument` names the caller's argument in the error."""
    if isinstance(name, str) and name in NONLINEARITIES:
        return NONLINEARITIES[name]
    raise ValueError(f"{argument} must be one of {sorted(NONLINEARITIES)}, got {name!r}")


def check_cell(kind, gate, update):
    """Raise ValueError unless `kind` is a cell name and its nonlinearity names fit it."""
    if kind not in PARAMETER_NAMES:
        raise ValueError(f"cell must be one of {sorted(PARAMETER_NAMES)}, got {kind!r}")
    nonlinearity(gate, "gate_nonlinearity")
    nonlinearity(update, "update_nonlinearity")
    if kind == "gru" and (gate, update) != GRU_NONLINEARITIES:
        raise ValueError(
            "gate_nonlinearity and update_nonlinearity must be 'sigmoid' and 'tanh' for the gru "
            f"cell (those of nn.GRUCell), got {gate!r} and {update!r}"
        )


def parameter_shapes(kind, input_size, hidden_size):
    """Shapes of the cell's tensors, in PARAMETER_NAMES order."""
    if kind == "fastgrnn":
        h = hidden_size
        return ((h, input_size), (h, h), (h,), (h,), (1,), (1,))
    gates = 3 * hidden_size  # r, z, n stacked as in nn.GRUCell
    return ((gates, input_size), (gates, hidden_size), (gates,), (gates,))


def step(kind, params, x, h=None, gate="sigmoid", update="tanh"):
    """One cell step for x [B, in] from state h [B, hidden] (None: zeros); returns the new state.

    `params` is the cell's tensor list in PARAMETER_NAMES order. `gate` and `update` name
    FastGRNN's nonlinearities; the GRU cell has fixed ones (see `check_cell`).
    """
    if h is None:
        hidden_size = params[1].shape[-1]  # U and weight_hh both end in the hidden size
        h = x.new_zeros(x.shape[0], hidden_size)
    if kind == "fastgrnn":
        return _fastgrnn_step(params, x, h, nonlinearity(gate), nonlinearity(update))
    if kind == "gru":
        return _gru_step(params, x, h)
    raise ValueError(f"kind must be one of {sorted(PARAMETER_NAMES)}, got {kind!r}")


def _fastgrnn_step(params, x, h, gate_fn, update_fn):
    W, U, bias_gate, bias_update, zeta, nu = params
    pre = F.linear(x, W) + F.linear(h, U)
    z = gate_fn(pre + bias_gate)
    h_tilde = update_fn(pre + bias_update)
    return z * h + (torch.sigmoid(zeta) * (1 - z) + torch.sigmoid(nu)) * h_tilde


def _gru_step(params, x, h):
    weight_ih, weight_hh, bias_ih, bias_hh = params
    x_r, x_z, x_n = F.linear(x, weight_ih, bias_ih).chunk(3, dim=-1)
    h_r, h_z, h_n = F.linear(h, weight_hh, bias_hh).chunk(3, dim=-1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return (1 - z) * n + z * h


class FastGRNNCell(nn.Module):
    """EdgeML's FastGRNN cell with W [hidden, input] and U [hidden, hidden], used as W x + U h.

    The defaults follow EdgeML's RNNPool, whose cells start with zeta = 100 and nu = -100
    (sigmoid(zeta) ~ 1, sigmoid(nu) ~ 0: a plain gated update); EdgeML's standalone
    FastGRNNCell starts at 1.0 and -4.0 instead, which `zeta_init` and `nu_init` allow.
    """

    def __init__(
        self,
        input_size,
        hidden_size,
        gate="sigmoid",
        update="tanh",
        *,
        zeta_init=100.0,
        nu_init=-100.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        nonlinearity(gate, "gate")
        nonlinearity(update, "update")
        self.input_size = _validate.integer("input_size", input_size, 1)
        self.hidden_size = _validate.integer("hidden_size", hidden_size, 1)
        zeta_init, nu_init = _validate.real("zeta_init", zeta_init), _validate.real("nu_init", nu_init)
        self.gate_nonlinearity = gate
        self.update_nonlinearity = update
        self.zeta_init = zeta_init
        self.nu_init = nu_init
        shapes = parameter_shapes("fastgrnn", input_size, hidden_size)
        for name, shape in zip(PARAMETER_NAMES["fastgrnn"], shapes):
            setattr(self, name, nn.Parameter(torch.empty(shape, device=device, dtype=dtype)))
        self.reset_parameters()

    def reset_parameters(self):
        """EdgeML's initialisation: W, U ~ 0.1 * randn, both biases ones, zeta and nu constant."""
        nn.init.normal_(self.W, std=0.1)
        nn.init.normal_(self.U, std=0.1)
        nn.init.ones_(self.bias_gate)
        nn.init.ones_(self.bias_update)
        nn.init.constant_(self.zeta, self.zeta_init)
        nn.init.constant_(self.nu, self.nu_init)

    def forward(self, x, h=None):
        gate, update = self.gate_nonlinearity, self.update_nonlinearity
        return step("fastgrnn", cell_parameters(self), x, h, gate, update)

    def extra_repr(self):
        return (
            f"{self.input_size}, {self.hidden_size}, gate={self.gate_nonlinearity!r}, "
            f"update={self.update_nonlinearity!r}"
        )


def cell_kind(cell):
    """The op's name for the module's cell: "fastgrnn" or "gru"."""
    if isinstance(cell, FastGRNNCell):
        return "fastgrnn"
    if isinstance(cell, nn.GRUCell):
        return "gru"
    raise ValueError(f"cell must be a FastGRNNCell or an nn.GRUCell, got {type(cell).__name__}")


def cell_parameters(cell):
    """The module's tensors in the op's order."""
    kind = cell_kind(cell)
    if kind == "gru" and not cell.bias:
        raise ValueError(
            "nn.GRUCell(bias=False) is not supported: the op needs bias_ih and bias_hh"
        )
    return [getattr(cell, name) for name in PARAMETER_NAMES[kind]]


def cell_nonlinearities(cell):
    """(gate, update) nonlinearity names as the op takes them."""
    if cell_kind(cell) == "gru":
        return GRU_NONLINEARITIES
    return cell.gate_nonlinearity, cell.update_nonlinearity


def make_cell(kind, input_size, hidden_size, gate="sigmoid", update="tanh"):
    """A FastGRNNCell or an nn.GRUCell, as `kind` names."""
    check_cell(kind, gate, update)
    if kind == "fastgrnn":
        return FastGRNNCell(input_size, hidden_size, gate, update)
    return nn.GRUCell(input_size, hidden_size)
