"""The report's cases as pytest-benchmark benchmarks: `pytest benchmarks`.

Not part of `bash run.sh test`, which collects python_tests/ only.
"""

import pytest

from benchmarks.cases import BACKENDS, CASES, PASSES, build, make_step, pass_flops
from rnnpool_ops import extension_available


@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("side", BACKENDS)
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_sweep(benchmark, case, side, pass_name):
    if BACKENDS[side] == "cpp" and not extension_available():
        pytest.skip("the C++ extension is not built")
    layer, x = build(case)
    benchmark.group = f"{case.name} {pass_name}"
    benchmark.extra_info["flops"] = pass_flops(case, pass_name)
    benchmark(make_step(layer, x, BACKENDS[side], pass_name))
