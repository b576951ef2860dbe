"""Benchmark shapes as data, the layer/input each one needs, and its FLOP count."""

import copy
from dataclasses import dataclass

import torch

from benchmarks.flops import input_projection_macs, pooling_macs, recurrence_macs
from rnnpool_ops import ReX2d, RNNPool2d

# Which backend stands for which side of the comparison.
BACKENDS = {"fused": "cpp", "unfused": "reference"}
PASSES = ("forward", "forward+backward")


@dataclass(frozen=True)
class Case:
    name: str
    batch: int
    channels: int
    height: int
    width: int
    kernel: int
    stride: int
    padding: int
    hidden1: int
    hidden2: int
    cell: str
    parts: str

    def output_size(self):
        def side(n):
            return (n + 2 * self.padding - self.kernel) // self.stride + 1

        return side(self.height), side(self.width)

    def describe(self):
        return (
            f"N={self.batch}, C={self.channels}, {self.height}x{self.width}, "
            f"patch {self.kernel}, stride {self.stride}, pad {self.padding}, "
            f"h1={self.hidden1}, h2={self.hidden2}, {self.cell}, parts {self.parts}"
        )


CASES = {
    case.name: case
    for case in (
        Case("mobilenetv2-rnnpool-stem", 8, 32, 112, 112, 6, 4, 0, 16, 16, "fastgrnn", "RC"),
        Case("rex-mobilenetv2", 8, 32, 112, 112, 6, 4, 0, 16, 8, "gru", "RGC"),
        Case("vww-rnnpool", 8, 8, 112, 112, 6, 4, 0, 8, 8, "fastgrnn", "RC"),
        Case("stem-batch1", 1, 32, 112, 112, 6, 4, 0, 16, 16, "fastgrnn", "RC"),
        # One 4x4 patch per sample: the lanes of a sample's patch group are mostly empty.
        Case("small-map", 64, 32, 4, 4, 4, 4, 0, 16, 8, "gru", "RGC"),
        Case("demo-small-map", 64, 32, 4, 4, 4, 4, 0, 16, 16, "gru", "RGC"),  # the demo's second ReX layer
    )
}


def forward_flops(case):
    """FLOPs of one forward pass (2 per multiply-add; element-wise gate math not counted).

    The floor of the algorithm, counted as the fused kernel does the work: W x once per input
    pixel; RNN1 once per distinct row sequence (an image row read from one patch column's left
    edge: vertically overlapping patches share it) and per distinct column sequence; RNN2's
    input projection once per summary a patch reads, its recurrence per direction; ReX's f_L.
    """
    h1, h2, k = case.hidden1, case.hidden2, case.kernel
    out_h, out_w = case.output_size()
    patches = case.batch * out_h * out_w

    def covered(out):  # padded rows (or columns) some patch covers
        return sum(1 for y in range((out - 1) * case.stride + k) if y % case.stride < k)

    input_projection = case.batch * case.height * case.width * input_projection_macs(case.channels, h1, case.cell)
    sequences = case.batch * (out_w * covered(out_h) + out_h * covered(out_w))
    rnn1 = sequences * k * recurrence_macs(h1, case.cell)
    pooling = patches * pooling_macs((k, k), h1, h2, case.cell, case.parts)
    return 2 * (input_projection + rnn1 + pooling)


def pass_flops(case, pass_name):
    # The backward pass needs about twice the forward's multiply-adds (input
    # gradients plus weight gradients), the usual 3x rule for forward+backward.
    return forward_flops(case) * (3 if pass_name == "forward+backward" else 1)


@torch.no_grad()
def _redraw(layer, generator):
    # Fresh random weights scaled by 1/sqrt(fan-in) keep the gates away from
    # saturation (RNNPool's default zeta/nu would pin them), as trained layers are.
    for param in layer.parameters():
        std = param.shape[-1] ** -0.5 if param.dim() > 1 else 0.5  # biases, zeta, nu
        param.copy_(torch.randn(param.shape, generator=generator) * std)


def build(case, seed=0):
    """The layer (random parameters) and a random input for a case."""
    generator = torch.Generator().manual_seed(seed)
    common = dict(
        in_channels=case.channels,
        hidden1=case.hidden1,
        hidden2=case.hidden2,
        kernel_size=case.kernel,
        stride=case.stride,
        padding=case.padding,
        cell=case.cell,
    )
    if case.parts == "RC":
        layer = RNNPool2d(**common)
    else:
        layer = ReX2d(**common, parts=case.parts)
    _redraw(layer, generator)
    x = torch.randn(case.batch, case.channels, case.height, case.width, generator=generator)
    return layer, x


def make_inductor_step(layer, x, pass_name):
    """make_step for the unfused reference compiled by torch.compile (inductor), on a copy of the
    layer: the strongest baseline a user without this package would build. The first call compiles."""
    baseline = copy.deepcopy(layer)
    baseline.backend = "reference"
    return make_step(torch.compile(baseline, dynamic=False), x, None, pass_name)


def make_step(layer, x, backend, pass_name):
    """One repetition of a pass on a backend, as a zero-argument callable.

    backend=None runs a module that has no backend to choose (a baseline).
    """
    def run(inputs):
        if backend is not None:
            layer.backend = backend
        return layer(inputs)

    if pass_name == "forward":

        def step():
            with torch.no_grad():
                run(x)

        return step

    x = x.detach().requires_grad_()

    def step():
        layer.zero_grad(set_to_none=True)
        x.grad = None
        run(x).sum().backward()

    return step
