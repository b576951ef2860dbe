"""DDI's ResNet for CIFAR (Dual Dynamic Inference, sec. 3.1-3.2, 4.1) on the fused gated-skip convolution.

ResNet-(6n+2): a 3x3 stem and three stages of n residual blocks (16, 32, 64 channels); ResNet-38 has
n = 6. The first block of stages 2 and 3 changes the shape, so it cannot be skipped (DDI eq. 1 needs
F_i and F_{i-1} alike) and stays a plain residual block. Every other block is gated (MGL2S, eq. 3):

- How a residual block maps onto the fused op: each of its two convolutions is one DDI layer C_i and
  one GatedSkipConv2d, y = m * relu(conv(x)) + (1 - m) * x, whose gated skip takes the place of the
  block's identity shortcut. The block's layer gate G^L is shared by both convolutions (skipping the
  block gives F_i = F_{i-1}, as SkipNet skips blocks); each convolution has its own channel gate G^C
  ("each CNN gate is associated with one convolutional layer", sec. 3.1.2). The gated convolutions
  carry a bias and no batch norm while training; GatedSkipConv2d.fold_batch_norm takes a trained BN in.
- G^L (Fig. 2a, sec. 4.1): average pooling, a 1x1 conv to 10 features, one LSTM (hidden 10) shared by
  every gated block, a linear layer to one logit, hard_gate (0/1 forward, sigmoid gradient). The
  LSTM state runs through the whole network, so stages pass (features, h, c) on.
- G^C (Fig. 2b, sec. 4.1): a 3x3 stride-2 conv, global average pooling, a c x k linear layer,
  hard_gate.
- Branch classifiers (RADI, Fig. 4) at about 1/4 and 3/4 of each stage's depth (blocks 2 and 5 of
  6), their depth growing with the stage (1, 2, 3 conv layers), and the final classifier: 7 exits.

Every gated layer records its effective mask m in `last_masks` on each forward, for ddi_resource_loss.
"""

import torch
from torch import nn

from .._validate import integer
from ..gated_skip import GatedSkipConv2d, hard_gate
from ..multiexit import BranchClassifier, MultiExitNetwork
from .blocks import Classifier, ResidualBlock, conv_bn_act

GATE_HIDDEN = 10  # DDI sec. 4.1: the LSTM's hidden units


class LayerGate(nn.Module):
    """G^L: pooled features -> 1x1 conv -> shared LSTM cell -> one hard 0/1 gate per sample."""

    def __init__(self, channels, lstm, head):
        super().__init__()
        self.project = nn.Conv2d(channels, GATE_HIDDEN, 1)
        self.lstm, self.head = lstm, head  # shared by every gated block (weight reuse, as in SkipNet)

    def forward(self, x, h, c):
        h, c = self.lstm(self.project(x.mean((2, 3), keepdim=True)).flatten(1), (h, c))
        return hard_gate(self.head(h)).flatten(), h, c


class ChannelGate(nn.Module):
    """G^C: 3x3 stride-2 conv -> global average pooling -> linear c x k -> hard 0/1 gate per channel."""

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 2, 1)
        self.linear = nn.Linear(channels, channels)

    def forward(self, x):
        return hard_gate(self.linear(self.conv(x).mean((2, 3))))


class GatedBlock(nn.Module):
    """A residual block's two convolutions as two gated-skip convolutions (module docstring)."""

    def __init__(self, channels, lstm, head):
        super().__init__()
        self.layer_gate = LayerGate(channels, lstm, head)
        self.convs = nn.ModuleList(GatedSkipConv2d(channels) for _ in range(2))
        self.channel_gates = nn.ModuleList(ChannelGate(channels) for _ in range(2))
        self.last_masks = []

    def forward(self, state):
        x, h, c = state
        layer, h, c = self.layer_gate(x, h, c)
        self.last_masks = []
        for conv, gate in zip(self.convs, self.channel_gates):
            channel = gate(x)
            self.last_masks.append(layer[:, None] * channel)
            x = conv(x, layer_gate=layer, channel_gate=channel)
        return x, h, c


class _Plain(nn.Module):
    """A shape-changing block (or the stem) inside a gated segment: passes the gate state through."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, state):
        x, h, c = state
        return self.module(x), h, c


class Segment(nn.Module):
    """The blocks between two exits; takes the image (first segment) or (features, h, c)."""

    def __init__(self, blocks):
        super().__init__()
        self.blocks = nn.Sequential(*blocks)

    def forward(self, state):
        if torch.is_tensor(state):  # the network's input: start the LSTM from zeros
            zeros = state.new_zeros(state.shape[0], GATE_HIDDEN)
            state = (state, zeros, zeros)
        return self.blocks(state)


class OnFeatures(nn.Module):
    """An exit head reading the features of a (features, h, c) state."""

    def __init__(self, head):
        super().__init__()
        self.head = head

    def forward(self, state):
        return self.head(state[0])


def branch_positions(blocks):
    """Blocks (1-based) after which DDI puts its two branches: about 1/4 and 3/4 of the stage."""
    return max(1, int(blocks / 4 + 0.5)), int(3 * blocks / 4 + 0.5)


def ddi_resnet(depth=38, num_classes=10):
    """DDI's CIFAR ResNet-`depth` (6n+2) with LSTM layer gates, CNN channel gates, gated-skip convs and
    branch classifiers, as a MultiExitNetwork of 7 exits."""
    integer("num_classes", num_classes, 1)
    if integer("depth", depth, 8) and (depth - 2) % 6:
        raise ValueError(f"depth must be 6n+2 with n >= 1 (e.g. 38, 74), got {depth!r}")
    n = (depth - 2) // 6
    lstm, head = nn.LSTMCell(GATE_HIDDEN, GATE_HIDDEN), nn.Linear(GATE_HIDDEN, 1)
    segments, heads = [], {}
    current = [_Plain(conv_bn_act(3, 16, 3, activation=nn.ReLU))]
    channels = 16
    for stage, width in enumerate((16, 32, 64)):
        for block in range(1, n + 1):
            if width != channels:
                current.append(_Plain(ResidualBlock(channels, width, 2)))
                channels = width
            else:
                current.append(GatedBlock(width, lstm, head))
            if block in branch_positions(n):
                segments.append(Segment(current))
                heads[len(segments) - 1] = OnFeatures(BranchClassifier(width, num_classes, depth=stage + 1))
                current = []
    segments.append(Segment(current))
    heads[len(segments) - 1] = OnFeatures(Classifier(64, num_classes))
    return MultiExitNetwork(segments, heads)


def gate_masks(model):
    """The effective masks m of every gated convolution in the last forward, in order."""
    return [mask for module in model.modules() if isinstance(module, GatedBlock) for mask in module.last_masks]
