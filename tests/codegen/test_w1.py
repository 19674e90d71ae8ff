"""W1 = x*sigmoid(x)*0.5 + tanh(x) in float32: accuracy, vectorized code, threads."""
from __future__ import annotations

import re

import numpy as np

from kiln.runtime.cpu import CpuLauncher
from kiln.frontend.compile import compile_graph

from codegen_helpers import w1_graph, w1_reference

N = 1 << 20


def _w1_inputs():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.standard_normal(N // 2) * 4, rng.uniform(-40, 40, N // 4),
                        rng.uniform(-1, 1, N // 4) * 10.0 ** rng.uniform(-30, 0, N // 4)])
    x[:6] = [0.0, -0.0, 1e-38, -1e-38, 88.0, -88.0]
    return x.astype(np.float32)


def test_w1_matches_float64_within_1e6_relative():
    """Metric: elementwise |got - ref| <= 1e-6 * |ref| + 1e-30, ref = NumPy float64 on the
    same float32 inputs."""
    x = _w1_inputs()
    got = compile_graph(w1_graph(N))([x])[0]
    ref = w1_reference(x)
    rel = np.abs(got - ref) / (np.abs(ref) + 1e-30)
    assert got.dtype == np.float32
    assert rel.max() <= 1e-6, (rel.max(), x[np.argmax(rel)])


def _function_asm(asm: str, symbol: str) -> str:
    start = asm.index(f"{symbol}:")
    end = asm.find(".Lfunc_end", start)
    return asm[start:end]


def test_w1_assembly_has_no_calls_and_packed_vector_ops():
    (kernel,) = compile_graph(w1_graph(N)).kernels
    body = _function_asm(kernel.asm, kernel.function)
    assert not re.search(r"\bcall", body), "a libm call stops vectorization"
    packed = re.findall(r"\bv?\w+ps\s+%[xyz]mm", body)
    assert len(packed) > 20, "the loop did not vectorize"


def test_w1_threads_give_identical_bits():
    x = _w1_inputs()
    graph = w1_graph(N)
    one = compile_graph(graph, CpuLauncher(threads=1))([x])[0]
    results = []
    for threads in (2, 3):
        launcher = CpuLauncher(threads=threads)
        exe = compile_graph(graph, launcher)
        assert len(launcher.chunks(exe.kernels[0].outer, exe.kernels[0].work)) >= threads
        results.append(exe([x])[0])
        launcher.close()
    assert all(one.tobytes() == r.tobytes() for r in results)
