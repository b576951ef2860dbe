"""EdgeML's RNNPool as its Python code computes it, on state dicts in EdgeML's own layouts and keys
(a stand-in for the real module, which the tests cannot import), and the trained VWW layer of the
golden trace (python_tests/data/) as an RNNPool2d. Shared by the EdgeML, layer and swap tests."""

import torch

from rnnpool_ops import RNNPool2d

CHANNELS, HIDDEN1, HIDDEN2 = 3, 4, 5
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


def golden_layer(golden, dtype, backend):
    """The golden trace's trained VWW RNNPool (its patch size, stride = patch) on a backend."""
    def raw(p):  # the trace stores sigmoid(zeta), sigmoid(nu); the layer holds the raw values
        return torch.logit(torch.tensor([p], dtype=torch.float64)).to(dtype)

    layer = RNNPool2d(golden["input_channels"], golden["h1"], golden["h2"], golden["patch"], backend=backend)
    layer = layer.to(dtype)
    with torch.no_grad():
        for cell, data in ((layer.rnn1, golden["rnn1"]), (layer.rnn2, golden["rnn2"])):
            for name in ("W", "U", "bias_gate", "bias_update"):
                getattr(cell, name).copy_(torch.tensor(data[name], dtype=dtype))
            cell.zeta.copy_(raw(data["sigmoid_zeta"]))
            cell.nu.copy_(raw(data["sigmoid_nu"]))
    return layer
