"""Op arguments for the Triton backend's tests (interpreter and GPU), and the check of a backend's
output and every gradient against the reference computed in float64 on the same values."""

import torch
from torch.nn.modules.utils import _pair

from rnnpool_ops import reference
from rnnpool_ops._checks import check_sweep_args
from rnnpool_ops.cells import parameter_shapes

# name: (N, C, H, W, kernel, stride, padding)
GEOMETRIES = {
    "overlap": (2, 3, 9, 9, 4, 2, 0),  # 72 row sequences: more than one interpreter program
    "nonsquare_gaps": (2, 2, 11, 13, (2, 3), (3, 4), 0),  # stride > kernel: pixels no patch reads
    "padding_batch1": (1, 3, 7, 6, 3, 2, (1, 2)),
    "one_patch": (1, 2, 5, 4, (5, 4), 1, 0),
}
# name: (cell, gate, update, parts)
VARIANTS = {
    "rnnpool_fastgrnn": ("fastgrnn", "sigmoid", "tanh", "RC"),
    "rnnpool_quantised": ("fastgrnn", "quantSigm", "quantTanh", "RC"),
    "rex_gru": ("gru", "sigmoid", "tanh", "RGC"),
    "rex_fastgrnn_swapped": ("fastgrnn", "tanh", "sigmoid", "RGC"),
    "global_only": ("gru", "sigmoid", "tanh", "G"),
    "rows_only": ("fastgrnn", "quantTanh", "quantSigm", "R"),
    "global_cols": ("gru", "sigmoid", "tanh", "GC"),
    "rows_global": ("fastgrnn", "sigmoid", "tanh", "RG"),
    "cols_only": ("gru", "sigmoid", "tanh", "C"),
}


def make_args(geometry, variant, dtype=torch.float64, seed=0, hidden=(5, 3), device="cpu"):
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


def detached(args):
    return convert(args, torch.Tensor.detach)


def reference_and_grads(args, grad_output):
    """The reference's output and gradients of every tensor input, in float64 on args' values."""
    exact = convert(args, lambda t: t.detach().double().requires_grad_())
    out = reference.forward(**exact)
    # Parts without RNN2 ("G") leave it unused: its gradient is zero.
    grads = torch.autograd.grad(out, tensor_inputs(exact), grad_output.double(), allow_unused=True,
                                materialize_grads=True)
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
