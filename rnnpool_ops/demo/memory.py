"""`python -m rnnpool_ops --stream-size N`: one NxN image through MobileNetV2-RNNPool, plain and
streamed (rnnpool_ops.streaming), with the memory each call took, measured, against the analytical peak."""

import ctypes
import time
from pathlib import Path

import torch

from ..models import mobilenetv2_rnnpool
from ..streaming import stream

MIB = 2 ** 20
_M_MMAP_THRESHOLD = -3  # mallopt: a fixed threshold, so that freed large blocks go back to the system


def _status_kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_growth_bytes(call):
    """(result, how far the process's peak RSS rose above its RSS just before `call`), Linux only."""
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = _status_kib("VmRSS")
    result = call()
    return result, (_status_kib("VmHWM") - before) * 1024


def calibrated(model, size=96, images=8):
    """model in eval mode with its batch-norm statistics taken from random images: with the initial
    ones, activations shrink layer by layer and the logits are the classifier's bias."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a cumulative average: one batch sets the statistics
    with torch.no_grad():
        model.train()(torch.randn(images, 3, size, size))
    return model.eval()


def stream_demo(size):
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(_M_MMAP_THRESHOLD, 65536)
    torch.manual_seed(0)
    model = calibrated(mobilenetv2_rnnpool())
    shape = (3, size, size)
    streamed = stream(model, shape)
    bound = streamed.bound_bytes
    print(f"MobileNetV2-RNNPool (ImageNet-10 builder, random weights, batch norm calibrated on random images), "
          f"one {size}x{size} image, float32, inference")
    print(f"analytical peak of live activations (RNNPool Table 1's convention): {bound / MIB:.2f} MiB")
    with torch.inference_mode():
        small = torch.randn(1, 3, 64, 64)
        model(small), stream(model, small.shape[1:])(small)  # warm-up: libraries and kernels loaded
        x = torch.randn(1, *shape)
        started = time.perf_counter()
        streamed_out, streamed_growth = peak_growth_bytes(lambda: streamed(x))
        streamed_s = time.perf_counter() - started
        started = time.perf_counter()
        plain_out, plain_growth = peak_growth_bytes(lambda: model(x))
        plain_s = time.perf_counter() - started
    error = ((streamed_out - plain_out).abs().max() / plain_out.abs().max()).item()
    print(f"plain model:    peak RSS grew {plain_growth / MIB:7.1f} MiB, {plain_s:.2f} s")
    print(f"streamed model: peak RSS grew {streamed_growth / MIB:7.1f} MiB ({streamed_growth / bound:.2f}x the "
          f"analytical peak, {plain_growth / streamed_growth:.1f}x less than plain), {streamed_s:.2f} s; "
          f"outputs agree to {error:.1e} (relative)")
    print(streamed.report())
