"""Every microbenchmark in one run, and one report of them all.

    python -m benchmarks [--quick] [--threads T]        (bash run.sh bench)

Runs, each timing its fused and unfused sides interleaved in the same run:
  report.py      the patch sweep, fused C++ kernel vs unfused reference, forward and forward+backward
  isa_report.py  the CPU ISA builds of the sweep (scalar, AVX2, AVX-512 / NEON) vs the reference
  gated_skip.py  the gated-skip convolution's sparsity sweep (on CUDA too when a GPU is present)
  early_exit.py  early-exit inference with and without compaction
  gpu_sweep.py   the patch sweep on the GPU: reference, triton, cpp, cuDNN GRU (only when a GPU is present)
Each writes its own table to benchmarks/results/; this then writes all of them, with the machine and
the versions, to benchmarks/results/all-<cpu>.md and .json.
"""

import argparse
import importlib.util
import json

import torch

import rnnpool_ops
from benchmarks import early_exit, gated_skip, gpu_sweep, isa_report, report
from benchmarks.report import machine_info, slug, write_results


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run, noisier ratios)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's own choice)")
    return parser.parse_args(argv)


def runs(quick, threads):
    """(name, main, argv) of every benchmark to run on this machine."""
    common = ["--threads", str(threads)] if threads else []

    def reps(n):
        return ["--reps", "3", "--warmup", "1"] if quick else ["--reps", str(n)]

    selected = [
        ("fused vs unfused", report.main, reps(11) + (["--runs", "1"] if quick else []) + common),
        ("CPU ISA builds", isa_report.main, reps(15) + common),
        ("gated-skip sparsity sweep, CPU", gated_skip.main, reps(15) + common),
        ("early-exit compaction", early_exit.main, reps(7) + common),
    ]
    if torch.cuda.is_available():
        selected.append(("gated-skip sparsity sweep, CUDA", gated_skip.main, reps(15) + ["--device", "cuda"]))
        quick_gpu = ["--batches", "1", "8", "--warmup-ms", "10", "--rep-ms", "30"] if quick else []
        selected.append(("patch sweep on the GPU", gpu_sweep.main, quick_gpu))
    return selected


def versions():
    found = {"torch": torch.__version__, "rnnpool_ops": rnnpool_ops.__version__, "cpu_isa": rnnpool_ops.cpu_isa()}
    if importlib.util.find_spec("triton"):
        import triton

        found["triton"] = triton.__version__
    if torch.cuda.is_available():
        found["gpu"] = torch.cuda.get_device_name()
    return found


def main(argv=None):
    args = parse_args(argv)
    written = []
    for title, run, run_argv in runs(args.quick, args.threads):
        print(f"\n=== {title} ===", flush=True)
        written.append((title, run(run_argv)))

    machine, found = machine_info(), versions()
    sections = [f"## {title}\n\n{stem.with_suffix('.md').read_text().strip()}\n" for title, stem in written]
    header = ["# All benchmarks", "", *[f"- {k}: {v}" for k, v in {**machine, **found}.items()], ""]
    payload = {
        "machine": machine,
        "versions": found,
        "quick": args.quick,
        "benchmarks": {title: json.loads(s.with_suffix(".json").read_text()) for title, s in written},
    }
    write_results(f"all-{slug(machine['cpu'])}", "\n".join(header) + "\n" + "\n".join(sections), payload)


if __name__ == "__main__":
    main()
