import json
from pathlib import Path

import pytest
import torch

from rnnpool_ops.cells import parameter_shapes

# EdgeML's recorded patch, kept with the tests (see data/README.md for where it comes from).
GOLDEN_PATH = Path(__file__).resolve().parent / "data" / "edgeml_vww_rnnpool_trace.json"


@pytest.fixture(scope="session")
def golden():
    """EdgeML's recorded VWW RNNPool patch: trained weights, one input patch and its output."""
    return json.loads(GOLDEN_PATH.read_text())


def _random_cell_params(kind, input_size, hidden, dtype=torch.float64, generator=None):
    """Random leaf tensors (requires_grad) for a cell, in the op's order.

    Every tensor, zeta and nu included, is drawn from randn: the default initialisation
    saturates sigmoid(zeta) and sigmoid(nu), which would hide mistakes in their use.
    """
    return [
        torch.randn(shape, dtype=dtype, generator=generator).requires_grad_()
        for shape in parameter_shapes(kind, input_size, hidden)
    ]


@pytest.fixture
def random_cell_params():
    """random_cell_params(kind, input_size, hidden, dtype=float64, generator=None) -> [Tensor]."""
    return _random_cell_params
