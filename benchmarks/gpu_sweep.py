"""GPU benchmark of the patch sweep: unfused reference, Triton, the fused CUDA op, and cuDNN's GRU.

    python -m benchmarks.gpu_sweep [--cases NAME ...] [--batches N ...] [--warmup-ms MS] [--rep-ms MS]

For each case of benchmarks/cases.py (default: the MobileNetV2 RNNPool stem and the ReX/GRU case),
each batch size and each pass (forward, forward+backward), float32, rows for:
  reference   the unfused pure-PyTorch sweep (rnnpool_ops.reference)
  triton      backend "triton" (rnnpool_ops.triton_sweep)
  cpp         backend "cpp": the fused CUDA op, only when the extension has its CUDA kernel
  cudnn-gru   GRU cases only: F.unfold + nn.GRU (cuDNN) for both RNNs. NOT the same math: cuDNN's
              bidirectional GRU has separate weights for the reverse direction, where the op shares
              one set (docs/spec.md section 1). A speed reference only.
Times are medians of triton.testing.do_bench (CUDA events). "vs reference" = reference ms / row ms.
GFLOP/s (fused rows) counts benchmarks/flops.py: sweep_macs, the per-patch work the GPU backends do
(forward+backward = 3x forward). Writes benchmarks/results/gpu-sweep-<gpu>.md and .json.
"""

import argparse
import dataclasses
import sys

import torch
import torch.nn.functional as F
from torch import nn

import rnnpool_ops
from benchmarks.cases import CASES, PASSES, build, make_step
from benchmarks.flops import sweep_macs
from benchmarks.report import case_lines, header_lines, machine_info, slug, write_results

DEFAULT_CASES = ("mobilenetv2-rnnpool-stem", "rex-mobilenetv2")
DEFAULT_BATCHES = (1, 8, 64, 256)
FUSED = ("triton", "cpp")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(DEFAULT_CASES))
    parser.add_argument("--batches", nargs="+", type=int, default=list(DEFAULT_BATCHES))
    parser.add_argument("--warmup-ms", type=float, default=50, help="do_bench warmup time per row")
    parser.add_argument("--rep-ms", type=float, default=200, help="do_bench measuring time per row (median)")
    return parser.parse_args(argv)


class UnfoldGRU(nn.Module):
    """The sweep's data flow with cuDNN GRUs: RNN1 over every patch row and column at once, RNN2 a
    bidirectional nn.GRU over the summaries (separate reverse weights: not the op's math)."""

    def __init__(self, case):
        super().__init__()
        self.case = case
        self.rnn1 = nn.GRU(case.channels, case.hidden1)
        self.rnn2 = nn.GRU(case.hidden1, case.hidden2, bidirectional=True)
        if "G" in case.parts:
            self.proj = nn.Linear(2 * case.kernel * case.hidden1, 4 * case.hidden2)

    def forward(self, x):
        c, k = self.case, self.case.kernel
        n = x.shape[0]
        patches = F.unfold(x, k, padding=c.padding, stride=c.stride)
        num = patches.shape[-1]
        patches = patches.view(n, c.channels, k, k, num)
        rows = patches.permute(3, 0, 4, 2, 1).reshape(k, -1, c.channels)  # step j of row i of patch l
        columns = patches.permute(2, 0, 4, 3, 1).reshape(k, -1, c.channels)
        _, summaries = self.rnn1(torch.cat([rows, columns], dim=1))
        row_summaries, column_summaries = summaries[0].view(2, n * num, k, c.hidden1)
        blocks = []
        for block in c.parts:
            if block == "G":
                flat = torch.cat([row_summaries.flatten(1), column_summaries.flatten(1)], dim=1)
                blocks.append(self.proj(flat))
            else:
                _, q = self.rnn2((row_summaries if block == "R" else column_summaries).transpose(0, 1))
                blocks.append(torch.cat([q[0], q[1]], dim=1))
        out_h, out_w = c.output_size()
        return torch.cat(blocks, dim=1).view(n, out_h, out_w, -1).permute(0, 3, 1, 2)


def sweep_flops(case, pass_name):
    k = (case.kernel, case.kernel)
    macs = sweep_macs(case.batch, case.channels, case.height, case.width, k, (case.stride,) * 2,
                      (case.padding,) * 2, case.hidden1, case.hidden2, case.cell, case.parts)
    return 2 * macs * (3 if pass_name == "forward+backward" else 1)


def measure(case, warmup_ms, rep_ms):
    """One row per pass and path: dict(case, batch, pass_name, path, ms, vs_reference, gflops)."""
    from triton.testing import do_bench

    layer, x = build(case)
    layer, x = layer.cuda(), x.cuda()
    steps = {backend: (layer, backend) for backend in ("reference", "triton")}
    if rnnpool_ops.cuda_kernels_available():
        steps["cpp"] = (layer, "cpp")
    if case.cell == "gru":
        steps["cudnn-gru"] = (UnfoldGRU(case).cuda(), None)
    rows = []
    for pass_name in PASSES:
        times = {}
        for path, (module, backend) in steps.items():
            try:
                times[path] = do_bench(make_step(module, x, backend, pass_name), warmup=warmup_ms, rep=rep_ms,
                                       return_mode="median")
            except torch.cuda.OutOfMemoryError:
                times[path] = None
            torch.cuda.empty_cache()
        flops = sweep_flops(case, pass_name)
        for path, ms in times.items():
            reference = times["reference"]
            rows.append(dict(
                case=case.name, batch=case.batch, pass_name=pass_name, path=path, ms=ms,
                vs_reference=None if ms is None or reference is None else reference / ms,
                gflops=flops / (ms * 1e6) if ms is not None and path in FUSED else None,
            ))
    return rows


def _number(value, spec, missing="-"):
    return missing if value is None else format(value, spec)


def markdown(rows, machine, settings):
    lines = [
        *header_lines("Patch sweep on the GPU: reference, Triton, fused CUDA op, cuDNN GRU", machine,
                      f"- settings: {settings}"),
        "| case | N | pass | path | ms | vs reference | GFLOP/s |",
        "|---|---:|---|---|---:|---:|---:|",
        *[f"| {r['case']} | {r['batch']} | {r['pass_name']} | {r['path']} | {_number(r['ms'], '.2f', 'OOM')} "
          f"| {_number(r['vs_reference'], '.1f')}x | {_number(r['gflops'], '.1f')} |" for r in rows],
        "",
        "vs reference = reference ms / row ms (higher is faster; -x: a side ran out of memory). "
        "GFLOP/s: benchmarks/flops.py sweep_macs, 2 FLOPs per MAC, forward+backward = 3x forward.",
        "cudnn-gru is F.unfold + nn.GRU with a bidirectional RNN2 that has separate reverse weights: not the "
        "op's math (docs/spec.md section 1), a speed reference only.",
        "",
        *case_lines(settings["cases"], "Cases (N as in each row):"),
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("python -m benchmarks.gpu_sweep needs a CUDA GPU, and torch.cuda.is_available() is False here")
    import triton

    rows = []
    for name in args.cases:
        for batch in args.batches:
            case = dataclasses.replace(CASES[name], batch=batch)
            print(f"timing {name} N={batch} ...", flush=True)
            rows.extend(measure(case, args.warmup_ms, args.rep_ms))
    machine = dict(machine_info(), gpu=torch.cuda.get_device_name(), triton=triton.__version__,
                   cpp_cuda_kernel=rnnpool_ops.cuda_kernels_available())
    settings = dict(cases=args.cases, batches=args.batches, warmup_ms=args.warmup_ms, rep_ms=args.rep_ms,
                    dtype="float32")
    report = markdown(rows, machine, settings)
    print(report)
    return write_results(f"gpu-sweep-{slug(machine['gpu'])}", report, dict(machine=machine, settings=settings,
                                                                            rows=rows))


if __name__ == "__main__":
    main()
