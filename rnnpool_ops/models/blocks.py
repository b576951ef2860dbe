"""Building blocks shared by the model builders.

A block that the peak-RAM analysis must see as one unit (rather than as its layers) says how it holds
memory in `peak_ram_rule` (see rnnpool_ops.analysis): "input+output" or "max(input,output)".
"""

from torch import nn


def conv_bn_act(in_channels, out_channels, kernel_size=3, stride=1, groups=1, activation=nn.ReLU6):
    """Convolution (no bias: BN follows), batch norm and an activation (None: none)."""
    layers = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if activation is not None:
        layers.append(activation())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2's bottleneck: 1x1 expansion by t, 3x3 depthwise (stride s), linear 1x1 projection.

    RNNPool appendix E.2.1: computed channel by channel of the expansion, it holds its input and output.
    """

    peak_ram_rule = "input+output"

    def __init__(self, in_channels, out_channels, stride, expansion):
        super().__init__()
        hidden = int(round(in_channels * expansion))
        layers = [conv_bn_act(in_channels, hidden, 1)] if expansion != 1 else []
        layers += [conv_bn_act(hidden, hidden, 3, stride, groups=hidden), conv_bn_act(hidden, out_channels, 1, activation=None)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x):
        y = self.conv(x)
        return x + y if self.residual else y


class ResidualBlock(nn.Module):
    """ResNet's basic block: two 3x3 conv-BN (ReLU between), identity or 1x1 projection shortcut, ReLU.

    RNNPool appendix E.2.1: the shortcut is added as outputs are produced, so the block holds the larger
    of its input and output.
    """

    peak_ram_rule = "max(input,output)"

    def __init__(self, in_channels, out_channels, stride=1, projection_bn=True):
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_act(in_channels, out_channels, 3, stride, activation=nn.ReLU),
            conv_bn_act(out_channels, out_channels, 3, activation=None),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            # MLPerf Tiny's ResNet-8 projects without BN (projection_bn=False); He et al.'s option B with it.
            self.shortcut = (conv_bn_act(in_channels, out_channels, 1, stride, activation=None) if projection_bn
                             else nn.Conv2d(in_channels, out_channels, 1, stride))
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.body(x) + self.shortcut(x))


def depthwise_separable(in_channels, out_channels, stride=1, kernel_size=3, activation=nn.ReLU):
    """MobileNetV1 / DS-CNN layer: depthwise k x k conv-BN-act, then pointwise conv-BN-act."""
    return nn.Sequential(
        conv_bn_act(in_channels, in_channels, kernel_size, stride, groups=in_channels, activation=activation),
        conv_bn_act(in_channels, out_channels, 1, activation=activation),
    )


class Classifier(nn.Module):
    """Global average pooling, dropout and a linear layer: the final classifier of the builders."""

    def __init__(self, in_channels, num_classes, dropout=0.0):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_channels, num_classes)

    def forward(self, x):
        return self.linear(self.dropout(self.pool(x).flatten(1)))
