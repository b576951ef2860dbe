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

# -O3 -fno-trapping-math let GCC vectorise the element-wise loops of csrc/core (they contain float
# selects). No -march flag: the extension runs on any x86-64, and the AVX2 build of the core is
# one more object that cpu_isa.cpp picks at run time.
CXX_FLAGS = ["-O3", "-fno-trapping-math", "-fopenmp"]
ISA_FLAGS = {"_avx2.cpp": ["-mavx2", "-mfma"]}


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


# The per-ISA core builds come last so the linker takes shared inline functions (std::vector's,
# for instance) from the baseline objects, never from an AVX2 one.
ext = CppExtension(
    name="rnnpool_ops._C",
    sources=sources("*.cpp", "cpu/*.cpp", "core/isa/sweep_baseline.cpp")
    + (sources("core/isa/sweep_avx2.cpp") if X86_64 else []),
    include_dirs=[str(CSRC)],
    define_macros=[("RNNPOOL_HAVE_AVX2", None)] if X86_64 else [],
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
