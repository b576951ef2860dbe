"""Fused, unfused and inductor-compiled unfused timings of a case, taken in the same run."""

import time
import torch
from dataclasses import dataclass
from statistics import median

from benchmarks.cases import BACKENDS, PASSES, build, make_inductor_step, make_step, pass_flops


@dataclass(frozen=True)
class Timing:
    case: str
    pass_name: str
    fused_ms: float
    unfused_ms: float
    inductor_ms: float
    flops: int

    @property
    def speedup(self):
        return self.unfused_ms / self.fused_ms

    @property
    def inductor_speedup(self):
        return self.inductor_ms / self.fused_ms

    @property
    def fused_gflops(self):
        return self.flops / (self.fused_ms * 1e6)


def interleaved_medians(steps, reps, warmup, prepare=None):
    """Median milliseconds of each callable in `steps`.

    The callables take turns within every repetition, and the order flips
    each time, so machine noise and cache state hit all of them alike.
    prepare: a callable per step, run untimed before each of its timed calls.
    """
    for _ in range(warmup):
        for step in steps:
            step()
    samples = [[] for _ in steps]
    order = list(range(len(steps)))
    for _ in range(reps):
        for i in order:
            if prepare is not None:
                prepare[i]()
            start = time.perf_counter()
            steps[i]()
            samples[i].append((time.perf_counter() - start) * 1e3)
        order.reverse()
    return [median(s) for s in samples]


def measure_case(case, reps, warmup, runs=1):
    """A Timing per pass: fused, unfused and the unfused under inductor, on the same layer and input;
    each side's time is the median over `runs` runs of the median of its interleaved repetitions."""
    layer, x = build(case)
    timings = []
    for pass_name in PASSES:
        steps = [make_step(layer, x, BACKENDS[side], pass_name) for side in ("fused", "unfused")]
        inductor = make_inductor_step(layer, x, pass_name)
        inductor()  # compiles: not part of any repetition
        per_run = [interleaved_medians([*steps, inductor], reps, warmup) for _ in range(runs)]
        fused_ms, unfused_ms, inductor_ms = (median(side) for side in zip(*per_run))
        timings.append(Timing(case.name, pass_name, fused_ms, unfused_ms, inductor_ms, pass_flops(case, pass_name)))
    return timings


def thread_scaling(case, reps, warmup, runs=1):
    """Medians of the fused forward+backward on one thread and on torch's thread count, interleaved.
    Before each timed step the thread count is set and one step runs untimed: the first parallel
    region after a change of thread count wakes the thread team (measured: 6% of a batch-1 step on
    two threads), a cost no training loop at a fixed count pays. {threads: ms}."""
    layer, x = build(case)
    step = make_step(layer, x, BACKENDS["fused"], "forward+backward")
    threads = torch.get_num_threads()

    def switch_to(count):
        def prepare():
            torch.set_num_threads(count)
            step()
        return prepare

    try:
        per_run = [interleaved_medians([step, step], reps, warmup, prepare=[switch_to(1), switch_to(threads)])
                   for _ in range(runs)]
    finally:
        torch.set_num_threads(threads)
    one, many = (median(side) for side in zip(*per_run))
    return {1: one, threads: many}
