"""Builds the operator library rnnpool_ops/librnnpool_ops.so: the op schemas, the C++ CPU kernels
and, when it can, the CUDA kernels. It links libtorch only (no Python), so the Python package and
C++ programs load the same file (see docs/deployment.md).

Install into an environment that already has torch, without build isolation (which would compile
against another torch): `pip install --no-build-isolation .` (or `-e .`, or `pip wheel ...`).
pyproject.toml holds the package's metadata; this file only describes the compiled parts.

The kernel core's ISA builds (csrc/core/isa/) need flags of their own: they are static libraries
built by setuptools' build_clib with the flags of csrc/core/isa/isa_flags.txt (which CMakeLists.txt
reads too), in parallel; the rest compiles with torch's ninja build (parallel too, when ninja is
installed) and links them in.

The CUDA kernels (csrc/gpu/) are built whenever torch is a CUDA build and nvcc is found, with or
without a GPU. Environment:
  RNNPOOL_SKIP_CUDA=1       build the CPU kernels only (a quicker build)
  RNNPOOL_BUILD_TEST_OPS=1  also build the test-only rnnpool_emulated ops (csrc/testing/; run.sh sets it)
  CUDA_HOME                 the CUDA toolkit (default: /usr/local/cuda when it holds nvcc)
  TORCH_CUDA_ARCH_LIST      the GPU architectures; default: the visible GPU's, else "9.0" (H100/H200)
  MAX_JOBS                  files compiled at a time (default: all cores)
"""
import glob
import os
import platform
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# torch.utils.cpp_extension reads CUDA_HOME when it is imported; its own guess (the folder above
# the first nvcc on PATH) can be a wrapper's folder such as /usr/local.
if "CUDA_HOME" not in os.environ and os.path.isfile("/usr/local/cuda/bin/nvcc"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"

import torch  # noqa: E402
from setuptools import setup  # noqa: E402
from setuptools.command.build_clib import build_clib  # noqa: E402
from torch.utils import cpp_extension  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402

ROOT = Path(__file__).parent
CSRC = ROOT / "csrc"
MACHINE = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(
    platform.machine().lower(), "other")
JOBS = int(os.environ.get("MAX_JOBS") or os.cpu_count() or 1)


def flag(name):
    return os.environ.get(name, "0") == "1"


def sources(*patterns):
    return sorted(str(p.relative_to(ROOT)) for pattern in patterns for p in CSRC.glob(pattern))


def isa_builds():
    """(name, flags) of each ISA build of csrc/core/isa/isa_flags.txt compiled for this machine."""
    builds = []
    for line in (CSRC / "core" / "isa" / "isa_flags.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, machines, *flags = line.split()
            if machines in ("any", MACHINE):
                builds.append((name, flags))
    return builds


# One static library per ISA build, the scalar one (listed first) also holding the table of builds.
CORE_LIBRARIES = [
    (f"rnnpool_core_{name}", {
        "sources": (sources("core/isa/isa_table.cpp") if index == 0 else []) + sources(f"core/isa/sweep_{name}.cpp"),
        "include_dirs": [str(CSRC)],
        "cflags": ["-std=c++17", "-O3"] + flags,
    })
    for index, (name, flags) in enumerate(isa_builds())
]


class BuildCoreLibraries(build_clib):
    """build_clib, with the libraries compiled at the same time (one thread each)."""

    def build_libraries(self, libraries):
        with ThreadPoolExecutor(max_workers=JOBS) as pool:
            list(pool.map(lambda library: super(BuildCoreLibraries, self).build_libraries([library]), libraries))


class BuildExtensionWithCore(BuildExtension):
    """torch's BuildExtension, building the core's ISA libraries first (also for `build_ext --inplace`)."""

    def run(self):
        self.run_command("build_clib")
        super().run()


def cuda_build():
    """(True, "") when the CUDA kernels can be built here, else (False, why not)."""
    if flag("RNNPOOL_SKIP_CUDA"):
        return False, "RNNPOOL_SKIP_CUDA=1"
    if torch.version.cuda is None:
        return False, f"torch {torch.__version__} is a CPU-only build"
    if cpp_extension.CUDA_HOME is None:
        return False, "no CUDA toolkit found (set CUDA_HOME to the folder holding bin/nvcc)"
    return True, ""


def cuda_wheel_include_dirs():
    """Headers of the nvidia-* wheels (cuSPARSE, cuBLAS, ...) that torch's CUDA headers include, for a
    toolkit that lacks them (a minimal nvcc install)."""
    if os.path.isfile(os.path.join(cpp_extension.CUDA_HOME, "include", "cusparse.h")):
        return []
    site_packages = Path(torch.__file__).parent.parent
    return sorted(glob.glob(str(site_packages / "nvidia" / "*" / "include")))


WITH_CUDA, NO_CUDA_REASON = cuda_build()
WITH_TEST_OPS = flag("RNNPOOL_BUILD_TEST_OPS")
if WITH_CUDA and "TORCH_CUDA_ARCH_LIST" not in os.environ and not torch.cuda.is_available():
    # Without a GPU torch would build every architecture it knows (slow); Hopper is what we test on.
    os.environ["TORCH_CUDA_ARCH_LIST"] = "9.0"
print("[rnnpool-ops setup] CUDA kernels: "
      + ("built for " + os.environ.get("TORCH_CUDA_ARCH_LIST", "the visible GPU") if WITH_CUDA
         else f"skipped ({NO_CUDA_REASON})")
      + "; test-only ops: " + ("built" if WITH_TEST_OPS else "not built (RNNPOOL_BUILD_TEST_OPS=1 builds them)"))

# csrc/gpu/pipeline.cpp is the GPU algorithm's host code: the CUDA kernels and the emulated ops run it.
LIBRARY_SOURCES = (
    sources("*.cpp", "cpu/*.cpp")
    + (sources("gpu/*.cpp") if WITH_CUDA or WITH_TEST_OPS else [])
    + (sources("testing/*.cpp") if WITH_TEST_OPS else [])
)
# py_limited_api: link libtorch without libtorch_python, so that no Python is needed to load it.
library_options = dict(
    name="rnnpool_ops.librnnpool_ops",
    include_dirs=[str(CSRC)],
    extra_compile_args={"cxx": ["-O3", "-fopenmp"], "nvcc": ["-O3"]},
    extra_link_args=["-fopenmp"],
    py_limited_api=True,
)
if WITH_CUDA:
    library_options["include_dirs"] += cuda_wheel_include_dirs()
    library = CUDAExtension(sources=LIBRARY_SOURCES + sources("gpu/*.cu"), **library_options)
else:
    library = CppExtension(sources=LIBRARY_SOURCES, **library_options)

setup(
    libraries=CORE_LIBRARIES,
    ext_modules=[library],
    cmdclass={
        "build_clib": BuildCoreLibraries,
        # no_python_abi_suffix: the file is librnnpool_ops.so, a shared library, not a Python module.
        "build_ext": BuildExtensionWithCore.with_options(no_python_abi_suffix=True),
    },
)
