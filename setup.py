"""Builds rnnpool_ops._C: the operator schemas and the C++ CPU kernels.

Use `pip install --no-build-isolation -e .` so the extension is compiled against the torch that is
already installed (build isolation would fetch another one).
"""
from pathlib import Path

from setuptools import find_packages, setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

ROOT = Path(__file__).parent
CSRC = ROOT / "csrc"


def sources(*patterns):
    return sorted(str(p.relative_to(ROOT)) for pattern in patterns for p in CSRC.glob(pattern))


ext = CppExtension(
    name="rnnpool_ops._C",
    sources=sources("*.cpp", "cpu/*.cpp"),
    include_dirs=[str(CSRC)],
    # -O3 -fno-trapping-math let GCC vectorise the element-wise loops of csrc/core (they contain
    # float selects); no -march flags, so the build runs on any x86-64.
    extra_compile_args={"cxx": ["-O3", "-fno-trapping-math", "-fopenmp"]},
    extra_link_args=["-fopenmp"],
)

setup(
    name="rnnpool-ops",
    version="0.1.0",
    description="Fused RNNPool / ReX operators for PyTorch",
    license="MIT",
    packages=find_packages(include=["rnnpool_ops", "rnnpool_ops.*"]),
    ext_modules=[ext],
    cmdclass={"build_ext": BuildExtension},
    python_requires=">=3.10",
    install_requires=["torch>=2.4"],
)
