"""What of the Triton backend can be checked without a GPU besides its math (the interpreter tests in
python_tests/interpreter/ do that): the kernels compile for an H100 (sm_90), since triton's compiler
and its bundled ptxas need no driver, and the interpreter accepts code the GPU compiler may not
(types, layouts, float64 dots); and sweep.forward/backward, the triton_ops' bodies, trace with
symbolic shapes, as torch.compile and opcheck's dynamic-shape test need. python_tests/
test_triton_gpu.py runs the kernels where a GPU is present."""

import os

import pytest

if os.environ.get("TRITON_INTERPRET") == "1":
    pytest.skip("kernels are interpreted in this process", allow_module_level=True)
triton = pytest.importorskip("triton")

from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

import torch  # noqa: E402
from torch.fx.experimental.proxy_tensor import make_fx  # noqa: E402

from rnnpool_ops._checks import check_sweep_args  # noqa: E402
from rnnpool_ops.gated_skip import triton_kernels as gated_skip_kernels  # noqa: E402
from rnnpool_ops.triton_sweep import kernels, sweep  # noqa: E402
from sweep_cases import detached, make_args  # noqa: E402

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


@pytest.mark.parametrize("dtype", ["fp32", "fp64"])
@pytest.mark.parametrize("kernel, dilation, relu", [(3, 1, True), (5, 2, False), (1, 1, True)])
def test_gated_skip_kernel_compiles_for_sm90(dtype, kernel, dilation, relu):
    constants = dict(KH=kernel, KW=kernel, DIL_H=dilation, DIL_W=dilation, RELU=relu, ACC_F64=dtype == "fp64",
                     BLOCK_CO=16, BLOCK_P=128)
    assert compile_for_h100(gated_skip_kernels._gated_skip_conv2d_kernel, dtype, constants).asm.get("cubin")


@pytest.mark.parametrize("variant", ["rex_gru", "rnnpool_quantised"])
def test_forward_and_backward_trace_with_symbolic_shapes(variant):
    args = detached(make_args("padding", variant, torch.float32))
    tensors = ["x", "rnn1", "rnn2", "proj_weight", "proj_bias"]
    config = [args[name] for name in args if name not in tensors]

    def forward_and_backward(grad_output, *inputs):
        return sweep.forward(*inputs, *config), sweep.backward(grad_output, *inputs, *config)

    grad_output = torch.randn(check_sweep_args(**args))
    graph = make_fx(forward_and_backward, tracing_mode="symbolic")(grad_output, *[args[name] for name in tensors])
    launches = [node for node in graph.graph.nodes if "triton_kernel_wrapper" in str(node.target)]
    # Per RNN and pass (rows/columns, or R/C): a forward launch, in the backward one storing the
    # states and a backward launch.
    passes = 2 + len([block for block in "RC" if block in args["parts"]])
    assert len(launches) == 3 * passes
