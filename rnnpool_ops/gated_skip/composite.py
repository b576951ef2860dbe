"""The gated-skip op's math in stock PyTorch ops, for devices without a C++ kernel: the CUDA backward
(and the CUDA forward when Triton is missing). It mirrors csrc/cpu/gated_skip_conv_cpu.cpp."""

import torch
import torch.nn.functional as F

from .reference import gate_product


def reaching_taps(weight, dilation, image_size):
    """The taps of the shape-keeping dilated filters that can read a pixel, the dilation to use with
    them, and where they start in the full filters (csrc/core/checked_size.h reaching_half_kernel: the
    others read zero padding for every output pixel). A kernel keeps its centre and
    min((k - 1) // 2, (extent - 1) // dilation) taps on each side, so the padding stays below the
    image's extent for any dilation."""
    halves = [min((k - 1) // 2, (extent - 1) // d) for k, d, extent in zip(weight.shape[2:], dilation, image_size)]
    firsts = [(k - 1) // 2 - half for k, half in zip(weight.shape[2:], halves)]
    (hh, hw), (fh, fw) = halves, firsts
    trimmed = weight[:, :, fh : fh + 2 * hh + 1, fw : fw + 2 * hw + 1]
    # A single tap is read at offset 0 whatever the dilation: keep it small for the kernels' constants.
    return trimmed, [d if half else 1 for d, half in zip(dilation, halves)], firsts


def _convolve(x, weight, dilation, groups):
    """The shape-keeping convolution with the reaching taps only; (output, taps, their dilation and padding)."""
    taps, dilation, firsts = reaching_taps(weight, dilation, x.shape[2:])
    padding = [d * (k - 1) // 2 for d, k in zip(dilation, taps.shape[2:])]
    return F.conv2d(x, taps, None, padding=padding, dilation=dilation, groups=groups), taps, dilation, padding, firsts


def gate_and_epilogue(x, bias, layer_gate, channel_gate, scale, shift):
    """m [N, C] and the folded epilogue z = alpha[c] * conv_without_bias + beta[c]."""
    c = x.shape[1]
    m = gate_product(x, layer_gate, channel_gate).flatten(1)
    alpha = scale if scale is not None else x.new_ones(c)
    beta = bias * alpha if bias is not None else x.new_zeros(c)
    if shift is not None:
        beta = beta + shift
    return m, alpha, beta


def _per_channel(t):
    return t[:, None, None]


def forward(x, weight, bias, layer_gate, channel_gate, scale, shift, dilation, groups, activation):
    """The op's forward unskipped: the whole convolution, then the blend; m = 0 gives x exactly."""
    m, alpha, beta = gate_and_epilogue(x, bias, layer_gate, channel_gate, scale, shift)
    conv = _convolve(x, weight, dilation, groups)[0]
    z = _per_channel(alpha) * conv + _per_channel(beta)
    a = torch.relu(z) if activation == "relu" else z
    m = m[:, :, None, None]
    return torch.where(m != 0, m * a + (1 - m) * x, x)


def backward(grad_output, x, weight, bias, layer_gate, channel_gate, scale, shift, dilation, groups, activation,
             conv_grad_mask):
    """The backward op's seven outputs; absent or unrequested ones are empty [0] tensors."""
    m, alpha, beta = gate_and_epilogue(x, bias, layer_gate, channel_gate, scale, shift)
    conv, taps, taps_dilation, padding, (fh, fw) = _convolve(x, weight, dilation, groups)
    z = _per_channel(alpha) * conv + _per_channel(beta)
    a = torch.relu(z) if activation == "relu" else z
    m4 = m[:, :, None, None]
    dz = m4 * grad_output
    if activation == "relu":
        dz = torch.where(z > 0, dz, 0)
    grad_gate = ((a - x) * grad_output).sum((2, 3))  # d y / d m, summed over the plane
    none = x.new_empty(0)
    grad_x, grad_taps, _ = torch.ops.aten.convolution_backward(
        dz * _per_channel(alpha), x, taps.contiguous(), None, [1, 1], padding, taps_dilation, False, [0, 0], groups,
        [conv_grad_mask[0], conv_grad_mask[1], False])
    grad_x = grad_x + (1 - m4) * grad_output if conv_grad_mask[0] else none
    grad_weight = none
    if conv_grad_mask[1]:  # the taps cut off read only padding: their gradient is zero
        grad_weight = weight.new_zeros(weight.shape)
        grad_weight[:, :, fh : fh + taps.shape[2], fw : fw + taps.shape[3]] = grad_taps
    dz_per_channel = dz.sum((0, 2, 3))
    conv_with_bias = conv + _per_channel(bias) if bias is not None else conv
    ones = x.new_ones(())
    return (
        grad_x,
        grad_weight,
        dz_per_channel * alpha if bias is not None else none,
        (grad_gate * (channel_gate if channel_gate is not None else ones)).sum(1) if layer_gate is not None else none,
        grad_gate * (layer_gate[:, None] if layer_gate is not None else ones) if channel_gate is not None else none,
        (dz * conv_with_bias).sum((0, 2, 3)) if scale is not None else none,
        dz_per_channel if shift is not None else none,
    )
