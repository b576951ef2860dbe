"""Multi-exit networks: container, exit heads, exit policies, early-exit inference, losses, evaluation."""

from .container import MultiExitNetwork
from .evaluation import (BenefitCurve, accuracy, average_cost, benefit_curve, cumulative_accuracy,
                         exit_histogram, per_exit_accuracy, plot_benefit_curve)
from .heads import BranchClassifier, EarlyViewClassifier, PatchSweepHead, SDNHead, TRecXExitHead, sync_early_view
from .inference import ExitResult, early_exit_inference
from .losses import (ddi_adaptive_loss, ddi_resource_loss, exit_losses, rex_cumulative_loss, sdn_weights,
                     trecx_loss, weighted_exit_loss)
from .policies import (ConsistencyPolicy, ConsistencyRegressionPolicy, EntropyPolicy, ExitPolicy,
                       HardBudgetPolicy, MaxSoftmaxPolicy, assign_exits, calibrate_budget)
