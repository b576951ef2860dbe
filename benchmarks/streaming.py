"""Memory-bounded inference: MobileNetV2-RNNPool run plainly and streamed (rnnpool_ops.streaming).

    python -m benchmarks.streaming [--sizes 224 2048] [--reps 5] [--threads T]

For each input size, batch 1, float32, inference:
- measured memory, one fresh process per variant (as benchmarks/memory.py, with its allocator
  setting): a warm-up call on a 64x64 input (the streamed variant: the model streamed for 64x64), then
  the model (streamed for the size) and the input are made, freed memory is handed back (malloc_trim),
  the high-water mark is reset, and the growth of VmHWM over the RSS just before the call is reported;
- live activations: the most bytes of tensors allocated during the call and alive at once (torch's
  profiler memory events), input excluded;
- time: the plain and the streamed model interleaved in one process, medians of --reps calls;
- the analytical peak (rnnpool_ops.analysis.peak_ram_bytes), the figure of RNNPool's Table 1.
Writes benchmarks/results/streaming-<cpu>.md and .json.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.memory import ENVIRONMENT

VARIANTS = ("plain", "streamed")
WARMUP_SIZE = 64
MIB = 2 ** 20


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 2048], help="square input sides")
    parser.add_argument("--reps", type=int, default=5, help="timed calls per variant (medians)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's own choice)")
    return parser.parse_args(argv)


def build(size, variant):
    """The model for `variant` at `size` (the same weights for both), and an input."""
    import torch

    from rnnpool_ops.demo.memory import calibrated
    from rnnpool_ops.models import mobilenetv2_rnnpool
    from rnnpool_ops.streaming import stream

    torch.manual_seed(0)
    model = calibrated(mobilenetv2_rnnpool())
    runner = stream(model, (3, size, size)) if variant == "streamed" else model
    return model, runner, torch.randn(1, 3, size, size)


def measure_growth_here(size, variant):
    """VmHWM growth of one call, in this (fresh) process; see the module docstring."""
    import torch

    from rnnpool_ops.demo.memory import peak_growth_bytes

    with torch.inference_mode():
        model, runner, x = build(WARMUP_SIZE, variant)
        runner(x)
        del runner, x
        _, runner, x = build(size, variant)
        return peak_growth_bytes(lambda: runner(x))[1]


def measured_growth(size, variant, threads=None):
    env = {**os.environ, **ENVIRONMENT}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    run = subprocess.run([sys.executable, "-m", "benchmarks.streaming", "--measure", str(size), variant],
                         capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[1], check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])["growth_bytes"]


def live_peak_bytes(runner, x):
    """The most bytes of tensors allocated during runner(x) and alive at once (profiler events)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        runner(x)
    # Allocation (+bytes) and free (-bytes) events; prof.events() leaves some out.
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"
              and e.device_type() == torch.autograd.DeviceType.CPU]
    live = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()
        peak = max(peak, live)
    return peak


def measure(sizes, reps, threads):
    import torch

    from benchmarks.timing import interleaved_medians
    from rnnpool_ops.streaming import stream

    rows = []
    for size in sizes:
        model, _, x = build(size, "plain")
        streamed = stream(model, (3, size, size))
        bound = streamed.bound_bytes
        with torch.inference_mode():
            plain_ms, streamed_ms = interleaved_medians([lambda: model(x), lambda: streamed(x)], reps, 1)
        row = {"size": size, "plain_ms": plain_ms, "streamed_ms": streamed_ms, "bound_bytes": bound,
               "plan": streamed.report()}
        for variant, runner in zip(VARIANTS, (model, streamed)):
            row[f"{variant}_growth_bytes"] = measured_growth(size, variant, threads)
            row[f"{variant}_live_bytes"] = live_peak_bytes(runner, x)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "plan"}))
    return rows


def markdown(rows, machine, settings):
    from benchmarks.report import header_lines

    lines = header_lines("Memory-bounded inference: MobileNetV2-RNNPool, plain and streamed", machine, "",
                         f"Settings: {settings}. Batch 1, float32, inference; memory in MiB. Growth: VmHWM over "
                         "the RSS before the call, fresh process per variant (MALLOC_MMAP_THRESHOLD_=65536). Live: "
                         "the most bytes of tensors alive at once during the call (profiler), input excluded. "
                         "Bound: analysis.peak_ram_bytes (RNNPool Table 1's convention).")
    lines += ["", "| input | plain ms | streamed ms | streamed / plain time | plain growth | streamed growth | "
              "plain / streamed growth | streamed growth / bound | plain live | streamed live | streamed live / bound "
              "| bound |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['size']}x{r['size']} | {r['plain_ms']:.1f} | {r['streamed_ms']:.1f} | "
            f"{r['streamed_ms'] / r['plain_ms']:.2f}x | {r['plain_growth_bytes'] / MIB:.2f} | "
            f"{r['streamed_growth_bytes'] / MIB:.2f} | {r['plain_growth_bytes'] / r['streamed_growth_bytes']:.1f}x | "
            f"{r['streamed_growth_bytes'] / r['bound_bytes']:.2f}x | {r['plain_live_bytes'] / MIB:.3f} | "
            f"{r['streamed_live_bytes'] / MIB:.3f} | {r['streamed_live_bytes'] / r['bound_bytes']:.2f}x | "
            f"{r['bound_bytes'] / MIB:.3f} |")
    for r in rows:
        lines += ["", f"Plan at {r['size']}x{r['size']}:", "", "```", r["plan"], "```"]
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    import torch

    from benchmarks.report import machine_info, slug, write_results

    if args.threads:
        torch.set_num_threads(args.threads)
    machine = machine_info()
    rows = measure(args.sizes, args.reps, args.threads)
    write_results(f"streaming-{slug(machine['cpu'])}", markdown(rows, machine, vars(args)),
                  {"machine": machine, "settings": vars(args), "rows": rows})


if __name__ == "__main__":
    if sys.argv[1:2] == ["--measure"]:
        size, variant = int(sys.argv[2]), sys.argv[3]
        print(json.dumps({"size": size, "variant": variant, "growth_bytes": measure_growth_here(size, variant)}))
    else:
        main()
