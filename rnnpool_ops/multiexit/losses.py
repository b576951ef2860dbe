"""Training losses for multi-exit networks; `outputs` is the list forward() returns, final exit last.

- rex_cumulative_loss: ReX eq. 12, sum_j j * l_j / sum_j j (eq. 13 cross-entropy; eq. 14 MSE with
  loss_fn=F.mse_loss for regression).
- trecx_loss: T-RECX sec. 4.2, L = w_{E-e} * L_{E-e} + L_{E-f}.
- sdn_weights: SDN's weights tau_i, ramped linearly from 0.01 to their maximum over training.
- ddi_adaptive_loss: DDI eq. 4 with w_i = C_o / C_i from this mini-batch's losses (sec. 3.2).
- ddi_resource_loss: DDI eq. 5's alpha * E, E the share of gated convolution MAdds that ran.
"""

import torch
import torch.nn.functional as F

from .._validate import integer, real


def exit_losses(outputs, target, loss_fn=F.cross_entropy):
    """Each exit's loss (mean over the batch)."""
    return [loss_fn(output, target) for output in outputs]


def weighted_exit_loss(outputs, target, weights, loss_fn=F.cross_entropy):
    """sum_i weights[i] * loss_i, one weight per exit."""
    weights = list(weights)
    if len(weights) != len(outputs):
        raise ValueError(f"weights has {len(weights)} values for {len(outputs)} exits")
    return sum(w * loss for w, loss in zip(weights, exit_losses(outputs, target, loss_fn)))


def rex_cumulative_loss(outputs, target, loss_fn=F.cross_entropy):
    """ReX eq. 12: exit j (1-based) weighs j, the weights normalised to sum to 1."""
    m = len(outputs)
    return weighted_exit_loss(outputs, target, [j / (m * (m + 1) / 2) for j in range(1, m + 1)], loss_fn)


def trecx_loss(outputs, target, early_weight, loss_fn=F.cross_entropy):
    """T-RECX: early exits weigh early_weight (0 < w < 1; ResNet 0.5, DS-CNN 0.3, MobileNet 0.4), the
    final exit 1."""
    real("early_weight", early_weight, 0.0, 1.0, low_open=True, high_open=True)
    return weighted_exit_loss(outputs, target, [early_weight] * (len(outputs) - 1) + [1.0], loss_fn)


def sdn_weights(epoch, num_epochs, max_weights):
    """SDN's internal-classifier weights at `epoch`: tau_i = min(max_i, 0.01 + epoch * max_i / num_epochs),
    then 1 for the final classifier. SDN sets max_i to the exit's relative depth (0.15, 0.3, ... 0.9).
    """
    integer("num_epochs", num_epochs, 1)
    real("epoch", epoch, 0.0)
    max_weights = [real(f"max_weights[{i}]", m, 0.0) for i, m in enumerate(max_weights)]
    return [min(m, 0.01 + epoch * m / num_epochs) for m in max_weights] + [1.0]


def ddi_adaptive_loss(outputs, target, loss_fn=F.cross_entropy):
    """DDI eq. 4: L_o + sum_i w_i L_i with w_i = C_o / C_i, constants for this mini-batch's update."""
    *branches, final = exit_losses(outputs, target, loss_fn)
    return final + sum((final / branch).detach() * branch for branch in branches)


def ddi_resource_loss(gate_masks, gate_madds, alpha):
    """alpha * E: E = sum_i madds_i * mean(mask_i) / sum_i madds_i, the share of the gated convolutions'
    MAdds that ran (DDI eq. 5 with FLOPs as the resource).

    gate_masks[i]: layer i's effective channel mask m = layer_gate * channel_gate ([N, C] or [N]),
    in [0, 1]; gate_madds[i]: layer i's MAdds when fully open.
    """
    if len(gate_masks) != len(gate_madds) or not gate_masks:
        raise ValueError(f"gate_masks ({len(gate_masks)}) and gate_madds ({len(gate_madds)}) must be equally "
                         "long and non-empty")
    real("alpha", alpha, 0.0)
    costs = torch.as_tensor(gate_madds, dtype=gate_masks[0].dtype, device=gate_masks[0].device)
    used = torch.stack([mask.mean() for mask in gate_masks])
    return alpha * (costs * used).sum() / costs.sum()
