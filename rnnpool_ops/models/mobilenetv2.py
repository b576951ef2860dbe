"""MobileNetV2 and its RNNPool/ReX variants.

- mobilenetv2: Sandler et al.; ImageNet-10 by default (RNNPool Table 1 "Base").
- mobilenetv2_rnnpool: RNNPool Table 10 (h1 = h2 = 16, patch 6, stride 4): the stem conv, then one
  RNNPool layer in place of the first six bottlenecks (112x112x32 -> 28x28x64).
- mobilenetv2_vww / mobilenetv2_rnnpool_vww: the Visual Wake Words 0.35x pair of RNNPool Table 2
  (Table 9: h1 = h2 = 8): EdgeML's model has an 8-channel stem and last_channel 320.
- rex_mobilenetv2: ReX Table 1, ReX-MobileNetV2 (6 exits): a ReX layer (patch 6, stride 4, h1 = 16,
  h2 = 8) in place of the same six bottlenecks, SDN internal classifiers after the blocks ReX's "e"
  column names, on ImageNet-1k.

The RNNPool/ReX layer pads by 1, so 112 -> 28 as in the tables (EdgeML pads its 27x27 output instead).
"""

from torch import nn

from .._validate import integer, real
from ..layers import ReX2d, RNNPool2d
from ..multiexit import MultiExitNetwork, PatchSweepHead, SDNHead
from .blocks import Classifier, InvertedResidual, conv_bn_act

# (expansion t, channels c, repeats n, first stride s), Sandler et al. Table 2.
BOTTLENECKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
               (6, 320, 1, 1))
# What follows the RNNPool / ReX layer (RNNPool Table 10, ReX Table 1): the first three rows are gone.
AFTER_POOL = BOTTLENECKS[3:]


def make_divisible(value, divisor=8):
    """Round channels to the nearest multiple of divisor, never below 90% of value (MobileNet's rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def bottlenecks(settings, in_channels, width_mult):
    """The inverted residual blocks of `settings`, and their output channels."""
    blocks = []
    for t, c, n, s in settings:
        out_channels = make_divisible(c * width_mult)
        for i in range(n):
            blocks.append(InvertedResidual(in_channels, out_channels, s if i == 0 else 1, t))
            in_channels = out_channels
    return blocks, in_channels


def _check_common(num_classes, width_mult, dropout=0.0, **channels):
    """The builders' shared arguments; channels: {name: value} of channel and hidden sizes."""
    integer("num_classes", num_classes, 1)
    real("width_mult", width_mult, 0.0, low_open=True)
    real("dropout", dropout, 0.0, 1.0, high_open=True)
    for name, value in channels.items():
        integer(name, value, 1)


def mobilenetv2(num_classes=10, width_mult=1.0, stem_channels=32, last_channel=1280, dropout=0.2):
    """MobileNetV2 for 224x224 inputs (nn.Sequential: stem, 17 bottlenecks, 1x1 conv, classifier)."""
    _check_common(num_classes, width_mult, dropout, stem_channels=stem_channels, last_channel=last_channel)
    stem = make_divisible(stem_channels * width_mult) if stem_channels == 32 else stem_channels
    blocks, channels = bottlenecks(BOTTLENECKS, stem, width_mult)
    return nn.Sequential(conv_bn_act(3, stem, 3, 2), *blocks, conv_bn_act(channels, last_channel, 1),
                         Classifier(last_channel, num_classes, dropout))


def mobilenetv2_rnnpool(num_classes=10, width_mult=1.0, stem_channels=32, hidden=16, last_channel=1280,
                        dropout=0.2, **rnnpool_options):
    """MobileNetV2-RNNPool (RNNPool Table 10): stem, RNNPool(patch 6, stride 4), bottlenecks from c=64."""
    _check_common(num_classes, width_mult, dropout, stem_channels=stem_channels, hidden=hidden,
                  last_channel=last_channel)
    pool = RNNPool2d(stem_channels, hidden, hidden, kernel_size=6, stride=4, padding=1, **rnnpool_options)
    blocks, channels = bottlenecks(AFTER_POOL, pool.out_channels, width_mult)
    return nn.Sequential(conv_bn_act(3, stem_channels, 3, 2), pool, *blocks, conv_bn_act(channels, last_channel, 1),
                         Classifier(last_channel, num_classes, dropout))


def mobilenetv2_vww(num_classes=2):
    """The Visual Wake Words baseline, MobileNetV2-0.35x with an 8-channel stem and last_channel 320."""
    return mobilenetv2(num_classes, 0.35, stem_channels=8, last_channel=320)


def mobilenetv2_rnnpool_vww(num_classes=2, **rnnpool_options):
    """MobileNetV2-RNNPool 0.35x for Visual Wake Words (RNNPool Table 9: h1 = h2 = 8, patch 6)."""
    return mobilenetv2_rnnpool(num_classes, 0.35, stem_channels=8, hidden=8, last_channel=320, **rnnpool_options)


# ReX Table 1's "e" column: internal exits after these blocks (1-based, counting from the first c=64
# block): two in the 64 row (after blocks 2 and 4), then the end of the 96, 160 and 320 rows.
REX_EXIT_BLOCKS = (2, 4, 7, 10, 11)


def rex_mobilenetv2(num_classes=1000, head="sdn", hidden1=16, hidden2=8, input_size=224):
    """ReX-MobileNetV2 (6 exits), ReX Table 1, as a MultiExitNetwork.

    head: "sdn" (SDN's internal classifiers, as ReX's experiments) or "rex" (a ReX layer as each
    internal classifier's feature reduction, h1 = 16, h2 = 8). input_size: the side of the square input
    the SDN / ReX heads are sized for.
    """
    _check_common(num_classes, 1.0, hidden1=hidden1, hidden2=hidden2)
    if integer("input_size", input_size, 1) < 32:  # the stem, the ReX layer and four stride-2 blocks
        raise ValueError(f"input_size must be at least 32 (the network downsamples 32 times), got {input_size}")
    heads = {"sdn", "rex"}
    if head not in heads:
        raise ValueError(f"head must be one of {sorted(heads)}, got {head!r}")
    rex = ReX2d(32, hidden1, hidden2, kernel_size=6, stride=4, padding=1)
    blocks, channels = bottlenecks(AFTER_POOL, rex.out_channels, 1.0)
    size = (input_size // 2 + 2 - 6) // 4 + 1  # after the stem and the ReX layer
    stages, exit_heads, start = [], {}, 0
    for end in REX_EXIT_BLOCKS:
        stage = blocks[start:end]
        if start == 0:
            stage = [conv_bn_act(3, 32, 3, 2), rex, *stage]
        stages.append(nn.Sequential(*stage))
        size = size // 2 ** sum(block.conv[-2][0].stride[0] == 2 for block in blocks[start:end])
        width = blocks[end - 1].conv[-1][0].out_channels
        exit_heads[len(stages) - 1] = (SDNHead(width, num_classes, size) if head == "sdn" else
                                       PatchSweepHead(width, num_classes, size, hidden1, hidden2))
        start = end
    stages.append(conv_bn_act(channels, 1280, 1))
    exit_heads[len(stages) - 1] = Classifier(1280, num_classes, 0.2)
    return MultiExitNetwork(stages, exit_heads)
