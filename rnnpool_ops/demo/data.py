"""Demo datasets, built in memory: nothing is downloaded.

- lines: RNNPool appendix C.1's first dataset, one line segment of random length and position on a
  noisy 32x32 monochrome image, 9 classes for orientations 0, 20, ..., 160 degrees.
- digits: scikit-learn's bundled 8x8 digits (10 classes) upscaled to 32x32; needs scikit-learn.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IMAGE_SIZE = 32
LINE_CLASSES = 9  # orientations 0..160 degrees in 20-degree steps


@dataclass
class Split:
    images: torch.Tensor  # [N, 1, 32, 32] float32
    labels: torch.Tensor  # [N] long


@dataclass
class Dataset:
    name: str
    num_classes: int
    train: Split
    test: Split


def line_images(n, generator, size=IMAGE_SIZE, noise=0.15):
    """n images of one anti-aliased line segment each, and their orientation classes."""
    labels = torch.randint(LINE_CLASSES, (n,), generator=generator)
    # A little jitter around the class angle, so the model learns a range rather than exact pixels.
    angle = torch.deg2rad(labels * 20.0 + (torch.rand(n, generator=generator) - 0.5) * 6.0)
    half_length = size * (0.15 + 0.2 * torch.rand(n, generator=generator))
    center = size * (0.3 + 0.4 * torch.rand(n, 2, generator=generator))
    direction = torch.stack([torch.cos(angle), -torch.sin(angle)], dim=1)  # image y grows downwards
    start, end = center - half_length[:, None] * direction, center + half_length[:, None] * direction
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    pixels = torch.stack(torch.meshgrid(coords, coords, indexing="xy"), dim=-1).reshape(1, -1, 2)
    # Distance from each pixel centre to the segment: project onto it, clamp to its ends.
    segment = (end - start)[:, None]
    t = (((pixels - start[:, None]) * segment).sum(-1) / (segment ** 2).sum(-1)).clamp(0, 1)
    distance = (pixels - (start[:, None] + t[..., None] * segment)).norm(dim=-1)
    ink = (1.5 - distance).clamp(0, 1)  # about two pixels wide, soft edges
    images = (ink + noise * torch.rand(ink.shape, generator=generator)).clamp(0, 1)
    return images.reshape(n, 1, size, size), labels


def lines(samples, seed):
    generator = torch.Generator().manual_seed(seed)
    test_samples = max(samples // 4, 1)
    return Dataset("lines", LINE_CLASSES, Split(*line_images(samples, generator)),
                   Split(*line_images(test_samples, generator)))


def digits(samples, seed):
    from sklearn.datasets import load_digits  # optional dependency: only this dataset needs it
    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32)[:, None] / 16.0
    images = F.interpolate(images, size=IMAGE_SIZE, mode="bilinear", align_corners=False)
    labels = torch.tensor(bunch.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    test_count = len(order) // 5
    test, train = order[:test_count], order[test_count:][:samples]
    return Dataset("digits", 10, Split(images[train], labels[train]), Split(images[test], labels[test]))


DATASETS = {"lines": lines, "digits": digits}


def load(name, samples, seed):
    """The dataset `name` with `samples` training images (digits: at most the 1437 it has)."""
    return DATASETS[name](samples, seed)
