"""Drop-in swap: put RNNPool2d / ReX2d into an existing model, and report what that changed.

- swap_pooling: pooling layers become sweeps of the same output size and channels (RNNPool
  appendix F.1.2 for a final global pool, F.1.3 for intermediate ones);
- replace_blocks: a run of early blocks becomes one given layer (appendix F.1.1, the RNNPool stem);
- convert_edgeml_modules / edgeml_layers: EdgeML RNNPool modules or checkpoints become fused layers;
- set_backend: choose the backend of every sweep in a model.
All of them change the model in place; the first three return a SwapReport.
"""

import contextlib
import sys
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from . import _validate, analysis, edgeml, functional
from .layers import ReX2d, RNNPool2d, _PatchSweep2d

KINDS = {"rnnpool": RNNPool2d, "rex": ReX2d}
# Output channels per unit of hidden2: RNNPool2d gives 4*hidden2, ReX2d (parts "RGC") 8*hidden2.
_OUTPUT_WIDTH = {"rnnpool": 4, "rex": 8}
SWAPPABLE_POOLING = (nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d)
# RNNPool appendix F.1.3: an intermediate pooling layer becomes a patch 4, stride 2 sweep.
INTERMEDIATE_PATCH, INTERMEDIATE_STRIDE = 4, 2


@dataclass(frozen=True)
class Replacement:
    """Modules `names` (a run of one or more) were replaced: `before` and `after` describe them."""

    names: tuple
    before: str
    after: str


@dataclass(frozen=True)
class Skipped:
    """Pooling layer `name` was left in place, for `reason`."""

    name: str
    reason: str


@dataclass(frozen=True)
class SwapReport:
    """What a swap replaced and its cost change for one sample (analysis module conventions).

    MAdds and peak RAM (bytes, float32) are None when no input_shape was given.
    """

    replaced: tuple
    parameters_before: int
    parameters_after: int
    madds_before: int = None
    madds_after: int = None
    peak_ram_before: int = None
    peak_ram_after: int = None
    skipped: tuple = ()

    @property
    def parameters_change(self):
        return self.parameters_after - self.parameters_before

    @property
    def madds_change(self):
        return None if self.madds_before is None else self.madds_after - self.madds_before

    @property
    def peak_ram_change(self):
        return None if self.peak_ram_before is None else self.peak_ram_after - self.peak_ram_before

    def __str__(self):
        lines = [f"{', '.join(r.names)}: {r.before} -> {r.after}" for r in self.replaced]
        lines += [f"skipped {s.name}: {s.reason}" for s in self.skipped]
        for label, unit in (("parameters", ""), ("madds", ""), ("peak_ram", " B")):
            before, after = getattr(self, f"{label}_before"), getattr(self, f"{label}_after")
            if before is not None:
                lines.append(f"{label}: {before:,}{unit} -> {after:,}{unit} ({after - before:+,}{unit})")
        return "\n".join(lines)


def swap_pooling(model, input_shape, kind="rnnpool", names=None, backend="auto", include_squeeze_excitation=False,
                 include_non_downsampling=False, **layer_options):
    """Replace pooling layers (nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d) by RNNPool2d/ReX2d.

    input_shape (C, H, W) of one sample is traced once to find each layer's input and output size.
    names: the pooling layers to replace, obeyed as given. By default every pooling layer except
    - squeeze-excitation pools (inside torchvision's SqueezeExcitation, or whose output is seen to
      rescale their own input, x * gate(pool(x))), unless include_squeeze_excitation;
    - pools that do not downsample (output map as large as the input), which would become per-pixel
      RNNs rather than pooling, unless include_non_downsampling;
    - pools that cannot be replaced (not run, run at several call sites, no matching sweep).
    The report lists each skipped pool and why; with names, a pool that cannot be replaced is an error.
    Each new layer has hidden1 = C/4 and hidden2 = C/4 (RNNPool) or C/8 (ReX), so its output has
    the C channels the pooling layer kept; where C is not divisible so, a 1x1 convolution restores
    C. A layer pooling to 1x1 sweeps the whole map as one patch (F.1.2); others use patch 4,
    stride 2 with the padding that keeps the output size (F.1.3), or else tile the input with
    patch = stride = input / output size. An adaptive pool's replacement fits the traced map size
    only and refuses others. layer_options go to the layer (cell, gate, update, ...).
    Atomic: on any error the model is left as it was.
    """
    _check_kind(kind)
    _check_backend(backend)
    input_shape = _check_input_shape(input_shape)
    _validate.flag("include_squeeze_excitation", include_squeeze_excitation)
    _validate.flag("include_non_downsampling", include_non_downsampling)
    pools = {name: m for name, m in model.named_modules() if isinstance(m, SWAPPABLE_POOLING)}
    if names is not None:
        pools = _select(pools, names, "a pooling layer (nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d)")
    if not pools:
        raise ValueError("model has no nn.AvgPool2d, nn.MaxPool2d or nn.AdaptiveAvgPool2d module to replace "
                         "(pooling done with torch.nn.functional is not seen)")
    watch = _RescaleWatch()
    calls = _call_shapes(model, pools, input_shape, watch)
    default_skips = {"squeeze_excitation": not include_squeeze_excitation,
                     "non_downsampling": not include_non_downsampling}
    squeeze_excitation = _squeeze_excitation_pools(model, pools, watch.rescaling)
    before = _costs(model, input_shape)
    dtype, device = analysis.model_dtype_device(model)
    layers, replaced, skipped = {}, [], []
    for name, pool in pools.items():
        sites = calls.get(name, [])
        reason, geometry = _plan(name, pool, sites, names is None, squeeze_excitation, default_skips)
        if reason is not None:
            if names is not None:
                raise ValueError(f"{name}: {reason}; leave it out of names")
            skipped.append(Skipped(name, reason))
            continue
        layers[name] = _replacement(kind, sites[0], geometry, backend, layer_options, pool,
                                    f"swap_pooling built this layer for input_shape {input_shape} to replace "
                                    f"{name} ({type(pool).__name__})").to(device, dtype)
        replaced.append(Replacement((name,), repr(pool), repr(layers[name])))
    if not layers:
        raise ValueError("no pooling layer to replace: " + "; ".join(f"{s.name}: {s.reason}" for s in skipped))
    return _replace(model, layers, input_shape, before, replaced, skipped=skipped)


def _plan(name, pool, sites, by_default, squeeze_excitation, default_skips):
    """(why the pool is left alone, None) or (None, its sweep's geometry)."""
    reason = _cannot_replace(pool, sites)
    if reason is None and by_default:
        reason = _skipped_by_default(name, sites, squeeze_excitation, default_skips)
    if reason is not None:
        return reason, None
    in_size, out_size = _spatial_sizes(sites[0])
    geometry = _sweep_geometry(in_size, out_size)
    return (None, geometry) if geometry else (f"no sweep maps its input size {in_size} to its output size {out_size}",
                                              None)


def _cannot_replace(pool, sites):
    """Why no sweep can take the place of `pool`, run at `sites` (None: one can, given a geometry)."""
    if getattr(pool, "return_indices", False):
        return "it returns indices (return_indices=True), which a sweep has none of"
    if not sites:
        return "it does not run in the model's forward pass"
    if len(sites) > 1:
        return _shared_reason(sites)
    return None


def _spatial_sizes(site):
    """((H, W) in, (H, W) out) of one call (input shape, output shape)."""
    return tuple(site[0][1:]), tuple(site[1][1:])


def _skipped_by_default(name, sites, squeeze_excitation, default_skips):
    """Why swap_pooling leaves this pool alone unless asked (None: it does not)."""
    in_size, out_size = _spatial_sizes(sites[0])
    if default_skips["squeeze_excitation"] and name in squeeze_excitation:
        return (f"squeeze-excitation pool ({squeeze_excitation[name]}), not pooling between stages; "
                "include_squeeze_excitation=True replaces it")
    if default_skips["non_downsampling"] and all(o >= i for i, o in zip(in_size, out_size)):
        return (f"does not downsample ({in_size[0]}x{in_size[1]} -> {out_size[0]}x{out_size[1]}): its sweep would "
                "be a per-pixel RNN; include_non_downsampling=True replaces it")
    return None


def _squeeze_excitation_pools(model, pools, rescaling):
    """{pool name: how it was recognised} for squeeze-excitation pools: inside a torchvision
    SqueezeExcitation (torchvision is not imported for this: a model holding one has imported it), or
    seen rescaling their own input in the trace."""
    found = {name: "its output rescales its own input" for name in rescaling}
    se_class = getattr(sys.modules.get("torchvision.ops.misc"), "SqueezeExcitation", None)
    if se_class is not None:
        for scope, module in model.named_modules():
            if isinstance(module, se_class):
                found.update({name: f"inside torchvision SqueezeExcitation {scope}" for name in pools
                              if name.startswith(f"{scope}.")})
    return found


class _RescaleWatch(TorchFunctionMode):
    """Sees which pools' outputs multiply the pools' own inputs within a few operations, the pattern of
    squeeze-excitation: x * gate(pool(x)).

    Tensors derived from a pool's output are followed for HOPS operations (enough for an SE gate,
    and it bounds what the watch holds).
    """

    HOPS = 12
    PRODUCTS = {"mul", "mul_", "multiply", "__mul__", "__rmul__", "__imul__"}

    def __init__(self):
        super().__init__()
        self.inputs = {}  # pool name: the tensor it last took
        self.derived = {}  # id(tensor): (tensor, {pool name: operations since that pool})
        self.rescaling = set()

    def pool_ran(self, name, inputs, output):
        self.inputs[name] = inputs[0]
        self._mark(output, {name: 0})

    def _mark(self, value, sources):
        for tensor in tree_leaves(value):
            if isinstance(tensor, torch.Tensor):
                self.derived[id(tensor)] = (tensor, sources)

    def _sources(self, tensors):
        sources = {}
        for tensor in tensors:
            held, hops = self.derived.get(id(tensor), (None, {}))
            if held is tensor:  # the id is not that of a freed tensor
                for name, count in hops.items():
                    if count < self.HOPS:
                        sources[name] = min(count + 1, sources.get(name, count + 1))
        return sources

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        tensors = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        sources = self._sources(tensors)
        if sources:
            if getattr(func, "__name__", "") in self.PRODUCTS:
                self.rescaling.update(name for name in sources if any(t is self.inputs[name] for t in tensors))
            self._mark(result, sources)
        return result


def _replacement(kind, site, geometry, backend, layer_options, pool, origin):
    """The sweep replacing `pool`, run once at `site` (input shape, output shape), in the pool's mode."""
    channels, *in_size = site[0]
    layer = _matching_sweep(kind, channels, geometry, backend, layer_options)
    if isinstance(pool, nn.AdaptiveAvgPool2d):  # its output size does not follow the input's
        _sweep_of(layer).fix_input_size(in_size, origin)
    return layer.train(pool.training)


def replace_blocks(model, names, layer, input_shape):
    """Replace the run of modules `names` (in execution order) by `layer` (RNNPool appendix F.1.1).

    The first named module becomes `layer`, the others nn.Identity, so the model's forward and its
    other modules' names are unchanged. `layer` must map the first module's input to the last
    module's output shape, for one sample of input_shape (C, H, W). Atomic, as swap_pooling.
    """
    if isinstance(names, str) or not names:
        raise ValueError(f"names must be a non-empty list of module names, got {names!r}")
    if not isinstance(layer, nn.Module):
        raise TypeError(f"layer must be an nn.Module, got {type(layer).__name__}")
    input_shape = _check_input_shape(input_shape)
    blocks = _select({name: m for name, m in model.named_modules() if name}, names, "a submodule")
    shapes = _io_shapes(model, blocks, input_shape)
    if list(shapes) != list(names):
        raise ValueError(f"names must be given in the order the model runs them: {list(shapes)}, got {list(names)}")
    block_input, block_output = shapes[names[0]][0], shapes[names[-1]][1]
    layer_output = tuple(analysis.run_sample(layer, block_input).shape[1:])
    if layer_output != block_output:
        raise ValueError(f"layer maps the blocks' input {list(block_input)} to {list(layer_output)}, "
                         f"but {names[-1]} gives {list(block_output)}")
    before = _costs(model, input_shape)
    replaced = Replacement(tuple(names), " + ".join(type(blocks[name]).__name__ for name in names), repr(layer))
    modules = {names[0]: layer, **{name: nn.Identity() for name in names[1:]}}
    return _replace(model, modules, input_shape, before, [replaced])


def edgeml_layers(state_dict, kernel_size, stride=None, padding=0, **from_edgeml_options):
    """{module name: RNNPool2d} for every EdgeML RNNPool found in a state dict (docs/edgeml.md).

    state_dict may be a training checkpoint as EdgeML's scripts save it ({'model': state dict,
    'epoch': ...}, DataParallel's 'module.' keys); names are given without 'module.'. A state dict
    holds no module to read a patch size from, so kernel_size is required. kernel_size, stride and
    padding: one value for every RNNPool, or a mapping {module name: value} (stride: default the
    kernel size, padding: default 0). from_edgeml_options: gate, update, backend (RNNPool2d.from_edgeml).
    """
    state_dict = edgeml.unwrap_checkpoint(state_dict)
    names = [prefix[:-1] for prefix in edgeml.require_edgeml_rnnpool_prefixes(state_dict)]
    geometry = _edgeml_geometry(names, dict.fromkeys(names), kernel_size, stride, padding)
    return {name: RNNPool2d.from_edgeml(state_dict, *geometry[name], prefix=f"{name}." if name else "",
                                        **from_edgeml_options)
            for name in names}


def convert_edgeml_modules(model, kernel_size=None, stride=None, padding=0, input_shape=None, **from_edgeml_options):
    """Replace every EdgeML RNNPool submodule of `model` by an RNNPool2d with its weights.

    Each module's patch size is its own nRows x nCols; kernel_size (one value, or a mapping {module
    name: value}) is needed only for modules without them, and must agree with those that have them.
    stride and padding: one value for every module, or a mapping {module name: value} (stride: default
    the kernel size, padding: default 0). The fused layer takes the feature map itself: a forward that
    cut patches out for EdgeML's module must pass the map instead (docs/edgeml.md has a worked example).
    input_shape (C, H, W), if given, adds MAdds and peak RAM to the report; the model must then run
    converted. Atomic: on any error the model is left as it was.
    """
    if input_shape is not None:
        input_shape = _check_input_shape(input_shape)
    state_dict = model.state_dict()
    prefixes = edgeml.find_edgeml_rnnpool_prefixes(state_dict)
    if not prefixes:
        raise ValueError("model has no EdgeML RNNPool submodule (keys cell_rnn.cell.* and cell_bidirrnn.cell.*)")
    if "" in prefixes:
        raise ValueError("model is itself an EdgeML RNNPool: build its replacement with RNNPool2d.from_edgeml")
    modules = {prefix[:-1]: model.get_submodule(prefix[:-1]) for prefix in prefixes}
    geometry = _edgeml_geometry(list(modules), modules, kernel_size, stride, padding)
    # Each new layer on its module's device (from_edgeml builds on the CPU) and in its mode.
    layers = {name: RNNPool2d.from_edgeml(state_dict, *geometry[name], prefix=f"{name}.", **from_edgeml_options)
              .to(analysis.model_dtype_device(module)[1]).train(module.training) for name, module in modules.items()}
    before = _costs(model, input_shape)
    replaced = [Replacement((name,), type(modules[name]).__name__, repr(layer)) for name, layer in layers.items()]
    return _replace(model, layers, input_shape, before, replaced,
                    "a forward that cut patches out for EdgeML's module must pass the feature map instead: adapt "
                    "the model's forward (docs/edgeml.md), then run rnnpool_ops.analysis on it")


def _edgeml_geometry(names, modules, kernel_size, stride, padding):
    """{name: (kernel_size, stride, padding)} of each EdgeML RNNPool; modules: {name: live module or None}."""
    kernels, strides, paddings = (_per_module(argument, value, names) for argument, value in
                                  (("kernel_size", kernel_size), ("stride", stride), ("padding", padding)))
    return {name: (_edgeml_kernel(name, modules[name], kernels.get(name)), strides.get(name), paddings.get(name, 0))
            for name in names}


def _per_module(argument, value, names):
    """{name: value}: one value for every module, or a mapping of some module names to theirs."""
    if not isinstance(value, Mapping):
        return dict.fromkeys(names, value)
    unknown = [name for name in value if name not in names]
    if unknown:
        raise ValueError(f"{argument} names {unknown}, which are not EdgeML RNNPool modules; those are {names}")
    return dict(value)


def _edgeml_kernel(name, module, given):
    """The patch size of EdgeML RNNPool `name`: its own nRows x nCols, which `given` must agree with."""
    own = (module.nRows, module.nCols) if hasattr(module, "nRows") and hasattr(module, "nCols") else None
    if given is None:
        if own is None:
            raise ValueError(f"kernel_size is needed for {name or 'the RNNPool'}: "
                             + ("a state dict holds no patch size" if module is None else "it has no nRows/nCols"))
        return own
    if own is not None and _validate.integer_pair(f"kernel_size for {name}", given, 1) != own:
        raise ValueError(f"kernel_size {given!r} for {name} disagrees with its own nRows x nCols = {own[0]} x {own[1]}, "
                         "the patch EdgeML's module reads: leave kernel_size out to use each module's own")
    return given


def set_backend(model, backend):
    """Set the backend of every RNNPool2d/ReX2d in model; returns their names.

    backend is one of rnnpool_ops.functional.BACKENDS: "auto" (the fused C++ op where it runs on the
    tensors' device, else Triton on CUDA, else the reference), "cpp", "triton" or "reference"; see
    rnnpool_ops.functional for what each runs on.
    """
    _check_backend(backend)
    names = [name for name, m in model.named_modules() if isinstance(m, _PatchSweep2d)]
    if not names:
        raise ValueError("model has no RNNPool2d or ReX2d layer")
    for name in names:
        model.get_submodule(name).backend = backend
    return names


def _sweep_geometry(in_size, out_size):
    """(kernel_size, stride, padding) of a sweep mapping in_size to out_size, both (H, W); None if none."""
    if out_size == (1, 1):
        return in_size, in_size, (0, 0)
    per_dimension = [_dimension_geometry(i, o) for i, o in zip(in_size, out_size)]
    return None if None in per_dimension else tuple(zip(*per_dimension))


def _dimension_geometry(size_in, size_out):
    for padding in range(INTERMEDIATE_PATCH // 2 + 1):
        if (size_in + 2 * padding - INTERMEDIATE_PATCH) // INTERMEDIATE_STRIDE + 1 == size_out:
            return INTERMEDIATE_PATCH, INTERMEDIATE_STRIDE, padding
    if size_out and size_in % size_out == 0:
        return size_in // size_out, size_in // size_out, 0
    return None


def _matching_sweep(kind, channels, geometry, backend, layer_options):
    hidden2 = -(-channels // _OUTPUT_WIDTH[kind])
    sweep = KINDS[kind](channels, max(1, channels // 4), hidden2, *geometry, backend=backend, **layer_options)
    if sweep.out_channels == channels:
        return sweep
    # The layers after the pooling layer expect its C channels.
    return nn.Sequential(sweep, nn.Conv2d(sweep.out_channels, channels, 1))


def _call_shapes(model, modules, input_shape, watch=None):
    """{name: [(input shape, output shape) of each call]} of one zero sample, in the order the modules
    first run; a _RescaleWatch, if given, sees the run and each call."""
    calls = {}

    def record(name):
        def hook(module, inputs, output):  # returns None: a forward hook's return value replaces the output
            first_output = tree_leaves(output)[0]  # a pool with return_indices gives (values, indices)
            calls.setdefault(name, []).append((tuple(inputs[0].shape[1:]), tuple(first_output.shape[1:])))
            if watch is not None:
                watch.pool_ran(name, inputs, output)
        return hook

    hooks = [module.register_forward_hook(record(name)) for name, module in modules.items()]
    try:
        with watch if watch is not None else contextlib.nullcontext():
            analysis.run_sample(model, input_shape)
    finally:
        for hook in hooks:
            hook.remove()
    return calls


def _io_shapes(model, modules, input_shape):
    """{name: (input shape, output shape)} of modules that each run once, in the order they run."""
    calls = _call_shapes(model, modules, input_shape)
    missing = [name for name in modules if name not in calls]
    if missing:
        raise ValueError(f"modules {missing} do not run in the model's forward pass")
    for name, sites in calls.items():
        if len(sites) > 1:
            raise ValueError(f"{name}: {_shared_reason(sites)}")
    return {name: sites[0] for name, sites in calls.items()}


def _shared_reason(sites):
    inputs = ", ".join(str(list(site[0])) for site in sites)
    return (f"one module runs at {len(sites)} call sites (inputs {inputs}): one replacement would share its "
            "weights between them, or not fit; give each call site a module of its own")


def _sweep_of(layer):
    """The RNNPool2d/ReX2d of a matching sweep (alone, or before its 1x1 convolution)."""
    return layer[0] if isinstance(layer, nn.Sequential) else layer


def _replace(model, modules, input_shape, before, replaced, hint="", skipped=()):
    """Put modules {name: module} into model and report; if that fails, or the changed model does not
    run on input_shape, put every original back and raise."""
    originals = {name: model.get_submodule(name) for name in modules}
    try:
        for name, module in modules.items():
            _set_module(model, name, module)
        return _report(model, input_shape, before, replaced, skipped)
    except Exception as error:
        for name, module in originals.items():
            _set_module(model, name, module)
        raise ValueError(f"the model with {', '.join(modules)} replaced does not run on input_shape "
                         f"{input_shape} ({type(error).__name__}: {error}); the model is unchanged"
                         + (f". {hint}" if hint else "")) from error


def _costs(model, input_shape):
    parameters = analysis.count_parameters(model)
    if input_shape is None:
        return parameters, None, None
    return parameters, analysis.multiply_adds(model, input_shape), analysis.peak_ram_bytes(model, input_shape)


def _report(model, input_shape, before, replaced, skipped=()):
    after = _costs(model, input_shape)
    return SwapReport(tuple(replaced), before[0], after[0], before[1], after[1], before[2], after[2], tuple(skipped))


def _select(modules, names, what):
    unknown = [name for name in names if name not in modules]
    if unknown:
        raise ValueError(f"names {unknown} are not {what} of the model")
    return {name: modules[name] for name in names}


def _set_module(model, name, module):
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, module)


def _check_kind(kind):
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {tuple(KINDS)}, got {kind!r}")


def _check_backend(backend):
    if backend not in functional.BACKENDS:
        raise ValueError(f"backend must be one of {functional.BACKENDS}, got {backend!r}")


def _check_input_shape(input_shape):
    """One image sample's (C, H, W)."""
    return _validate.shape("input_shape (one sample's C, H, W)", input_shape, 3)
