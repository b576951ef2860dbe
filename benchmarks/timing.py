"""Fused, unfused and inductor-compiled unfused timings of a case, taken in the same run."""

import time
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


def interleaved_medians(steps, reps, warmup):
    """Median milliseconds of each callable in `steps`.

    The callables take turns within every repetition, and the order flips
    each time, so machine noise and cache state hit all of them alike.
    """
    for _ in range(warmup):
        for step in steps:
            step()
    samples = [[] for _ in steps]
    order = list(range(len(steps)))
    for _ in range(reps):
        for i in order:
            start = time.perf_counter()
            steps[i]()
            samples[i].append((time.perf_counter() - start) * 1e3)
        order.reverse()
    return [median(s) for s in samples]


def measure_case(case, reps, warmup):
    """A Timing per pass: fused, unfused and the unfused under inductor, on the same layer and input."""
    layer, x = build(case)
    timings = []
    for pass_name in PASSES:
        steps = [make_step(layer, x, BACKENDS[side], pass_name) for side in ("fused", "unfused")]
        inductor = make_inductor_step(layer, x, pass_name)
        inductor()  # compiles: not part of any repetition
        fused_ms, unfused_ms, inductor_ms = interleaved_medians([*steps, inductor], reps, warmup)
        timings.append(Timing(case.name, pass_name, fused_ms, unfused_ms, inductor_ms, pass_flops(case, pass_name)))
    return timings
