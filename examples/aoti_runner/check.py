"""End-to-end check of deployment without Python (CI runs it; see README.md here): exports the example
model as an AOTInductor package, builds the C++ runner with CMake against the torch in use, runs the
package through the runner (a process with no Python) for several batch sizes and image sizes, and
compares each output with eager PyTorch. Exits non-zero on any mismatch.

    python examples/aoti_runner/check.py [--build-dir build/aoti_runner]
"""
import argparse
import os
import subprocess
import sys
from pathlib import Path

import torch

import rnnpool_ops
from export_model import EXAMPLE_SHAPE, example_model, export

HERE = Path(__file__).resolve().parent
# The exported example's shape, then other batches and sizes: the package's dynamic dimensions.
SHAPES = [EXAMPLE_SHAPE, (1, 3, 24, 24), (5, 3, 48, 36)]


def build_runner(build_dir):
    torch_dir = os.path.dirname(torch.__file__)
    subprocess.run(["cmake", "-S", str(HERE), "-B", str(build_dir), f"-DTORCH_PACKAGE_DIR={torch_dir}"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", str(build_dir), "-j", str(os.cpu_count() or 1)], check=True,
                   stdout=subprocess.DEVNULL)
    return build_dir / "aoti_runner"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-dir", type=Path, default=Path("build/aoti_runner"))
    args = parser.parse_args()
    build_dir = args.build_dir.resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    runner = build_runner(build_dir)
    model = example_model()
    package = export(model, torch.randn(EXAMPLE_SHAPE), build_dir / "model.pt2")
    failures = 0
    for index, shape in enumerate(SHAPES):
        x = torch.randn(shape, generator=torch.Generator().manual_seed(index))
        with torch.no_grad():
            expected = model(x)
        input_path, output_path = build_dir / f"input{index}.bin", build_dir / f"output{index}.bin"
        x.numpy().tofile(input_path)
        # No Python in the runner's process: only libtorch, the op library and the package.
        run = subprocess.run([str(runner), rnnpool_ops.library_path(), package, str(input_path),
                              *map(str, shape), str(output_path)], capture_output=True, text=True)
        if run.returncode != 0:
            print(f"FAILED {shape}: the runner exited {run.returncode}\n{run.stderr}")
            failures += 1
            continue
        got = torch.from_file(str(output_path), size=expected.numel(), dtype=torch.float32).view_as(expected)
        error = (got - expected).abs().max().item()
        ok = torch.allclose(got, expected, rtol=1e-4, atol=1e-5)
        failures += not ok
        print(f"{'ok' if ok else 'FAILED'} {shape} -> {tuple(expected.shape)}: max |C++ - eager| = {error:.2e}")
    print(f"aoti_runner: {len(SHAPES) - failures} passed, {failures} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
