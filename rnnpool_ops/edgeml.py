"""Read EdgeML RNNPool checkpoints (its Python FastGRNNCell layouts) into this package's cells.

EdgeML's RNNPool holds two FastGRNN cells: `cell_rnn` (RNN1) and `cell_bidirrnn` (RNN2, one cell
run both ways). Its cells compute x @ W + h @ U with W [in, h], U [h, h], biases [1, h] and zeta,
nu [1, 1]; ours compute W x + U h with W [h, in], U [h, h], biases [h] and zeta, nu [1].
"""

from collections.abc import Mapping

import torch

_OUR_NAMES = {"cell_rnn": "rnn1", "cell_bidirrnn": "rnn2"}
_MAIN_SCOPE = "cell"
# A real RNNPool.state_dict() reaches each cell a second time through its unrolled RNN, and the
# shared RNN2 a third time as the reverse direction's cell: the same tensors under other keys.
_ALIAS_SCOPES = {
    "cell_rnn": ("unrollRNN.RNNCell",),
    "cell_bidirrnn": ("unrollRNN.RNNCell", "unrollRNN.RNNCell_reverse"),
}
# W and U may instead be stored low rank, as factors W1 @ W2 and U1 @ U2.
_TENSOR_NAMES = ("W", "W1", "W2", "U", "U1", "U2", "bias_gate", "bias_update", "zeta", "nu")
# Every RNNPool has this key, full rank or low rank; it marks where one sits in a larger model.
_MARKER = "cell_rnn.cell.bias_gate"


def _known_keys():
    """{key relative to the RNNPool: (module, scope, tensor name)} for every key it may have."""
    known = {}
    for module, aliases in _ALIAS_SCOPES.items():
        for scope in (_MAIN_SCOPE, *aliases):
            for name in _TENSOR_NAMES:
                known[f"{module}.{scope}.{name}"] = (module, scope, name)
    return known


_KNOWN_KEYS = _known_keys()


def find_edgeml_rnnpool_prefixes(state_dict):
    """Key prefixes ("" or ending in ".") under which `state_dict` holds an EdgeML RNNPool."""
    prefixes = []
    for key in state_dict:
        prefix = key[: -len(_MARKER)]
        if (
            key.endswith(_MARKER)
            and (prefix == "" or prefix.endswith("."))
            and f"{prefix}cell_bidirrnn.{_MAIN_SCOPE}.bias_gate" in state_dict
        ):
            prefixes.append(prefix)
    return sorted(prefixes)


def unwrap_checkpoint(checkpoint):
    """The state dict in `checkpoint`, a state dict or what EdgeML's training scripts save,
    {'model': state dict, 'epoch': ...}; DataParallel's 'module.' key prefix is removed."""
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f"state_dict must be a mapping of tensors (or a checkpoint holding one), got "
                        f"{type(checkpoint).__name__}")
    state = checkpoint
    if not any(isinstance(value, torch.Tensor) for value in state.values()):
        inner = [state[key] for key in ("model", "state_dict") if isinstance(state.get(key), Mapping)]
        state = inner[0] if inner else state
    if state and all(isinstance(key, str) and key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    return state


def require_edgeml_rnnpool_prefixes(state_dict):
    """find_edgeml_rnnpool_prefixes, raising (naming the keys found) where there is none."""
    prefixes = find_edgeml_rnnpool_prefixes(state_dict)
    if not prefixes:
        keys = list(state_dict)
        shown = ", ".join(repr(key) for key in keys[:8]) + (f", ... ({len(keys)} keys)" if len(keys) > 8 else "")
        raise ValueError(f"no EdgeML RNNPool found (keys <prefix>{_MARKER} and <prefix>cell_bidirrnn.{_MAIN_SCOPE}."
                         f"bias_gate); the keys are: {shown or 'none'}")
    return prefixes


def convert_rnnpool_state_dict(state_dict, prefix=""):
    """Convert EdgeML RNNPool tensors under `prefix` to keys rnn1.{W, U, bias_gate, bias_update,
    zeta, nu} and rnn2.{...} in this package's FastGRNNCell layouts.

    With a prefix, keys outside it are ignored (the rest of a larger model); every key under it
    must belong to the RNNPool. Alias keys must hold the same values as the main ones.
    """
    if not any(key.startswith(f"{prefix}{module}.") for key in state_dict for module in _OUR_NAMES):
        found = find_edgeml_rnnpool_prefixes(state_dict)
        raise ValueError(f"no EdgeML RNNPool under prefix {prefix!r}: the state dict holds "
                         + (f"EdgeML RNNPools under prefixes {found}" if found else "no EdgeML RNNPool"))
    cells = {module: {} for module in _OUR_NAMES}
    aliases = []
    for key, tensor in state_dict.items():
        if not key.startswith(prefix):
            continue
        relative = key[len(prefix) :]
        if relative not in _KNOWN_KEYS:
            raise ValueError(
                f"unknown key {key!r} in an EdgeML RNNPool state dict (prefix {prefix!r}): "
                "expected cell_rnn.* and cell_bidirrnn.* under 'cell.' or "
                "'unrollRNN.RNNCell[_reverse].'"
            )
        module, scope, name = _KNOWN_KEYS[relative]
        if scope == _MAIN_SCOPE:
            cells[module][name] = tensor
        else:
            aliases.append((key, f"{prefix}{module}.{_MAIN_SCOPE}.{name}"))
    for alias_key, main_key in aliases:
        _check_alias(state_dict, alias_key, main_key)

    converted = {}
    for module, ours in _OUR_NAMES.items():
        cell = _convert_cell(cells[module], f"{prefix}{module}.{_MAIN_SCOPE}.")
        converted.update({f"{ours}.{name}": tensor for name, tensor in cell.items()})
    hidden1 = converted["rnn1.W"].shape[0]
    rnn2_input = converted["rnn2.W"].shape[1]
    if rnn2_input != hidden1:
        raise ValueError(
            f"{prefix}cell_bidirrnn.{_MAIN_SCOPE}.W has input size {rnn2_input}, but RNN2's input "
            f"is RNN1's hidden state of size {hidden1}"
        )
    return converted


def edgeml_rnnpool_sizes(state_dict, prefix=""):
    """(in_channels, hidden1, hidden2) of the EdgeML RNNPool under `prefix`."""
    converted = convert_rnnpool_state_dict(state_dict, prefix)
    hidden1, in_channels = converted["rnn1.W"].shape
    return in_channels, hidden1, converted["rnn2.W"].shape[0]


def _check_alias(state_dict, alias_key, main_key):
    if main_key not in state_dict:
        raise ValueError(f"{alias_key!r} is an alias of {main_key!r}, which is missing")
    if not torch.equal(state_dict[alias_key], state_dict[main_key]):
        raise ValueError(
            f"{alias_key!r} differs from {main_key!r}: RNNPool's aliases must hold the same tensor"
        )


def _convert_cell(tensors, key_prefix):
    """One EdgeML FastGRNNCell's tensors {name: tensor} -> ours, in PARAMETER_NAMES order."""
    W = _dense(tensors, "W", key_prefix)  # [in, h]
    hidden = W.shape[1]
    U = _dense(tensors, "U", key_prefix)
    _expect_shape(f"{key_prefix}U", U, (hidden, hidden))
    bias_gate, bias_update, zeta, nu = (
        _required(tensors, name, key_prefix, shape)
        for name, shape in (
            ("bias_gate", (1, hidden)),
            ("bias_update", (1, hidden)),
            ("zeta", (1, 1)),
            ("nu", (1, 1)),
        )
    )
    # U is transposed too: EdgeML multiplies h @ U, we multiply U h.
    return {
        "W": W.t().contiguous(),
        "U": U.t().contiguous(),
        "bias_gate": bias_gate.reshape(hidden),
        "bias_update": bias_update.reshape(hidden),
        "zeta": zeta.reshape(1),
        "nu": nu.reshape(1),
    }


def _dense(tensors, name, key_prefix):
    """The 2-D matrix `name`, stored whole or as the factors name1 @ name2."""
    factors = (f"{name}1", f"{name}2")
    if name in tensors:
        if any(factor in tensors for factor in factors):
            raise ValueError(
                f"{key_prefix}{name} is stored both whole and as factors {factors}: keep one"
            )
        matrix = tensors[name]
        if matrix.dim() != 2:
            raise ValueError(f"{key_prefix}{name} must be 2-D, got shape {list(matrix.shape)}")
        return matrix
    missing = [factor for factor in factors if factor not in tensors]
    if missing:
        raise ValueError(
            f"missing key {key_prefix}{name} (or its low-rank factors "
            f"{', '.join(key_prefix + f for f in factors)}; missing {', '.join(missing)})"
        )
    first, second = (tensors[factor] for factor in factors)
    if first.dim() != 2 or second.dim() != 2 or first.shape[1] != second.shape[0]:
        raise ValueError(
            f"{key_prefix}{factors[0]} {list(first.shape)} and {key_prefix}{factors[1]} "
            f"{list(second.shape)} must be matrices [a, r] and [r, b]"
        )
    return first @ second


def _required(tensors, name, key_prefix, shape):
    if name not in tensors:
        raise ValueError(f"missing key {key_prefix}{name}")
    tensor = tensors[name]
    _expect_shape(f"{key_prefix}{name}", tensor, shape)
    return tensor


def _expect_shape(key, tensor, shape):
    if tuple(tensor.shape) != shape:
        raise ValueError(f"{key} must have shape {list(shape)}, got {list(tensor.shape)}")
