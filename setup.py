"""Builds rnnpool_ops._C: the operator schemas, the C++ CPU kernels and, when it can, the CUDA kernels.

Use `pip install --no-build-isolation -e .` so the extension is compiled against the torch that is
already installed (build isolation would fetch another one).

The CUDA kernels (csrc/cuda/) are built whenever torch is a CUDA build and nvcc is found, with or
without a GPU. Environment:
  RNNPOOL_SKIP_CUDA=1     build the CPU kernels only (a quicker build)
  CUDA_HOME               the CUDA toolkit (default: /usr/local/cuda when it holds nvcc)
  TORCH_CUDA_ARCH_LIST    the GPU architectures; default: the visible GPU's, else "9.0" (H100/H200)
  MAX_JOBS                files compiled at a time (default: all cores)
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
from setuptools import find_packages, setup  # noqa: E402
from torch.utils import cpp_extension  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402

ROOT = Path(__file__).parent
CSRC = ROOT / "csrc"
X86_64 = platform.machine().lower() in ("x86_64", "amd64")

AARCH64 = platform.machine().lower() in ("aarch64", "arm64")

# No -march flag anywhere: a wheel built here runs on any x86-64. Each ISA build of the core
# (csrc/core/isa/sweep_<isa>.cpp) gets its own flags, and cpu_isa.cpp picks one at run time from
# what the CPU supports. The builds are vectorised by hand (csrc/core/simd/), so GCC's loop
# vectoriser is off in all of them: the scalar build stays scalar (the reference the vector builds
# are measured against), and GCC 12's loop vectoriser was seen reading past the end of a strided
# array in the float64 code of the vector builds (a crash in project_pixels_backward).
CXX_FLAGS = ["-O3", "-fopenmp"]
NO_AUTO_VECTORISATION = ["-fno-tree-loop-vectorize"]
ISA_FLAGS = {
    "_scalar.cpp": NO_AUTO_VECTORISATION + ["-fno-tree-slp-vectorize"],
    "_avx2.cpp": NO_AUTO_VECTORISATION + ["-mavx2", "-mfma"],
    "_avx512.cpp": NO_AUTO_VECTORISATION + ["-mavx512f", "-mavx2", "-mfma"],
    "_neon.cpp": NO_AUTO_VECTORISATION,
}
# The scalar build comes first so the linker keeps its copies of inline functions shared by the
# builds (std::vector's, for instance), never those compiled for a wider ISA.
ISA_BUILDS = ["scalar"] + (["avx2", "avx512"] if X86_64 else []) + (["neon"] if AARCH64 else [])


def sources(*patterns):
    return sorted(str(p.relative_to(ROOT)) for pattern in patterns for p in CSRC.glob(pattern))


class BuildWithIsaFlags(BuildExtension):
    """Adds ISA_FLAGS to the files they name (and to no other file), and compiles files in parallel."""

    def build_extension(self, ext):
        torch_compile = self.compiler._compile

        def compile_one(obj, src, ext_name, cc_args, extra_postargs, pp_opts):
            extra = next((flags for suffix, flags in ISA_FLAGS.items() if src.endswith(suffix)), [])
            if extra:
                extra_postargs = {**extra_postargs, "cxx": extra_postargs["cxx"] + extra}
            torch_compile(obj, src, ext_name, cc_args, extra_postargs, pp_opts)

        self.compiler._compile = compile_one
        self.compiler.compile = self._parallel_compile
        try:
            super().build_extension(ext)
        finally:
            self.compiler._compile = torch_compile
            del self.compiler.compile  # back to the class's own

    def _parallel_compile(self, sources, output_dir=None, macros=None, include_dirs=None, debug=0,
                          extra_preargs=None, extra_postargs=None, depends=None):
        """distutils' compile(), with the C++ files compiled MAX_JOBS (default: all cores) at a time.

        ninja would do that, but its build file cannot give one file flags of its own. CUDA files
        go first, one at a time: torch's compile step swaps the compiler executable to nvcc while it
        compiles one.
        """
        compiler = self.compiler
        macros, objects, extra_postargs, pp_opts, build = compiler._setup_compile(
            output_dir, macros, include_dirs, sources, depends, extra_postargs)
        cc_args = compiler._get_cc_args(pp_opts, debug, extra_preargs)
        jobs = [(obj, *build[obj]) for obj in objects if obj in build]

        def compile_job(job):
            obj, src, ext_name = job
            compiler._compile(obj, src, ext_name, cc_args, extra_postargs, pp_opts)

        for job in jobs:
            if job[1].endswith(".cu"):
                compile_job(job)
        workers = int(os.environ.get("MAX_JOBS") or os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(compile_job, [job for job in jobs if not job[1].endswith(".cu")]))
        return objects



def cuda_build():
    """(True, "") when the CUDA kernels can be built here, else (False, why not)."""
    if os.environ.get("RNNPOOL_SKIP_CUDA", "0") == "1":
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
if WITH_CUDA and "TORCH_CUDA_ARCH_LIST" not in os.environ and not torch.cuda.is_available():
    # Without a GPU torch would build every architecture it knows (slow); Hopper is what we test on.
    os.environ["TORCH_CUDA_ARCH_LIST"] = "9.0"
print(f"[rnnpool-ops setup] CUDA kernels: {'built for ' + os.environ.get('TORCH_CUDA_ARCH_LIST', 'the visible GPU') if WITH_CUDA else 'skipped (' + NO_CUDA_REASON + ')'}")

CPU_SOURCES = (
    sources("*.cpp", "cpu/*.cpp", "sequences/*.cpp", "core/isa/isa_table.cpp")
    + [source for isa in ISA_BUILDS for source in sources(f"core/isa/sweep_{isa}.cpp")]
)
if WITH_CUDA:
    ext = CUDAExtension(
        name="rnnpool_ops._C",
        sources=CPU_SOURCES + sources("cuda/*.cu"),
        include_dirs=[str(CSRC)] + cuda_wheel_include_dirs(),
        extra_compile_args={"cxx": CXX_FLAGS, "nvcc": ["-O3"]},
        extra_link_args=["-fopenmp"],
    )
else:
    ext = CppExtension(
        name="rnnpool_ops._C",
        sources=CPU_SOURCES,
        include_dirs=[str(CSRC)],
        extra_compile_args={"cxx": CXX_FLAGS},
        extra_link_args=["-fopenmp"],
    )

setup(
    name="rnnpool-ops",
    version="0.1.0",
    description="Fused RNNPool / ReX operators for PyTorch",
    license="MIT",
    packages=find_packages(include=["rnnpool_ops", "rnnpool_ops.*"]),
    ext_modules=[ext],
    # Per-file flags need distutils' compile path (made parallel above), not ninja's.
    cmdclass={"build_ext": BuildWithIsaFlags.with_options(use_ninja=False)},
    python_requires=">=3.10",
    install_requires=["torch>=2.4"],
)
