"""The runtime: executables mixing kernels and reference nodes, thread splitting, input
checks, devices."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from kiln.ir.builder import GraphBuilder
from kiln.ir.dtypes import DType
from kiln.ir.errors import KilnError
from kiln.ir.interpreter import interpret
from kiln.ir.parser import parse
from kiln.ir.schedule import live_ranges, step_kind
from kiln.passes.fusion import fuse_elementwise
from kiln.runtime import device
from kiln.runtime.cpu import CpuLauncher
from kiln.frontend.compile import compile_graph

from codegen_helpers import emit1, kernel_graph, t, w1_graph

F32 = DType.float32


def test_chunks_split_the_outer_loop():
    launcher = CpuLauncher(threads=2, min_parallel_work=100)
    assert launcher.chunks(10, 1000) == [(0, 5), (5, 10)]
    assert launcher.chunks(7, 1000) == [(0, 3), (3, 7)]
    assert launcher.chunks(1, 1000) == [(0, 1)]
    assert launcher.chunks(10, 99) == [(0, 10)]
    assert CpuLauncher(threads=3, min_parallel_work=0).chunks(4, 4) == [(0, 1), (1, 2), (2, 4)]


def test_work_estimate_decides_threading():
    """W1 (about 100 ops per element) splits at 2**20 elements; a plain add does not."""
    launcher = CpuLauncher(threads=2)
    w1 = compile_graph(w1_graph(1 << 20)).kernels[0]
    add = compile_graph(kernel_graph([t(F32, 1 << 20)] * 2, lambda gb, a, b: [
        emit1(gb, "add", [a, b])])).kernels[0]
    assert 60 < w1.work / w1.numel < 200
    assert len(launcher.chunks(w1.outer, w1.work)) >= 2
    assert len(launcher.chunks(add.outer, add.work)) == 1


def _row_broadcast_graph(rows, cols):
    def build(gb, x, scale):
        s = emit1(gb, "expand", [scale], {"shape": (rows, cols)})
        return [emit1(gb, "exp", [emit1(gb, "mul", [x, s])])]
    return kernel_graph([t(F32, rows, cols), t(F32, rows, 1)], build)


@pytest.mark.parametrize("threads", [2, 3, 5])
def test_split_launch_is_bitwise_identical(threads):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((37, 515)).astype(np.float32)
    scale = rng.standard_normal((37, 1)).astype(np.float32)
    graph = _row_broadcast_graph(37, 515)
    one = compile_graph(graph, CpuLauncher(threads=1))([x, scale])[0]
    launcher = CpuLauncher(threads, min_parallel_work=0)
    many = compile_graph(graph, launcher)([x, scale])
    launcher.close()
    assert one.tobytes() == many[0].tobytes()
    np.testing.assert_allclose(one, np.exp(x * scale), rtol=1e-6)


def _mixed_graph():
    """kernel -> reference reduction -> kernel, with a graph input also an output."""
    def body(gb, x):
        return [emit1(gb, "tanh", [x])]
    inner = kernel_graph([t(F32, 6, 5)], body).nodes[0].attrs.body
    gb = GraphBuilder("mixed")
    x = gb.add_input(t(F32, 6, 5), hint="x")
    (y,) = gb.emit("kernel", [x], {"name": "k_tanh", "body": inner})
    (s,) = gb.emit("sum", [y], {"axes": (1,), "keepdim": False})
    sig = kernel_graph([t(F32, 6)], lambda b, v: [emit1(b, "sigmoid", [v])])
    (z,) = gb.emit("kernel", [s], {"name": "k_sig", "body": sig.nodes[0].attrs.body})
    return gb.finish([z, x, y])


def test_executable_mixes_kernels_and_references():
    graph = _mixed_graph()
    exe = compile_graph(graph)
    x = np.random.default_rng(3).standard_normal((6, 5)).astype(np.float32)
    z, x_out, y = exe([x])
    want = interpret(graph, [x])
    np.testing.assert_allclose(z, want[0], rtol=1e-6)
    np.testing.assert_allclose(y, want[2], rtol=1e-6)
    assert x_out is x
    assert [k.name for k in exe.kernels] == ["k_tanh", "k_sig"]
    for k in exe.kernels:
        assert k.symbol in k.mlir and k.symbol in k.llvm_ir and k.symbol in k.asm


def test_live_ranges_end_at_the_last_reader():
    exe = compile_graph(_mixed_graph())
    s = exe.schedule
    live = live_ranges(s)
    tanh_out, sum_out, sig_out = (st.outs[0] for st in s.steps)
    assert live[id(sum_out)] == (1, 2)          # read only by the second kernel
    assert live[id(tanh_out)] == (0, 3)         # y and z are graph outputs: kept to the end
    assert live[id(sig_out)] == (2, 3)
    assert s.arena_bytes == 0 and s.naive_bytes == 0          # nothing to place


def _chain_graph():
    """kernel -> matmul -> kernel -> matmul -> kernel: four temps, each read by the next
    step only, so a temp and the one two steps later never live at once."""
    return fuse_elementwise(parse("""
graph @chain(%x: f32[16,16]) {
  %0: f32[16,16] = tanh %x
  %1: f32[16,16] = matmul %0, %0
  %2: f32[16,16] = exp %1
  %3: f32[16,16] = matmul %2, %2
  %4: f32[16,16] = neg %3
  return %4
}"""))


def test_temps_that_never_live_at_once_share_the_arena():
    graph = _chain_graph()
    exe = compile_graph(graph)
    s = exe.schedule
    assert [step_kind(st) for st in s.steps] == ["launch", "call", "launch", "call", "launch"]
    # NOTE: each kernel after a matmul updates the matmul's result in place (it reads it for
    # the last time, element by element): two temps instead of four
    assert [st.kernel.inplace for st in s.steps[2::2]] == [((0, 0),), ((0, 0),)]
    temps = [b for b in s.buffers if b.kind == "temp"]
    assert len(temps) == 2 and all(b.planned and b.arena == 0 for b in temps)
    live = live_ranges(s)
    assert [live[id(b)] for b in temps] == [(0, 1), (1, 3)]
    for i, a in enumerate(temps):
        for b in temps[i + 1:]:
            together = live[id(a)][0] <= live[id(b)][1] and live[id(b)][0] <= live[id(a)][1]
            disjoint = a.offset + a.nbytes <= b.offset or b.offset + b.nbytes <= a.offset
            assert disjoint or not together, (a, b)       # live at once: separate bytes
    assert s.arena_bytes <= s.naive_bytes
    x = np.random.default_rng(4).standard_normal((16, 16)).astype(np.float32) * 0.1
    want = interpret(graph, [x])[0]
    for _ in range(2):                  # the second call reuses the arena
        np.testing.assert_allclose(exe([x])[0], want, rtol=1e-5)


def test_non_contiguous_input_is_accepted():
    graph = kernel_graph([t(F32, 4, 3)], lambda gb, x: [emit1(gb, "neg", [x])])
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    (got,) = compile_graph(graph)([base[:, ::2]])
    np.testing.assert_array_equal(got, -base[:, ::2])


def test_wrong_inputs_are_reported():
    exe = compile_graph(kernel_graph([t(F32, 4)], lambda gb, x: [emit1(gb, "neg", [x])]))
    with pytest.raises(KilnError, match=r"input 0 must be f32\[4\], got array float64\[4\]"):
        exe([np.zeros(4)])
    with pytest.raises(KilnError, match="takes 1 inputs, got 2"):
        exe([np.zeros(4, np.float32)] * 2)


def test_worker_errors_reach_the_caller():
    launcher = CpuLauncher(threads=2, min_parallel_work=0)
    seen = []

    def fn(lo, hi):
        seen.append((lo, hi))
        if lo > 0:
            raise ValueError("chunk failed")
    with pytest.raises(ValueError, match="chunk failed"):
        launcher.launch(fn, [], 10, 10)
    launcher.launch(lambda lo, hi: seen.append((lo, hi)), [], 4, 4)
    assert sorted(seen) == [(0, 2), (0, 5), (2, 4), (5, 10)]
    launcher.close()


def test_cuda_available_is_false_without_a_driver(monkeypatch):
    assert device.cuda_available.__wrapped__() in (True, False)
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    assert device.cuda_available.__wrapped__() is False
    assert device.available_devices()[0] == "cpu"
