"""Early-exit compaction benchmark: does removing exited samples from the batch save real time?

    python -m benchmarks.early_exit [--batch N] [--size S] [--reps N] [--warmup N] [--threads T]

ReX-MobileNetV2 (6 exits, ReX Table 1) runs a batch (a) to the last exit (every sample, what a network
without early exit pays), and (b) with early-exit inference where half of the batch stops at the first
exit: compaction runs the later stages on the other half only. The timings are interleaved medians;
the expected time ratio is the ratio of average MAdds. Writes
benchmarks/results/early-exit-cpu-<cpu>.md and .json.
"""

import argparse

import torch

from benchmarks.report import machine_info, slug, write_results
from benchmarks.timing import interleaved_medians
from rnnpool_ops.models import rex_mobilenetv2
from rnnpool_ops.multiexit import ExitPolicy


class StopLeadingRows(ExitPolicy):
    """Stops the first `count` rows of the batch at exit 0 and nobody else early."""

    def __init__(self, count):
        self.count = count

    def initial_state(self, batch_size, device):
        return (torch.arange(batch_size, device=device),)

    def decide(self, exit_index, output, state):
        (rows,) = state
        return (rows < self.count) & (exit_index == 0), state


def stage_batch_sizes(model, x, policy):
    """Rows each stage ran on during one early-exit inference."""
    sizes = []
    hooks = [stage.register_forward_pre_hook(lambda m, i: sizes.append(i[0].shape[0])) for stage in model.stages]
    try:
        model.infer(x, policy)
    finally:
        for hook in hooks:
            hook.remove()
    return sizes


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224, help="input side (ReX Table 1: 224)")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = rex_mobilenetv2(input_size=args.size).eval()
    x = torch.randn(args.batch, 3, args.size, args.size)
    everyone = StopLeadingRows(0)  # nobody leaves early: the full network for every sample
    half = StopLeadingRows(args.batch // 2)
    costs = model.exit_madds(x.shape[1:])
    with torch.inference_mode():
        full_ms, half_ms = interleaved_medians([lambda: model.infer(x, everyone), lambda: model.infer(x, half)],
                                               args.reps, args.warmup)
        sizes = stage_batch_sizes(model, x, half)
    expected = (costs[0] + costs[-1]) / 2 / costs[-1]
    machine = machine_info()
    result = {
        "machine": machine,
        "settings": vars(args),
        "model": "rex_mobilenetv2 (6 exits, SDN heads)",
        "exit_madds": costs,
        "stage_batch_sizes_half_exit": sizes,
        "all_to_last_exit_ms": full_ms,
        "half_exit_at_first_ms": half_ms,
        "time_ratio": half_ms / full_ms,
        "madds_ratio": expected,
    }
    table = "\n".join([
        "| run | rows per stage | median ms | MAdds per sample (M) |",
        "|---|---|---:|---:|",
        f"| all samples to the last exit | {[args.batch] * len(model.stages)} | {full_ms:.1f} | {costs[-1] / 1e6:.1f} |",
        f"| half stop at exit 1 (compaction) | {sizes} | {half_ms:.1f} | {(costs[0] + costs[-1]) / 2e6:.1f} |",
    ])
    report = (f"# Early-exit compaction, {machine['cpu']}\n\n"
              f"{machine['logical_cores']} logical cores, {machine['threads']} threads, torch {machine['torch']}, "
              f"{machine['date']}. ReX-MobileNetV2 (6 exits), batch {args.batch}, {args.size}x{args.size}, "
              f"{args.reps} interleaved repetitions (medians).\n\n{table}\n\n"
              f"Time ratio {half_ms / full_ms:.2f} (MAdds ratio {expected:.2f}).\n")
    print(report)
    return write_results(f"early-exit-cpu-{slug(machine['cpu'])}", report, result)


if __name__ == "__main__":
    main()
