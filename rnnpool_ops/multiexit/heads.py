"""Exit heads: the classifiers a MultiExitNetwork attaches after its stages.

- SDNHead: Shallow-Deep Networks' internal classifier (Kaya et al. 2019): mixed max/average pooling
  to 4x4 with a learnable mix, then a linear layer.
- TRecXExitHead: T-RECX's early-exit block (sec. 4.2, Fig. 1): pointwise expansion, depthwise k x k
  stride-2 conv with ReLU, average pooling, dense.
- EarlyViewClassifier: T-RECX's early-view assisted final classifier (sec. 4.3, Fig. 3): a copy of the
  exit's depthwise conv applied to the final features, concatenated before the final dense layer;
  `sync_early_view` copies the exit's weights into it after each step for the first 80% of training.
- BranchClassifier: DDI's branch classifier (sec. 4.1): conv layers, global pooling, linear.
- PatchSweepHead: an RNNPool/ReX layer as the head's feature reduction ("ReX can replace the feature
  reduction layer in all classifiers", ReX sec. Architecture Design), then a linear layer.
"""

import torch
from torch import nn

from .._validate import integer, integer_pair, real
from ..layers import ReX2d, RNNPool2d


def _check_sizes(in_channels, num_classes, in_size=None):
    """The arguments every head takes: channels and classes positive ints, in_size (H, W) positive."""
    integer("in_channels", in_channels, 1)
    integer("num_classes", num_classes, 1)
    return None if in_size is None else integer_pair("in_size", in_size, 1)


def _check_map(head, size):
    """A head whose layers shrink `in_size` to nothing cannot be built: say so, not a Linear(0, ...)."""
    if min(size) < 1:
        raise ValueError(f"{head}: in_size is too small, its pooled map would be {list(size)}")


class SDNHead(nn.Module):
    """SDN internal classifier: alpha * maxpool + (1 - alpha) * avgpool to 4x4 (learnable alpha), linear.

    Feature maps of at most 4x4 are not pooled. in_size: the (H, W) of the features it reads.
    """

    def __init__(self, in_channels, num_classes, in_size, pooled_size=4):
        super().__init__()
        in_size = _check_sizes(in_channels, num_classes, in_size)
        grid = tuple(min(s, p) for s, p in zip(in_size, integer_pair("pooled_size", pooled_size, 1)))
        self.max_pool = nn.AdaptiveMaxPool2d(grid)
        self.avg_pool = nn.AdaptiveAvgPool2d(grid)
        self.alpha = nn.Parameter(torch.tensor(0.5))
        self.linear = nn.Linear(in_channels * grid[0] * grid[1], num_classes)

    def forward(self, x):
        mixed = self.alpha * self.max_pool(x) + (1 - self.alpha) * self.avg_pool(x)
        return self.linear(mixed.flatten(1))


def _conv_out(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


class TRecXExitHead(nn.Module):
    """T-RECX early exit: depthwise k x k (stride 2, ReLU) over `width` channels, avg pool, dense.

    width > in_channels: a pointwise conv expands to it first (the paper doubles, width = 2*in);
    width < in_channels: the first `width` channels are used (T-RECX's DS-CNN exit, no pointwise).
    pool: average-pooling window (floor, as Keras' 'valid' pooling); the pooled map is flattened.
    """

    def __init__(self, in_channels, num_classes, in_size, width=None, kernel_size=2, pool=4):
        super().__init__()
        in_size = _check_sizes(in_channels, num_classes, in_size)
        kernel_size, pool = integer("kernel_size", kernel_size, 1), integer_pair("pool", pool, 1)
        self.width = 2 * in_channels if width is None else integer("width", width, 1)
        self.expand = nn.Conv2d(in_channels, self.width, 1) if self.width > in_channels else None
        padding = (kernel_size - 1) // 2  # Keras 'same' for stride 2 and k = 2 or 3
        self.depthwise = nn.Conv2d(self.width, self.width, kernel_size, 2, padding, groups=self.width)
        self.pool = nn.AvgPool2d(pool)
        h, w = (_conv_out(s, kernel_size, 2, padding) // window for s, window in zip(in_size, pool))
        _check_map("TRecXExitHead", (h, w))
        self.linear = nn.Linear(self.width * h * w, num_classes)

    def forward(self, x):
        x = self.expand(x) if self.expand is not None else x[:, : self.width]
        return self.linear(self.pool(torch.relu(self.depthwise(x))).flatten(1))


class EarlyViewClassifier(nn.Module):
    """T-RECX's final classifier with early-view assistance (sec. 4.3).

    A depthwise conv shaped like exit `source_exit`'s (same width and kernel, `stride` here) runs on the
    first `width` channels of the final features; its output (average-pooled by `pool` if given) is
    flattened and concatenated with the globally pooled features before the dense layer.
    """

    def __init__(self, in_channels, num_classes, in_size, exit_head, source_exit=0, stride=2, pool=None):
        super().__init__()
        in_size = _check_sizes(in_channels, num_classes, in_size)
        if not isinstance(exit_head, TRecXExitHead):
            raise TypeError(f"exit_head must be a TRecXExitHead, got {type(exit_head).__name__}")
        self.source_exit = integer("source_exit", source_exit, 0)
        stride = integer("stride", stride, 1)
        pool = None if pool is None else integer_pair("pool", pool, 1)
        if exit_head.width > in_channels:
            raise ValueError(f"the exit's width {exit_head.width} exceeds the final features' {in_channels} channels")
        self.width = exit_head.width
        source = exit_head.depthwise
        self.early_view = nn.Conv2d(self.width, self.width, source.kernel_size, stride, source.padding,
                                    groups=self.width)
        self.pool = nn.AvgPool2d(pool) if pool else nn.Identity()
        h, w = (_conv_out(s, k, stride, p) // window for s, k, p, window in
                zip(in_size, source.kernel_size, source.padding, pool or (1, 1)))
        _check_map("EarlyViewClassifier", (h, w))
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(in_channels + self.width * h * w, num_classes)
        self.copy_from(exit_head)

    @torch.no_grad()
    def copy_from(self, exit_head):
        self.early_view.weight.copy_(exit_head.depthwise.weight)
        self.early_view.bias.copy_(exit_head.depthwise.bias)

    def forward(self, x):
        view = self.pool(torch.relu(self.early_view(x[:, : self.width]))).flatten(1)
        return self.linear(torch.cat([self.global_pool(x).flatten(1), view], dim=1))


def sync_early_view(model, epoch, num_epochs, fraction=0.8):
    """T-RECX's weight transfer: during the first `fraction` of the epochs, copy each exit's depthwise
    weights into the early-view classifiers reading it. Call after every optimiser step; returns
    whether weights were copied.
    """
    integer("num_epochs", num_epochs, 1)
    if epoch >= real("fraction", fraction, 0.0, 1.0) * num_epochs:
        return False
    for head in model.heads:
        if isinstance(head, EarlyViewClassifier):
            head.copy_from(model.heads[head.source_exit])
    return True


class BranchClassifier(nn.Module):
    """DDI branch classifier: `depth` 3x3 conv-BN-ReLU layers, global average pooling, linear.

    DDI (sec. 4.1, Fig. 4b) grows the branches' complexity from the first stage to the last; the
    figure is not in the text, so depth is the builder's choice (its stage number).
    """

    def __init__(self, in_channels, num_classes, depth=1):
        super().__init__()
        _check_sizes(in_channels, num_classes)
        integer("depth", depth, 1)
        self.convs = nn.Sequential(*(
            nn.Sequential(nn.Conv2d(in_channels, in_channels, 3, padding=1, bias=False), nn.BatchNorm2d(in_channels),
                          nn.ReLU())
            for _ in range(depth)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(in_channels, num_classes)

    def forward(self, x):
        return self.linear(self.pool(self.convs(x)).flatten(1))


class PatchSweepHead(nn.Module):
    """An RNNPool or ReX layer over the whole feature map (one patch) as the feature reduction, then
    a linear layer: ReX's replacement of a classifier's feature reduction layer.
    """

    def __init__(self, in_channels, num_classes, in_size, hidden1, hidden2, kind="rex", **layer_options):
        super().__init__()
        in_size = _check_sizes(in_channels, num_classes, in_size)
        layers = {"rex": ReX2d, "rnnpool": RNNPool2d}
        if kind not in layers:
            raise ValueError(f"kind must be one of {sorted(layers)}, got {kind!r}")
        self.pool = layers[kind](in_channels, hidden1, hidden2, kernel_size=in_size, **layer_options)
        self.linear = nn.Linear(self.pool.out_channels, num_classes)

    def forward(self, x):
        return self.linear(self.pool(x).flatten(1))
