"""What autograd does with the fused ops beyond first-order reverse mode (issue 14, item 2): double
backward and forward-mode AD (and torch.func's other transforms) raise, naming the op, instead of
silently returning a dropped second-order term or an all-zero tangent; first-order gradients,
with create_graph=True too, are unchanged. Every op that registers autograd: the C++ sweep
(rnnpool::forward), the emulated GPU algorithm (rnnpool_emulated::forward), the Triton sweep
(rnnpool::forward_triton, under the interpreter in a subprocess) and rnnpool::gated_skip_conv2d."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.autograd.forward_ad as fwAD

from sweep_cases import forward_and_grads, make_args, tensor_inputs
from rnnpool_ops import GatedSkipConv2d, RNNPool2d, _ops, reference
from rnnpool_ops.gated_skip import gated_skip_conv2d

pytestmark = pytest.mark.skipif(not _ops.extension_available(), reason="needs the compiled extension")


def sweep_op(namespace):
    def run(args):
        return getattr(torch.ops, namespace).forward(*args.values())
    return run


def gated_args():
    gen = torch.Generator().manual_seed(0)

    def leaf(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).requires_grad_()

    return dict(x=leaf(2, 4, 5, 6), weight=leaf(4, 2, 3, 3), bias=leaf(4), layer_gate=None,
                channel_gate=torch.rand(2, 4, generator=gen, dtype=torch.float64).requires_grad_(),
                scale=leaf(4), shift=None, dilation=[1, 2], groups=2, activation="none")


def gated_op(args):
    return torch.ops.rnnpool.gated_skip_conv2d(*args.values())


def gated_reference(args):
    a = dict(args)
    x, weight, bias, layer_gate, channel_gate = (a.pop(k) for k in ("x", "weight", "bias", "layer_gate",
                                                                     "channel_gate"))
    return gated_skip_conv2d(x, weight, bias, layer_gate, channel_gate, backend="reference", **a)


def gated_inputs(args):
    return [t for t in args.values() if isinstance(t, torch.Tensor)]


# name: (run(args), make the arguments, the tensors with a gradient, the op's name in the errors)
OPS = {
    "cpp": (sweep_op("rnnpool"), lambda: make_args("padding", "rex_fastgrnn"), tensor_inputs, "rnnpool::forward"),
    "gated_skip": (gated_op, gated_args, gated_inputs, "rnnpool::gated_skip_conv2d"),
}
if _ops.emulated_ops_available():
    OPS["emulated"] = (sweep_op("rnnpool_emulated"), lambda: make_args("padding", "rnnpool_gru"), tensor_inputs,
                       "rnnpool_emulated::forward")
REFERENCES = {"cpp": lambda a: reference.forward(**a), "emulated": lambda a: reference.forward(**a),
              "gated_skip": gated_reference}


def gradient_penalty(run, args, inputs):
    """The gradient of |d sum(out^2) / d x|^2 with respect to every input: a double backward."""
    out = run(args)
    (grad_x,) = torch.autograd.grad(out.square().sum(), [args["x"]], create_graph=True)
    return torch.autograd.grad(grad_x.square().sum(), inputs(args), allow_unused=True)


@pytest.mark.parametrize("name", OPS)
def test_double_backward_raises_naming_the_op(name):
    run, make, inputs, op_name = OPS[name]
    with pytest.raises(RuntimeError, match=f"{op_name}: double backward is not supported"):
        gradient_penalty(run, make(), inputs)
    # The issue's form: create_graph=True, then .backward() (which left rnn1.W.grad None).
    args = make()
    out = run(args)
    (grad_x,) = torch.autograd.grad(out.square().sum(), [args["x"]], create_graph=True)
    with pytest.raises(RuntimeError, match=f"{op_name}: double backward is not supported"):
        grad_x.square().sum().backward()


@pytest.mark.parametrize("name", OPS)
def test_the_reference_backend_does_double_backward(name):
    # What the error message recommends: the second-order term is there and not zero.
    _, make, inputs, _ = OPS[name]
    grads = gradient_penalty(REFERENCES[name], make(), inputs)
    assert any(g is not None and g.abs().sum() > 0 for g in grads[1:])


@pytest.mark.parametrize("name", OPS)
def test_first_order_gradients_are_unchanged_by_create_graph(name):
    run, make, inputs, _ = OPS[name]
    args = make()
    out = run(args)
    grad_output = torch.randn_like(out)
    plain = torch.autograd.grad(out, inputs(args), grad_output, retain_graph=True)
    with_graph = torch.autograd.grad(out, inputs(args), grad_output, create_graph=True)
    for a, b in zip(plain, with_graph):
        assert torch.equal(a, b)
    want = torch.autograd.grad(REFERENCES[name](args), inputs(args), grad_output)
    for a, b in zip(plain, want):
        torch.testing.assert_close(a, b)


def jvp_of_x(run, args):
    x = args["x"].detach()

    def f(x_value):
        return run({**args, "x": x_value})

    return torch.func.jvp(f, (x,), (torch.ones_like(x),))


def dual_of_x(run, args):
    with fwAD.dual_level():
        x = fwAD.make_dual(args["x"].detach(), torch.ones_like(args["x"]))
        return fwAD.unpack_dual(run({**args, "x": x}))


def jacfwd_of_x(run, args):
    return torch.func.jacfwd(lambda x: run({**args, "x": x}))(args["x"].detach())


@pytest.mark.parametrize("mode", [jvp_of_x, dual_of_x, jacfwd_of_x], ids=["func_jvp", "dual_tensors", "jacfwd"])
@pytest.mark.parametrize("name", OPS)
def test_forward_mode_ad_raises_naming_the_op(name, mode):
    run, make, _, op_name = OPS[name]
    with pytest.raises(NotImplementedError, match=f"{op_name}: forward-mode AD .* is not supported"):
        mode(run, make())


@pytest.mark.parametrize("name", OPS)
def test_other_func_transforms_raise_naming_the_op(name):
    # torch.func.grad / vjp never worked on these ops (torch raised about setup_context); now the
    # error says what is unsupported.
    run, make, _, op_name = OPS[name]
    args = make()
    with pytest.raises(NotImplementedError, match=f"{op_name}: torch.func transforms"):
        torch.func.grad(lambda x: run({**args, "x": x}).sum())(args["x"].detach())


def test_the_issues_layers_refuse_jvp():
    # Before: all-zero tangents.
    pool = RNNPool2d(3, 4, 2, 2, backend="cpp")
    x = torch.randn(1, 3, 6, 6)
    with pytest.raises(NotImplementedError, match="rnnpool::forward: forward-mode AD"):
        torch.func.jvp(pool, (x,), (torch.ones_like(x),))
    conv = GatedSkipConv2d(4, 3, backend="fused")
    x = torch.randn(1, 4, 6, 6)
    with pytest.raises(NotImplementedError, match="rnnpool::gated_skip_conv2d: forward-mode AD"):
        torch.func.jvp(conv, (x,), (torch.ones_like(x),))
    # The reference backend supports forward mode, and its tangent is not zero.
    _, tangent = torch.func.jvp(RNNPool2d(3, 4, 2, 2, backend="reference"), (torch.randn(1, 3, 6, 6),),
                                (torch.ones(1, 3, 6, 6),))
    assert tangent.abs().sum() > 0


def test_inference_and_plain_backward_need_no_autograd_node():
    run, make, inputs, _ = OPS["cpp"]
    args = make()
    with torch.no_grad():
        assert run(args).grad_fn is None
    out = run(args)
    out.sum().backward()  # first order, no create_graph: no error
    assert all(t.grad is not None for t in inputs(args))


TRITON_SCRIPT = textwrap.dedent("""
    import os, sys
    os.environ["TRITON_INTERPRET"] = "1"
    import torch
    from rnnpool_ops.triton_sweep import load
    from sweep_cases import make_args
    load()
    args = make_args("one_output_pixel", "rnnpool_fastgrnn")
    out = torch.ops.rnnpool.forward_triton(*args.values())
    (grad_x,) = torch.autograd.grad(out.square().sum(), [args["x"]], create_graph=True)
    try:
        grad_x.square().sum().backward()
        print("double backward: no error")
    except RuntimeError as error:
        print("double backward:", error)
    x = args["x"].detach()
    try:
        torch.func.jvp(lambda v: torch.ops.rnnpool.forward_triton(*{**args, "x": v}.values()), (x,),
                       (torch.ones_like(x),))
        print("jvp: no error")
    except NotImplementedError as error:
        print("jvp:", error)
""")


def test_triton_op_refuses_double_backward_and_forward_mode():
    pytest.importorskip("triton")
    here = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([here, *sys.path])}
    result = subprocess.run([sys.executable, "-c", TRITON_SCRIPT], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert any(line.startswith("double backward: rnnpool::forward_triton: double backward is not supported")
               for line in lines), result.stdout
    assert any(line.startswith("jvp: rnnpool::forward_triton: forward-mode AD") for line in lines), result.stdout
