"""The CUDA runtime on a real GPU: the checks tests/runtime/test_cuda_device.py makes on the
fake driver, made through cuda-python's driver API, plus every elementwise op of the registry
and the reduction table run on the GPU against the CPU's compiled kernels and NumPy, and the
W1 bandwidth print (w1_bandwidth.py).

Launches a GPU cannot survive (a wild pointer makes the context unusable for the rest of the
process) are checked on the fake driver only.
"""
from __future__ import annotations

import gc
import threading
import zlib

import numpy as np
import pytest

import kiln
from kiln.codegen.cuda import CudaRenderer
from kiln.frontend.compile import compile_graph, plan_graph
from kiln.ir.dtypes import DType
from kiln.ir.errors import NotSupportedError
from kiln.ir.interpreter import interpret
from kiln.ir.schedule_text import parse_schedule
from kiln.passes.fusion import fuse_elementwise
from kiln.runtime.cuda import CudaDevice, CudaError, DeviceArray
from kiln.runtime.executable import build_executable

from codegen_helpers import assert_matches, emit1, kernel_graph, one_op_case, t, w1_reference
from test_cuda_device import GRAPHS, SHAPES, _inputs
from test_elementwise_ops import CASES, SHAPE, ULPS
from test_reductions import TABLE, assert_reduction, reduce_graph, values
from test_cuda_ptx import MATMULS, TILED, matmul_inputs, matmul_schedule, matmul_want
from w1_bandwidth import measure, report

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not kiln.cuda.driver_available(),
                                 reason="no NVIDIA driver and GPU here "
                                        "(kiln.cuda.driver_available() is False)")]
RENDERER = CudaRenderer()


@pytest.fixture(scope="module")
def dev():
    return CudaDevice()




def _gpu_run(graph, dev, inputs) -> list[np.ndarray]:
    schedule, _ = plan_graph(fuse_elementwise(graph))
    exe = build_executable(schedule, dev, RENDERER)
    got = exe([dev.from_host(x) for x in inputs])
    assert all(isinstance(g, DeviceArray) for g in got)
    return [g.to_host() for g in got]


def test_the_gpu_runs_the_ptx_kiln_writes(dev):
    major, minor = dev.driver.compute_capability()
    free, total = dev.mem_get_info()
    print(f"{dev.driver.device_name()}: sm_{major}{minor}, {free >> 20} of {total >> 20} MiB free")
    assert (major, minor) >= (9, 0), "the CUDA renderer writes PTX for sm_90"
    assert 0 < free <= total


# ---- memory -------------------------------------------------------------------------------------
def test_the_allocator_reuses_and_returns_device_memory(dev):
    gc.collect()                # NOTE: arrays of earlier tests still in reference cycles
    dev.empty_cache()
    size = 256 << 20
    a = dev.empty((size,), np.uint8)
    ptr, reserved = a.ptr, dev.memory_stats()["reserved_bytes"]
    del a
    b = dev.empty((size - 100,), np.uint8)      # NOTE: rounds to the same 256 MiB block
    assert b.ptr == ptr and dev.memory_stats()["reserved_bytes"] == reserved
    del b
    free_before = dev.mem_get_info()[0]
    dev.empty_cache()
    assert dev.memory_stats()["reserved_bytes"] == reserved - size
    assert dev.mem_get_info()[0] >= free_before + size // 2


@pytest.mark.parametrize("dtype", list(DType), ids=[d.value for d in DType])
def test_host_device_round_trip(dev, rng, dtype):
    for shape in SHAPES:
        x = np.asarray(rng.standard_normal(shape) * 100).astype(dtype.np)
        d = dev.from_host(x)
        for back in (d.to_host(), d.copy().to_host()):
            assert back.shape == x.shape and back.tobytes() == x.tobytes()
        assert not dev.zeros(shape, dtype.np).to_host().any()


def test_device_arrays_are_readable_by_torch(dev, rng):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("this torch has no CUDA")
    x = rng.standard_normal((3, 5)).astype(np.float32)
    seen = torch.as_tensor(dev.from_host(x), device="cuda")
    np.testing.assert_array_equal(seen.cpu().numpy(), x)


# ---- launches -----------------------------------------------------------------------------------
@pytest.mark.parametrize("rows", [1, 255, 256, 257, 7000])
def test_a_launch_reaches_every_row(dev, rng, rows):
    graph = kernel_graph([t(DType.float32, rows)] * 2,
                         lambda gb, x, y: [emit1(gb, "add", [x, y])])
    x, y = (rng.standard_normal(rows).astype(np.float32) for _ in range(2))
    (got,) = _gpu_run(graph, dev, [x, y])
    np.testing.assert_array_equal(got, x + y)


def test_launches_from_another_thread(dev, rng):
    graph = GRAPHS["softmax-f32"]()
    xs = _inputs(graph, rng)
    results = []
    worker = threading.Thread(target=lambda: results.append(_gpu_run(graph, dev, xs)))
    worker.start()
    worker.join()
    np.testing.assert_allclose(results[0][0], interpret(graph, xs)[0], rtol=1e-5, atol=1e-6)


def _assert_close(got, want, what):
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape, what
        if w.dtype.kind != "f":
            np.testing.assert_array_equal(g, w, err_msg=what)
        else:
            tol = 1e-5 if w.dtype == np.float32 else 1e-12
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol, err_msg=what)


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_executables_give_numpys_results(dev, rng, call_path, name):
    graph = GRAPHS[name]()
    xs = _inputs(graph, rng)
    _assert_close(_gpu_run(graph, dev, xs), interpret(graph, xs), name)


_ALL_MATMULS = MATMULS + [case[:4] for case in TILED]


@pytest.mark.parametrize("case", _ALL_MATMULS, ids=[str(i) for i in range(len(_ALL_MATMULS))])
def test_matmul_runs_as_a_generated_kernel(dev, rng, case):
    a, b = matmul_inputs(case[0], case[1], case[3], rng)
    exe = build_executable(matmul_schedule(*case), dev, RENDERER)
    (got,) = exe([dev.from_host(a), dev.from_host(b)])
    np.testing.assert_allclose(got.to_host(), matmul_want(a, b, case[2]), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("call,action", [
    ("cuMemAlloc", lambda dev: dev.empty((1 << 50,), np.uint8)),
    ("cuModuleLoadData", lambda dev: dev.driver.module_load(".version 8.0\nnonsense\n")),
], ids=["out-of-memory", "bad-ptx"])
def test_driver_errors_name_the_call(dev, call, action):
    with pytest.raises(CudaError) as info:
        action(dev)
    assert info.value.call == call and str(info.value).startswith(f"{call} failed: CUDA_ERROR_")
    assert dev.from_host(np.ones(3)).to_host().tolist() == [1.0] * 3     # NOTE: still usable


# ---- every op of the registry and the reduction table -------------------------------------------
@pytest.mark.parametrize("op,dtypes,attrs", CASES)
def test_every_elementwise_op_matches_the_cpu(dev, op, dtypes, attrs):
    rng = np.random.default_rng(zlib.crc32(repr((op, dtypes, attrs)).encode()))
    graph, inputs, want = one_op_case(op, dtypes, attrs, SHAPE, rng)
    cpu = compile_graph(graph)(inputs)[0]
    (got,) = _gpu_run(graph, dev, inputs)
    eps = float(np.finfo(want.dtype).eps) if want.dtype.kind == "f" else 0.0
    ulps = ULPS.get(op, 0)
    assert_matches(got, want, rtol=ulps * eps, what=f"{op} {dtypes} {attrs} (gpu vs numpy)")
    assert_matches(got, cpu, rtol=2 * ulps * eps, what=f"{op} {dtypes} {attrs} (gpu vs cpu)")


@pytest.mark.parametrize("op,dtype,shape,axes,keepdim", TABLE)
def test_every_reduction_matches_the_cpu(dev, rng, op, dtype, shape, axes, keepdim):
    graph = reduce_graph(op, dtype, shape, axes, keepdim)
    x = values(dtype, shape, rng)
    (want,) = interpret(graph, [x])
    (cpu,) = compile_graph(fuse_elementwise(graph))([x])
    (got,) = _gpu_run(graph, dev, [x])
    what = f"{op} {dtype.value}{list(shape)} axes={list(axes)} keepdim={keepdim}"
    assert_reduction(op, got, want, x, axes, keepdim, what + " (gpu vs numpy)")
    assert_reduction(op, got, cpu, x, axes, keepdim, what + " (gpu vs cpu)")


# ---- W1 -----------------------------------------------------------------------------------------
def test_w1_bandwidth_is_measured(dev, capsys):
    """Prints W1's fraction of the device-to-device copy bandwidth; asserts only the result
    and that both timings were taken."""
    m = measure(dev)
    with capsys.disabled():
        print("\n" + report(m))
    assert m["kernel_ms"] > 0 and m["copy_ms"] > 0
    x, got = m["x"].to_host(), m["out"].to_host()
    ref = w1_reference(x)
    assert np.all(np.abs(got - ref) <= 1e-5 * np.abs(ref) + 1e-30)
