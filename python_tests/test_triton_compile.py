"""The Triton sweep kernels compile for an H100 (sm_90) on a machine without a GPU: triton's compiler
and its bundled ptxas need no driver. The interpreter tests (python_tests/interpreter/) run the
kernels' math on CPU but accept code the GPU compiler may not (types, layouts, float64 dots); this
catches that here, and python_tests/test_triton_gpu.py runs the kernels where a GPU is present."""

import os

import pytest

if os.environ.get("TRITON_INTERPRET") == "1":
    pytest.skip("kernels are interpreted in this process", allow_module_level=True)
triton = pytest.importorskip("triton")

from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from rnnpool_ops.triton_sweep import kernels  # noqa: E402

INDEX_ARGS = ("in_base_ptr", "in_step_ptr", "final_base_ptr")  # int64 offsets; other pointers: the data


def compile_for_h100(kernel, dtype, constants):
    signature = {
        name: "constexpr" if name in constants
        else ("*i64" if name in INDEX_ARGS else f"*{dtype}") if name.endswith("_ptr")
        else "i32"
        for name in kernel.arg_names
    }
    return triton.compile(ASTSource(kernel, signature, constants), target=GPUTarget("cuda", 90, 32),
                          options=dict(num_warps=4))


@pytest.mark.parametrize("dtype", ["fp32", "fp64"])
@pytest.mark.parametrize("cell, gate, update", [("fastgrnn", "sigmoid", "tanh"), ("fastgrnn", "quantSigm", "quantTanh"),
                                                ("gru", "sigmoid", "tanh")])
def test_kernels_compile_for_sm90(cell, gate, update, dtype):
    codes = dict(CELL=kernels.CELL_CODES[cell], GATE=kernels.NONLINEARITY_CODES[gate],
                 UPDATE=kernels.NONLINEARITY_CODES[update], BLOCK=16, BLOCK_H=16)
    compiled = [
        compile_for_h100(kernels._sweep_forward_kernel, dtype, dict(codes, STORE_STATES=True, WRITE_FINAL=True)),
        compile_for_h100(kernels._sweep_backward_kernel, dtype, codes),
    ]
    assert all(k.asm.get("cubin") for k in compiled)
