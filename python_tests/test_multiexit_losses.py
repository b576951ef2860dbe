"""Multi-exit losses against hand computations."""

import math

import pytest
import torch
import torch.nn.functional as F

from rnnpool_ops.multiexit import (ddi_adaptive_loss, ddi_resource_loss, exit_losses, rex_cumulative_loss,
                                   sdn_weights, trecx_loss, weighted_exit_loss)

TARGET = torch.tensor([0, 1])


def outputs_with_losses():
    """Three exits whose cross-entropy losses are log 2, log 3 and log 4 (uniform logits)."""
    return [torch.zeros(2, n, requires_grad=True) for n in (2, 3, 4)]


def test_exit_losses():
    assert [loss.item() for loss in exit_losses(outputs_with_losses(), TARGET)] == pytest.approx(
        [math.log(2), math.log(3), math.log(4)])


def test_rex_cumulative_loss_eq_12():
    expected = (1 * math.log(2) + 2 * math.log(3) + 3 * math.log(4)) / 6
    assert rex_cumulative_loss(outputs_with_losses(), TARGET).item() == pytest.approx(expected)
    g = [torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0])]
    assert rex_cumulative_loss(g, torch.tensor([1.0, 1.0]), F.mse_loss).item() == pytest.approx((1 * 0.5 + 2 * 1.0) / 3)


def test_trecx_loss():
    outputs = outputs_with_losses()[:2]
    assert trecx_loss(outputs, TARGET, 0.3).item() == pytest.approx(0.3 * math.log(2) + math.log(3))
    with pytest.raises(ValueError, match=r"early_weight must be a finite number in \(0.0, 1.0\)"):
        trecx_loss(outputs, TARGET, 1.0)


def test_weighted_exit_loss_checks_lengths():
    with pytest.raises(ValueError, match="weights has 2 values for 3 exits"):
        weighted_exit_loss(outputs_with_losses(), TARGET, [1, 1])


def test_sdn_weights_ramp_then_saturate():
    assert sdn_weights(0, 10, [0.3, 0.6]) == pytest.approx([0.01, 0.01, 1.0])
    assert sdn_weights(5, 10, [0.3, 0.6]) == pytest.approx([0.16, 0.31, 1.0])
    assert sdn_weights(10, 10, [0.3, 0.6]) == pytest.approx([0.3, 0.6, 1.0])
    with pytest.raises(ValueError, match="num_epochs must be an int >= 1"):
        sdn_weights(0, 0, [0.5])


def test_ddi_adaptive_loss_value_and_gradient():
    outputs = outputs_with_losses()
    loss = ddi_adaptive_loss(outputs, TARGET)
    # w_i = C_o / C_i, so every branch term equals C_o in value: 3 * log 4.
    assert loss.item() == pytest.approx(3 * math.log(4))
    loss.backward()
    # Branch i's gradient is w_i times its plain cross-entropy gradient (w_i held constant).
    for output, w in zip(outputs[:2], (math.log(4) / math.log(2), math.log(4) / math.log(3))):
        plain = torch.autograd.grad(F.cross_entropy(output, TARGET), output)[0]
        torch.testing.assert_close(output.grad, w * plain)


def test_ddi_resource_loss():
    masks = [torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([0.0, 1.0])]  # 3/4 and 1/2 open
    assert ddi_resource_loss(masks, [100, 300], alpha=2.0).item() == pytest.approx(2.0 * (75 + 150) / 400)
    with pytest.raises(ValueError, match="gate_masks"):
        ddi_resource_loss(masks, [100], alpha=1.0)
