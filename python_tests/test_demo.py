"""The demonstration run (`python -m rnnpool_ops`) end to end, at a tiny setting."""

import os
import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_demo_prints_metrics_and_writes_benefit_curves(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run(
        [sys.executable, "-m", "rnnpool_ops", "--epochs", "1", "--samples", "256", "--out", str(tmp_path)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert re.search(r"epoch 1/1 \[#+\] 4/4 .* loss \d+\.\d+", out)
    assert re.search(r"standalone accuracy(\s+\d+\.\d%){4}", out)
    for policy in ("confidence", "entropy", "cbee"):
        # policy, setting, accuracy, average MAdds, share of the full network, exit histogram summing to 64
        row = re.search(rf"^{policy} .*?(\d+\.\d)% +(\d+\.\d+)M +(\d+)%  \[(\d+), (\d+), (\d+), (\d+)\]$", out, re.M)
        assert row, f"no {policy} row in:\n{out}"
        assert 0 <= float(row[1]) <= 100 and float(row[2]) > 0
        assert sum(int(row[i]) for i in range(4, 8)) == 64
        assert (tmp_path / f"benefit_curve_{policy}.png").stat().st_size > 0
    speed_rows = re.findall(r"^stages\.\d +\[64, \d+, \d+, \d+\] .*x$", out, re.M)
    assert len(speed_rows) == 2 or "speed table skipped" in out


def test_demo_stream_size_prints_measured_memory_against_the_bound():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run([sys.executable, "-m", "rnnpool_ops", "--stream-size", "256"], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    bound = float(re.search(r"analytical peak of live activations .*: (\d+\.\d+) MiB", out)[1])
    assert abs(bound - 0.239 * (256 / 224) ** 2) < 0.05
    plain = float(re.search(r"plain model: +peak RSS grew +(\d+\.\d+) MiB", out)[1])
    streamed = re.search(r"streamed model: peak RSS grew +(\d+\.\d+) MiB .* outputs agree to (\S+) \(relative\)", out)
    assert streamed and float(streamed[2]) < 1e-4
    assert plain >= 0 and float(streamed[1]) >= 0
    assert "in stripes of" in out
