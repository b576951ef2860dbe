"""The CPU kernels' ISA builds against each other and against the unfused reference.

    python -m benchmarks.isa_report [--cases NAME ...] [--reps N] [--warmup N] [--threads T]

Every ISA build this CPU runs (rnnpool_ops.available_cpu_isas()) and the unfused reference take
turns within each repetition (benchmarks/timing.py), so the ratios come from one run. Writes
benchmarks/results/cpu-isa-<cpu-model>.md and .json.
"""

import argparse

import torch

import rnnpool_ops
from benchmarks.cases import CASES, PASSES, build, make_step
from benchmarks.report import case_lines, header_lines, machine_info, slug, write_results
from benchmarks.timing import interleaved_medians

UNFUSED = "unfused reference"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=["mobilenetv2-rnnpool-stem"])
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions per path (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed repetitions per path first")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's own choice)")
    return parser.parse_args(argv)


def on_isa(isa, step):
    def run():
        rnnpool_ops.set_cpu_isa(isa)
        step()

    return run


def measure(case, isas, reps, warmup):
    """{pass: {path: median ms}} for the ISA builds and the unfused reference."""
    layer, x = build(case)
    medians = {}
    for pass_name in PASSES:
        fused = make_step(layer, x, "cpp", pass_name)
        steps = [on_isa(isa, fused) for isa in isas] + [make_step(layer, x, "reference", pass_name)]
        medians[pass_name] = dict(zip([*isas, UNFUSED], interleaved_medians(steps, reps, warmup)))
    return medians


def markdown_table(results, isas):
    lines = [
        "| case | pass | " + " | ".join(f"{isa} ms" for isa in isas) + f" | {UNFUSED} ms | "
        + " | ".join(f"{isa} / scalar" for isa in isas if isa != "scalar") + " | best fused vs unfused |",
        "|---|---|" + "---:|" * (2 * len(isas) + 1),
    ]
    for case_name, passes in results.items():
        for pass_name, ms in passes.items():
            best = min(ms[isa] for isa in isas)
            cells = [f"{ms[isa]:.2f}" for isa in isas] + [f"{ms[UNFUSED]:.1f}"]
            cells += [f"{ms['scalar'] / ms[isa]:.1f}x" for isa in isas if isa != "scalar"]
            cells.append(f"{ms[UNFUSED] / best:.1f}x")
            lines.append(f"| {case_name} | {pass_name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    isas = rnnpool_ops.available_cpu_isas()
    default_isa = rnnpool_ops.cpu_isa()
    results = {}
    try:
        for name in args.cases:
            print(f"timing {name} on {', '.join(isas)} and the reference ...", flush=True)
            results[name] = measure(CASES[name], isas, args.reps, args.warmup)
    finally:
        rnnpool_ops.set_cpu_isa(default_isa)

    machine = machine_info()
    settings = {"cases": args.cases, "reps": args.reps, "warmup": args.warmup, "default_isa": default_isa}
    table = markdown_table(results, isas)
    print(table)
    report = [
        *header_lines("CPU ISA builds: scalar vs vector paths vs the unfused reference", machine,
                      f"- default build here: {default_isa}",
                      f"- repetitions: {args.reps} (median), warmup {args.warmup}, all paths interleaved in the same "
                      "run"),
        table,
        "",
        *case_lines(args.cases),
        "",
    ]
    payload = {"machine": machine, "settings": settings, "results_ms": results}
    return write_results(f"cpu-isa-{slug(machine['cpu'])}", "\n".join(report), payload)


if __name__ == "__main__":
    main()
