"""Registrations around torch.ops.rnnpool.gated_skip_conv2d (schema: csrc/rnnpool.cpp): fake kernels for
tracing, autograd, and which devices have a fused kernel."""

import torch

from .. import _ops as _extension


def _op_registered():
    return _extension.extension_available() and hasattr(torch.ops.rnnpool, "gated_skip_conv2d")


def fused_available(device_type):
    return device_type == "cpu" and _op_registered()


def unavailable_reason(device_type):
    if device_type != "cpu":
        return f"no fused kernel for {device_type}"
    return "the C++ extension is not built or predates the op"
