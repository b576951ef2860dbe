"""rnnpool-ops: fused RNNPool and ReX operators for PyTorch.

torch.ops.rnnpool.forward / backward are registered on import (see csrc/rnnpool.cpp); the Triton
backend's rnnpool::forward_triton / backward_triton (rnnpool_ops.triton_sweep) on import where a GPU
is present, else when first used.
"""

from . import _ops, analysis, functional, models, multiexit, reference, swap
from ._ops import (available_cpu_isas, cpu_isa, cuda_kernels_available, extension_available, library_path,
                   set_cpu_isa)
from .cells import FastGRNNCell
from .gated_skip import GatedSkipConv2d, hard_gate
from .layers import ReX2d, RNNPool2d
from .multiexit import MultiExitNetwork

__version__ = "0.2.0"  # the package version (pyproject.toml reads it)

__all__ = [
    "FastGRNNCell", "RNNPool2d", "ReX2d", "GatedSkipConv2d", "hard_gate", "MultiExitNetwork", "functional",
    "reference", "analysis", "models", "multiexit", "swap", "extension_available", "cuda_kernels_available",
    "cpu_isa", "available_cpu_isas", "set_cpu_isa", "library_path",
]
