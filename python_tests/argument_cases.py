"""Valid op arguments and one bad variant per check, shared by the reference and op tests."""

import torch

from rnnpool_ops.cells import parameter_shapes


def zeros_params(kind, input_size, hidden, **options):
    return [torch.zeros(shape, **options) for shape in parameter_shapes(kind, input_size, hidden)]


def valid_args():
    """C=3, H=5, W=6, h1=4, h2=2, kernel (2, 3), ReX parts."""
    return dict(
        x=torch.zeros(2, 3, 5, 6),
        rnn1=zeros_params("fastgrnn", 3, 4),
        rnn2=zeros_params("fastgrnn", 4, 2),
        proj_weight=torch.zeros(8, 20),
        proj_bias=torch.zeros(8),
        kernel_size=(2, 3),
        stride=(2, 1),
        padding=(1, 0),
        cell="fastgrnn",
        gate_nonlinearity="sigmoid",
        update_nonlinearity="tanh",
        parts="RGC",
    )


def replaced(sequence, index, value):
    return [value if i == index else item for i, item in enumerate(sequence)]


BAD_ARGS = {
    "x_not_tensor": (
        lambda a: {"x": a["x"].tolist()},
        TypeError,
        r"x must be a tensor \[N, C, H, W\]",
    ),
    "x_rank": (
        lambda a: {"x": a["x"][0]},
        ValueError,
        r"x must be a 4-D tensor \[N, C, H, W\], got shape \[3, 5, 6\]",
    ),
    "x_integer": (
        lambda a: {"x": a["x"].long()},
        TypeError,
        r"x must have a floating-point dtype, got torch.int64",
    ),
    "kernel_one_int": (lambda a: {"kernel_size": 2}, TypeError, r"kernel_size must be 2 ints"),
    "kernel_zero": (lambda a: {"kernel_size": (0, 3)}, ValueError, r"kernel_size must be >= 1"),
    "stride_zero": (lambda a: {"stride": (1, 0)}, ValueError, r"stride must be >= 1"),
    "stride_three_ints": (lambda a: {"stride": (1, 1, 1)}, TypeError, r"stride must be 2 ints"),
    "stride_float": (lambda a: {"stride": (1.0, 1)}, TypeError, r"stride must be 2 ints"),
    "padding_negative": (lambda a: {"padding": (-1, 0)}, ValueError, r"padding must be >= 0"),
    "patch_larger_than_padded_input": (
        lambda a: {"kernel_size": (8, 3)},
        ValueError,
        r"kernel_size \[8, 3\] is larger than the padded input \[7, 6\]",
    ),
    "cell_unknown": (lambda a: {"cell": "lstm"}, ValueError, r"cell must be one of"),
    "gate_unknown": (
        lambda a: {"gate_nonlinearity": "relu"},
        ValueError,
        r"gate_nonlinearity must be one of",
    ),
    "update_unknown": (
        lambda a: {"update_nonlinearity": "relu"},
        ValueError,
        r"update_nonlinearity must be one of",
    ),
    "gru_nonlinearity": (
        lambda a: {
            "cell": "gru",
            "rnn1": zeros_params("gru", 3, 4),
            "rnn2": zeros_params("gru", 4, 2),
            "update_nonlinearity": "quantTanh",
        },
        ValueError,
        r"gate_nonlinearity and update_nonlinearity must be 'sigmoid' and 'tanh' for the gru cell",
    ),
    "parts_out_of_order": (lambda a: {"parts": "CR"}, ValueError, r"parts must be one of"),
    "parts_empty": (lambda a: {"parts": ""}, ValueError, r"parts must be one of"),
    "parts_repeated": (lambda a: {"parts": "RRC"}, ValueError, r"parts must be one of"),
    "rnn1_length": (
        lambda a: {"rnn1": a["rnn1"][:5]},
        ValueError,
        r"rnn1 must be a list of 6 tensors \[W, U, bias_gate",
    ),
    "rnn1_not_tensor": (
        lambda a: {"rnn1": replaced(a["rnn1"], 2, 1.0)},
        TypeError,
        r"rnn1\[2\] \(bias_gate\) must be a tensor",
    ),
    "rnn1_input_size": (
        lambda a: {"rnn1": replaced(a["rnn1"], 0, torch.zeros(4, 5))},
        ValueError,
        r"rnn1\[0\] \(W\) must have shape \[4, 3\]",
    ),
    "rnn1_W_rank": (
        lambda a: {"rnn1": replaced(a["rnn1"], 0, torch.zeros(4))},
        ValueError,
        r"rnn1\[0\] \(W\) must have shape \[hidden, 3\]",
    ),
    "rnn1_U_shape": (
        lambda a: {"rnn1": replaced(a["rnn1"], 1, torch.zeros(4, 3))},
        ValueError,
        r"rnn1\[1\] \(U\) must have shape \[4, 4\]",
    ),
    "rnn1_zeta_scalar": (
        lambda a: {"rnn1": replaced(a["rnn1"], 4, torch.zeros(()))},
        ValueError,
        r"rnn1\[4\] \(zeta\) must have shape \[1\]",
    ),
    "rnn2_input_size": (
        lambda a: {"rnn2": zeros_params("fastgrnn", 3, 2)},
        ValueError,
        r"rnn2\[0\] \(W\) must have shape \[2, 4\]",
    ),
    "gru_weight_rows": (
        lambda a: {
            "cell": "gru",
            "rnn1": replaced(zeros_params("gru", 3, 4), 0, torch.zeros(10, 3)),
            "rnn2": zeros_params("gru", 4, 2),
        },
        ValueError,
        r"rnn1\[0\] \(weight_ih\) must have shape \[3\*hidden, 3\]",
    ),
    "rnn1_dtype": (
        lambda a: {"rnn1": replaced(a["rnn1"], 3, torch.zeros(4, dtype=torch.float64))},
        TypeError,
        r"rnn1\[3\] \(bias_update\) has dtype torch.float64 but x has torch.float32",
    ),
    "rnn2_device": (
        lambda a: {"rnn2": replaced(a["rnn2"], 5, torch.zeros(1, device="meta"))},
        ValueError,
        r"rnn2\[5\] \(nu\) is on meta but x is on cpu",
    ),
    "proj_weight_missing": (
        lambda a: {"proj_weight": None},
        TypeError,
        r"proj_weight must be a tensor \[4\*h2, \(kh\+kw\)\*h1\] = \[8, 20\]",
    ),
    "proj_weight_shape": (
        lambda a: {"proj_weight": torch.zeros(8, 12)},
        ValueError,
        r"proj_weight must have shape \[4\*h2, \(kh\+kw\)\*h1\] = \[8, 20\]",
    ),
    "proj_bias_shape": (
        lambda a: {"proj_bias": torch.zeros(1, 8)},
        ValueError,
        r"proj_bias must have shape \[4\*h2\] = \[8\]",
    ),
    "proj_bias_device": (
        lambda a: {"proj_bias": torch.zeros(8, device="meta")},
        ValueError,
        r"proj_bias is on meta",
    ),
    "proj_without_G": (
        lambda a: {"parts": "RC"},
        ValueError,
        r"proj_weight must be None when parts \('RC'\) has no 'G'",
    ),
}
