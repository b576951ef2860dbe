"""Peak memory of one forward+backward step, measured on a running process.

    python -m benchmarks.memory CASE SIDE      (SIDE: fused, unfused or inductor; prints JSON)

Each measurement runs in a fresh process, so that no variant inherits another's memory. The process
builds the case's layer and input, runs the step once (for inductor this compiles it), hands the
memory the step freed back to the system (malloc_trim), resets the kernel's high-water mark
(/proc/self/clear_refs), records the resident set size, runs the step again and reports how far the
high-water mark (VmHWM) rose above that resident size: the memory the step itself needs, input
already allocated. Every variant runs with the same allocator setting, MALLOC_MMAP_THRESHOLD_=65536
(a fixed threshold: large blocks are mapped and unmapped per allocation), so memory kept from the
first step does not hide the second step's need.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

SIDES = ("fused", "unfused", "inductor")
ENVIRONMENT = {"MALLOC_MMAP_THRESHOLD_": "65536"}


def _measure_here(case_name, side):
    import torch  # noqa: F401  (imported after the environment is set)

    from rnnpool_ops.demo.memory import peak_growth_bytes

    from benchmarks.cases import BACKENDS, CASES, build, make_inductor_step, make_step

    layer, x = build(CASES[case_name])
    pass_name = "forward+backward"
    step = make_inductor_step(layer, x, pass_name) if side == "inductor" else make_step(
        layer, x, BACKENDS[side], pass_name)
    step()
    return peak_growth_bytes(step)[1]


def step_peak_bytes(case_name, side, threads=None):
    """The peak memory growth of one forward+backward step of a case, in a fresh process."""
    env = {**os.environ, **ENVIRONMENT}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    run = subprocess.run([sys.executable, "-m", "benchmarks.memory", case_name, side], capture_output=True,
                         text=True, env=env, cwd=Path(__file__).resolve().parents[1], check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])["growth_bytes"]


if __name__ == "__main__":
    case, side = sys.argv[1:3]
    if side not in SIDES:
        sys.exit(f"SIDE must be one of {SIDES}, got {side!r}")
    print(json.dumps({"case": case, "side": side, "growth_bytes": _measure_here(case, side)}))
