"""T-RECX's three MLPerf Tiny models with their early exit and early-view assist (T-RECX Table 1).

- resnet8_trecx: CIFAR-10 ResNet-8 (3 residual stacks of 16/32/64 channels), exit after stack 1.
- dscnn_trecx: keyword-spotting DS-CNN (49x10 MFCC input, 64 channels, 4 depthwise-separable
  layers), exit after layer 2.
- mobilenetv1_trecx: Visual Wake Words MobileNetV1-0.25 (96x96), exit after its 4th layer.

Exit and early-view shapes follow T-RECX's released models: ResNet-8 and MobileNetV1 expand to twice
the channels with 2x2 depthwise kernels and 4x4 pooling; DS-CNN's exit reads the first 32 of its 64
channels with a 3x3 kernel and 2x2 pooling, and its early view is pooled over (13, 3). MobileNetV1's
early view keeps all 64 channels (the release flattens 32 of them after a Keras 'same' 2x2 conv).
"""

from torch import nn

from .._validate import integer
from ..multiexit import EarlyViewClassifier, MultiExitNetwork, TRecXExitHead
from .blocks import ResidualBlock, conv_bn_act, depthwise_separable


def resnet8_trecx(num_classes=10):
    """ResNet-8 for 32x32 CIFAR-10 with T-RECX's exit after the first residual stack."""
    integer("num_classes", num_classes, 1)
    stem = conv_bn_act(3, 16, 3, activation=nn.ReLU)
    early = nn.Sequential(stem, ResidualBlock(16, 16))
    late = nn.Sequential(ResidualBlock(16, 32, 2, projection_bn=False), ResidualBlock(32, 64, 2, projection_bn=False))
    exit_head = TRecXExitHead(16, num_classes, 32, width=32, kernel_size=2, pool=4)
    final = EarlyViewClassifier(64, num_classes, 8, exit_head, stride=2)
    return MultiExitNetwork([early, late], {0: exit_head, 1: final})


def dscnn_trecx(num_classes=12):
    """DS-CNN for [1, 49, 10] MFCC inputs with T-RECX's exit after the second separable layer."""
    integer("num_classes", num_classes, 1)
    stem = nn.Sequential(nn.Conv2d(1, 64, (10, 4), 2, (5, 1)), nn.BatchNorm2d(64), nn.ReLU(), nn.Dropout(0.2))
    early = nn.Sequential(stem, depthwise_separable(64, 64), depthwise_separable(64, 64))
    late = nn.Sequential(depthwise_separable(64, 64), depthwise_separable(64, 64), nn.Dropout(0.4))
    exit_head = TRecXExitHead(64, num_classes, (25, 5), width=32, kernel_size=3, pool=2)
    final = EarlyViewClassifier(64, num_classes, (25, 5), exit_head, stride=1, pool=(13, 3))
    return MultiExitNetwork([early, late], {0: exit_head, 1: final})


# MobileNetV1-0.25 after its stem: (out channels, stride) of each depthwise-separable layer.
MOBILENETV1_025 = ((16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (128, 1), (128, 1), (128, 1),
                   (128, 1), (256, 2), (256, 1))


def mobilenetv1_trecx(num_classes=2):
    """MobileNetV1-0.25 for 96x96 Visual Wake Words with T-RECX's exit after the 4th layer."""
    integer("num_classes", num_classes, 1)
    layers, channels = [conv_bn_act(3, 8, 3, 2, activation=nn.ReLU)], 8
    for out_channels, stride in MOBILENETV1_025:
        layers.append(depthwise_separable(channels, out_channels, stride))
        channels = out_channels
    exit_head = TRecXExitHead(32, num_classes, 24, width=64, kernel_size=2, pool=4)
    final = EarlyViewClassifier(256, num_classes, 3, exit_head, stride=1)
    return MultiExitNetwork([nn.Sequential(*layers[:4]), nn.Sequential(*layers[4:])], {0: exit_head, 1: final})
