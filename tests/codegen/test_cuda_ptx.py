"""The CUDA renderer on a machine without a GPU: every elementwise op of the registry, every
reduction of the reduction table, the fused softmax and layer norm, strided and offset
accesses and a whole jitted training step become PTX that `ptxas -arch=sm_90` accepts; the
same kernels' GPU MLIR (one point per thread, no stack buffers, no x86 instructions),
compiled for this CPU instead, gives the references' results; CUDA artifacts run on the null
device; what the NVPTX code generator would abort on is refused with an error instead."""
from __future__ import annotations

import ctypes
import itertools
import pathlib
import subprocess
import sys
import threading

import numpy as np
import pytest

import kiln
from kiln.codegen.cpu.render_warp import SHUFFLE_SUFFIX
from kiln.codegen.cuda import CudaRenderer, check_with_ptxas, llvm_ir_to_ptx, ptxas_path
from kiln.codegen.errors import CodegenError
from kiln.frontend.compile import plan_graph
from kiln.frontend.jit import compile_stages
from kiln.ir.dtypes import DType
from kiln.ir.parser import parse
from kiln.ir.schedule_text import parse_schedule
from kiln.passes.fusion import fuse_elementwise
from kiln.runtime.executable import build_executable
from kiln.runtime.null import NullDevice

import llvmlite.binding as llvm

from kiln.codegen.llvm_cpu import compile_llvm_ir
from kiln.codegen.mlir_pipeline import mlir_to_llvm_ir
from kiln.ir.interpreter import interpret

from codegen_helpers import assert_matches, emit1, kernel_graph, one_op_case, t
from test_elementwise_ops import CASES, SHAPE, ULPS
from test_reductions import (OFFSET_LOAD_TRANSPOSED_STORE, TABLE, TRANSPOSED_LOAD,
                             assert_reduction, layer_norm_graph, reduce_graph, softmax_graph,
                             values)

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


def test_launch_geometry_is_a_thread_per_point_or_a_warp_per_row():
    (ew,) = _ptx_of(kernel_graph([t(DType.float32, 1000, 7)],
                                 lambda gb, x: [emit1(gb, "neg", [x])]))
    assert ew.rows == 7000 and ew.block == (256, 1, 1) and ew.grid == (28, 1, 1)
    assert ew.lanes == 1 and "shfl" not in ew.ptx
    (soft,) = _ptx_of(softmax_graph(DType.float32, 300, 50))
    assert soft.rows == 300 and soft.lanes == 32 and soft.grid == (38, 1, 1)
    assert soft.ptx.count("shfl.sync.bfly.b32") == 10     # NOTE: two reductions, 5 steps each
    (narrow,) = _ptx_of(softmax_graph(DType.float32, 300, 20))
    assert narrow.lanes == 1 and narrow.grid == (2, 1, 1)  # NOTE: fewer elements than lanes
    (columns,) = _ptx_of(reduce_graph("sum", DType.float32, (64, 40), [0], False))
    assert columns.rows == 40 and columns.lanes == 1       # NOTE: neighbours read along rows
    (total,) = _ptx_of(reduce_graph("sum", DType.float32, (64, 40), [0, 1], False))
    assert total.rows == 1 and total.lanes == 32


@pytest.mark.parametrize("flags,lanes", [((False, False), 1), ((False, True), 32)])
def test_a_product_with_a_transposed_operand_takes_a_warp_per_output(flags, lanes):
    """x @ w.T reads both operands along k: lanes along k are coalesced; a plain product
    reads b along n, which neighbouring threads of a thread per output share."""
    b_shape = (40, 64) if flags[1] else (64, 40)
    call = matmul_schedule((8, 64), b_shape, flags, "f32").steps[0]
    art = RENDERER.compile(RENDERER.lower_call(call).kernel)
    assert art.lanes == lanes


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
    assert ".visible .entry kiln_matmul_" in ptx       # NOTE: the matmuls, as kernels
    check_with_ptxas(ptx)


def test_gpu_mlir_of_a_jitted_training_step_matches_the_cpu_executable(rng):
    """Forward, cross-entropy and backward of an MLP, fused and scheduled as for the GPU
    (matmuls as generated kernels), run as the GPU's MLIR on this CPU: the loss and every
    gradient equal the CPU executable's."""
    p = lambda *s: kiln.tensor(rng.standard_normal(s).astype(np.float32),   # noqa: E731
                               requires_grad=True)
    args = [kiln.tensor(rng.standard_normal((32, 20)).astype(np.float32)),
            kiln.tensor(rng.integers(0, 5, 32)), p(16, 20), p(16), p(5, 16), p(5)]
    jf = kiln.jit(_mlp_step)
    jf(*args)
    ((entry,),) = jf.cache.values()
    arrays = [a._data for a in args]
    want = entry.executable(arrays)
    schedule, _ = plan_graph(entry.graph)
    got = build_executable(schedule, GpuMlirOnCpu(), RENDERER)(arrays)
    assert len(got) == len(want) == 5       # NOTE: the loss and four gradients
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)


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


# ---- the GPU's MLIR, run on this CPU --------------------------------------------------------
class GpuMlirOnCpu(NullDevice):
    """Runs each CUDA artifact's MLIR (what the GPU gets) compiled for this CPU, over all of
    its points [0, rows): checks the GPU rendering's index arithmetic without a GPU. A warp
    kernel runs one CPU thread per lane, its shuffles exchanging the lanes' values (`_Warp`)."""

    def __init__(self):
        super().__init__(compute=True)

    def load(self, artifact):
        warp = _Warp(artifact.lanes) if artifact.lanes > 1 else None
        if warp is not None:
            llvm.add_symbol(artifact.symbol + SHUFFLE_SUFFIX, warp.address)
        obj = compile_llvm_ir(mlir_to_llvm_ir(artifact.mlir), artifact.symbol)
        n = artifact.n_buffers + (warp is not None)
        fn = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * artifact.n_buffers,
                              *[ctypes.c_int64] * (n - artifact.n_buffers + 2))(obj.address)
        return artifact, obj, fn, warp

    def launch(self, handle, arrays: list) -> None:
        artifact, _, fn, warp = handle
        self.launches.append(artifact.name)
        pointers = [a.ctypes.data for a in arrays]
        if warp is None:
            fn(*pointers, 0, artifact.rows)
        else:
            warp.run(lambda lane: fn(*pointers, lane, 0, artifact.rows))


class _Warp:
    """A warp's lanes as CPU threads: each runs the kernel over every row with its own lane;
    a shuffle (render_warp.py's `<symbol>_shfl`) posts this lane's value, waits for all the
    lanes, and returns the value of lane (lane xor offset)."""

    def __init__(self, lanes: int):
        self.lanes = lanes
        self.slots = [0] * lanes
        self.barrier = threading.Barrier(lanes, timeout=120)
        self.local = threading.local()
        self.errors: list = []
        self._callback = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int32,
                                          ctypes.c_int32)(self.shuffle)
        self.address = ctypes.cast(self._callback, ctypes.c_void_p).value

    def shuffle(self, x: int, offset: int) -> int:
        lane = self.local.lane
        try:
            self.slots[lane] = x
            self.barrier.wait()
            got = self.slots[lane ^ offset]
            self.barrier.wait()
            return got
        except BaseException as e:      # NOTE: a ctypes callback cannot raise into C
            self.errors.append(e)
            return 0

    def run(self, lane_fn) -> None:
        def lane_main(lane):
            self.local.lane = lane
            lane_fn(lane)
        threads = [threading.Thread(target=lane_main, args=(i,)) for i in range(self.lanes)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not self.errors, self.errors


def _on_gpu_mlir(graph, inputs) -> list:
    schedule, _ = plan_graph(fuse_elementwise(graph))
    return build_executable(schedule, GpuMlirOnCpu(), RENDERER)(inputs)


@pytest.mark.parametrize("op,dtypes,attrs", CASES)
def test_gpu_mlir_of_every_elementwise_op_matches_the_interpreter(op, dtypes, attrs, rng):
    graph, inputs, want = one_op_case(op, dtypes, attrs, SHAPE, rng)
    (got,) = _on_gpu_mlir(graph, inputs)
    eps = float(np.finfo(want.dtype).eps) if want.dtype.kind == "f" else 0.0
    assert_matches(got, want, rtol=ULPS.get(op, 0) * eps, what=f"{op} {dtypes} {attrs}")


@pytest.mark.parametrize("op,dtype,spaces", list(_by_op_and_dtype()))
def test_gpu_mlir_of_every_reduction_matches_the_interpreter(op, dtype, spaces, rng):
    for shape, axes, keepdim in spaces:
        graph = reduce_graph(op, dtype, shape, axes, keepdim)
        x = values(dtype, shape, rng)
        (got,) = _on_gpu_mlir(graph, [x])
        (want,) = interpret(graph, [x])
        assert_reduction(op, got, want, x, axes, keepdim, f"{op} {shape} {axes} (gpu mlir)")


BROADCASTS = """
graph @f(%x: f32[6,40], %b: f32[40], %c: f32[6,1], %y: f32[40,6]) {
  %be: f32[6,40] = expand %b {shape=[6,40]}
  %ce: f32[6,40] = expand %c {shape=[6,40]}
  %yt: f32[6,40] = permute %y {perm=[1,0]}
  %0: f32[6,40] = add %x, %be
  %1: f32[6,40] = mul %0, %ce
  %2: f32[6,40] = sub %1, %yt
  %3: f32[40] = sum %2 {axes=[0], keepdim=false}
  return %2, %3
}"""


def test_gpu_mlir_of_broadcasts_transposes_and_fused_rows_matches(rng):
    """Kernels with several parallel axes (each thread one point of all of them)."""
    x, c = rng.standard_normal((6, 40)), rng.standard_normal((6, 1))
    b, y = rng.standard_normal(40), rng.standard_normal((40, 6))
    ins = [a.astype(np.float32) for a in (x, b, c, y)]
    got = _on_gpu_mlir(parse(BROADCASTS), ins)
    want = interpret(parse(BROADCASTS), ins)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    for graph in (softmax_graph(DType.float32, 7, 33), layer_norm_graph(DType.float64, 5, 64)):
        xs = [rng.standard_normal(v.type.shape).astype(v.type.dtype.np) for v in graph.inputs]
        np.testing.assert_allclose(_on_gpu_mlir(graph, xs)[0], interpret(graph, xs)[0],
                                   rtol=2e-5, atol=1e-6)
    for text in (TRANSPOSED_LOAD, OFFSET_LOAD_TRANSPOSED_STORE):
        s = parse_schedule(text)
        xs = [rng.standard_normal(b.type.shape).astype(b.type.dtype.np) for b in s.inputs]
        gpu = build_executable(parse_schedule(text), GpuMlirOnCpu(), RENDERER)(xs)
        ref = build_executable(parse_schedule(text), NullDevice(compute=True))(xs)
        for g, w in zip(gpu, ref):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


# ---- matmul as a generated kernel -----------------------------------------------------------
# NOTE: (a's shape, b's shape, transpose flags, dtype): a call reads an operand as stored or
# as its transpose; batched calls have equal batch axes (the frontend broadcasts); a product
# over an empty k is zeros, written by a kernel of its own
MATMULS = [((5, 7), (7, 3), (False, False), "f32"), ((5, 7), (3, 7), (False, True), "f32"),
           ((7, 5), (7, 3), (True, False), "f64"), ((7, 5), (3, 7), (True, True), "f32"),
           ((2, 4, 6), (2, 6, 3), (False, False), "f32"), ((3, 2, 4, 6), (3, 2, 5, 6),
                                                           (False, True), "f64"),
           ((1, 1), (1, 9), (False, False), "i64"), ((3, 0), (0, 4), (False, False), "f32"),
           ((2, 3, 0), (2, 0, 5), (False, False), "f64"),
           # NOTE: k of a warp or more with a transposed b: a warp per output
           ((6, 40), (5, 40), (False, True), "f32"), ((2, 3, 70), (2, 4, 70), (False, True),
                                                      "f64"), ((33, 4), (3, 33), (True, True),
                                                               "i64")]


def matmul_schedule(a_shape, b_shape, flags, dtype):
    """A schedule with one `call matmul` (operands stored as the flags say)."""
    dims = lambda s: ",".join(map(str, s))                  # noqa: E731
    a_t = (*a_shape[:-2], a_shape[-1], a_shape[-2]) if flags[0] else a_shape
    b_t = (*b_shape[:-2], b_shape[-1], b_shape[-2]) if flags[1] else b_shape
    out = (*a_t[:-2], a_t[-2], b_t[-1])
    return parse_schedule(f"""
schedule @mm(%a: {dtype}[{dims(a_shape)}], %b: {dtype}[{dims(b_shape)}]) {{
  buffer %0: {dtype}[{dims(out)}] output
  call matmul (%a, %b) -> (%0) {{transpose=[{str(flags[0]).lower()},{str(flags[1]).lower()}]}}
  return %0
}}""")


def matmul_want(a, b, flags):
    a = np.swapaxes(a, -1, -2) if flags[0] else a
    b = np.swapaxes(b, -1, -2) if flags[1] else b
    return np.matmul(a, b)


def matmul_inputs(a_shape, b_shape, dtype, rng):
    np_dtype = DType(dtype).np
    if np_dtype.kind == "i":
        return [rng.integers(-50, 50, s).astype(np_dtype) for s in (a_shape, b_shape)]
    return [rng.standard_normal(s).astype(np_dtype) for s in (a_shape, b_shape)]


@pytest.mark.parametrize("a_shape,b_shape,flags,dtype", MATMULS)
def test_gpu_mlir_of_a_matmul_matches_numpy(a_shape, b_shape, flags, dtype, rng):
    a, b = matmul_inputs(a_shape, b_shape, dtype, rng)
    dev = GpuMlirOnCpu()
    (got,) = build_executable(matmul_schedule(a_shape, b_shape, flags, dtype), dev,
                              RENDERER)([a, b])
    assert dev.launches and not dev.calls
    np.testing.assert_allclose(got, matmul_want(a, b, flags), rtol=1e-5, atol=1e-5)


# NOTE: enough result columns that a thread takes a tile of rows (matmul_tiled.py): row
# counts that are not a multiple of the tile, batches, a transposed a, integers
TILED = [((64, 5), (5, 512), (False, False), "f32", 2),
         ((3, 129, 7), (3, 7, 300), (False, False), "f64", 4),
         ((5, 64), (5, 512), (True, False), "f32", 2),
         ((17, 3), (3, 2048), (False, False), "i64", 2),
         ((64, 100), (100, 2100), (False, False), "f32", 8)]


@pytest.mark.parametrize("a_shape,b_shape,flags,dtype,tm", TILED)
def test_gpu_mlir_of_a_tiled_matmul_matches_numpy(a_shape, b_shape, flags, dtype, tm, rng):
    a, b = matmul_inputs(a_shape, b_shape, dtype, rng)
    schedule = matmul_schedule(a_shape, b_shape, flags, dtype)
    art = RENDERER.compile(RENDERER.lower_call(schedule.steps[0]).kernel)
    assert f"%sums:{tm} = scf.for" in art.mlir
    dev = GpuMlirOnCpu()
    (got,) = build_executable(schedule, dev, RENDERER)([a, b])
    np.testing.assert_allclose(got, matmul_want(a, b, flags), rtol=1e-5, atol=1e-5)


@needs_ptxas
def test_tiled_matmul_kernels_give_ptx_that_ptxas_accepts():
    _assemble_matmuls([case[:4] for case in TILED])


@needs_ptxas
def test_matmul_kernels_give_ptx_that_ptxas_accepts():
    _assemble_matmuls(MATMULS)


def _assemble_matmuls(cases) -> None:
    """ptxas on the kernels of `cases` as one module (each under its own name)."""
    arts = []
    for i, case in enumerate(cases):
        launch = RENDERER.lower_call(matmul_schedule(*case).steps[0])
        launch.kernel.name = f"mm{i}"
        arts.append(RENDERER.compile(launch.kernel))
    _assemble(arts)


@needs_ptxas
def test_equal_kernels_under_different_names_get_their_own_symbols():
    """Compiled once per signature (the cache), each artifact carries its own symbol: one
    module holds both entries."""
    graph = parse("""
        graph @f(%x: f32[64], %y: f32[64]) {
          %0: f32[64] = exp %x
          %1: f32[64] = exp %y
          return %0, %1
        }""")
    (k,) = plan_graph(fuse_elementwise(graph))[0].kernels[:1]
    first = RENDERER.compile(k)
    k.name = "renamed"
    second = RENDERER.compile(k)
    assert (first.entry, second.entry) == ("kiln_fused_0_grid", "kiln_renamed_grid")
    assert "kiln_fused_0" not in second.ptx and "KSYM" not in second.ptx
    ptx = RENDERER.module_ptx([first, second])
    assert ptx.count(".visible .entry") == 2
    check_with_ptxas(ptx)
