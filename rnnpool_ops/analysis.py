"""Cost analysis of a model: parameters, multiply-adds (MAdds) and peak activation RAM.

MAdds follow MobileNetV2's convention (Sandler et al.), which the RNNPool paper adopts: the
multiply-adds of convolutions, linear layers and recurrent cells; batch norm, activations, pooling and
additions count nothing. An RNNPool/ReX layer counts what Algorithm 1 of the RNNPool paper executes
patch by patch: RNN1 over every row and column of a patch, RNN2 both ways over each set of summaries,
and ReX's projection f_L (ReX eq. 6).

Peak RAM follows the layer-by-layer convention of the RNNPool paper's appendix E.2 (that of Chowdhery
et al.'s Visual Wake Words): execution goes unit by unit and the peak is the largest unit's need.
- an inverted residual block holds its input and output (E.2.1, item 1); a residual block the larger
  of the two (item 2); blocks declare this in a `peak_ram_rule` attribute;
- a convolution holds its input and output, except a 1x1 convolution, whose output is consumed on the
  fly (channel by channel) by the next layer, so it holds its input only;
- pooling holds its output (it reduces its input as that is produced);
- RNNPool/ReX run patch by patch: everything before the first of them (the network's input and stem)
  is computed per patch and never held whole; the layer itself holds its output.
With float32 this gives the paper's MobileNetV2 2.29 MB (the first bottleneck: 112x112x32 in,
112x112x16 out = 2,408,448 bytes; MB = MiB) and MobileNetV2-RNNPool 0.24 MB.
"""

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from . import _validate
from .gated_skip import GatedSkipConv2d
from .layers import _PatchSweep2d

_POOLING = (nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_RECURRENT_CELLS = (nn.LSTMCell, nn.GRUCell, nn.RNNCell)


@dataclass(frozen=True)
class LayerCost:
    """One module call's cost for one sample: its qualified name, multiply-adds and activation elements.

    scope: the model's grandchild running at the time ("stages.2", "heads.0" in a MultiExitNetwork),
    which also places a module shared between stages (DDI's LSTM gate) where it ran.
    """

    name: str
    madds: int
    input_elements: int
    output_elements: int
    scope: str = ""


def count_parameters(model, batch_norm_statistics=False):
    """Number of parameter elements; with batch_norm_statistics, BN running means and variances too.

    Keras reports BN's moving statistics as (non-trainable) parameters, and the MLPerf Tiny / T-RECX
    tables count them; PyTorch keeps them as buffers.
    """
    total = sum(p.numel() for p in model.parameters())
    if batch_norm_statistics:
        total += sum(m.running_mean.numel() + m.running_var.numel() for m in model.modules()
                     if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None)
    return total


def patch_sweep_madds(layer, out_height, out_width):
    """Multiply-adds of an RNNPool/ReX layer producing an out_height x out_width map (Algorithm 1)."""
    kh, kw = layer.kernel_size
    h1, h2 = layer.hidden1, layer.hidden2
    gates = 3 if isinstance(layer.rnn1, nn.GRUCell) else 1  # GRU: r, z, n; FastGRNN shares W, U
    rnn1_step = gates * h1 * (layer.in_channels + h1)
    rnn2_step = gates * h2 * (h1 + h2)
    per_patch = 2 * kh * kw * rnn1_step  # every row (kh of kw steps) and every column (kw of kh steps)
    per_patch += 2 * sum(length for part, length in (("R", kh), ("C", kw)) if part in layer.parts) * rnn2_step
    if "G" in layer.parts:
        per_patch += layer.proj.in_features * layer.proj.out_features
    return per_patch * out_height * out_width


def _leaf_madds(module, inputs, output):
    custom = getattr(module, "multiply_adds", None)
    if custom is not None:
        return custom(inputs, output)
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return output[0].numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return output[0].numel() * module.in_features
    if isinstance(module, _PatchSweep2d):
        return patch_sweep_madds(module, output.shape[-2], output.shape[-1])
    if isinstance(module, GatedSkipConv2d):  # counted open: what the gates save depends on the input
        return output[0].numel() * module.weight[0].numel()
    if isinstance(module, _RECURRENT_CELLS):
        gates = module.weight_ih.shape[0]
        return gates * (module.input_size + module.hidden_size)
    if isinstance(module, nn.LSTM) and module.num_layers == 1 and not module.bidirectional:
        steps = inputs[0].shape[0] if inputs[0].dim() == 3 and not module.batch_first else inputs[0].shape[-2]
        return steps * 4 * module.hidden_size * (module.input_size + module.hidden_size)
    return None


def _is_leaf_for_madds(module):
    return (hasattr(module, "multiply_adds")
            or isinstance(module, (nn.Conv2d, nn.Linear, _PatchSweep2d, nn.LSTM, GatedSkipConv2d))
            or isinstance(module, _RECURRENT_CELLS))


def _ram_rule(module):
    rule = getattr(module, "peak_ram_rule", None)
    if rule is not None:
        return rule
    if isinstance(module, _PatchSweep2d):
        return "patch-sweep"
    if isinstance(module, nn.Conv2d):
        return "input" if module.kernel_size == (1, 1) else "input+output"
    if isinstance(module, _POOLING):
        return "output"
    if isinstance(module, (nn.Linear, nn.LSTM)) or isinstance(module, _RECURRENT_CELLS):
        return "input+output"
    return None


def _first(value):
    """The first tensor of a module's input or output (tuples, lists, LSTM (out, state))."""
    while isinstance(value, (tuple, list)):
        value = value[0]
    return value


def _elements(value):
    return _first(value)[0].numel()


@contextmanager
def eval_mode(model):
    """Run the body with every module of `model` in eval mode, then give each module back its own mode.

    model.train(flag) would set one mode everywhere, unfreezing a BatchNorm frozen in a training model.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def model_dtype_device(model):
    """(dtype, device) of the model's first floating-point parameter or buffer; the default dtype on
    the CPU for a model holding none (a bare pooling layer)."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype, tensor.device
    return torch.get_default_dtype(), torch.device("cpu")


def zero_sample(model, input_shape):
    """One zero sample [1, *input_shape] in the model's dtype, on its device."""
    dtype, device = model_dtype_device(model)
    return torch.zeros(1, *input_shape, dtype=dtype, device=device)


def run_sample(model, input_shape):
    """Run one zero sample through `model` in eval mode without autograd; every module keeps its mode."""
    with eval_mode(model), torch.no_grad():
        return model(zero_sample(model, input_shape))


def _trace(model, input_shape):
    """Run one zero sample through `model`; record MAdds leaves and peak-RAM units in execution order."""
    input_shape = _validate.shape("input_shape", input_shape)
    madds, units = [], []
    hooks, seen, scope = [], set(), [""]

    def enter(name):
        scope[0] = name

    def visit(name, module, inside_unit):
        if id(module) in seen:  # shared modules: one set of hooks
            return
        seen.add(id(module))
        if name.count(".") == 1:
            hooks.append(module.register_forward_pre_hook(lambda m, i, name=name: enter(name)))
        if _is_leaf_for_madds(module):
            hooks.append(module.register_forward_hook(
                lambda m, i, o, name=name: madds.append(LayerCost(name, int(_leaf_madds(m, i, o)), _elements(i),
                                                                  _elements(o), scope[0]))))
        rule = None if inside_unit else _ram_rule(module)
        if rule is not None:
            hooks.append(module.register_forward_hook(
                lambda m, i, o, rule=rule: units.append((rule, _elements(i), _elements(o)))))
        for child_name, child in module.named_children():
            visit(f"{name}.{child_name}" if name else child_name, child, inside_unit or rule is not None)

    visit("", model, False)
    try:
        run_sample(model, input_shape)
    finally:
        for hook in hooks:
            hook.remove()
    return madds, units


def layer_costs(model, input_shape):
    """Per-layer MAdds for one sample of shape input_shape (C, H, W), in execution order."""
    return _trace(model, input_shape)[0]


def multiply_adds(model, input_shape):
    """Total multiply-adds of one forward pass of one sample of shape input_shape (C, H, W)."""
    return sum(cost.madds for cost in layer_costs(model, input_shape))


def exit_multiply_adds(model, input_shape):
    """Cumulative MAdds of a MultiExitNetwork up to and including each exit, one sample.

    Exiting at exit j costs the stages up to that exit's stage plus heads 0..j (each head on the way
    was evaluated to decide whether to stop).
    """
    stage_madds = [0] * len(model.stages)
    head_madds = [0] * len(model.heads)
    for cost in layer_costs(model, input_shape):
        kind, index = cost.scope.split(".")
        (stage_madds if kind == "stages" else head_madds)[int(index)] += cost.madds
    return [sum(stage_madds[: stage + 1]) + sum(head_madds[: j + 1]) for j, stage in enumerate(model.exit_stages)]


def peak_ram_bytes(model, input_shape, bytes_per_element=4):
    """Peak activation memory of one sample under the layer-by-layer convention (module docstring)."""
    _validate.integer("bytes_per_element", bytes_per_element, 1)
    _, units = _trace(model, input_shape)
    first_sweep = next((i for i, (rule, _, _) in enumerate(units) if rule == "patch-sweep"), None)
    if first_sweep is not None:
        units = units[first_sweep:]  # everything before runs patch by patch with the sweep
    need = {
        "input+output": lambda i, o: i + o,
        "max(input,output)": max,
        "input": lambda i, o: i,
        "output": lambda i, o: o,
        "patch-sweep": lambda i, o: o,
    }
    return bytes_per_element * max(need[rule](i, o) for rule, i, o in units)
