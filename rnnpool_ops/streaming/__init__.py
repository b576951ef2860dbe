"""Memory-bounded inference: stream(model, input_shape) runs an RNNPool/ReX network holding about the
analytical peak of live activations (rnnpool_ops.analysis.peak_ram_bytes), not whole early maps.

See docs/streaming.md. The streamed model is inference-only and computes what model.eval() computes,
for inputs of one (C, H, W) shape:
- the layers before the first RNNPool2d/ReX2d run with it in horizontal stripes (plan.prefix_units);
- inverted residual blocks run in row tiles, never holding their expanded map whole;
- pointwise layers before a global pool are folded into it tile by tile (MobileNetV2's 1280 channels);
- everything else runs as it is.
"""

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from .. import _validate
from ..analysis import exit_multiply_adds, model_dtype_device, peak_ram_bytes
from ..layers import _PatchSweep2d
from ..multiexit import MultiExitNetwork
from .plan import Budget, StreamedLayer, flatten, prefix_units, suffix_units, trace_shapes

__all__ = ["stream", "StreamedModel", "StreamedMultiExitNetwork", "StreamedLayer"]

UNSUPPORTED = ("error", "plain")
DEFAULT_BUDGET_FACTOR = 2.0
SCRATCH_CAP_BYTES = 2 ** 21  # per sample: the most any unit's tiles take, whatever the budget


def stream(model, input_shape, memory_budget=None, unsupported="error"):
    """The streamed, inference-only form of `model` for inputs [N, *input_shape].

    model: an nn.Sequential (its children may be Sequentials) or a MultiExitNetwork whose first stage
    holds the first RNNPool2d/ReX2d, in eval mode. It shares the model's parameters, except that batch
    norms are folded into the convolutions before them at this call: stream again after changing them.
    memory_budget: bytes of live activations per sample to plan stripes and tiles for (None: 2x the
    analytical peak); the tiles shrink to one row, then the expansion to chunks, to fit it. Whatever
    the budget, no unit's tiles take more than 2 MiB per sample.
    unsupported: a layer before the first RNNPool2d/ReX2d that cannot be split into rows is an error
    ("error") or makes the layers up to it run plainly on whole maps ("plain").
    """
    input_shape = _validate.shape("input_shape", input_shape, 3)
    if unsupported not in UNSUPPORTED:
        raise ValueError(f"unsupported must be one of {UNSUPPORTED}, got {unsupported!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    training = next((name or type(model).__name__ for name, m in model.named_modules() if m.training), None)
    if training is not None:
        raise ValueError(f"model is in training mode ({training}): a streamed model computes what the model "
                         "computes in eval mode; call model.eval() first")
    dtype, device = model_dtype_device(model)
    element_size = torch.empty((), dtype=dtype).element_size()
    if isinstance(model, MultiExitNetwork):
        stages = [flatten(stage, f"stages.{i}") for i, stage in enumerate(model.stages)]
    elif isinstance(model, nn.Sequential) and type(model).forward is nn.Sequential.forward:
        stages = [flatten(model)]
    else:
        raise TypeError(f"model is a {type(model).__name__} whose forward code cannot be seen; stream an "
                        "nn.Sequential of its layers (for torchvision's MobileNetV2: nn.Sequential(model.features, "
                        "nn.AdaptiveAvgPool2d(1), nn.Flatten(1), model.classifier)) or a MultiExitNetwork")
    first = _first_sweep(model, stages)
    traced = _trace(stages, input_shape, dtype, device)
    with FakeTensorMode(allow_non_fake_inputs=True):
        bound = peak_ram_bytes(model, input_shape, element_size)
        exit_madds = exit_multiply_adds(model, input_shape) if isinstance(model, MultiExitNetwork) else None
    budget = DEFAULT_BUDGET_FACTOR * bound if memory_budget is None else _validate.real(
        "memory_budget", memory_budget, 0, low_open=True)
    budget_elements = Budget(budget / element_size, min(budget, SCRATCH_CAP_BYTES) / element_size)
    stage_units = []
    for index, entries in enumerate(traced):
        if index == 0:
            units = prefix_units(entries[:first], entries[first], budget_elements, unsupported)
            units += suffix_units(entries[first + 1:], budget_elements)
        else:
            units = suffix_units(entries, budget_elements)
        stage_units.append(units)
    details = dict(input_shape=input_shape, dtype=dtype, device=device, bound=bound, budget=budget)
    if isinstance(model, MultiExitNetwork):
        return StreamedMultiExitNetwork(model, stage_units, exit_madds, **details)
    return StreamedModel(stage_units[0], **details)


def _first_sweep(model, stages):
    """Index, in the first stage's layers, of the first RNNPool2d/ReX2d; refusals name where it is."""
    sweeps = [name for name, m in model.named_modules() if isinstance(m, _PatchSweep2d)]
    if not sweeps:
        raise ValueError(f"model ({type(model).__name__}) holds no RNNPool2d or ReX2d: there is nothing to stream")
    for stage_index, entries in enumerate(stages):
        for index, (name, module) in enumerate(entries):
            if isinstance(module, _PatchSweep2d):
                if stage_index:
                    raise ValueError(f"the first RNNPool2d/ReX2d ({name}) is not in the first stage: the exits before "
                                     "it would read whole early maps")
                return index
            inside = [s for s in sweeps if s.startswith(name + ".") or not name]
            if inside:
                raise ValueError(f"the first RNNPool2d/ReX2d ({inside[0]}) is inside {name} "
                                 f"({type(module).__name__}), whose forward code cannot be seen")
    raise AssertionError("a sweep layer that no stage runs")  # stages hold every child


def _trace(stages, input_shape, dtype, device):
    """Each stage's Entry list with shapes (stages run in order)."""
    flat = [entry for entries in stages for entry in entries]
    traced = iter(trace_shapes(flat, input_shape, dtype, device))
    return [[next(traced) for _ in entries] for entries in stages]


class _InferenceOnly:
    """What both streamed forms share: the input check, no autograd, no training mode, the report."""

    def _setup(self, plan, input_shape, dtype, device, bound, budget):
        self.plan = tuple(plan)
        self.input_shape, self.dtype, self.device = input_shape, dtype, device
        self.bound_bytes, self.budget_bytes = bound, budget

    def _check(self, x):
        if not torch.is_tensor(x) or x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            shape = list(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"this model was streamed for inputs [N, {', '.join(map(str, self.input_shape))}] "
                             f"(stream's input_shape), got {shape}; stream the model again for that shape")
        if x.dtype != self.dtype or x.device != self.device:
            raise ValueError(f"this model was streamed for {self.dtype} inputs on {self.device}, got {x.dtype} on "
                             f"{x.device}")
        if x.requires_grad:
            raise RuntimeError("a streamed model is inference-only: its input must not require grad (stream "
                               "computes no gradients; train the model itself)")

    def train(self, mode=True):
        if mode:
            raise RuntimeError("a streamed model is inference-only and cannot be put in training mode; train "
                               "the model itself and stream it again")
        return super().train(False)

    def report(self):
        """Which layers are streamed, tiled, folded or run plainly, and the memory planned for."""
        mib = 2 ** 20
        lines = [f"streamed for inputs {list(self.input_shape)}: budget {self.budget_bytes / mib:.3f} MiB of live "
                 f"activations per sample (analytical peak {self.bound_bytes / mib:.3f} MiB)"]
        lines += [f"  {', '.join(layer.names)}: {layer.how}" for layer in self.plan]
        return "\n".join(lines)


class StreamedModel(_InferenceOnly, nn.Module):
    """A streamed nn.Sequential (see stream). plan: a StreamedLayer per unit; report() says it."""

    def __init__(self, units, **details):
        super().__init__()
        self.units = nn.Sequential(*(unit for unit, _ in units))
        self._setup((layer for _, layer in units), **details)
        super().train(False)

    def forward(self, x):
        self._check(x)
        with torch.no_grad():
            return self.units(x)


class StreamedMultiExitNetwork(_InferenceOnly, MultiExitNetwork):
    """A streamed MultiExitNetwork: its stages streamed, its heads the model's own; forward and infer
    work as the model's (the exits' MAdds are the model's)."""

    def __init__(self, model, stage_units, exit_madds, **details):
        stages = [nn.Sequential(*(unit for unit, _ in units)) for units in stage_units]
        super().__init__(stages, dict(zip(model.exit_stages, model.heads)))
        self._setup((layer for units in stage_units for _, layer in units), **details)
        self._exit_madds[tuple(details["input_shape"])] = exit_madds
        super().train(False)

    def forward(self, x):
        self._check(x)
        with torch.no_grad():
            return super().forward(x)

    def infer(self, x, policy):
        self._check(x)
        with torch.no_grad():
            return super().infer(x, policy)
