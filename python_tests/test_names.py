"""rnnpool_ops/names.py is the one list of the sweep's cell, nonlinearity and parts names on the
Python side; the C++ op's parser (csrc/sweep_args.cpp) and the Triton kernels' codes must agree."""
import itertools
import re

import pytest
import torch

from sweep_cases import make_args
from rnnpool_ops import cells, names


def cpp_forward(args):
    return torch.ops.rnnpool.forward(*args.values())


def with_parts(parts):
    """Valid op arguments for `parts` (the projection given exactly when G is asked for)."""
    args = make_args("padding", ("fastgrnn", "sigmoid", "tanh", "RGC"), torch.float32)
    if "G" not in parts:
        args["proj_weight"] = args["proj_bias"] = None
    return {**args, "parts": parts}


def accepted(args):
    try:
        cpp_forward(args)
        return True
    except ValueError:
        return False


def test_cpp_accepts_exactly_the_parts():
    candidates = ["".join(p) for n in range(4) for p in itertools.product("RGC", repeat=n)] + ["RGCR", "rgc"]
    assert [p for p in candidates if accepted(with_parts(p))] == sorted(names.PARTS, key=candidates.index)


@pytest.mark.parametrize("argument", ["gate_nonlinearity", "update_nonlinearity"])
def test_cpp_accepts_exactly_the_nonlinearities_and_lists_them(argument):
    args = make_args("padding", "rnnpool_fastgrnn", torch.float32)
    candidates = [*names.NONLINEARITIES, "Sigmoid", "quantsigm", "relu", ""]
    assert [n for n in candidates if accepted({**args, argument: n})] == list(names.NONLINEARITIES)
    with pytest.raises(ValueError, match=f"{argument} must be one of") as error:
        cpp_forward({**args, argument: "Sigmoid"})
    listed = re.findall(r"'([^']*)'", str(error.value).split("got")[0])
    assert listed == list(names.NONLINEARITIES)


def test_cpp_accepts_exactly_the_cells_and_lists_them():
    def tensors_for(cell):  # a cell the op refuses gets the FastGRNN tensor lists
        return make_args("padding", (cell if cell in names.CELLS else "fastgrnn", "sigmoid", "tanh", "RC"),
                         torch.float32)

    candidates = [*names.CELLS, "GRU", "fastGRNN", "lstm"]
    assert [cell for cell in candidates if accepted({**tensors_for(cell), "cell": cell})] == list(names.CELLS)
    with pytest.raises(ValueError, match="cell must be") as error:
        cpp_forward({**make_args("padding", "rnnpool_gru", torch.float32), "cell": "GRU"})
    assert re.findall(r"'([^']*)'", str(error.value).split("got")[0]) == list(names.CELLS)


def test_python_cells_define_every_nonlinearity():
    assert list(cells.NONLINEARITIES) == list(names.NONLINEARITIES)
    a = torch.linspace(-3, 3, 13)
    torch.testing.assert_close(cells.NONLINEARITIES["quantSigm"](a), ((a + 1) / 2).clamp(0, 1))
    torch.testing.assert_close(cells.NONLINEARITIES["quantTanh"](a), a.clamp(-1, 1))
    torch.testing.assert_close(cells.NONLINEARITIES["tanh"](a), torch.tanh(a))


def test_triton_codes_follow_the_names():
    pytest.importorskip("triton")
    from rnnpool_ops.triton_sweep import kernels

    assert kernels.CELL_CODES == {"fastgrnn": 0, "gru": 1}  # the kernels' `CELL == 0` is FastGRNN
    # The kernels' branches: GATE / UPDATE 0..3 are these functions.
    assert kernels.NONLINEARITY_CODES == {"sigmoid": 0, "tanh": 1, "quantSigm": 2, "quantTanh": 3}
