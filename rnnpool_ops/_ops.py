"""Loads the compiled operator library (rnnpool_ops/librnnpool_ops.so) and registers what torch
needs around it: fake kernels for tracing (torch.compile, torch.export) and autograd.

The schemas themselves live in csrc/rnnpool.cpp. The library links libtorch only, so C++ programs
load the same file (library_path()); its C API chooses the CPU kernels' ISA build.
"""

import ctypes
import warnings
from pathlib import Path

import torch

from ._checks import check_sweep_args

_LIBRARY_PATH = Path(__file__).resolve().with_name("librnnpool_ops.so")


def _load_library():
    """(ctypes handle, None) once the library is loaded (which registers torch.ops.rnnpool.*), else
    (None, why not)."""
    if not _LIBRARY_PATH.is_file():
        return None, f"{_LIBRARY_PATH.name} is not built (pip install --no-build-isolation .)"
    try:
        torch.ops.load_library(str(_LIBRARY_PATH))
        return ctypes.CDLL(str(_LIBRARY_PATH)), None
    except OSError as error:  # built against another torch, for instance
        return None, f"{_LIBRARY_PATH.name} does not load: {error}"


_LIBRARY, EXTENSION_ERROR = _load_library()
if EXTENSION_ERROR is not None:
    warnings.warn(f"rnnpool_ops: compiled kernels unavailable ({EXTENSION_ERROR}); only backend='reference' runs",
                  stacklevel=2)


def extension_available():
    return EXTENSION_ERROR is None


def library_path():
    """The operator library's file, for programs that load it themselves (C++, torch.ops.load_library)."""
    require_extension()
    return str(_LIBRARY_PATH)


def _call_c_api(function, *args):
    """Calls one of the library's C API functions (csrc/rnnpool.cpp) and returns its text result."""
    text = ctypes.c_char_p()
    c_function = getattr(_LIBRARY, function)
    c_function.restype = ctypes.c_int
    status = c_function(*args, ctypes.byref(text))
    message = text.value.decode()
    if status == 1:
        raise ValueError(message)
    if status != 0:
        raise RuntimeError(message)
    return message


def cpu_isa():
    """The ISA build the CPU kernels run: "avx512", "avx2", "neon" or "scalar".

    By default the best build this CPU can run; the environment variable RNNPOOL_CPU_ISA (read at
    first use) or set_cpu_isa() choose another.
    """
    require_extension()
    return _call_c_api("rnnpool_cpu_isa")


def available_cpu_isas():
    """The ISA builds of the CPU kernels this machine can run, best first."""
    require_extension()
    return _call_c_api("rnnpool_available_cpu_isas").split()


def set_cpu_isa(name):
    """Run the CPU kernels with the named ISA build ("auto": the best one); returns the previous name.

    Raises TypeError for a name that is not a str, ValueError for one that is not "auto" or a build
    compiled in and runnable on this CPU ("" included: it does not mean "auto").
    """
    if not isinstance(name, str):
        raise TypeError(f"set_cpu_isa: name must be a str, 'auto' or one of available_cpu_isas(), got "
                        f"{type(name).__name__} {name!r}")
    require_extension()
    return _call_c_api("rnnpool_set_cpu_isa", name.encode())


def require_extension():
    if EXTENSION_ERROR is not None:
        raise RuntimeError(
            f"the rnnpool_ops compiled kernels are not available ({EXTENSION_ERROR}); "
            "build them with `pip install --no-build-isolation .` or use backend='reference'"
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
    backward_op (the schema of rnnpool::backward) computes; used by every backend's ops.

    First order only: double backward raises RuntimeError and forward-mode AD NotImplementedError,
    both naming the op (rnnpool_ops/_autograd.py), instead of silently dropping the terms.
    """
    from ._autograd import register_first_order_autograd

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

    register_first_order_autograd(forward_op, backward, setup_context, backward_op._qualified_op_name)


def _register_fake_inverted_residual():
    """Fake kernel of rnnpool::inverted_residual (csrc/cpu/inverted_residual_cpu.cpp checks the arguments)."""

    @torch.library.register_fake("rnnpool::inverted_residual")
    def _fake(x, expand_weight, expand_bias, depthwise_weight, depthwise_bias, project_weight, project_bias, stride,
              padding, dilation, expand_clamp, depthwise_clamp, residual, tile_rows):
        kernel = depthwise_weight.shape[2:]
        out = [(size + 2 * p - d * (k - 1) - 1) // s + 1
               for size, k, s, p, d in zip(x.shape[2:], kernel, stride, padding, dilation)]
        return x.new_empty((x.shape[0], project_weight.shape[0], *out))


def cuda_kernels_available():
    """Whether this build of the extension has the CUDA kernels of torch.ops.rnnpool.forward."""
    return extension_available() and torch._C._dispatch_has_kernel_for_dispatch_key("rnnpool::forward", "CUDA")


if extension_available():
    _register_fake_sweep("rnnpool")
    register_sweep_autograd("rnnpool::forward", torch.ops.rnnpool.backward)
    _register_fake_inverted_residual()


def emulated_ops_available():
    """Whether the library was built with the test-only rnnpool_emulated ops (RNNPOOL_BUILD_TEST_OPS=1)."""
    return extension_available() and hasattr(torch.ops.rnnpool_emulated, "forward")


if emulated_ops_available():
    # The CUDA algorithm run on the CPU, for tests (see csrc/testing/emulated_ops.cpp).
    _register_fake_sweep("rnnpool_emulated")
    register_sweep_autograd("rnnpool_emulated::forward", torch.ops.rnnpool_emulated.backward)
