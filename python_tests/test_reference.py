import pytest
import torch
import torch.nn.functional as F
from torch import nn

from argument_cases import BAD_ARGS, valid_args
from rnnpool_ops import reference
from rnnpool_ops._checks import check_sweep_args, output_channels
from rnnpool_ops.cells import (
    FastGRNNCell,
    cell_kind,
    cell_nonlinearities,
    cell_parameters,
    make_cell,
    nonlinearity,
    parameter_shapes,
    step,
)

# (N, C, H, W, kernel_size, stride, padding), each awkward in its own way.
SHAPES = {
    "non_square_patch": (2, 3, 7, 9, (3, 4), (2, 3), (0, 0)),
    "overlap": (1, 2, 6, 6, (3, 3), (1, 2), (1, 0)),
    "gaps": (2, 3, 9, 10, (2, 2), (3, 4), (0, 0)),
    "padding": (1, 3, 5, 5, (4, 4), (2, 2), (2, 1)),
    "single_output_pixel": (1, 4, 5, 3, (5, 3), (5, 3), (0, 0)),
    "one_pixel_rows": (2, 2, 3, 4, (2, 1), (1, 1), (0, 0)),
}
CELLS = [
    ("fastgrnn", "sigmoid", "tanh"),
    ("fastgrnn", "quantSigm", "quantTanh"),
    ("gru", "sigmoid", "tanh"),
]
HIDDEN1, HIDDEN2 = 3, 2


def sweep_args(random_cell_params, shape, cell, gate, update, parts, seed=0):
    """Random arguments for reference.forward, as a dict."""
    generator = torch.Generator().manual_seed(seed)
    n, channels, height, width, kernel_size, stride, padding = shape
    uses_proj = "G" in parts
    proj_shapes = ((4 * HIDDEN2, sum(kernel_size) * HIDDEN1), (4 * HIDDEN2,))
    proj_weight, proj_bias = (
        torch.randn(size, dtype=torch.float64, generator=generator).requires_grad_()
        if uses_proj
        else None
        for size in proj_shapes
    )
    return dict(
        x=torch.randn(
            n, channels, height, width, dtype=torch.float64, generator=generator
        ).requires_grad_(),
        rnn1=random_cell_params(cell, channels, HIDDEN1, generator=generator),
        rnn2=random_cell_params(cell, HIDDEN1, HIDDEN2, generator=generator),
        proj_weight=proj_weight,
        proj_bias=proj_bias,
        kernel_size=kernel_size,
        stride=stride,
        padding=padding,
        cell=cell,
        gate_nonlinearity=gate,
        update_nonlinearity=update,
        parts=parts,
    )


def naive_sweep(
    x,
    rnn1,
    rnn2,
    proj_weight,
    proj_bias,
    kernel_size,
    stride,
    padding,
    cell,
    gate_nonlinearity,
    update_nonlinearity,
    parts,
):
    """docs/spec.md section 1 written out: every patch, row and column on its own, one pixel per step."""
    kh, kw = kernel_size
    sh, sw = stride
    padded = F.pad(x, (padding[1], padding[1], padding[0], padding[0]))
    out_h = (padded.shape[2] - kh) // sh + 1
    out_w = (padded.shape[3] - kw) // sw + 1

    def rnn(params, sequence):
        h = None
        for item in sequence:
            h = step(cell, params, item.unsqueeze(0), h, gate_nonlinearity, update_nonlinearity)
        return h[0]

    images = []
    for image in padded:
        pixels = []
        for top in range(0, out_h * sh, sh):
            for left in range(0, out_w * sw, sw):
                patch = image[:, top : top + kh, left : left + kw]
                rows = [rnn(rnn1, [patch[:, i, j] for j in range(kw)]) for i in range(kh)]
                columns = [rnn(rnn1, [patch[:, i, j] for i in range(kh)]) for j in range(kw)]
                vector = []
                if "R" in parts:
                    vector += [rnn(rnn2, rows), rnn(rnn2, rows[::-1])]
                if "G" in parts:
                    vector.append(proj_weight @ torch.cat(rows + columns) + proj_bias)
                if "C" in parts:
                    vector += [rnn(rnn2, columns), rnn(rnn2, columns[::-1])]
                pixels.append(torch.cat(vector))
        images.append(torch.stack(pixels, dim=1).unflatten(1, (out_h, out_w)))
    return torch.stack(images)


@pytest.mark.parametrize("parts", ["R", "C", "G", "RC", "RGC"])
@pytest.mark.parametrize("cell, gate, update", CELLS)
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_reference_matches_naive_loops(random_cell_params, shape, cell, gate, update, parts):
    args = sweep_args(random_cell_params, shape, cell, gate, update, parts)
    expected = naive_sweep(**args)
    out = reference.forward(**args)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell, gate, update", [CELLS[0], CELLS[2]])
def test_reference_gradients_match_finite_differences(random_cell_params, cell, gate, update):
    args = sweep_args(
        random_cell_params, (1, 2, 4, 3, (2, 2), (1, 2), (1, 0)), cell, gate, update, "RGC"
    )
    count = len(args["rnn1"])

    def sweep(x, *params):
        rnn1, rnn2, (proj_weight, proj_bias) = params[:count], params[count:-2], params[-2:]
        changed = dict(x=x, rnn1=rnn1, rnn2=rnn2, proj_weight=proj_weight, proj_bias=proj_bias)
        return reference.forward(**{**args, **changed})

    tensors = [args["x"], *args["rnn1"], *args["rnn2"], args["proj_weight"], args["proj_bias"]]
    assert torch.autograd.gradcheck(sweep, tensors)


@pytest.mark.parametrize("cell, gate, update", [CELLS[0], CELLS[2]])
def test_empty_batch_gives_empty_output(random_cell_params, cell, gate, update):
    args = sweep_args(
        random_cell_params, (0, 3, 5, 6, (2, 3), (2, 1), (0, 1)), cell, gate, update, "RGC"
    )
    out = reference.forward(**args)
    assert out.shape == (0, 8 * HIDDEN2, 2, 6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_reference_reproduces_edgeml_golden_trace(golden, dtype):
    def cell_params(recorded):
        # The trace stores sigmoid(zeta) and sigmoid(nu); the op takes them raw.
        params = [recorded[name] for name in ("W", "U", "bias_gate", "bias_update")]
        params = [torch.tensor(values, dtype=torch.float64) for values in params]
        params += [
            torch.logit(torch.tensor([recorded[name]], dtype=torch.float64))
            for name in ("sigmoid_zeta", "sigmoid_nu")
        ]
        return [p.to(dtype) for p in params]

    patch = golden["patch"]
    x = torch.tensor(golden["input_hwc"], dtype=dtype).permute(2, 0, 1).unsqueeze(0)
    out = reference.forward(
        x,
        cell_params(golden["rnn1"]),
        cell_params(golden["rnn2"]),
        None,
        None,
        (patch, patch),
        (patch, patch),
        (0, 0),
        "fastgrnn",
        "sigmoid",
        "tanh",
        "RC",
    )
    assert out.shape == (1, 4 * golden["h2"], 1, 1)
    expected = torch.tensor(golden["output"], dtype=dtype)
    torch.testing.assert_close(out.flatten(), expected, rtol=0, atol=1e-6)


# ---- cells ----


def test_gru_step_equals_nn_grucell(random_cell_params):
    generator = torch.Generator().manual_seed(1)
    params = random_cell_params("gru", 5, 4, generator=generator)
    module = nn.GRUCell(5, 4, dtype=torch.float64)
    with torch.no_grad():
        for target, source in zip(cell_parameters(module), params):
            target.copy_(source)
    x = torch.randn(3, 5, dtype=torch.float64, generator=generator)
    h = torch.randn(3, 4, dtype=torch.float64, generator=generator)
    torch.testing.assert_close(step("gru", params, x, h), module(x, h))
    torch.testing.assert_close(step("gru", params, x), module(x))


@pytest.mark.parametrize(
    "gate, update, gate_formula, update_formula",
    [
        ("sigmoid", "tanh", torch.sigmoid, torch.tanh),
        ("quantSigm", "quantTanh", lambda a: ((a + 1) / 2).clamp(0, 1), lambda a: a.clamp(-1, 1)),
        ("tanh", "sigmoid", torch.tanh, torch.sigmoid),
    ],
)
def test_fastgrnn_cell_follows_formula(
    random_cell_params, gate, update, gate_formula, update_formula
):
    generator = torch.Generator().manual_seed(2)
    params = random_cell_params("fastgrnn", 5, 4, generator=generator)
    module = FastGRNNCell(5, 4, gate, update, dtype=torch.float64)
    with torch.no_grad():
        for target, source in zip(cell_parameters(module), params):
            target.copy_(source)
    x = torch.randn(3, 5, dtype=torch.float64, generator=generator)
    h = torch.randn(3, 4, dtype=torch.float64, generator=generator)

    W, U, bias_gate, bias_update, zeta, nu = params
    pre = x @ W.T + h @ U.T
    z = gate_formula(pre + bias_gate)
    h_tilde = update_formula(pre + bias_update)
    expected = z * h + (torch.sigmoid(zeta) * (1 - z) + torch.sigmoid(nu)) * h_tilde
    torch.testing.assert_close(module(x, h), expected)
    torch.testing.assert_close(module(x), module(x, torch.zeros_like(h)))


def test_fastgrnn_cell_initialises_as_edgeml_rnnpool():
    torch.manual_seed(0)
    module = FastGRNNCell(40, 30)
    assert [tuple(p.shape) for p in cell_parameters(module)] == list(
        parameter_shapes("fastgrnn", 40, 30)
    )
    assert module.zeta.item() == 100.0 and module.nu.item() == -100.0
    assert torch.equal(module.bias_gate, torch.ones(30)) and torch.equal(
        module.bias_update, torch.ones(30)
    )
    assert 0.08 < module.W.std().item() < 0.12 and 0.08 < module.U.std().item() < 0.12
    assert "gate='sigmoid'" in repr(module) and "update='tanh'" in repr(module)


def test_cell_helpers_name_kind_parameters_and_nonlinearities():
    fastgrnn = make_cell("fastgrnn", 3, 2, "quantSigm", "tanh")
    gru = make_cell("gru", 3, 2)
    assert (cell_kind(fastgrnn), cell_kind(gru)) == ("fastgrnn", "gru")
    assert cell_nonlinearities(fastgrnn) == ("quantSigm", "tanh")
    assert cell_nonlinearities(gru) == ("sigmoid", "tanh")
    assert cell_parameters(fastgrnn)[0] is fastgrnn.W
    assert cell_parameters(gru) == [gru.weight_ih, gru.weight_hh, gru.bias_ih, gru.bias_hh]


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: cell_parameters(nn.GRUCell(3, 2, bias=False)), r"bias=False"),
        (
            lambda: cell_kind(nn.LSTMCell(3, 2)),
            r"cell must be a FastGRNNCell or an nn.GRUCell, got LSTMCell",
        ),
        (lambda: make_cell("gru", 3, 2, "quantSigm"), r"gate_nonlinearity and update_nonlinearity"),
        (lambda: make_cell("lstm", 3, 2), r"cell must be one of \['fastgrnn', 'gru'\], got 'lstm'"),
        (lambda: FastGRNNCell(3, 2, gate="relu"), r"gate must be one of"),
    ],
    ids=["gru_without_bias", "other_module", "gru_nonlinearity", "unknown_kind", "unknown_gate"],
)
def test_cell_helpers_reject_what_the_op_cannot_run(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# ---- nonlinearities ----

POINTS = [-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0]  # -1 and 1 are the kinks of both


@pytest.mark.parametrize(
    "name, values, slopes",
    [
        ("quantSigm", [0, 0, 0.25, 0.5, 0.75, 1, 1], [0, 0, 0.5, 0.5, 0.5, 0, 0]),
        ("quantTanh", [-1, -1, -0.5, 0, 0.5, 1, 1], [0, 0, 1, 1, 1, 0, 0]),
    ],
)
def test_quant_nonlinearities_values_and_gradients(name, values, slopes):
    a = torch.tensor(POINTS, dtype=torch.float64, requires_grad=True)
    out = nonlinearity(name)(a)
    out.sum().backward()
    assert out.tolist() == values
    assert a.grad.tolist() == slopes


def test_smooth_nonlinearities_are_torchs():
    assert nonlinearity("sigmoid") is torch.sigmoid and nonlinearity("tanh") is torch.tanh


def test_unknown_nonlinearity_names_argument_and_valid_names():
    with pytest.raises(
        ValueError,
        match=r"gate must be one of \['quantSigm', 'quantTanh', 'sigmoid', 'tanh'\], got 'relu'",
    ):
        nonlinearity("relu", "gate")


# ---- argument checks (cases in argument_cases.py) ----


def test_valid_args_give_output_shape():
    assert check_sweep_args(**valid_args()) == (2, 16, 3, 4)
    assert reference.forward(**valid_args()).shape == (2, 16, 3, 4)


@pytest.mark.parametrize("change, error, match", BAD_ARGS.values(), ids=BAD_ARGS.keys())
def test_bad_argument_raises_naming_it(change, error, match):
    args = valid_args()
    args.update(change(args))
    with pytest.raises(error, match=match):
        reference.forward(**args)


@pytest.mark.parametrize(
    "parts, channels", [("R", 6), ("C", 6), ("G", 12), ("RC", 12), ("RGC", 24), ("GC", 18)]
)
def test_output_channels(parts, channels):
    assert output_channels(parts, 3) == channels
