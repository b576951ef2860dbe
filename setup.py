"""Builds rnnpool_ops._C: the operator schemas and the C++ CPU kernels.

Use `pip install --no-build-isolation -e .` so the extension is compiled against the torch that is
already installed (build isolation would fetch another one).
"""
import platform
from pathlib import Path

from setuptools import find_packages, setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

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
    """Adds ISA_FLAGS to the files they name, and to no other file."""

    def build_extension(self, ext):
        torch_compile = self.compiler._compile

        def compile_one(obj, src, ext_name, cc_args, extra_postargs, pp_opts):
            extra = next((flags for suffix, flags in ISA_FLAGS.items() if src.endswith(suffix)), [])
            if extra:
                extra_postargs = {**extra_postargs, "cxx": extra_postargs["cxx"] + extra}
            torch_compile(obj, src, ext_name, cc_args, extra_postargs, pp_opts)

        self.compiler._compile = compile_one
        try:
            super().build_extension(ext)
        finally:
            self.compiler._compile = torch_compile


ext = CppExtension(
    name="rnnpool_ops._C",
    sources=sources("*.cpp", "cpu/*.cpp", "core/isa/isa_table.cpp")
    + [source for isa in ISA_BUILDS for source in sources(f"core/isa/sweep_{isa}.cpp")],
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
    # Per-file flags need distutils' one-file-at-a-time compile path, not ninja's.
    cmdclass={"build_ext": BuildWithIsaFlags.with_options(use_ninja=False)},
    python_requires=">=3.10",
    install_requires=["torch>=2.4"],
)
