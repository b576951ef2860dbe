"""From a model's layers to the units of its streamed form, with tile sizes chosen for a memory budget.

A model is read as the list of its layers: nn.Sequential containers (and subclasses that keep its
forward, as torchvision's Conv2dNormActivation) are opened, the builders' Classifier is read as its
pool, flatten, dropout and linear; everything else is one layer. Shapes come from one run of those
layers on a fake tensor (no memory, no compute).
"""

import sys
from dataclasses import dataclass

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from ..models.blocks import Classifier, InvertedResidual as BuildersInvertedResidual
from . import rows
from .rows import Unsupported
from .units import FoldedPool, Plain, StripedSweep, Tiled, WholeRows


@dataclass(frozen=True)
class Entry:
    """One layer of the model as the streamer reads it: qualified name, module, per-sample shapes."""

    name: str
    module: nn.Module
    in_shape: tuple = None
    out_shape: tuple = None


@dataclass(frozen=True)
class StreamedLayer:
    """What the streamed model does with a run of the model's layers (StreamedModel.plan)."""

    names: tuple
    how: str


def _keeps_forward(module, base):
    return isinstance(module, base) and type(module).forward is base.forward


def flatten(module, name=""):
    """[(qualified name, module)] of the layers `module` runs, in order (module docstring)."""
    if _keeps_forward(module, nn.Sequential):
        return [entry for child_name, child in module.named_children()
                for entry in flatten(child, f"{name}.{child_name}" if name else child_name)]
    if type(module) is Classifier:  # forward: linear(dropout(pool(x).flatten(1)))
        return [(f"{name}.pool", module.pool), (f"{name}.flatten", nn.Flatten(1)),
                (f"{name}.dropout", module.dropout), (f"{name}.linear", module.linear)]
    return [(name, module)]


def trace_shapes(entries, input_shape, dtype, device):
    """entries with their per-sample input and output shapes, from a run on a fake tensor; a layer
    after one whose output is not a tensor gets no shapes."""
    traced, shape = [], tuple(input_shape)
    with FakeTensorMode(allow_non_fake_inputs=True), torch.no_grad():
        t = torch.zeros(1, *input_shape, dtype=dtype, device=device)
        for name, module in entries:
            if shape is None:
                traced.append(Entry(name, module))
                continue
            try:
                t = module(t)
            except Exception as error:
                raise ValueError(f"the model cannot run on inputs of input_shape {tuple(input_shape)}: its layer {name} "
                                 f"({type(module).__name__}) fails on a {list(shape)} sample: {error}") from error
            out_shape = tuple(t.shape[1:]) if torch.is_tensor(t) else None
            traced.append(Entry(name, module, shape, out_shape))
            shape = out_shape
    return traced


def _torchvision_inverted_residual():
    return getattr(sys.modules.get("torchvision.models.mobilenetv2"), "InvertedResidual", None)


def is_inverted_residual(module):
    tv = _torchvision_inverted_residual()
    return type(module) is BuildersInvertedResidual or (tv is not None and type(module) is tv)


def inverted_residual(block):
    """The row layer of an inverted residual block (ours or torchvision's), batch norms folded."""
    layers = flatten(block.conv)
    groups, i = [], 0
    while i < len(layers):  # (conv, batch norm or None, activation)
        conv = layers[i][1]
        if not _keeps_forward(conv, nn.Conv2d):
            raise Unsupported(f"its layer {layers[i][0]} is {type(conv).__name__}, not the Conv2d expected")
        bn = layers[i + 1][1] if i + 1 < len(layers) and _keeps_forward(layers[i + 1][1], nn.BatchNorm2d) else None
        i += 1 + (bn is not None)
        act = rows.activation(layers[i][1]) if i < len(layers) and not isinstance(layers[i][1], nn.Conv2d) else None
        if i < len(layers) and act is None and not isinstance(layers[i][1], nn.Conv2d):
            raise Unsupported(f"its layer {layers[i][0]} ({type(layers[i][1]).__name__}) is not an activation")
        i += act is not None
        groups.append((rows.conv_window(conv, bn), act or rows.no_activation))
    if len(groups) == 2:
        groups.insert(0, (None, rows.no_activation))
    if len(groups) != 3:
        raise Unsupported("its convolutions are not expand 1x1, depthwise, project 1x1")
    (expand, expand_act), (depthwise, depthwise_act), (project, project_act) = groups
    if (depthwise.groups != depthwise.weight.shape[0] or depthwise.weight.shape[1] != 1
            or not all(rows.is_pointwise(conv) and conv.groups == 1 for conv in (expand, project) if conv is not None)):
        raise Unsupported("its convolutions are not expand 1x1, depthwise, project 1x1")
    if not (isinstance(project_act, rows.Clamp) and project_act.identity):
        raise Unsupported("its projection has an activation")
    residual = bool(getattr(block, "residual", getattr(block, "use_res_connect", False)))
    if residual and (depthwise.stride != (1, 1) or 2 * depthwise.padding[0] != depthwise.kernel[0] - 1):
        raise Unsupported("its residual needs a stride-1, same-size depthwise convolution")
    return rows.InvertedResidual(expand, expand_act, depthwise, depthwise_act, project, residual)


def _global_pool_kind(module):
    if _keeps_forward(module, nn.AdaptiveAvgPool2d) and module.output_size in (1, (1, 1)):
        return "avg"
    if (_keeps_forward(module, nn.AdaptiveMaxPool2d) and module.output_size in (1, (1, 1))
            and not module.return_indices):
        return "max"
    return None


def row_layers(entries):
    """[(entries, row layer)]: each layer as a row layer, a convolution and the batch norm after it as
    one. Raises Unsupported naming the first layer that cannot be one."""
    out, i = [], 0
    while i < len(entries):
        entry = entries[i]
        module = entry.module
        try:
            if _keeps_forward(module, nn.Conv2d):
                following = entries[i + 1].module if i + 1 < len(entries) else None
                bn = following if _keeps_forward(following, nn.BatchNorm2d) else None
                if bn is not None and not rows.foldable(bn):
                    entry, module = entries[i + 1], bn  # named itself
                    rows.batch_norm_affine(bn)  # raises why
                layer, used = rows.conv_window(module, bn), 1 + (bn is not None)
            elif _keeps_forward(module, nn.BatchNorm2d):
                layer, used = rows.affine(module), 1
            elif _keeps_forward(module, nn.MaxPool2d) or _keeps_forward(module, nn.AvgPool2d):
                layer, used = rows.pool_window(module), 1
            elif is_inverted_residual(module):
                layer, used = inverted_residual(module), 1
            elif rows.activation(module) is not None:
                layer, used = rows.Pointwise(rows.activation(module)), 1
            else:
                raise Unsupported("not a layer the streamer can split into rows (Conv2d, BatchNorm2d, MaxPool2d, "
                                  "AvgPool2d, an activation, an inverted residual block) and its forward code "
                                  "cannot be seen")
        except Unsupported as error:
            raise Unsupported(f"{entry.name} ({type(module).__name__}): {error}") from None
        out.append((entries[i:i + used], layer))
        i += used
    return out


# ---------------------------------------------------------------------------------------------------
# Memory: per-sample element counts of what a unit holds besides its input and output


def _elements(shape, height=None):
    channels, full_height, width = shape
    return channels * (full_height if height is None else height) * width


def _layer_scratch(layer, in_shape, in_rows, out_shape, out_rows):
    """Elements a row layer allocates for out_rows output rows from in_rows input rows."""
    scratch = _elements(in_shape, in_rows) + _elements(out_shape, out_rows)  # padded copy, output
    if isinstance(layer, rows.InvertedResidual):
        hidden_width = in_shape[2]
        scratch += layer.chunk * (2 * in_rows * hidden_width + out_rows * out_shape[2])
    return scratch


def chain_scratch(group, a, b):
    """Most elements the row layers of `group` ([(entries, layer)]) hold at once for their output
    rows [a, b): two consecutive layers' tiles (chain_rows)."""
    spans = []
    for entries, layer in reversed(group):
        lo, hi = layer.input_rows(a, b)
        a2, b2 = max(lo, 0), min(hi, entries[0].in_shape[1])
        spans.append((entries[0].in_shape, hi - lo, entries[-1].out_shape, b - a))
        a, b = a2, b2
    return max(_layer_scratch(layer, *span) for (_, layer), span in zip(reversed(group), spans))


def _largest(count, fits):
    """The largest n in [1, count] with fits(n) (fits is monotone), or 1."""
    low, high = 1, count
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


@dataclass(frozen=True)
class Budget:
    """Elements per sample: `total`, what a unit may hold with its input and output; `scratch`, the
    most its tiles may take whatever the total (tiles beyond that gain no speed and cost memory)."""

    total: float
    scratch: float

    def fits(self, held, scratch):
        return held + scratch <= self.total and scratch <= self.scratch


def plan_stripes(group, sweep_entry, budget):
    """Patch rows per stripe: the sweep's output plus one stripe of its layers within `budget`."""
    sweep = sweep_entry.module
    kernel, stride = sweep.kernel_size[0], sweep.stride[0]
    out_shape, in_shape = sweep_entry.out_shape, sweep_entry.in_shape

    def scratch(count):
        stripe = kernel + (count - 1) * stride
        elements = 2 * _elements(in_shape, stripe) + _elements(out_shape, count)  # stripe, padded, swept
        return elements + (chain_scratch(group, 0, min(stripe, in_shape[1])) if group else 0)

    return _largest(out_shape[1], lambda count: budget.fits(_elements(out_shape), scratch(count)))


def _fused_scratch(layer, in_shape, out_shape, count):
    """Elements rnnpool::inverted_residual holds for tiles of `count` rows: the expanded rows a tile
    reads and the depthwise output of a tile (it projects straight into the output)."""
    lo, hi = layer.input_rows(0, count)
    return layer.hidden * ((hi - lo) * in_shape[2] + count * out_shape[2])


def plan_tiles(entry, layer, budget):
    """(tile rows, expanded channels per chunk) of an inverted residual block within `budget`; sets
    layer.chunk, and layer.fused to False when even one fused tile does not fit (the torch path
    can chunk the expansion)."""
    held = _elements(entry.in_shape) + _elements(entry.out_shape)
    if layer.fused and budget.fits(held, _fused_scratch(layer, entry.in_shape, entry.out_shape, 1)):
        return _largest(entry.out_shape[1], lambda count: budget.fits(
            held, _fused_scratch(layer, entry.in_shape, entry.out_shape, count))), layer.hidden
    layer.fused = False

    def fits(count, chunk):
        layer.chunk = chunk
        lo, hi = layer.input_rows(0, count)
        scratch = _layer_scratch(layer, entry.in_shape, hi - lo, entry.out_shape, count)
        return budget.fits(held, scratch + _elements(entry.out_shape, count))  # + the partial projection

    if not fits(1, layer.hidden):  # one row of the whole expansion is too much: chunk it
        layer.chunk = _largest(layer.hidden, lambda chunk: fits(1, chunk))
        return 1, layer.chunk
    rows_per_tile = _largest(entry.out_shape[1], lambda count: fits(count, layer.hidden))
    layer.chunk = layer.hidden
    return rows_per_tile, layer.hidden


def plan_fold(group, budget):
    """Rows per tile of pointwise layers folded into a global pool, within `budget`."""
    first = group[0][0][0]
    return _largest(first.in_shape[1],
                    lambda count: budget.fits(_elements(first.in_shape), chain_scratch(group, 0, count)))


# ---------------------------------------------------------------------------------------------------
# Units


def prefix_units(entries, sweep_entry, budget, unsupported):
    """The units of the layers before the first sweep and the sweep itself."""
    plain = []
    try:
        group = row_layers(entries)
    except Unsupported:
        if unsupported == "error":
            raise
        # The layers up to the last one that cannot be split run plainly on whole maps.
        cut = max(i for i in range(len(entries)) if not _splittable(entries[i]))
        plain, entries = entries[:cut + 1], entries[cut + 1:]
        group = row_layers(entries)
    units = [(Plain(e.module), StreamedLayer((e.name,), "plain (cannot be split into rows)")) for e in plain]
    stripe_rows = plan_stripes(group, sweep_entry, budget)
    layers = [layer for _, layer in group]
    heights = [entries_[0].in_shape[1] for entries_, _ in group]
    unit = StripedSweep(layers, heights, sweep_entry.module, sweep_entry.in_shape[1], sweep_entry.out_shape[1],
                        stripe_rows)
    names = tuple(e.name for e in entries) + (sweep_entry.name,)
    units.append((unit, StreamedLayer(names, f"in stripes of {stripe_rows} of {sweep_entry.out_shape[1]} patch rows")))
    return units


def _splittable(entry):
    try:
        row_layers([entry])
        return True
    except Unsupported:
        return False


def suffix_units(entries, budget):
    """Units of the layers after the first sweep: inverted residual blocks tiled, pointwise layers
    before a global pool folded into it, convolutions with batch norms folded, the rest plain."""
    units, i = [], 0
    while i < len(entries):
        run_end = i
        while run_end < len(entries) and _pointwise(entries, run_end):
            run_end += 1
        if run_end > i and run_end < len(entries) and _global_pool_kind(entries[run_end].module):
            group = row_layers(entries[i:run_end])
            tile_rows = plan_fold(group, budget)
            names = tuple(e.name for e in entries[i:run_end + 1])
            units.append((FoldedPool([layer for _, layer in group], entries[i].in_shape[1],
                                     _global_pool_kind(entries[run_end].module), tile_rows),
                          StreamedLayer(names, f"folded into the pool, tiles of {tile_rows} rows")))
            i = run_end + 1
            continue
        entry = entries[i]
        if entry.in_shape is not None and is_inverted_residual(entry.module):
            try:
                layer = inverted_residual(entry.module)
            except Unsupported:
                layer = None
            if layer is not None:
                tile_rows, chunk = plan_tiles(entry, layer, budget)
                how = f"tiled, {tile_rows} of {entry.out_shape[1]} rows" + (
                    ", in the fused kernel" if layer.fused else
                    f", {chunk} of {layer.hidden} expanded channels at a time" if chunk < layer.hidden else "")
                units.append((Tiled(layer, entry.in_shape[1], entry.out_shape[1], tile_rows),
                              StreamedLayer((entry.name,), how)))
                i += 1
                continue
        if entry.in_shape is not None and _keeps_forward(entry.module, nn.Conv2d):
            with_bn = i + 1 < len(entries) and _keeps_forward(entries[i + 1].module, nn.BatchNorm2d)
            try:
                (used, layer), = row_layers(entries[i:i + 1 + with_bn])
            except Unsupported:
                used = None
            if used is not None:
                units.append((WholeRows(layer, entry.in_shape[1], used[-1].out_shape[1]),
                              StreamedLayer(tuple(e.name for e in used), "plain, batch norm folded"
                                            if len(used) == 2 else "plain")))
                i += len(used)
                continue
        units.append((Plain(entry.module), StreamedLayer((entry.name,), "plain")))
        i += 1
    return units


def _pointwise(entries, index):
    """Whether entries[index] (with a batch norm after a conv) is a pointwise row layer."""
    entry = entries[index]
    if entry.in_shape is None:
        return False
    module = entry.module
    if _keeps_forward(module, nn.BatchNorm2d):  # folded into the conv before it, or an affine map
        return rows.foldable(module)
    try:
        (_, layer), = row_layers([entry])
    except Unsupported:
        return False
    return rows.is_pointwise(layer)
