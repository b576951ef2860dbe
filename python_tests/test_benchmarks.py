"""The benchmark report's measuring pieces run and produce sane values (not their speed)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks package beside the tests

from benchmarks.memory import SIDES, step_peak_bytes  # noqa: E402
from benchmarks.report import memory_table  # noqa: E402


@pytest.mark.parametrize("side", ["fused", "unfused"])
def test_step_peak_memory_is_measured_in_a_fresh_process(side):
    # A forward+backward step of the stem at batch 1 holds megabytes of activations or workspace.
    assert 2**20 < step_peak_bytes("stem-batch1", side) < 2**30


def test_memory_table_lists_every_side():
    table = memory_table({"small-map": {side: (i + 1) * 2**20 for i, side in enumerate(SIDES)}})
    assert table.splitlines()[0] == "| case | fused MB | unfused MB | inductor MB |"
    assert table.splitlines()[-1] == "| small-map | 1.0 | 2.0 | 3.0 |"


def test_streaming_benchmark_measures_both_variants():
    from benchmarks.streaming import markdown, measure

    (row,) = measure([96], reps=1, threads=None)
    for variant in ("plain", "streamed"):
        assert row[f"{variant}_growth_bytes"] > 0 and row[f"{variant}_live_bytes"] > 0 and row[f"{variant}_ms"] > 0
    assert row["streamed_live_bytes"] < row["plain_live_bytes"]
    table = markdown([row], {"cpu": "test"}, {})
    assert "| 96x96 |" in table and "in stripes of" in table


@pytest.mark.skipif(__import__("torch").get_num_threads() < 2, reason="needs more than one thread")
def test_thread_scaling_times_one_thread_and_all():
    import torch

    from benchmarks.cases import CASES
    from benchmarks.report import scaling_lines
    from benchmarks.timing import thread_scaling

    threads = torch.get_num_threads()
    scaling = thread_scaling(CASES["small-map"], reps=1, warmup=0)
    assert set(scaling) == {1, threads} and all(ms > 0 for ms in scaling.values())
    assert torch.get_num_threads() == threads  # put back
    assert f"{threads} threads" in scaling_lines(scaling)[0]
