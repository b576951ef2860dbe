"""Loads the compiled operators (rnnpool_ops._C) and registers what torch needs around them:
fake kernels for tracing (torch.compile, torch.export) and autograd.

The schemas themselves live in csrc/rnnpool.cpp.
"""

import torch

from ._checks import check_sweep_args

try:
    from . import _C  # noqa: F401  (loading it registers torch.ops.rnnpool.*)

    EXTENSION_ERROR = None
except ImportError as error:  # a source checkout that was never built
    EXTENSION_ERROR = error


def extension_available():
    return EXTENSION_ERROR is None


def cpu_isa():
    """The ISA build the CPU kernels run: "avx512", "avx2", "neon" or "scalar".

    By default the best build this CPU can run; the environment variable RNNPOOL_CPU_ISA (read at
    first use) or set_cpu_isa() choose another.
    """
    require_extension()
    return _C.cpu_isa()


def available_cpu_isas():
    """The ISA builds of the CPU kernels this machine can run, best first."""
    require_extension()
    return _C.available_cpu_isas()


def set_cpu_isa(name):
    """Run the CPU kernels with the named ISA build ("auto": the best one); returns the previous name.

    Raises ValueError for a build that is not compiled in or that this CPU cannot run.
    """
    require_extension()
    previous = _C.cpu_isa()
    _C.set_cpu_isa(name)
    return previous


def require_extension():
    if EXTENSION_ERROR is not None:
        raise RuntimeError(
            "the rnnpool_ops C++ extension is not built "
            f"({EXTENSION_ERROR}); run `pip install --no-build-isolation -e .` or use "
            "backend='reference'"
        )


def _register_fake_sweep(namespace):
    """Fake kernels of the C++ ops <namespace>::forward and ::backward, for tracing."""

    @torch.library.register_fake(f"{namespace}::forward")
    def _forward_fake(x, rnn1, rnn2, proj_weight, proj_bias, kernel_size, stride, padding, cell,
                      gate_nonlinearity, update_nonlinearity, parts):
        shape = check_sweep_args(x, rnn1, rnn2, proj_weight, proj_bias, kernel_size, stride, padding,
                                 cell, gate_nonlinearity, update_nonlinearity, parts)
        return x.new_empty(shape)

    @torch.library.register_fake(f"{namespace}::backward")
    def _backward_fake(grad_output, x, rnn1, rnn2, proj_weight, proj_bias, *config):
        grad_proj = [] if proj_weight is None else [torch.empty_like(proj_weight), torch.empty_like(proj_bias)]
        return (
            torch.empty_like(x, memory_format=torch.contiguous_format),
            [torch.empty_like(p) for p in rnn1],
            [torch.empty_like(p) for p in rnn2],
            grad_proj,
        )


def register_sweep_autograd(forward_op, backward_op):
    """Autograd for a sweep op (the schema of rnnpool::forward) named forward_op, whose gradients
    backward_op (the schema of rnnpool::backward) computes; used by every backend's ops."""

    def setup_context(ctx, inputs, output):
        x, rnn1, rnn2, proj_weight, proj_bias, *config = inputs
        ctx.num_rnn1 = len(rnn1)
        ctx.config = config
        ctx.save_for_backward(x, proj_weight, proj_bias, *rnn1, *rnn2)

    def backward(ctx, grad_output):
        x, proj_weight, proj_bias, *cells = ctx.saved_tensors
        rnn1, rnn2 = cells[: ctx.num_rnn1], cells[ctx.num_rnn1 :]
        grad_x, grad_rnn1, grad_rnn2, grad_proj = backward_op(
            grad_output, x, rnn1, rnn2, proj_weight, proj_bias, *ctx.config
        )
        grad_proj_weight, grad_proj_bias = grad_proj if grad_proj else (None, None)
        no_grad_for_config = [None] * len(ctx.config)
        return (grad_x, grad_rnn1, grad_rnn2, grad_proj_weight, grad_proj_bias, *no_grad_for_config)

    torch.library.register_autograd(forward_op, backward, setup_context=setup_context)


def cuda_kernels_available():
    """Whether this build of the extension has the CUDA kernels of torch.ops.rnnpool.forward."""
    return extension_available() and torch._C._dispatch_has_kernel_for_dispatch_key("rnnpool::forward", "CUDA")


if extension_available():
    _register_fake_sweep("rnnpool")
    register_sweep_autograd("rnnpool::forward", torch.ops.rnnpool.backward)
    # The CUDA algorithm run on the CPU, for tests (see csrc/sequences/emulated_runner.cpp).
    _register_fake_sweep("rnnpool_emulated")
    register_sweep_autograd("rnnpool_emulated::forward", torch.ops.rnnpool_emulated.backward)
