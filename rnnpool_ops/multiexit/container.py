"""MultiExitNetwork: a backbone split into stages, with an exit head after chosen stages.

The shape of SDN (Kaya et al.), MSDNet, T-RECX and ReXNet (ReX eq. 9: hidden states h_i = f_i(x)
feeding classifiers C_i): training runs every stage and every head; inference runs a policy and stops
each sample at its exit, dropping it from the batch (see inference.py).
"""

from torch import nn

from ..analysis import exit_multiply_adds
from .inference import early_exit_inference


class MultiExitNetwork(nn.Module):
    """stages: modules run in order; heads: {stage index: head} (the last stage must have one).

    forward(x) returns every exit's output, in exit order. infer(x, policy) runs early-exit inference
    (ExitResult: outputs, the exit each sample took, its MAdds).
    """

    def __init__(self, stages, heads):
        super().__init__()
        stages = list(stages)
        if not stages:
            raise ValueError("stages must hold at least one module")
        if not isinstance(heads, dict) or not heads:
            raise ValueError(f"heads must be a non-empty dict {{stage index: head}}, got {type(heads).__name__}")
        bad = [i for i in heads if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(stages)]
        if bad:
            raise ValueError(f"heads keys must be stage indices in [0, {len(stages)}), got {bad}")
        not_modules = [i for i, head in heads.items() if not isinstance(head, nn.Module)]
        if not_modules:
            raise TypeError(f"heads must map stage indices to nn.Module heads; not modules at {not_modules}")
        if len(stages) - 1 not in heads:
            raise ValueError("heads must include the last stage (the final classifier)")
        self.stages = nn.ModuleList(stages)
        self.exit_stages = tuple(sorted(heads))
        self.heads = nn.ModuleList(heads[i] for i in self.exit_stages)
        self._exit_madds = {}

    @property
    def num_exits(self):
        return len(self.heads)

    def forward(self, x):
        outputs = []
        heads = iter(self.heads)
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index in self.exit_stages:
                outputs.append(next(heads)(x))
        return outputs

    def exit_madds(self, input_shape):
        """Cumulative MAdds of each exit for one sample of shape (C, H, W), cached per shape."""
        key = tuple(input_shape)
        if key not in self._exit_madds:
            self._exit_madds[key] = exit_multiply_adds(self, key)
        return self._exit_madds[key]

    def infer(self, x, policy):
        """Early-exit inference with compaction; see rnnpool_ops.multiexit.inference."""
        return early_exit_inference(self, x, policy, self.exit_madds(x.shape[1:]))
