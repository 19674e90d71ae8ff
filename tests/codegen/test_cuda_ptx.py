"""The CUDA renderer on a machine without a GPU: every elementwise op of the registry, every
reduction of the reduction table, the fused softmax and layer norm, strided and offset
accesses and a whole jitted training step become PTX that `ptxas -arch=sm_90` accepts; the
GPU options leave no stack buffers and no x86 instructions; CUDA artifacts run on the null
device; what the NVPTX code generator would abort on is refused with an error instead."""
from __future__ import annotations

import itertools
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import kiln
from kiln.codegen.cuda import CudaRenderer, check_with_ptxas, llvm_ir_to_ptx, ptxas_path
from kiln.codegen.errors import CodegenError
from kiln.frontend.compile import plan_graph
from kiln.frontend.jit import compile_stages
from kiln.ir.dtypes import DType
from kiln.ir.schedule_text import parse_schedule
from kiln.passes.fusion import fuse_elementwise
from kiln.runtime.executable import build_executable
from kiln.runtime.null import NullDevice

from codegen_helpers import emit1, kernel_graph, t
from test_elementwise_ops import CASES, SHAPE
from test_reductions import (OFFSET_LOAD_TRANSPOSED_STORE, TABLE, TRANSPOSED_LOAD,
                             layer_norm_graph, reduce_graph, softmax_graph)

needs_ptxas = pytest.mark.skipif(ptxas_path() is None,
                                 reason="no ptxas here (CUDA toolkit or nvidia-cuda-nvcc)")
RENDERER = CudaRenderer()


def _ptx_of(graph) -> list:
    schedule, _ = plan_graph(fuse_elementwise(graph))
    return [RENDERER.compile(k) for k in schedule.kernels]


def _assemble(arts) -> None:
    """ptxas on the kernels as one module, as the driver loads them."""
    check_with_ptxas(RENDERER.module_ptx(arts))


@needs_ptxas
@pytest.mark.parametrize("op,dtypes,attrs", CASES)
def test_every_elementwise_op_gives_ptx_that_ptxas_accepts(op, dtypes, attrs):
    graph = kernel_graph([t(d, *SHAPE) for d in dtypes],
                         lambda gb, *xs: [emit1(gb, op, xs, attrs)])
    (art,) = _ptx_of(graph)
    assert f".visible .entry {art.entry}(" in art.ptx
    check_with_ptxas(art.ptx)


def _by_op_and_dtype():
    for (op, dtype), cases in itertools.groupby(TABLE, key=lambda p: p.values[:2]):
        yield pytest.param(op, dtype, [c.values[2:] for c in cases],
                           id=f"{op}-{dtype.value}")


@needs_ptxas
@pytest.mark.parametrize("op,dtype,spaces", list(_by_op_and_dtype()))
def test_every_reduction_gives_ptx_that_ptxas_accepts(op, dtype, spaces):
    for shape, axes, keepdim in spaces:
        (art,) = _ptx_of(reduce_graph(op, dtype, shape, axes, keepdim))
        check_with_ptxas(art.ptx)


@needs_ptxas
@pytest.mark.parametrize("dtype", [DType.float32, DType.float64], ids=["f32", "f64"])
def test_fused_softmax_and_layer_norm_use_no_stack(dtype):
    """On the CPU a shared row value may live in a stack buffer; a GPU thread keeps none."""
    for graph in (softmax_graph(dtype, 16, 1000), layer_norm_graph(dtype, 8, 4096)):
        arts = _ptx_of(graph)
        assert len(arts) == 1
        assert "memref.alloca" not in arts[0].mlir
        assert ".local" not in arts[0].ptx
        check_with_ptxas(arts[0].ptx)


@needs_ptxas
@pytest.mark.parametrize("text", [TRANSPOSED_LOAD, OFFSET_LOAD_TRANSPOSED_STORE],
                         ids=["transposed-load", "offset-load-transposed-store"])
def test_strided_and_offset_accesses(text):
    arts = [RENDERER.compile(k) for k in parse_schedule(text).kernels]
    _assemble(arts)


def test_gpu_code_has_no_host_instructions():
    """exp's 2**n scaling is a vector `ldexp` on an AVX-512 host: never on the GPU."""
    (art,) = _ptx_of(kernel_graph([t(DType.float32, 4096)],
                                  lambda gb, x: [emit1(gb, "tanh", [emit1(gb, "exp", [x])])]))
    assert "x86" not in art.llvm_ir and "ldexp" not in art.llvm_ir
    assert "x86" not in art.ptx


def test_launch_geometry_is_one_thread_per_row():
    (ew,) = _ptx_of(kernel_graph([t(DType.float32, 1000, 7)],
                                 lambda gb, x: [emit1(gb, "neg", [x])]))
    assert ew.rows == 7000 and ew.block == (256, 1, 1) and ew.grid == (28, 1, 1)
    (soft,) = _ptx_of(softmax_graph(DType.float32, 300, 50))
    assert soft.rows == 300 and soft.grid == (2, 1, 1)


def test_cuda_artifacts_run_on_the_null_device(rng):
    """The runtime takes the CUDA renderer's artifacts like the CPU's: launches in schedule
    order, computed by the null device's NumPy references."""
    graph = layer_norm_graph(DType.float32, 6, 40)
    schedule, _ = plan_graph(fuse_elementwise(graph))
    dev = NullDevice(compute=True)
    exe = build_executable(schedule, dev, RENDERER)
    x = rng.standard_normal((6, 40)).astype(np.float32)
    g, b = (rng.standard_normal(40).astype(np.float32) for _ in range(2))
    (got,) = exe([x, g, b])
    m = x.mean(1, keepdims=True)
    v = ((x - m) ** 2).mean(1, keepdims=True)
    np.testing.assert_allclose(got, (x - m) / np.sqrt(v + 1e-5) * g + b, rtol=1e-4, atol=1e-5)
    assert dev.launches == [k.name for k in schedule.kernels]
    assert all(a.entry.endswith("_grid") for a in dev.loaded)


def _mlp_step(x, y, w1, b1, w2, b2):
    h = kiln.relu(x @ w1.T + b1)
    loss = kiln.nn.functional.cross_entropy(h @ w2.T + b2, y)
    loss.backward()
    return loss


@needs_ptxas
def test_a_training_step_compiles_to_one_ptx_module_ptxas_accepts():
    rng = np.random.default_rng(0)
    p = lambda *s: kiln.tensor(rng.standard_normal(s).astype(np.float32),   # noqa: E731
                               requires_grad=True)
    args = [kiln.tensor(rng.standard_normal((32, 20)).astype(np.float32)),
            kiln.tensor(rng.integers(0, 5, 32)), p(16, 20), p(16), p(5, 16), p(5)]
    stages = dict(compile_stages(_mlp_step, args, device="cuda"))
    ptx = stages["ptx"]
    assert ptx.count(".visible .entry") >= 3
    check_with_ptxas(ptx)


@needs_ptxas
def test_kiln_ir_prints_ptx_for_cuda():
    """The issue's command, as a user runs it from the repository root."""
    root = pathlib.Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "kiln", "ir", "examples/demo.py:step",
                           "--arg", "f32[1024]", "--device", "cuda", "--stage", "ptx"],
                          capture_output=True, text=True, timeout=300, cwd=root)
    assert done.returncode == 0, done.stderr
    assert ".target sm_90" in done.stdout and ".visible .entry" in done.stdout
    check_with_ptxas(done.stdout)


def _kernel_calling(function: str) -> str:
    return (f"declare float @{function}(float)\n"
            "define ptx_kernel void @k(ptr %p) {\n"
            f"  %x = load float, ptr %p\n  %y = call float @{function}(float %x)\n"
            "  store float %y, ptr %p\n  ret void\n}\n")


@pytest.mark.parametrize("function", ["llvm.sinh.f32", "nowhere"])
def test_what_nvptx_cannot_select_is_an_error_not_an_abort(function):
    with pytest.raises(CodegenError, match=function.replace(".", r"\.")):
        llvm_ir_to_ptx(_kernel_calling(function))


@needs_ptxas
def test_ptxas_rejection_is_reported():
    with pytest.raises(CodegenError, match="ptxas"):
        check_with_ptxas(".version 8.0\n.target sm_90\n.address_size 64\nnonsense\n")
