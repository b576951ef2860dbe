"""The gated-skip convolution of Dual Dynamic Inference (docs/spec.md section 5): a module, the straight-through
hard gate, the functional form and the unfused reference."""

from . import _ops, reference
from .functional import gated_skip_conv2d
from .layers import GatedSkipConv2d, hard_gate

__all__ = ["GatedSkipConv2d", "hard_gate", "gated_skip_conv2d", "reference"]
