"""Fused-vs-unfused benchmark report.

    python -m benchmarks.report [--cases NAME ...] [--reps N] [--warmup N] [--runs R] [--threads T] [--no-memory]

Times the fused op against the unfused reference and against that reference compiled by inductor
(all three interleaved in one run, the median of R such runs reported), times the batch-1 case's
forward+backward on one thread and on all (interleaved), measures each one's peak memory for a forward+backward step in
a fresh process (benchmarks/memory.py), prints markdown tables and writes them, with the machine it
ran on, to benchmarks/results/cpu-<cpu-model>.md and .json.
"""

import argparse
import datetime
import json
import os
import platform
import re
from dataclasses import asdict
from pathlib import Path

import torch

import rnnpool_ops

from benchmarks.cases import CASES
from benchmarks.memory import SIDES, step_peak_bytes
from benchmarks.timing import measure_case, thread_scaling

# The case whose fused forward+backward is timed on one thread and on all: a single sample, whose
# backward must use every thread on its own.
SCALING_CASE = "stem-batch1"

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions per backend (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed repetitions per backend first")
    parser.add_argument("--runs", type=int, default=3, help="runs of the repetitions; the median run is reported")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's own choice)")
    parser.add_argument("--no-memory", dest="memory", action="store_false",
                        help="skip the peak-memory measurements (a fresh process per case and side)")
    return parser.parse_args(argv)


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.node()


def machine_info():
    return {
        "cpu": cpu_model(),
        "cpu_isa": rnnpool_ops.cpu_isa(),  # the ISA build in use: the best this CPU runs, unless set
        "logical_cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_results(name, markdown, payload):
    """Writes benchmarks/results/<name>.md and <name>.json; returns their common path stem."""
    RESULTS_DIR.mkdir(exist_ok=True)
    stem = RESULTS_DIR / name
    stem.with_suffix(".md").write_text(markdown)
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {stem}.md and {stem}.json")
    return stem


def slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def markdown_table(timings):
    lines = [
        "| case | pass | fused ms | unfused ms | inductor ms | unfused / fused | inductor / fused | fused GFLOP/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for t in timings:
        lines.append(
            f"| {t.case} | {t.pass_name} | {t.fused_ms:.2f} | {t.unfused_ms:.2f} | {t.inductor_ms:.2f} "
            f"| {t.speedup:.1f}x | {t.inductor_speedup:.1f}x | {t.fused_gflops:.1f} |"
        )
    return "\n".join(lines)


def memory_table(memory):
    """memory: {case: {side: bytes}}."""
    lines = ["| case | " + " | ".join(f"{side} MB" for side in SIDES) + " |", "|---|" + "---:|" * len(SIDES)]
    for case, sides in memory.items():
        lines.append(f"| {case} | " + " | ".join(f"{sides[side] / 2**20:.1f}" for side in SIDES) + " |")
    return "\n".join(lines)


def header_lines(title, machine, *notes):
    """A result file's title, the machine it ran on (a "- key: value" line each), then the notes."""
    return [f"# {title}", "", *[f"- {key}: {value}" for key, value in machine.items()], *notes, ""]


def case_lines(names, heading="Cases:"):
    """The benchmark cases' descriptions, under a heading."""
    return [heading, *[f"- `{name}`: {CASES[name].describe()}" for name in names]]


def scaling_lines(scaling):
    """scaling: {threads: ms} of SCALING_CASE's fused forward+backward."""
    if scaling is None:
        return []
    (one, one_ms), (many, many_ms) = sorted(scaling.items())
    return [
        f"Threads, fused forward+backward of `{SCALING_CASE}` (interleaved): {one} thread {one_ms:.2f} ms, "
        f"{many} threads {many_ms:.2f} ms: {one_ms / many_ms:.2f}x.",
        "",
    ]


def markdown_report(table, memory, scaling, machine, settings):
    memory_lines = [] if memory is None else [
        "Peak memory of one forward+backward step (benchmarks/memory.py: the rise of the process's "
        "high-water mark over its resident size, input allocated, a fresh process per entry):",
        "",
        memory_table(memory),
        "",
    ]
    return "\n".join(
        [
            *header_lines("CPU benchmark: fused (`cpp`) vs unfused (`reference`) vs unfused under inductor",
                          machine,
                          f"- repetitions: {settings['reps']} (median), warmup {settings['warmup']}, "
                          "the three sides interleaved in the same run; the median of "
                          f"{settings['runs']} such runs"),
            table,
            "",
            "inductor = the unfused reference under `torch.compile` (compiled before timing). "
            "GFLOP/s counts the fused algorithm's matmul work "
            "(benchmarks/cases.py: forward_flops; forward+backward = 3x forward).",
            "",
            *scaling_lines(scaling),
            *memory_lines,
            *case_lines(settings["cases"]),
            "",
        ]
    )


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    timings = []
    for name in args.cases:
        print(f"timing {name} ...", flush=True)
        timings.extend(measure_case(CASES[name], args.reps, args.warmup, args.runs))
    scaling = None
    if SCALING_CASE in args.cases and torch.get_num_threads() > 1:
        print(f"threads of {SCALING_CASE} ...", flush=True)
        scaling = thread_scaling(CASES[SCALING_CASE], args.reps, args.warmup, args.runs)

    memory = None
    if args.memory:
        memory = {}
        for name in args.cases:
            print(f"peak memory of {name} ...", flush=True)
            memory[name] = {side: step_peak_bytes(name, side, args.threads) for side in SIDES}

    machine = machine_info()
    settings = {"cases": args.cases, "reps": args.reps, "warmup": args.warmup, "runs": args.runs}
    table = markdown_table(timings)
    print(table)
    if memory is not None:
        print(memory_table(memory))

    results = [dict(asdict(t), speedup=t.speedup, inductor_speedup=t.inductor_speedup, fused_gflops=t.fused_gflops)
               for t in timings]
    payload = {"machine": machine, "settings": settings, "results": results, "step_peak_bytes": memory,
               "fused_forward_backward_ms_by_threads": scaling}
    return write_results(f"cpu-{slug(machine['cpu'])}", markdown_report(table, memory, scaling, machine, settings),
                         payload)


if __name__ == "__main__":
    main()
