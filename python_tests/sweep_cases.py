"""The sweep's test cases, for every backend's tests (C++, emulated GPU algorithm, Triton
interpreter and GPU): geometries and variants as data, the op's arguments built from them, and the
check of a backend's output and every gradient against the reference computed in float64 on the
same values."""

import torch
from torch.nn.modules.utils import _pair

from rnnpool_ops import reference
from rnnpool_ops._checks import check_sweep_args
from rnnpool_ops.cells import parameter_shapes

# name: (N, C, H, W, kernel, stride, padding)
GEOMETRIES = {
    "overlap": (2, 3, 9, 9, 4, 2, 0),  # 72 row sequences: more than one interpreter program
    "nonsquare_gaps": (2, 2, 11, 13, (2, 3), (3, 4), 0),  # stride > kernel: pixels no patch reads
    "padding": (1, 3, 7, 6, 3, 2, (1, 2)),
    "one_output_pixel": (1, 2, 5, 4, (5, 4), 1, 0),
    "odd_stride1": (3, 5, 7, 5, (3, 2), 1, (1, 0)),
    "wide_row": (1, 1, 3, 17, (3, 5), (1, 3), (0, 1)),
    "wide_image": (2, 3, 6, 41, 3, 2, 1),  # many sequences per lane group, groups across patch rows
    "wide_unpadded": (1, 2, 5, 40, (3, 2), (2, 1), 0),
    "many_small_maps": (37, 3, 4, 4, 4, 4, 0),  # one patch per sample: lane groups span samples; backward chunks of at most 16 (float64: 8)
}
# The geometries the slow Triton interpreter runs: one of each kind of edge.
INTERPRETER_GEOMETRIES = ["overlap", "nonsquare_gaps", "padding", "one_output_pixel"]
# name: (cell, gate, update, parts)
VARIANTS = {
    "rnnpool_fastgrnn": ("fastgrnn", "sigmoid", "tanh", "RC"),
    "rnnpool_quantised": ("fastgrnn", "quantSigm", "quantTanh", "RC"),
    "rnnpool_gru": ("gru", "sigmoid", "tanh", "RC"),
    "rex_gru": ("gru", "sigmoid", "tanh", "RGC"),
    "rex_fastgrnn": ("fastgrnn", "tanh", "sigmoid", "RGC"),  # gate and update swapped
    "global_only": ("gru", "sigmoid", "tanh", "G"),
    "rows_only": ("fastgrnn", "sigmoid", "tanh", "R"),
    "rows_quantised_swapped": ("fastgrnn", "quantTanh", "quantSigm", "R"),
    "rows_global": ("fastgrnn", "sigmoid", "tanh", "RG"),
    "global_cols": ("fastgrnn", "sigmoid", "tanh", "GC"),
    "global_cols_gru": ("gru", "sigmoid", "tanh", "GC"),
    "cols_only": ("gru", "sigmoid", "tanh", "C"),
}


HIDDEN1, HIDDEN2 = 5, 3  # make_args's default hidden sizes


def make_args(geometry, variant, dtype=torch.float64, seed=0, hidden=(HIDDEN1, HIDDEN2), device="cpu"):
    """The op's arguments as a dict, random leaf tensors (zeta and nu too: the defaults saturate).

    geometry: a GEOMETRIES name or its (N, C, H, W, kernel, stride, padding) tuple; variant: a
    VARIANTS name or its (cell, gate, update, parts) tuple.
    """
    n, c, h, w, kernel, stride, padding = GEOMETRIES.get(geometry, geometry)
    cell, gate, update, parts = VARIANTS.get(variant, variant)
    kernel = _pair(kernel)
    gen = torch.Generator().manual_seed(seed)
    h1, h2 = hidden

    def leaf(*shape, scale=0.6):
        return (scale * torch.randn(*shape, dtype=torch.float64, generator=gen)).to(device, dtype).requires_grad_()

    proj = "G" in parts
    return dict(
        x=leaf(n, c, h, w, scale=1.0),
        rnn1=[leaf(*s) for s in parameter_shapes(cell, c, h1)],
        rnn2=[leaf(*s) for s in parameter_shapes(cell, h1, h2)],
        proj_weight=leaf(4 * h2, (kernel[0] + kernel[1]) * h1) if proj else None,
        proj_bias=leaf(4 * h2) if proj else None,
        kernel_size=list(kernel), stride=list(_pair(stride)), padding=list(_pair(padding)),
        cell=cell, gate_nonlinearity=gate, update_nonlinearity=update, parts=parts,
    )


def tensor_inputs(args):
    """The tensors that get a gradient, in the backward op's output order."""
    tensors = [args["x"], *args["rnn1"], *args["rnn2"]]
    return tensors + [t for t in (args["proj_weight"], args["proj_bias"]) if t is not None]


def convert(args, fn):
    """args with fn applied to every tensor (also inside the cell lists)."""
    def one(value):
        if isinstance(value, list):
            return [one(item) for item in value]
        return fn(value) if torch.is_tensor(value) else value

    return {name: one(value) for name, value in args.items()}


def in_float64(args):
    """The same arguments with every tensor as a float64 leaf (same values)."""
    return convert(args, lambda t: t.detach().double().requires_grad_(t.requires_grad))


def forward_and_grads(run, args, grad_output=None):
    """run(args)'s output, the gradients of every tensor input for grad_output (drawn from a fixed
    seed when not given, so a failure reproduces), and grad_output."""
    out = run(args)
    if grad_output is None:
        grad_output = torch.randn(out.shape, generator=torch.Generator().manual_seed(0), dtype=out.dtype).to(out.device)
    # Parts without RNN2 ("G") leave it unused: its gradient is zero.
    grads = torch.autograd.grad(out, tensor_inputs(args), grad_output, allow_unused=True, materialize_grads=True)
    return out, grads, grad_output


def detached(args):
    return convert(args, torch.Tensor.detach)


def reference_and_grads(args, grad_output):
    """The reference's output and gradients of every tensor input, in float64 on args' values."""
    out, grads, _ = forward_and_grads(lambda a: reference.forward(**a), in_float64(args), grad_output.double())
    return out, list(grads)


def assert_matches_reference(run, args, rtol, atol):
    """run(args, grad_output) -> (output, gradients in tensor_inputs order) against the reference."""
    x = args["x"]
    grad_output = torch.randn(check_sweep_args(**args), generator=torch.Generator().manual_seed(1)).to(x.device, x.dtype)
    want, want_grads = reference_and_grads(args, grad_output)
    got, got_grads = run(args, grad_output)
    torch.testing.assert_close(got, want.to(x.dtype), rtol=rtol, atol=atol)
    assert len(got_grads) == len(want_grads)
    for i, (g, w) in enumerate(zip(got_grads, want_grads)):
        torch.testing.assert_close(g, w.to(g.dtype), rtol=rtol, atol=atol,
                                   msg=lambda m: f"gradient of input {i}: {m}")
