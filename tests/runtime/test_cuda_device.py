"""The CUDA runtime (runtime/cuda) without a GPU: the caching allocator, device arrays, launch
parameters and geometry, and whole executables of the CUDA renderer's artifacts, all on the
fake driver (host memory; each launch computed by the kernel's NumPy reference and checked
as a real launch would be). The real driver wrapper is checked against cuda-python's own
argument conversion and result codes. tests/gpu/test_cuda_runtime.py runs the same on a GPU."""
from __future__ import annotations

import doctest
import importlib
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from kiln.codegen.cuda import CudaRenderer
from kiln.frontend.compile import compile_graph, plan_graph
from kiln.ir.dtypes import DType
from kiln.ir.errors import KilnError, NotSupportedError
from kiln.ir.interpreter import interpret
from kiln.ir.parser import parse
from kiln.ir.schedule_text import parse_schedule
from kiln.passes.fusion import fuse_elementwise
from kiln.runtime.cuda import (CachingAllocator, CudaDevice, CudaDriver, CudaError, DeviceArray,
                               FakeDriver, FakeDriverError)
from kiln.runtime.cuda.params import PackedParams, unpack_params
from kiln.runtime.device import cuda_available
from kiln.runtime.executable import build_executable

sys.path.insert(0, str(Path(__file__).parents[1] / "codegen"))   # NOTE: the shared graphs
from test_reductions import layer_norm_graph, softmax_graph  # noqa: E402
from test_executable import SGD  # noqa: E402
from test_cuda_ptx import MATMULS, matmul_inputs, matmul_schedule, matmul_want  # noqa: E402

RENDERER = CudaRenderer()
F32, F64 = DType.float32, DType.float64


@pytest.fixture
def fake():
    return FakeDriver()


@pytest.fixture
def dev(fake):
    return CudaDevice(fake)




@pytest.mark.parametrize("name", ["errors", "params", "driver", "fake_driver", "allocator",
                                  "array", "device"])
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(f"kiln.runtime.cuda.{name}"))
    assert result.failed == 0


# ---- the caching allocator ----------------------------------------------------------------------
@pytest.mark.parametrize("asked,size", [(1, 512), (511, 512), (512, 512), (513, 1024),
                                        (4096, 4096), (10**6 + 1, 1000448)])
def test_sizes_round_up_to_512_bytes(fake, asked, size):
    pool = CachingAllocator(fake)
    block = pool.malloc(asked)
    assert block.size == size and block.ptr % 256 == 0
    assert fake.calls[-1] == ("cuMemAlloc", (size,))
    assert pool.stats()["allocated_bytes"] == size


def test_released_blocks_are_reused_by_size(fake):
    pool = CachingAllocator(fake)
    a = pool.malloc(1000)
    pool.release(a)
    b = pool.malloc(700)                # NOTE: 1024 bytes too: the cached block
    c = pool.malloc(2000)               # NOTE: 2048: no cached block of that size
    assert b.ptr == a.ptr and c.ptr != a.ptr
    s = pool.stats()
    assert (s["num_allocs"], s["num_frees"], s["num_device_allocs"]) == (3, 1, 2)
    assert fake.count("cuMemAlloc") == 2


def test_stats_follow_allocations(fake):
    pool = CachingAllocator(fake)
    blocks = [pool.malloc(n) for n in (512, 1024, 1536)]
    pool.release(blocks[1])
    s = pool.stats()
    assert s["allocated_bytes"] == 512 + 1536
    assert s["reserved_bytes"] == 3072 and s["cached_bytes"] == 1024
    assert s["peak_allocated_bytes"] == 3072 and s["peak_reserved_bytes"] == 3072
    assert fake.live_bytes == 3072


def test_empty_cache_returns_unused_blocks_to_the_driver(fake):
    pool = CachingAllocator(fake)
    kept = pool.malloc(512)
    for b in [pool.malloc(n) for n in (1024, 1024, 4096)]:
        pool.release(b)
    pool.empty_cache()
    s = pool.stats()
    assert fake.count("cuMemFree") == 3 and fake.live_bytes == 512
    assert (s["reserved_bytes"], s["cached_bytes"], s["num_device_frees"]) == (512, 0, 3)
    assert pool.malloc(1024).ptr != kept.ptr


def test_out_of_memory_empties_the_cache_and_retries():
    fake = FakeDriver(capacity=4096)
    pool = CachingAllocator(fake)
    for b in [pool.malloc(2048), pool.malloc(2048)]:
        pool.release(b)
    big = pool.malloc(3000)             # NOTE: fits only once the cached 2 x 2048 are freed
    assert big.size == 3072 and pool.stats()["num_alloc_retries"] == 1
    assert fake.count("cuMemFree") == 2


def test_out_of_memory_with_nothing_cached_is_reported():
    pool = CachingAllocator(FakeDriver(capacity=4096))
    with pytest.raises(CudaError, match="cuMemAlloc failed: CUDA_ERROR_OUT_OF_MEMORY"):
        pool.malloc(8192)


def test_memory_returns_when_the_last_array_over_it_dies(dev):
    a = dev.empty((4, 8), np.float32)
    view = a.reshape(-1).view(np.uint8)[16:32]
    del a
    assert dev.memory_stats()["allocated_bytes"] == 512       # NOTE: the view holds it
    del view
    s = dev.memory_stats()
    assert s["allocated_bytes"] == 0 and s["cached_bytes"] == 512


def test_releases_from_other_threads_are_counted(dev):
    arrays = [dev.empty((100,), np.float64) for _ in range(8)]
    threads = [threading.Thread(target=arrays.pop) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert dev.memory_stats()["allocated_bytes"] == 0


# ---- device arrays ------------------------------------------------------------------------------
SHAPES = [(0,), (), (3,), (2, 3, 4), (1000,), (5, 0, 2)]


@pytest.mark.parametrize("dtype", list(DType), ids=[d.value for d in DType])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)) or "scalar")
def test_host_device_round_trip(dev, rng, dtype, shape):
    x = np.asarray(rng.standard_normal(shape) * 100).astype(dtype.np)
    d = dev.from_host(x)
    assert isinstance(d, DeviceArray) and d.shape == shape and d.dtype == dtype.np
    assert d.nbytes == x.nbytes and (d.strides == x.strides or x.size == 0)
    for back in (d.to_host(), d.copy().to_host()):
        assert back.dtype == x.dtype and back.shape == x.shape
        assert back.tobytes() == x.tobytes()
    assert not dev.zeros(shape, dtype.np).to_host().any()


def test_bool_bytes_travel_unchanged(dev):
    raw = np.array([0, 1, 2, 255], np.uint8)
    assert dev.from_host(raw.view(np.bool_)).to_host().view(np.uint8).tolist() == [0, 1, 2, 255]


def test_views_share_the_block(dev, rng):
    x = rng.standard_normal(16).astype(np.float32)
    d = dev.from_host(x)
    half = d.view(np.uint8)[32:64].view(np.float32).reshape(2, 4)
    assert half.ptr == d.ptr + 32
    np.testing.assert_array_equal(half.to_host(), x[8:].reshape(2, 4))
    assert d.__cuda_array_interface__["data"] == (d.ptr, False)
    assert d.__cuda_array_interface__["typestr"] == "<f4"


# ---- launches -----------------------------------------------------------------------------------
def _artifacts(text: str) -> list:
    schedule, _ = plan_graph(fuse_elementwise(parse(textwrap.dedent(text))))
    return [RENDERER.compile(k) for k in schedule.kernels]


def _add_kernel(n: int):
    (art,) = _artifacts(f"""
        graph @f(%x: f32[{n}], %y: f32[{n}]) {{
          %0: f32[{n}] = add %x, %y
          return %0
        }}""")
    return art


def test_packed_params_read_back_as_the_gpu_reads_them():
    values = [0x7F00_0000_1000, 0xFFFF_FFFF_FFFF_FFF0, 0, 12345]
    packed = PackedParams(values)
    assert unpack_params(packed.address, [8] * 4) == values


@pytest.mark.parametrize("rows,grid", [(1, 1), (255, 1), (256, 1), (257, 2), (7000, 28)])
def test_a_launch_passes_pointers_then_rows(dev, fake, rows, grid):
    art = _add_kernel(rows)
    handle = dev.load(art)
    x, y, out = (dev.empty((rows,), np.float32) for _ in range(3))
    dev.launch(handle, [x, y, out])
    (launch,) = fake.launches
    assert launch.entry == art.entry and launch.stream == dev.stream
    assert launch.grid == (grid, 1, 1) and launch.block == (256, 1, 1)
    assert launch.params == [x.ptr, y.ptr, out.ptr, rows]


def test_modules_load_once_per_ptx(dev, fake):
    art = _add_kernel(64)
    dev.load(art)
    dev.load(art)
    assert fake.count("cuModuleLoadData") == 1 and fake.count("cuModuleGetFunction") == 2


def _bad_launches():
    yield "too few parameters", lambda fake, p, g: (p[:-1], g), "takes 4 parameters, got 3"
    yield "a pointer to nothing", lambda fake, p, g: ([16] + p[1:], g), "outside every live"
    yield "a freed pointer", lambda fake, p, g: (_freed(fake, p), g), "outside every live"
    yield "too few threads", lambda fake, p, g: (p[:-1] + [1000], g), "do not cover 1000 rows"
    yield "a block too large", lambda fake, p, g: (p, (1, 1, 1), (2048, 1, 1)), "more than 1024"


def _freed(fake, p):
    ptr = fake.mem_alloc(512)
    fake.mem_free(ptr)
    return [ptr] + p[1:]


@pytest.mark.parametrize("case,change,message", list(_bad_launches()),
                         ids=[c[0] for c in _bad_launches()])
def test_the_fake_refuses_what_a_gpu_would_not_run(dev, fake, case, change, message):
    handle = dev.load(_add_kernel(64))
    arrays = [dev.empty((64,), np.float32) for _ in range(3)]
    params = [a.ptr for a in arrays] + [handle.rows]
    params, grid, *block = change(fake, params, handle.grid)
    with pytest.raises(FakeDriverError, match=message):
        fake.launch(handle.function, grid, block[0] if block else handle.block, dev.stream,
                    params)


def test_a_buffer_too_small_for_the_kernel_is_refused(dev):
    handle = dev.load(_add_kernel(1024))
    small = dev.empty((16,), np.float32)
    with pytest.raises(FakeDriverError, match="ILLEGAL_ADDRESS.*reaches 4096"):
        dev.launch(handle, [small, small, small])


def test_a_launch_with_the_wrong_buffer_count_is_refused(dev):
    handle = dev.load(_add_kernel(16))
    with pytest.raises(KilnError, match="takes 3 buffers, got 2"):
        dev.launch(handle, [dev.empty((16,), np.float32)] * 2)


# ---- executables --------------------------------------------------------------------------------
def _graph(text: str):
    return parse(textwrap.dedent(text))


GRAPHS = {
    "elementwise-chain": lambda: _graph("""
        graph @chain(%x: f32[33,65], %y: f32[33,65]) {
          %0: f32[33,65] = tanh %x
          %1: f32[33,65] = mul %0, %y
          %2: f32[33,65] = exp %1
          %3: f32[33,65] = sub %2, %x
          return %3
        }"""),
    "broadcast-add": lambda: _graph("""
        graph @bias(%x: f64[7,300], %b: f64[300], %c: f64[7,1]) {
          %0: f64[7,300] = expand %b {shape=[7,300]}
          %1: f64[7,300] = add %x, %0
          %2: f64[7,300] = expand %c {shape=[7,300]}
          %3: f64[7,300] = mul %1, %2
          return %3
        }"""),
    "softmax-f32": lambda: softmax_graph(F32, 7, 33),
    "softmax-f64": lambda: softmax_graph(F64, 16, 1000),
    "layer-norm": lambda: layer_norm_graph(F32, 6, 40),
    "column-then-row-reduction": lambda: _graph("""
        graph @twok(%x: f32[6,5]) {
          %0: f32[6,5] = exp %x
          %1: f32[1,5] = sum %0 {axes=[0], keepdim=true}
          %2: f32[6,5] = expand %1 {shape=[6,5]}
          %3: f32[6,5] = div %0, %2
          %4: f32[6,1] = max %3 {axes=[1], keepdim=true}
          %5: f32[6,5] = expand %4 {shape=[6,5]}
          %6: f32[6,5] = sub %3, %5
          return %6
        }"""),
    "arena-temp-and-run-step": lambda: _graph("""
        graph @run(%x: f32[6,5]) {
          %0: f32[6,5] = exp %x
          %1: i64[6] = argmax %0 {axis=1, keepdim=false}
          %2: i64[6] = add %1, %1
          return %2, %1
        }"""),
    "ints-and-bools": lambda: _graph("""
        graph @mixed(%a: i32[40], %b: i32[40]) {
          %0: bool[40] = gt %a, %b
          %1: i32[40] = where %0, %a, %b
          %2: i64[40] = cast %1 {dtype=i64}
          %3: i64[] = sum %2 {axes=[0], keepdim=false}
          return %3, %0
        }"""),
}


def _inputs(graph, rng):
    out = []
    for v in graph.inputs:
        dt = v.type.dtype
        x = rng.standard_normal(v.shape) * 2 if dt.is_float else rng.integers(-50, 50, v.shape)
        out.append(np.asarray(x).astype(dt.np))
    return out


def _cuda_executable(graph, dev):
    schedule, _ = plan_graph(fuse_elementwise(graph))
    return build_executable(schedule, dev, RENDERER)


def _assert_results(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert isinstance(g, DeviceArray)
        h = g.to_host()
        assert h.dtype == w.dtype and h.shape == w.shape
        if w.dtype.kind != "f":
            np.testing.assert_array_equal(h, w)
        else:
            np.testing.assert_allclose(h, w, rtol=2e-6 if w.dtype == np.float32 else 1e-12,
                                       atol=1e-6)


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_executables_give_numpys_results(dev, fake, rng, call_path, name):
    graph = GRAPHS[name]()
    exe = _cuda_executable(graph, dev)
    for _ in range(2):                  # NOTE: the second call reuses the arena and blocks
        xs = _inputs(graph, rng)
        got = exe([dev.from_host(x) for x in xs])
        _assert_results(got, interpret(graph, xs))
    kernels = exe.schedule.kernels
    assert len(fake.launches) == 2 * len(kernels) > 0
    assert [x.entry for x in fake.launches[:len(kernels)]] == [a.entry for a in exe.kernels]


@pytest.mark.parametrize("name", ["softmax-f32", "arena-temp-and-run-step"])
def test_a_steady_call_allocates_nothing_new(dev, rng, call_path, name):
    graph = GRAPHS[name]()
    exe = _cuda_executable(graph, dev)
    xs = [dev.from_host(x) for x in _inputs(graph, rng)]
    exe(xs)
    before = dev.memory_stats()["num_device_allocs"]
    for _ in range(3):
        exe(xs)
    assert dev.memory_stats()["num_device_allocs"] == before


def test_outputs_never_view_the_arena(dev, rng, call_path):
    graph = GRAPHS["arena-temp-and-run-step"]()
    exe = _cuda_executable(graph, dev)
    xs = _inputs(graph, rng)
    first = [o.to_host() for o in exe([dev.from_host(x) for x in xs])]
    kept = exe([dev.from_host(x) for x in xs])
    exe([dev.from_host(-x) for x in xs])
    for a, b in zip(kept, first):
        np.testing.assert_array_equal(a.to_host(), b)


def test_host_arrays_are_copied_in(dev, rng, call_path):
    graph = GRAPHS["broadcast-add"]()
    xs = _inputs(graph, rng)
    _assert_results(_cuda_executable(graph, dev)(xs), interpret(graph, xs))


def test_a_wrong_input_is_refused(dev, call_path):
    exe = _cuda_executable(GRAPHS["layer-norm"](), dev)
    bad = [dev.empty((6, 41), np.float32), dev.empty((40,), np.float32),
           dev.empty((40,), np.float32)]
    with pytest.raises(KilnError, match=r"input 0 must be .*got array float32\[6, 41\]"):
        exe(bad)
    with pytest.raises(KilnError, match=r"input 1 must be .*got array float64\[40\]"):
        exe([dev.empty((6, 40), np.float32),
             dev.empty((40,), np.float64), bad[2]])


# NOTE: an input's old value written into another input while the first is updated: the
# write-back must copy the old value before the update lands
SWAP = """
    graph @pair(%a: f64[2,3], %c: f64[2,3]) {
      %0: f64[2,3] = full {value=0.5, shape=[2,3], dtype=f64}
      %1: f64[2,3] = add %a, %0
      %2: f64[2,3] = copy_ %a, %1
      %3: f64[2,3] = copy_ %c, %a
      return
    }"""


@pytest.mark.parametrize("on_device", [True, False], ids=["device-inputs", "host-inputs"])
def test_write_backs_and_updates_land_in_the_callers_arrays(dev, rng, call_path, on_device):
    for text, want in ((SGD, lambda p, g, m: (p - (m + g), g, m + g)),
                       (SWAP, lambda a, c: (a + 0.5, a))):
        graph = fuse_elementwise(_graph(text))
        xs = _inputs(graph, rng)
        args = [dev.from_host(x) for x in xs] if on_device else [x.copy() for x in xs]
        _cuda_executable(graph, dev)(args)
        for arg, w in zip(args, want(*xs)):
            got = arg.to_host() if on_device else arg
            np.testing.assert_allclose(got, w, rtol=1e-6)


def test_an_update_reaches_a_non_contiguous_host_array(dev, rng, call_path):
    graph = fuse_elementwise(_graph(SGD))
    p, grad, m = _inputs(graph, rng)
    wide = np.zeros((4, 6), np.float32)
    wide[:, ::2] = m
    _cuda_executable(graph, dev)([p, grad, wide[:, ::2]])
    np.testing.assert_allclose(wide[:, ::2], m + grad, rtol=1e-6)
    assert not wide[:, 1::2].any()


@pytest.mark.parametrize("case", MATMULS, ids=[str(i) for i in range(len(MATMULS))])
def test_matmul_runs_as_a_generated_kernel(dev, fake, rng, call_path, case):
    a, b = matmul_inputs(case[0], case[1], case[3], rng)
    exe = build_executable(matmul_schedule(*case), dev, RENDERER)
    junk = dev.from_host(np.full(256, 7, np.int64))     # NOTE: a dirty block to reuse
    del junk
    (got,) = exe([dev.from_host(a), dev.from_host(b)])
    np.testing.assert_allclose(got.to_host(), matmul_want(a, b, case[2]), rtol=1e-5,
                               atol=1e-5)
    assert fake.launches[-1].entry.endswith("_grid")


def test_kernels_sharing_ptx_keep_their_own_extents(dev, fake, rng):
    """A contiguous elementwise kernel's PTX does not depend on its extent (the launch's row
    count does): [5, 7] and [5] share it, and each call still computes its own extent."""
    big, small = (_graph(f"""
        graph @m(%x: f32[{s}], %y: f32[{s}]) {{
          %0: f32[{s}] = mul %x, %y
          return %0
        }}""") for s in ("5,7", "5"))
    exes = [_cuda_executable(g, dev) for g in (big, small)]
    arts = [e.steps[0].handle.artifact for e in exes]
    assert arts[0].ptx == arts[1].ptx and arts[0].rows == 35 and arts[1].rows == 5
    for _ in range(2):
        for g, exe in zip((big, small), exes):
            xs = _inputs(g, rng)
            (got,) = exe([dev.from_host(x) for x in xs])
            np.testing.assert_array_equal(got.to_host(), xs[0] * xs[1])
    assert [launch.params[-1] for launch in fake.launches[-2:]] == [35, 5]


def test_a_library_call_without_a_kernel_is_not_supported(dev):
    with pytest.raises(NotSupportedError, match="not supported yet: matmul on cuda"):
        dev.call("matmul", None, [], [])


def test_the_cpu_runner_keeps_numpys_functions():
    """The device generalization changes nothing on the CPU: the generated runner calls
    NumPy's own functions, as before."""
    exe = compile_graph(fuse_elementwise(GRAPHS["arena-temp-and-run-step"]()))
    scope = exe.runner.__globals__
    assert scope["ndarray"] is np.ndarray and scope["copyto"] is np.copyto
    assert scope["may_share"] is np.may_share_memory and scope["array"] is np.array
    assert "compute" not in vars(next(s for s in exe.steps if hasattr(s, "compute")))


# ---- driver errors ------------------------------------------------------------------------------
def _exe_call(dev):
    graph = GRAPHS["elementwise-chain"]()
    exe = _cuda_executable(graph, dev)
    xs = [dev.from_host(x) for x in _inputs(graph, np.random.default_rng(0))]
    return lambda: exe(xs)


FAILURES = {
    "cuMemAlloc": lambda dev: lambda: dev.empty((1000,), np.float32),
    "cuMemcpyHtoDAsync": lambda dev: lambda: dev.from_host(np.ones(4)),
    "cuMemcpyDtoHAsync": lambda dev: dev.from_host(np.ones(4)).to_host,
    "cuMemcpyDtoDAsync": lambda dev: dev.from_host(np.ones(4)).copy,
    "cuModuleLoadData": lambda dev: lambda: dev.load(_add_kernel(8)),
    "cuLaunchKernel": _exe_call,
    "cuStreamSynchronize": lambda dev: dev.synchronize,
}


@pytest.mark.parametrize("call", sorted(FAILURES))
def test_driver_failures_name_the_call(dev, fake, call):
    action = FAILURES[call](dev)
    fake.fail_next(call, "CUDA_ERROR_LAUNCH_FAILED")
    with pytest.raises(CudaError) as info:
        action()
    assert info.value.call == call and info.value.name == "CUDA_ERROR_LAUNCH_FAILED"
    assert str(info.value).startswith(f"{call} failed: CUDA_ERROR_LAUNCH_FAILED")
    action()                            # NOTE: the failure was injected once


class _StubBindings:
    """cuda.bindings.driver's calls answering with chosen CUresults (real enum values)."""

    def __init__(self, results: dict, describe: bool = True):
        from cuda.bindings import driver as cu
        self.CUresult = cu.CUresult
        self.CUdevice_attribute = cu.CUdevice_attribute
        self.results = results
        self.describe = describe
        self.calls = []

    def __getattr__(self, name):
        def call(*args):
            self.calls.append(name)
            if name == "cuGetErrorName" and self.describe:
                return self.CUresult.CUDA_SUCCESS, args[0].name.encode()
            if name == "cuGetErrorString" and self.describe:
                return self.CUresult.CUDA_SUCCESS, b"described by the driver"
            return self.results.get(name, (self.CUresult.CUDA_SUCCESS, None))
        return call


def _stubbed(results, describe=True) -> CudaDriver:
    drv = CudaDriver()
    drv._cu = _StubBindings(results, describe)
    return drv


def test_the_real_wrapper_checks_each_result():
    cu = _StubBindings({})
    ok, oom = cu.CUresult.CUDA_SUCCESS, cu.CUresult.CUDA_ERROR_OUT_OF_MEMORY
    drv = _stubbed({"cuMemAlloc": (ok, 4096), "cuMemGetInfo": (ok, 10, 20),
                    "cuMemFree": (oom,)})
    assert drv.mem_alloc(512) == 4096 and drv.mem_info() == (10, 20)
    with pytest.raises(CudaError) as info:
        drv.mem_free(4096)
    assert str(info.value) == ("cuMemFree failed: CUDA_ERROR_OUT_OF_MEMORY (described by the "
                               "driver)")
    silent = _stubbed({"cuMemFree": (oom,)}, describe=False)
    with pytest.raises(CudaError, match=r"^cuMemFree failed: CUDA_ERROR_OUT_OF_MEMORY$"):
        silent.mem_free(4096)


def test_the_real_wrapper_makes_its_context_current_in_each_thread():
    drv = _stubbed({"cuDevicePrimaryCtxRetain": (_StubBindings({}).CUresult.CUDA_SUCCESS,
                                                 "context")})
    drv.init()
    assert drv._cu.calls == ["cuInit", "cuDeviceGet", "cuDevicePrimaryCtxRetain",
                             "cuCtxSetCurrent"]
    drv.stream_synchronize(0)
    other = threading.Thread(target=drv.stream_synchronize, args=(0,))
    other.start()
    other.join()
    assert drv._cu.calls[4:] == ["cuStreamSynchronize", "cuCtxSetCurrent",
                                 "cuStreamSynchronize"]


def _real_wrapper_calls(cu):
    """Every method of the real wrapper with arguments of the types Kiln passes."""
    return {"init": (), "device_count": (), "device_name": (), "compute_capability": (),
            "mem_info": (), "mem_alloc": (512,), "mem_free": (1 << 20,),
            "memcpy_htod": (1 << 20, np.zeros(4).ctypes.data, 32, cu.CUstream(0)),
            "memcpy_dtoh": (np.zeros(4).ctypes.data, 1 << 20, 32, cu.CUstream(0)),
            "memcpy_dtod": (1 << 20, 1 << 21, 32, cu.CUstream(0)),
            "memset_d8": (1 << 20, 0, 32, cu.CUstream(0)), "stream_create": (),
            "stream_synchronize": (cu.CUstream(0),), "module_load": (".version 8.0\n",),
            "module_function": (cu.CUmodule(), "k_grid"),
            "launch": (cu.CUfunction(), (1, 1, 1), (256, 1, 1), cu.CUstream(0), [1 << 20, 7]),
            "event_create": (), "event_record": (cu.CUevent(), cu.CUstream(0)),
            "event_synchronize": (cu.CUevent(),),
            "event_elapsed_ms": (cu.CUevent(), cu.CUevent()), "event_destroy": (cu.CUevent(),)}


@pytest.mark.skipif(cuda_available(), reason="needs a machine WITHOUT a usable CUDA driver")
def test_the_real_wrappers_arguments_pass_cuda_pythons_conversions():
    """Without libcuda each call gets through cuda-python's argument conversion (a wrong
    type raises TypeError there) and fails loading the driver: a CudaError naming it."""
    from cuda.bindings import driver as cu
    for method, args in _real_wrapper_calls(cu).items():
        drv = CudaDriver()
        drv.device = cu.CUdevice(0)
        with pytest.raises(CudaError) as info:
            getattr(drv, method)(*args)
        assert info.value.call.startswith("cu"), method


@pytest.mark.skipif(cuda_available(), reason="needs a machine WITHOUT a usable CUDA driver")
def test_without_a_driver_the_device_says_so():
    with pytest.raises(CudaError, match="^cuInit failed") as info:
        CudaDevice()
    assert "driver_available" in str(info.value)


def test_events_time_work_on_the_stream(dev, fake):
    ms = dev.time_ms(lambda: dev.zeros((1000,), np.float32), repeat=3)
    assert ms >= 0.0
    assert fake.count("cuEventRecord") == 2 and fake.count("cuEventDestroy") == 2
    assert fake.count("cuMemsetD8Async") == 3
