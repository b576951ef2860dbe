"""The package as installed: the operator library needs no Python, and without it the package
still imports (reference backend only) with a one-line warning."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import rnnpool_ops

PACKAGE = Path(rnnpool_ops.__file__).parent


def dynamic_section(tool, *args):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")
    return subprocess.run([tool, *args, rnnpool_ops.library_path()], capture_output=True, text=True,
                          check=True).stdout


def test_operator_library_links_libtorch_and_no_python():
    needed = [line for line in dynamic_section("readelf", "-d").splitlines() if "(NEEDED)" in line]
    assert any("libtorch_cpu.so" in line for line in needed), needed
    assert not any("python" in line.lower() for line in needed), needed
    undefined = dynamic_section("nm", "-D", "--undefined-only").split()
    assert not [symbol for symbol in undefined if symbol.startswith(("Py", "_Py"))]


def test_operator_library_exports_its_c_api():
    defined = dynamic_section("nm", "-D", "--defined-only").split()
    assert {"rnnpool_cpu_isa", "rnnpool_set_cpu_isa", "rnnpool_available_cpu_isas"} <= set(defined)


def test_without_the_library_the_package_imports_with_one_warning(tmp_path):
    shutil.copytree(PACKAGE, tmp_path / "rnnpool_ops", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    script = (
        "import torch, rnnpool_ops\n"
        "from rnnpool_ops import RNNPool2d\n"
        "assert not rnnpool_ops.extension_available()\n"
        "pool = RNNPool2d(3, 4, 4, kernel_size=2)\n"
        "x = torch.randn(1, 3, 4, 4)\n"
        "y = pool(x)  # backend 'auto' falls back to the reference\n"
        "pool.backend = 'reference'\n"
        "assert y.shape == (1, 16, 2, 2) and torch.equal(y, pool(x))\n"
        "try:\n"
        "    rnnpool_ops.cpu_isa()\n"
        "except RuntimeError as error:\n"
        "    print('error:', error)\n"
    )
    run = subprocess.run([sys.executable, "-W", "default", "-c", script], cwd=tmp_path, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    warnings = [line for line in run.stderr.splitlines() if "Warning" in line]
    assert len(warnings) == 1 and "only backend='reference' runs" in warnings[0], run.stderr
    assert "error: the rnnpool_ops compiled kernels are not available" in run.stdout
