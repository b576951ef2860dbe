"""Registrations around torch.ops.rnnpool.gated_skip_conv2d and its backward (schemas: csrc/rnnpool.cpp):
fake kernels for tracing, autograd, the CUDA kernels (Triton forward, see triton_kernels.py) and
which devices have a fused kernel."""

import torch

from .. import _ops as _extension
from .._autograd import register_first_order_autograd
from . import composite
from ._checks import check_gated_skip_args

OP_REGISTERED = _extension.extension_available() and hasattr(torch.ops.rnnpool, "gated_skip_conv2d")

# Inputs of the forward that get a gradient, in the backward's output order.
_GRAD_INPUTS = ("x", "weight", "bias", "layer_gate", "channel_gate", "scale", "shift")


def fused_available(device_type):
    return OP_REGISTERED and device_type in ("cpu", "cuda")


def unavailable_reason(device_type):
    if not OP_REGISTERED:
        return "the C++ extension is not built or predates the op"
    return f"no fused kernel for {device_type}"


if OP_REGISTERED:

    @torch.library.register_fake("rnnpool::gated_skip_conv2d")
    def _forward_fake(x, weight, bias, layer_gate, channel_gate, scale, shift, dilation, groups, activation):
        check_gated_skip_args(x, weight, bias, layer_gate, channel_gate, scale, shift, dilation, groups, activation)
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    @torch.library.register_fake("rnnpool::gated_skip_conv2d_backward")
    def _backward_fake(grad_output, x, weight, bias, layer_gate, channel_gate, scale, shift, dilation, groups,
                       activation, conv_grad_mask):
        def like(tensor, wanted=True):
            if tensor is None or not wanted:
                return x.new_empty(0)
            return torch.empty_like(tensor, memory_format=torch.contiguous_format)

        return (like(x, conv_grad_mask[0]), like(weight, conv_grad_mask[1]), like(bias), like(layer_gate),
                like(channel_gate), like(scale), like(shift))

    def _setup_context(ctx, inputs, output):
        *tensors, dilation, groups, activation = inputs
        ctx.absent = [t is None for t in tensors]
        ctx.config = (dilation, groups, activation)
        ctx.save_for_backward(*tensors)

    def _backward(ctx, grad_output):
        tensors = ctx.saved_tensors
        conv_grad_mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1]]
        grads = torch.ops.rnnpool.gated_skip_conv2d_backward(grad_output, *tensors, *ctx.config, conv_grad_mask)
        needed = (*conv_grad_mask, *(not absent for absent in ctx.absent[2:]))
        return (*(g if wanted else None for g, wanted in zip(grads, needed)), None, None, None)

    # First order only: double backward and forward-mode AD raise, naming the op (.._autograd).
    register_first_order_autograd("rnnpool::gated_skip_conv2d", _backward, _setup_context,
                                  "rnnpool::gated_skip_conv2d_backward")

    # CUDA: the Triton forward (triton_kernels.py) when Triton imports, else the unskipped composite;
    # the backward is the composite (cuDNN's convolution backward underneath).
    @torch.library.register_kernel("rnnpool::gated_skip_conv2d", "cuda")
    def _forward_cuda(x, weight, bias, layer_gate, channel_gate, scale, shift, dilation, groups, activation):
        args = (x, weight, bias, layer_gate, channel_gate, scale, shift, dilation, groups, activation)
        check_gated_skip_args(*args)
        try:
            from . import triton_kernels
        except ImportError:
            return composite.forward(*args)
        m, alpha, beta = composite.gate_and_epilogue(x, bias, layer_gate, channel_gate, scale, shift)
        weight, dilation, _ = composite.reaching_taps(weight, dilation, x.shape[2:])
        return triton_kernels.gated_skip_conv2d_forward(
            x.contiguous(), weight.contiguous(), alpha.contiguous(), beta.contiguous(), m.contiguous(), dilation,
            activation == "relu")

    @torch.library.register_kernel("rnnpool::gated_skip_conv2d_backward", "cuda")
    def _backward_cuda(grad_output, x, weight, bias, layer_gate, channel_gate, scale, shift, dilation, groups,
                       activation, conv_grad_mask):
        check_gated_skip_args(x, weight, bias, layer_gate, channel_gate, scale, shift, dilation, groups, activation)
        return composite.backward(grad_output, x, weight, bias, layer_gate, channel_gate, scale, shift, dilation,
                                  groups, activation, conv_grad_mask)
