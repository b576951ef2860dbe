"""Exports a small model built with the fused layers as an AOTInductor package (model.pt2), the file
the C++ runner (aoti_runner.cpp) loads. Batch, height and width are dynamic in the package.

    python export_model.py --out build/model.pt2

Use it as a template: any model whose RNNPool2d / ReX2d / GatedSkipConv2d layers run the fused
ops (backend "auto" or "cpp") exports the same way; the package calls those ops through
librnnpool_ops.so, which the program that runs it must load (see README.md here).
"""
import argparse
from pathlib import Path

import torch
from torch import nn

from rnnpool_ops import GatedSkipConv2d, ReX2d, RNNPool2d


def example_model():
    """A small classifier with both sweep cells and a gated-skip convolution."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        RNNPool2d(8, hidden1=8, hidden2=4, kernel_size=4, stride=2, padding=1),  # FastGRNN, 16 channels
        GatedSkipConv2d(16, kernel_size=3),
        ReX2d(16, hidden1=8, hidden2=4, kernel_size=2, stride=2),  # GRU, 32 channels
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    ).eval()


# The example input's shape; the package accepts other batches, heights and widths too.
EXAMPLE_SHAPE = (2, 3, 32, 40)


def export(model, example, path):
    """torch.export with dynamic batch, height and width, then AOTInductor; returns the package path."""
    dynamic = {0: torch.export.Dim.AUTO, 2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO}
    with torch.no_grad():
        program = torch.export.export(model, (example,), dynamic_shapes=({**dynamic},))
        return torch._inductor.aoti_compile_and_package(program, package_path=str(path))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("model.pt2"), help="the package to write")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(export(example_model(), torch.randn(EXAMPLE_SHAPE), args.out))


if __name__ == "__main__":
    main()
