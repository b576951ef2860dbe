#!/usr/bin/env bash
# The one entry point:
#   bash run.sh demo  [demo args]     the main job: python -m rnnpool_ops (train, early exits, speed)
#   bash run.sh bench [--quick]       every microbenchmark, one report (benchmarks/__main__.py)
#   bash run.sh test  [pytest args]   C++ core tests (ctest, also under ASan+UBSan), the Python tests, the C++ deployment example
#   bash run.sh compat                the package as a wheel, built and tested against torch $OTHER_TORCH
#   bash run.sh gpu                   on a GPU machine: build there, every GPU test, the GPU benchmarks
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

VENV=.venv
PY="$VENV/bin/python"
# torch 2.14.1 is the CUDA build: the CUDA kernels can be compiled against it.
# setuptools >= 70.1 builds editable wheels without the separate `wheel` package.
DEPS=(torch==2.14.1 torchvision==0.29.1 numpy pytest pytest-benchmark expecttest hypothesis matplotlib ninja "setuptools>=70.1")

# The other torch CI tests: the GPU machines' version. Its registry build is the CUDA 13.0 one, which
# the nvcc here compiles against; triton 3.6's interpreter needs numpy < 2.4.
OTHER_TORCH=2.11.0
OTHER_DEPS=(torch==$OTHER_TORCH "numpy<2.4" pytest expecttest hypothesis ninja "setuptools>=70.1")

log() { printf '[run.sh] %s\n' "$*"; }

usage() {
  echo "usage: bash run.sh {demo|bench|test|compat|gpu} [args...]" >&2
  exit 2
}

setup() {
  if [[ ! -x "$PY" ]]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
  fi
  # pip installs only what is missing or at another version; a no-op costs ~2 s.
  log "checking dependencies"
  "$PY" -m pip install -q "${DEPS[@]}"
  build_extension
}

# An editable pip install recompiles every source each time, so rebuild only when the C++ sources,
# setup.py, pyproject.toml or this script (its pins) changed. The build here includes the test-only
# rnnpool_emulated ops (RNNPOOL_BUILD_TEST_OPS=1), which an installed package leaves out.
build_extension() {
  local stamp="$VENV/.extension-built"
  if [[ -f "$stamp" ]] && [[ -f rnnpool_ops/librnnpool_ops.so ]] &&
    [[ -z "$(find csrc setup.py pyproject.toml run.sh -newer "$stamp" -print -quit)" ]]; then
    log "extension up to date"
    return
  fi
  log "building the extension"
  RNNPOOL_BUILD_TEST_OPS=1 "$PY" -m pip install -q --no-build-isolation -e .
  # CI sets RNNPOOL_REQUIRE_CUDA=1: the CUDA kernels must have been compiled (no GPU needed).
  if [[ "${RNNPOOL_REQUIRE_CUDA:-0}" == 1 ]] &&
    ! "$PY" -c 'import rnnpool_ops, sys; sys.exit(not rnnpool_ops.cuda_kernels_available())'; then
    log "FAILED: the extension was built without its CUDA kernels (see setup.py: nvcc, CUDA_HOME)"
    return 1
  fi
  touch "$stamp"
}

# The torch-free core's C++ tests: natively, then for aarch64 under qemu when the cross toolchain is
# installed (.ci/run installs it: Debian's g++-aarch64-linux-gnu and qemu-user-static, and sets
# RNNPOOL_REQUIRE_AARCH64=1 so that a missing toolchain fails the run).
core_tests() {
  log "C++ core: cmake + ctest in build/core"
  cmake -S . -B build/core >/dev/null
  cmake --build build/core -j "$(nproc)"
  ctest --test-dir build/core --output-on-failure
  log "C++ core under AddressSanitizer + UBSan: cmake + ctest in build/asan"
  cmake -S . -B build/asan -DRNNPOOL_SANITIZE=ON >/dev/null
  cmake --build build/asan -j "$(nproc)"
  ctest --test-dir build/asan --output-on-failure
  if command -v aarch64-linux-gnu-g++ >/dev/null && command -v qemu-aarch64-static >/dev/null; then
    log "C++ core for aarch64 under qemu: cmake + ctest in build/aarch64"
    cmake -S . -B build/aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake >/dev/null
    cmake --build build/aarch64 -j "$(nproc)"
    ctest --test-dir build/aarch64 --output-on-failure
  elif [[ "${RNNPOOL_REQUIRE_AARCH64:-0}" == 1 ]]; then
    log "FAILED: the aarch64 core tests need g++-aarch64-linux-gnu and qemu-user-static"
    return 1
  else
    log "NOT RUN: aarch64 core tests (install g++-aarch64-linux-gnu and qemu-user-static)"
  fi
}

# The kernel tests once more with each other ISA build of the CPU kernels forced (the whole suite
# ran on the default, best build).
isa_kernel_tests() {
  local default isa
  default=$("$PY" -c 'import rnnpool_ops; print(rnnpool_ops.cpu_isa())')
  for isa in $("$PY" -c 'import rnnpool_ops; print(" ".join(rnnpool_ops.available_cpu_isas()))'); do
    [[ "$isa" == "$default" ]] && continue
    log "Python kernel tests with RNNPOOL_CPU_ISA=$isa"
    RNNPOOL_CPU_ISA=$isa "$PY" -m pytest python_tests/test_ops.py python_tests/test_gated_skip.py -q
  done
}

# Deployment without Python: an AOTInductor package of a model with the fused layers, run by the C++
# runner of examples/aoti_runner and compared with eager PyTorch.
deployment_example() {
  log "C++ deployment example: AOTInductor package through examples/aoti_runner"
  "$PY" examples/aoti_runner/check.py --build-dir build/aoti_runner
}

run_tests() {
  core_tests
  log "Python tests"
  "$PY" -m pytest python_tests -q "$@"
  # Their own process: TRITON_INTERPRET must be set before triton is imported.
  log "Triton kernels under the interpreter"
  "$PY" -m pytest python_tests/interpreter/triton_interpreter_checks.py python_tests/interpreter/triton_sweep_checks.py -q
  isa_kernel_tests
  deployment_example
}

# The package as a user installs it, against the other torch: a wheel built from a copy of the tracked
# sources (`pip wheel --no-build-isolation`, CUDA kernels included when nvcc is found), installed into
# its own virtualenv, then the op and layer tests run from a copy of the tests outside the source
# tree, so that they import the installed package.
compat_tests() {
  local venv=.venv-torch$OTHER_TORCH
  local py=$venv/bin/python src=build/compat/src wheels=build/compat/wheels tests=build/compat/tests
  [[ -x "$py" ]] || { log "creating $venv"; python3 -m venv "$venv"; }
  log "torch $OTHER_TORCH environment: checking dependencies"
  "$py" -m pip install -q "${OTHER_DEPS[@]}"
  rm -rf "$src" "$wheels" "$tests"
  mkdir -p "$src" "$tests"
  git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$src"
  log "building the wheel against torch $OTHER_TORCH"
  "$py" -m pip wheel -q --no-build-isolation --no-deps -w "$wheels" "$src"
  "$py" -m pip install -q --no-deps --force-reinstall "$wheels"/rnnpool_ops-*.whl
  cp -r python_tests pytest.ini "$tests"
  (cd "$tests" && "../../../$py" - <<'PY'
import sys, torch, rnnpool_ops
print(f"[run.sh] installed {rnnpool_ops.__file__} (torch {torch.__version__}), CUDA kernels: {rnnpool_ops.cuda_kernels_available()}")
sys.exit("FAILED: the package does not import from site-packages" if "site-packages" not in rnnpool_ops.__file__ else 0)
PY
  )
  if [[ "${RNNPOOL_REQUIRE_CUDA:-0}" == 1 ]] &&
    ! (cd "$tests" && "../../../$py" -c 'import rnnpool_ops, sys; sys.exit(not rnnpool_ops.cuda_kernels_available())'); then
    log "FAILED: the wheel was built without its CUDA kernels"
    return 1
  fi
  log "op and layer tests against torch $OTHER_TORCH"
  (cd "$tests" && "../../../$py" -m pytest -q -p no:cacheprovider python_tests/test_ops.py python_tests/test_layers.py)
}

# The GPU suite, in one command, for a machine with an NVIDIA GPU (see docs/cuda.md). Such machines
# may have no package index, so it uses the Python that already holds torch (PYTHON, default python3)
# rather than .venv, and builds the extension in place for the visible GPU.
gpu_suite() {
  local py=${PYTHON:-python3}
  "$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no GPU visible to torch")'
  log "building the extension in place, CUDA kernels for $("$py" -c 'import torch; print(torch.cuda.get_device_name())')"
  RNNPOOL_BUILD_TEST_OPS=1 "$py" setup.py build_ext --inplace
  log "GPU tests"
  local status=0
  "$py" -m pytest -q -rs python_tests/test_gpu_sweep.py python_tests/test_triton_gpu.py \
    python_tests/test_gated_skip.py || status=1
  log "GPU benchmarks -> benchmarks/results/"
  "$py" -m benchmarks.gpu_sweep || status=1
  "$py" -m benchmarks.gated_skip --device cuda || status=1
  return $status
}

[[ $# -ge 1 ]] || usage
cmd=$1
shift
case "$cmd" in
  demo) setup; "$PY" -m rnnpool_ops "$@" ;;
  bench) setup; "$PY" -m benchmarks "$@" ;;
  test) setup; run_tests "$@" ;;
  compat) compat_tests ;;
  gpu) gpu_suite ;;
  *) usage ;;
esac
