"""The units a streamed model runs in order; each holds its input and output whole, and only a stripe
or tile of anything in between.

- StripedSweep: every layer before the first RNNPool2d/ReX2d plus that layer, in horizontal stripes:
  each stripe of patch rows is computed from the input rows it needs, swept, written, dropped.
- Tiled: one row layer (an inverted residual block) in tiles of output rows (in one call of the fused
  kernel when it can).
- FoldedPool: pointwise layers followed by a global pool, in tiles of rows that are pooled at once, so
  the pointwise layers' output (MobileNetV2's 1280 channels) never exists whole.
- WholeRows: a row layer run on the whole map (a convolution with its batch norm folded in).
- Plain: a module run as it is.
"""

import torch
from torch import nn

from .rows import chain_rows, run_rows


def assemble_rows(height, step, rows_of):
    """Output rows [0, height), computed `step` at a time by rows_of(first, last), in one tensor."""
    out = None
    for first in range(0, height, step):
        last = min(first + step, height)
        part = rows_of(first, last)
        if out is None:
            out = part.new_empty((*part.shape[:2], height, part.shape[3]))
        out[:, :, first:last] = part
    return out


class StripedSweep(nn.Module):
    def __init__(self, layers, heights, sweep, sweep_height, out_height, stripe_rows):
        super().__init__()
        self.layers, self.heights = layers, heights  # row layers and each one's input height
        self.sweep = sweep
        self.sweep_height, self.out_height, self.stripe_rows = sweep_height, out_height, stripe_rows

    def forward(self, x):
        kernel, stride, padding = self.sweep.kernel_size[0], self.sweep.stride[0], self.sweep.padding[0]

        def stripe(first, last):
            lo, hi = first * stride - padding, (last - 1) * stride - padding + kernel
            start, stop = max(lo, 0), min(hi, self.sweep_height)
            rows = chain_rows(self.layers, self.heights, x, start, stop) if self.layers else x[:, :, start:stop]
            if lo < start or hi > stop:
                rows = torch.nn.functional.pad(rows, (0, 0, start - lo, hi - stop))
            return self.sweep.sweep(rows, padding=(0, self.sweep.padding[1]))

        return assemble_rows(self.out_height, self.stripe_rows, stripe)


class Tiled(nn.Module):
    def __init__(self, layer, in_height, out_height, tile_rows):
        super().__init__()
        self.layer, self.in_height, self.out_height, self.tile_rows = layer, in_height, out_height, tile_rows

    def forward(self, x):
        if self.layer.fused:
            return self.layer.run_fused(x, self.tile_rows)
        if self.tile_rows >= self.out_height:
            return run_rows(self.layer, x, 0, self.out_height, self.in_height)
        return assemble_rows(self.out_height, self.tile_rows,
                             lambda first, last: run_rows(self.layer, x, first, last, self.in_height))


class FoldedPool(nn.Module):
    def __init__(self, layers, height, kind, tile_rows):
        super().__init__()
        self.layers, self.height, self.kind, self.tile_rows = layers, height, kind, tile_rows

    def forward(self, x):
        heights = [self.height] * len(self.layers)
        pooled = None
        for first in range(0, self.height, self.tile_rows):
            tile = chain_rows(self.layers, heights, x, first, min(first + self.tile_rows, self.height))
            part = tile.sum((2, 3), keepdim=True) if self.kind == "avg" else tile.amax((2, 3), keepdim=True)
            pooled = part if pooled is None else (pooled.add_(part) if self.kind == "avg" else
                                                  torch.maximum(pooled, part, out=pooled))
        return pooled.div_(self.height * x.shape[3]) if self.kind == "avg" else pooled


class WholeRows(nn.Module):
    def __init__(self, layer, in_height, out_height):
        super().__init__()
        self.layer, self.in_height, self.out_height = layer, in_height, out_height

    def forward(self, x):
        return run_rows(self.layer, x, 0, self.out_height, self.in_height)


class Plain(nn.Module):
    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return self.module(x)
