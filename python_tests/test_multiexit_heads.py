"""Exit heads: shapes, SDN's mixed pooling, T-RECX's exit and early-view weight transfer, RNNPool/ReX heads."""

import pytest
import torch
from torch import nn

from rnnpool_ops import ReX2d
from rnnpool_ops.multiexit import (BranchClassifier, EarlyViewClassifier, MultiExitNetwork, PatchSweepHead,
                                   SDNHead, TRecXExitHead, sync_early_view)


def test_sdn_head_mixes_max_and_average_pooling():
    head = SDNHead(2, 3, 8)
    x = torch.randn(2, 2, 8, 8)
    with torch.no_grad():
        head.alpha.fill_(0.25)
    mixed = 0.25 * nn.functional.adaptive_max_pool2d(x, 4) + 0.75 * nn.functional.adaptive_avg_pool2d(x, 4)
    torch.testing.assert_close(head(x), head.linear(mixed.flatten(1)))
    assert head.linear.in_features == 2 * 16
    assert SDNHead(5, 3, (3, 2)).linear.in_features == 5 * 6  # small maps are not pooled
    assert head.alpha.requires_grad


def test_trecx_exit_expands_or_slices():
    wide = TRecXExitHead(16, 10, 32, kernel_size=2, pool=4)  # ResNet-8: 16 -> 32, 16x16 -> 4x4
    assert wide.width == 32 and wide.expand.out_channels == 32 and wide.linear.in_features == 32 * 16
    assert wide(torch.randn(2, 16, 32, 32)).shape == (2, 10)
    narrow = TRecXExitHead(64, 12, (25, 5), width=32, kernel_size=3, pool=2)  # DS-CNN: first 32 channels
    assert narrow.expand is None and narrow.linear.in_features == 32 * 6 * 1
    assert narrow(torch.randn(2, 64, 25, 5)).shape == (2, 12)


def test_early_view_copies_the_exit_then_trains_freely():
    exit_head = TRecXExitHead(16, 10, 32)
    final = EarlyViewClassifier(64, 10, 8, exit_head)
    assert torch.equal(final.early_view.weight, exit_head.depthwise.weight)
    assert final.linear.in_features == 64 + 32 * 4 * 4
    model = MultiExitNetwork([nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 64, 3, 4, 1)], {0: exit_head, 1: final})
    assert model(torch.randn(2, 3, 32, 32))[1].shape == (2, 10)
    with torch.no_grad():
        exit_head.depthwise.weight.add_(1.0)
    assert sync_early_view(model, epoch=7, num_epochs=10)  # within the first 80%
    assert torch.equal(final.early_view.weight, exit_head.depthwise.weight)
    assert final.early_view.weight.data_ptr() != exit_head.depthwise.weight.data_ptr()  # a copy, not shared
    with torch.no_grad():
        exit_head.depthwise.weight.add_(1.0)
    assert not sync_early_view(model, epoch=8, num_epochs=10)
    assert not torch.equal(final.early_view.weight, exit_head.depthwise.weight)


def test_early_view_rejects_a_wider_exit():
    with pytest.raises(ValueError, match="exceeds the final features' 16 channels"):
        EarlyViewClassifier(16, 10, 8, TRecXExitHead(16, 10, 32))


def test_branch_classifier_depth():
    head = BranchClassifier(8, 10, depth=3)
    assert len(head.convs) == 3 and head(torch.randn(2, 8, 6, 6)).shape == (2, 10)


@pytest.mark.parametrize("kind, channels", [("rex", 8 * 4), ("rnnpool", 4 * 4)])
def test_patch_sweep_head_reduces_the_whole_map(kind, channels):
    head = PatchSweepHead(6, 5, (7, 5), hidden1=8, hidden2=4, kind=kind)
    assert head.pool.kernel_size == (7, 5) and head.linear.in_features == channels
    assert head(torch.randn(3, 6, 7, 5)).shape == (3, 5)
    assert isinstance(PatchSweepHead(6, 5, 7, 8, 4).pool, ReX2d)
    with pytest.raises(ValueError, match="kind must be one of"):
        PatchSweepHead(6, 5, 7, 8, 4, kind="lstm")
