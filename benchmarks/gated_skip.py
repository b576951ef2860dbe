"""Gated-skip convolution benchmark: inference with hard gates, fused op vs unfused reference.

    python -m benchmarks.gated_skip [--shapes] [--reps N] [--warmup N] [--threads T] [--device cpu|cuda]

N=32, C=64, 32x32, 3x3 convolution, ReLU, float32, no gradient. For 0/25/50/75/100% active, once with
sample-level gates (layer_gate: that share of the samples on) and once with channel-level gates
(channel_gate: that share of each sample's channels on, a different random set per sample). Every
step of a gating level is timed in the same run, interleaved (benchmarks/timing.py), so the ratios
compare like with like. Writes benchmarks/results/gated-skip-<device>-<model>[-<T>thread].md and .json.

--shapes times other layer shapes instead (OTHER_SHAPES: rows of 7, 8, 16 and 56 pixels, which fill the
CPU kernel's 16-lane registers differently, batch 1, groups, depthwise) at 100% and 25% active channels,
and writes gated-skip-shapes-<device>-<model>[-<T>thread].md and .json.
"""

import argparse

import torch

from benchmarks.report import header_lines, machine_info, slug, write_results
from benchmarks.timing import interleaved_medians
from rnnpool_ops.gated_skip import gated_skip_conv2d

SHAPE = dict(batch=32, channels=64, height=32, width=32, kernel=3)
ACTIVE = (0.0, 0.25, 0.5, 0.75, 1.0)
MODES = ("sample", "channel")
TARGETS = (
    "fused/unfused <= 1.2 at 100% active",
    "fused/fused@100% <= 0.4 at 25% active channels",
    "fused/fused@100% <= 0.1 at 0% active",
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=15, help="timed repetitions per step (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed repetitions per step first")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's own choice)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--shapes", action="store_true", help="time OTHER_SHAPES instead of the sparsity sweep")
    return parser.parse_args(argv)


def make_gates(mode, share, device, generator, n=SHAPE["batch"], c=SHAPE["channels"]):
    """Hard 0/1 gates with exactly round(share * count) ones, at random places."""
    if mode == "sample":
        gate = torch.zeros(n)
        gate[torch.randperm(n, generator=generator)[: round(share * n)]] = 1
        return gate.to(device), None
    gate = torch.zeros(n, c)
    for row in gate:
        row[torch.randperm(c, generator=generator)[: round(share * c)]] = 1
    return None, gate.to(device)


def make_step(args, backend, device):
    def step():
        with torch.no_grad():
            gated_skip_conv2d(**args, backend=backend)
        if device == "cuda":
            torch.cuda.synchronize()

    return step


def measure(device, reps, warmup):
    s = SHAPE
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(s["batch"], s["channels"], s["height"], s["width"], generator=generator).to(device)
    weight = (0.05 * torch.randn(s["channels"], s["channels"], s["kernel"], s["kernel"], generator=generator)).to(device)
    bias = torch.randn(s["channels"], generator=generator).to(device)
    rows = []
    for mode in MODES:
        cases = []
        for share in ACTIVE:
            layer_gate, channel_gate = make_gates(mode, share, device, generator)
            cases.append(dict(x=x, weight=weight, bias=bias, layer_gate=layer_gate, channel_gate=channel_gate,
                              activation="relu"))
        steps = [make_step(a, backend, device) for a in cases for backend in ("fused", "reference")]
        medians = interleaved_medians(steps, reps, warmup)
        fused_full = medians[2 * ACTIVE.index(1.0)]
        for i, share in enumerate(ACTIVE):
            fused_ms, unfused_ms = medians[2 * i], medians[2 * i + 1]
            rows.append(dict(mode=mode, active=share, fused_ms=fused_ms, unfused_ms=unfused_ms,
                             fused_over_unfused=fused_ms / unfused_ms, fused_over_fused_full=fused_ms / fused_full))
    return rows


# name: (batch, channels, height = width, groups); 3x3 convolutions.
OTHER_SHAPES = {
    "N32 C64 8x8": (32, 64, 8, 1),
    "N32 C128 7x7": (32, 128, 7, 1),
    "N32 C32 16x16": (32, 32, 16, 1),
    "N1 C64 56x56": (1, 64, 56, 1),
    "N8 C32 28x28 groups 2": (8, 32, 28, 2),
    "N32 C64 32x32 depthwise": (32, 64, 32, 64),
}
SHAPE_ACTIVE = (1.0, 0.25)


def measure_shapes(device, reps, warmup):
    generator = torch.Generator().manual_seed(0)
    rows = []
    for name, (n, c, size, groups) in OTHER_SHAPES.items():
        x = torch.randn(n, c, size, size, generator=generator).to(device)
        weight = (0.05 * torch.randn(c, c // groups, 3, 3, generator=generator)).to(device)
        bias = torch.randn(c, generator=generator).to(device)
        cases = [dict(x=x, weight=weight, bias=bias, channel_gate=make_gates("channel", share, device, generator, n, c)[1],
                      groups=groups, activation="relu") for share in SHAPE_ACTIVE]
        medians = interleaved_medians([make_step(a, b, device) for a in cases for b in ("fused", "reference")], reps,
                                      warmup)
        for i, share in enumerate(SHAPE_ACTIVE):
            fused_ms, unfused_ms = medians[2 * i], medians[2 * i + 1]
            rows.append(dict(shape=name, active=share, fused_ms=fused_ms, unfused_ms=unfused_ms,
                             fused_over_unfused=fused_ms / unfused_ms))
    return rows


def shapes_markdown(rows, machine, settings):
    return "\n".join([
        *header_lines("Gated-skip convolution on other shapes: fused op vs unfused reference (inference, hard "
                      "channel gates, 3x3, ReLU)", machine, f"- settings: {settings}"),
        "| shape | active channels | fused ms | unfused ms | fused / unfused |",
        "|---|---:|---:|---:|---:|",
        *[f"| {r['shape']} | {r['active']:.0%} | {r['fused_ms']:.3f} | {r['unfused_ms']:.3f} "
          f"| {r['fused_over_unfused']:.2f} |" for r in rows],
        "",
    ])


def targets_met(rows):
    def row(mode, share):
        return next(r for r in rows if r["mode"] == mode and r["active"] == share)

    return {
        TARGETS[0]: all(row(m, 1.0)["fused_over_unfused"] <= 1.2 for m in MODES),
        TARGETS[1]: row("channel", 0.25)["fused_over_fused_full"] <= 0.4,
        TARGETS[2]: all(row(m, 0.0)["fused_over_fused_full"] <= 0.1 for m in MODES),
    }


def markdown(rows, machine, settings, met):
    lines = [
        *header_lines("Gated-skip convolution: fused op vs unfused reference (inference, hard gates)", machine,
                      f"- settings: {settings}"),
        "| gates | active | fused ms | unfused ms | fused / unfused | fused / fused@100% |",
        "|---|---:|---:|---:|---:|---:|",
        *[
            f"| {r['mode']} | {r['active']:.0%} | {r['fused_ms']:.2f} | {r['unfused_ms']:.2f} "
            f"| {r['fused_over_unfused']:.2f} | {r['fused_over_fused_full']:.2f} |"
            for r in rows
        ],
        "",
        "Targets:",
        *[f"- {name}: {'met' if ok else 'NOT met'}" for name, ok in met.items()],
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = machine_info()
    if args.device == "cuda":
        machine["gpu"] = torch.cuda.get_device_name()
    name = machine["gpu"] if args.device == "cuda" else machine["cpu"]
    threads = f"-{args.threads}thread" if args.threads else ""
    settings = dict(reps=args.reps, warmup=args.warmup, device=args.device, dtype="float32")
    if args.shapes:
        prefix, rows = "gated-skip-shapes", measure_shapes(args.device, args.reps, args.warmup)
        settings = dict(shapes=OTHER_SHAPES, **settings)
        report, payload = shapes_markdown(rows, machine, settings), dict(machine=machine, settings=settings, rows=rows)
    else:
        prefix, rows = "gated-skip", measure(args.device, args.reps, args.warmup)
        settings, met = dict(shape=SHAPE, **settings), targets_met(rows)
        report = markdown(rows, machine, settings, met)
        payload = dict(machine=machine, settings=settings, rows=rows, targets=met)
    print(report)
    return write_results(f"{prefix}-{args.device}-{slug(name)}{threads}", report, payload)

if __name__ == "__main__":
    main()
