"""The demo's multi-exit network: RNNPool appendix C's "one 3x3 convolution, then RNNPool" recipe,
stacked twice, with an exit after every stage.

    stage 0: conv 3x3 stride 2, 1 -> 8 channels             [8, 16, 16]   exit 0
    stage 1: ReX/RNNPool, 4x4 patches, stride 4             [8h, 4, 4]    exit 1
    stage 2: conv 3x3, -> 32 channels                       [32, 4, 4]    exit 2
    stage 3: ReX/RNNPool over the whole 4x4 map             [8h', 1, 1]   exit 3
"""

from torch import nn

from ..layers import ReX2d, RNNPool2d
from ..multiexit import MultiExitNetwork, SDNHead

LAYERS = {"rex": ReX2d, "rnnpool": RNNPool2d}


def _conv(in_channels, out_channels, stride):
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU())


def build_model(kind, num_classes):
    """A 4-exit network whose pooling stages are `kind` ("rex" or "rnnpool") layers, backend "auto"."""
    layer = LAYERS[kind]
    pool1 = layer(8, hidden1=8, hidden2=8, kernel_size=4)
    pool2 = layer(32, hidden1=16, hidden2=16, kernel_size=4)
    stages = [_conv(1, 8, stride=2), pool1, _conv(pool1.out_channels, 32, stride=1), pool2]
    heads = {
        0: SDNHead(8, num_classes, in_size=16),
        1: SDNHead(pool1.out_channels, num_classes, in_size=4),
        2: SDNHead(32, num_classes, in_size=4),
        3: SDNHead(pool2.out_channels, num_classes, in_size=1),
    }
    return MultiExitNetwork(stages, heads)


def patch_sweep_layers(model):
    """The model's ReX/RNNPool layers by qualified name (what the speed table times)."""
    return {name: module for name, module in model.named_modules() if isinstance(module, tuple(LAYERS.values()))}
