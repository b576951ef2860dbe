import pytest
import torch
import torch.nn.functional as F

from rnnpool_ops import reference
from rnnpool_ops.cells import PARAMETER_NAMES
from rnnpool_ops.edgeml import (
    convert_rnnpool_state_dict,
    edgeml_rnnpool_sizes,
    find_edgeml_rnnpool_prefixes,
)

CHANNELS, HIDDEN1, HIDDEN2 = 3, 4, 5
OUR_NAMES = PARAMETER_NAMES["fastgrnn"]
# Where a real EdgeML RNNPool.state_dict() has each cell: its own module, then aliases of it.
EDGEML_SCOPES = {
    "cell_rnn": ("cell", "unrollRNN.RNNCell"),
    "cell_bidirrnn": ("cell", "unrollRNN.RNNCell", "unrollRNN.RNNCell_reverse"),
}


def edgeml_cell_tensors(input_size, hidden, generator, rank=None):
    """An EdgeML FastGRNNCell's tensors in its layouts: x @ W, h @ U, biases [1, h], zeta [1, 1]."""

    def randn(*shape):
        return torch.randn(*shape, dtype=torch.float64, generator=generator)

    if rank is None:
        tensors = {"W": randn(input_size, hidden), "U": randn(hidden, hidden)}
    else:
        tensors = {
            "W1": randn(input_size, rank),
            "W2": randn(rank, hidden),
            "U1": randn(hidden, rank),
            "U2": randn(rank, hidden),
        }
    tensors.update(
        bias_gate=randn(1, hidden), bias_update=randn(1, hidden), zeta=randn(1, 1), nu=randn(1, 1)
    )
    return tensors


def edgeml_state_dict(prefix="", rank=None, seed=0):
    generator = torch.Generator().manual_seed(seed)
    sizes = {"cell_rnn": (CHANNELS, HIDDEN1), "cell_bidirrnn": (HIDDEN1, HIDDEN2)}
    state_dict = {}
    for module, scopes in EDGEML_SCOPES.items():
        tensors = edgeml_cell_tensors(*sizes[module], generator, rank)
        for scope in scopes:
            state_dict.update(
                {f"{prefix}{module}.{scope}.{name}": t for name, t in tensors.items()}
            )
    return state_dict


def edgeml_cell(tensors, x, h):
    """EdgeML's FastGRNN step, row vectors times its [in, h] / [h, h] matrices."""
    if "W" in tensors:
        pre = x @ tensors["W"] + h @ tensors["U"]
    else:
        pre = x @ tensors["W1"] @ tensors["W2"] + h @ tensors["U1"] @ tensors["U2"]
    z = torch.sigmoid(pre + tensors["bias_gate"])
    h_tilde = torch.tanh(pre + tensors["bias_update"])
    h_tilde_gain = torch.sigmoid(tensors["zeta"]) * (1 - z) + torch.sigmoid(tensors["nu"])
    return z * h + h_tilde_gain * h_tilde


def edgeml_rnn(tensors, sequence):
    """Final state over a list of [B, in] inputs, from zeros."""
    h = torch.zeros(sequence[0].shape[0], tensors["bias_gate"].shape[1], dtype=torch.float64)
    for x in sequence:
        h = edgeml_cell(tensors, x, h)
    return h


def edgeml_rnnpool(state_dict, patches):
    """EdgeML's RNNPool on square patches [B, C, k, k] -> [B, 4*h2] = [qr_f, qr_b, qc_f, qc_b]."""
    cells = {"cell_rnn": {}, "cell_bidirrnn": {}}
    for key, tensor in state_dict.items():
        module, *scope, name = key.split(".")
        if scope == ["cell"]:  # the main keys; the aliases hold the same tensors
            cells[module][name] = tensor
    rnn1, rnn2 = cells["cell_rnn"], cells["cell_bidirrnn"]
    k = patches.shape[-1]
    rows = [edgeml_rnn(rnn1, [patches[:, :, i, j] for j in range(k)]) for i in range(k)]
    columns = [edgeml_rnn(rnn1, [patches[:, :, i, j] for i in range(k)]) for j in range(k)]
    return torch.cat(
        [
            edgeml_rnn(rnn2, rows),
            edgeml_rnn(rnn2, rows[::-1]),
            edgeml_rnn(rnn2, columns),
            edgeml_rnn(rnn2, columns[::-1]),
        ],
        dim=1,
    )


def our_rnnpool(converted, x, patch, stride):
    rnn1, rnn2 = ([converted[f"{cell}.{name}"] for name in OUR_NAMES] for cell in ("rnn1", "rnn2"))
    return reference.forward(
        x,
        rnn1,
        rnn2,
        None,
        None,
        (patch, patch),
        (stride, stride),
        (0, 0),
        "fastgrnn",
        "sigmoid",
        "tanh",
        "RC",
    )


@pytest.mark.parametrize("rank", [None, 2], ids=["full_rank", "low_rank"])
def test_converted_state_dict_reproduces_edgeml_rnnpool(rank):
    state_dict = edgeml_state_dict(rank=rank)
    x = torch.randn(
        2, CHANNELS, 10, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    patch, stride = 4, 2  # overlapping, like EdgeML's VWW model (patch 6, stride 4)
    out = our_rnnpool(convert_rnnpool_state_dict(state_dict), x, patch, stride)

    # EdgeML's RNNPool takes the patches already cut out, one batch row each.
    n, out_h, out_w = x.shape[0], out.shape[2], out.shape[3]
    patches = F.unfold(x, patch, stride=stride).transpose(1, 2).reshape(-1, CHANNELS, patch, patch)
    expected = edgeml_rnnpool(state_dict, patches).view(n, out_h, out_w, -1).permute(0, 3, 1, 2)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_conversion_transposes_and_flattens():
    state_dict = edgeml_state_dict()
    converted = convert_rnnpool_state_dict(state_dict)
    assert sorted(converted) == sorted(
        f"{c}.{name}" for c in ("rnn1", "rnn2") for name in OUR_NAMES
    )
    # U is square, so only its values show that it was transposed.
    assert torch.equal(converted["rnn2.U"], state_dict["cell_bidirrnn.cell.U"].T)
    assert torch.equal(converted["rnn1.W"], state_dict["cell_rnn.cell.W"].T)
    assert converted["rnn1.bias_gate"].shape == (HIDDEN1,) and converted["rnn2.nu"].shape == (1,)


def test_low_rank_factors_are_multiplied_out():
    state_dict = edgeml_state_dict(rank=2)
    converted = convert_rnnpool_state_dict(state_dict)
    expected_W = state_dict["cell_rnn.cell.W1"] @ state_dict["cell_rnn.cell.W2"]
    expected_U = state_dict["cell_bidirrnn.cell.U1"] @ state_dict["cell_bidirrnn.cell.U2"]
    torch.testing.assert_close(converted["rnn1.W"], expected_W.T)
    torch.testing.assert_close(converted["rnn2.U"], expected_U.T)


def test_sizes():
    assert edgeml_rnnpool_sizes(edgeml_state_dict()) == (CHANNELS, HIDDEN1, HIDDEN2)
    assert edgeml_rnnpool_sizes(edgeml_state_dict(rank=2)) == (CHANNELS, HIDDEN1, HIDDEN2)


def test_prefixes_are_found_in_a_larger_model_and_convert():
    pool = edgeml_state_dict(prefix="backbone.pool.")
    other_pool = edgeml_state_dict(prefix="head.1.", seed=1)
    model = {"stem.weight": torch.zeros(3), **pool, **other_pool, "classifier.bias": torch.zeros(2)}
    assert find_edgeml_rnnpool_prefixes(model) == ["backbone.pool.", "head.1."]
    assert find_edgeml_rnnpool_prefixes(edgeml_state_dict()) == [""]
    # Only keys under the prefix are read.
    converted = convert_rnnpool_state_dict(model, prefix="head.1.")
    expected = convert_rnnpool_state_dict(edgeml_state_dict(seed=1))
    assert converted.keys() == expected.keys()
    assert all(torch.equal(converted[key], expected[key]) for key in expected)


def test_prefix_must_end_a_module_name():
    lookalike = {"xcell_rnn.cell.bias_gate": 0, "xcell_bidirrnn.cell.bias_gate": 0}
    assert find_edgeml_rnnpool_prefixes(lookalike) == []


def test_alias_that_differs_raises_naming_it():
    state_dict = edgeml_state_dict()
    key = "cell_bidirrnn.unrollRNN.RNNCell_reverse.bias_update"
    state_dict[key] = state_dict[key] + 1
    with pytest.raises(ValueError, match=rf"'{key}' differs from 'cell_bidirrnn.cell.bias_update'"):
        convert_rnnpool_state_dict(state_dict)


def test_alias_without_main_key_raises():
    state_dict = edgeml_state_dict()
    del state_dict["cell_rnn.cell.zeta"]
    with pytest.raises(
        ValueError, match=r"'cell_rnn.unrollRNN.RNNCell.zeta' is an alias of 'cell_rnn.cell.zeta'"
    ):
        convert_rnnpool_state_dict(state_dict)


def test_missing_key_raises_naming_it():
    state_dict = {key: t for key, t in edgeml_state_dict().items() if not key.endswith(".nu")}
    with pytest.raises(ValueError, match=r"missing key cell_rnn.cell.nu"):
        convert_rnnpool_state_dict(state_dict)


def test_missing_low_rank_factor_raises_naming_it():
    state_dict = {key: t for key, t in edgeml_state_dict(rank=2).items() if not key.endswith(".U2")}
    with pytest.raises(ValueError, match=r"missing key cell_rnn.cell.U .*missing U2"):
        convert_rnnpool_state_dict(state_dict)


def test_unknown_key_raises_naming_it():
    state_dict = {**edgeml_state_dict(), "cell_rnn.cell.sparsity": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"unknown key 'cell_rnn.cell.sparsity'"):
        convert_rnnpool_state_dict(state_dict)


def test_wrong_shape_raises_naming_key():
    state_dict = edgeml_state_dict()
    for scope in EDGEML_SCOPES["cell_rnn"]:
        state_dict[f"cell_rnn.{scope}.bias_gate"] = torch.zeros(HIDDEN1)
    with pytest.raises(
        ValueError, match=r"cell_rnn.cell.bias_gate must have shape \[1, 4\], got \[4\]"
    ):
        convert_rnnpool_state_dict(state_dict)


def test_mismatched_cells_raise():
    state_dict = edgeml_state_dict()
    for scope in EDGEML_SCOPES["cell_bidirrnn"]:
        state_dict[f"cell_bidirrnn.{scope}.W"] = torch.zeros(
            HIDDEN1 + 1, HIDDEN2, dtype=torch.float64
        )
    with pytest.raises(
        ValueError, match=r"cell_bidirrnn.cell.W has input size 5, but RNN2's input"
    ):
        convert_rnnpool_state_dict(state_dict)
