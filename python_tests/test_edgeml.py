import pytest
import torch
import torch.nn.functional as F
from edgeml_cases import CHANNELS, EDGEML_SCOPES, HIDDEN1, HIDDEN2, edgeml_rnnpool, edgeml_state_dict

from rnnpool_ops import reference
from rnnpool_ops.cells import PARAMETER_NAMES
from rnnpool_ops.edgeml import (
    convert_rnnpool_state_dict,
    edgeml_rnnpool_sizes,
    find_edgeml_rnnpool_prefixes,
)

OUR_NAMES = PARAMETER_NAMES["fastgrnn"]


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
