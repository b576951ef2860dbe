"""Fused (C++ kernel) vs unfused (PyTorch reference) timing of the demo's ReX/RNNPool layers."""

import copy
import statistics
import time

import torch

from .._ops import extension_available


def _capture_inputs(model, layers, images):
    """The input shape each layer sees when the model runs on `images`."""
    shapes = {}

    def record(name):
        def hook(module, args, output):  # returns None: a hook's return value would replace the output
            shapes.setdefault(name, args[0].shape)
        return hook

    hooks = [layer.register_forward_hook(record(name)) for name, layer in layers.items()]
    with torch.no_grad():
        model(images)
    for hook in hooks:
        hook.remove()
    return shapes


def _milliseconds(run):
    start = time.perf_counter()
    run()
    return 1e3 * (time.perf_counter() - start)


def _forward(layer, x):
    with torch.no_grad():
        layer(x)


def _forward_backward(layer, x):
    layer(x.requires_grad_()).sum().backward()


def speed_table(model, layers, images, repetitions=5):
    """Print medians over interleaved repetitions (fused and unfused alternate, so drift hits both)."""
    print("\nFused vs unfused, CPU, the demo's batch (median of "
          f"{repetitions} interleaved runs, ms; ratio = unfused / fused)")
    if not extension_available():
        print("fused kernel not built (python setup.py build_ext --inplace): speed table skipped")
        return
    shapes = _capture_inputs(model, layers, images)
    print(f"{'layer':<10} {'input':<18} {'fwd fused':>10} {'unfused':>9} {'ratio':>6} "
          f"{'fwd+bwd fused':>14} {'unfused':>9} {'ratio':>6}")
    for name, layer in layers.items():
        x = torch.randn(shapes[name])
        variants = {}
        for backend in ("cpp", "reference"):
            variants[backend] = copy.deepcopy(layer).cpu()
            variants[backend].backend = backend
        row = []
        for step in (_forward, _forward_backward):
            times = {backend: [] for backend in variants}
            for _ in range(repetitions + 1):  # the first round warms up and is dropped
                for backend, variant in variants.items():
                    times[backend].append(_milliseconds(lambda: step(variant, x.detach().clone())))
            fused, unfused = (statistics.median(times[b][1:]) for b in ("cpp", "reference"))
            row.append(f"{fused:>{10 if step is _forward else 14}.2f} {unfused:>9.2f} {unfused / fused:>5.1f}x")
        print(f"{name:<10} {str(list(x.shape)):<18} " + " ".join(row))
