"""The executable runs a planned schedule on a Device. Most checks use the null device (no
compiler): launch order, library calls, the arena reused across calls without ever leaking
into what the caller keeps, and equality with the interpreter."""
import textwrap
import threading

import numpy as np
import pytest

from kiln.frontend.compile import compile_graph
from kiln.ir.interpreter import interpret
from kiln.ir.parser import parse
from kiln.passes.fusion import fuse_elementwise
from kiln.passes.plan_memory import plan_memory
from kiln.passes.schedule import build_schedule
from kiln.runtime.executable import build_executable
from kiln.runtime.null import NullDevice

CHAIN = """
    graph @chain(%x: f32[16,8], %w: f32[8,8]) {
      %0: f32[16,8] = tanh %x
      %1: f32[16,8] = matmul %0, %w
      %2: f32[16,8] = exp %1
      %3: f32[16,8] = matmul %2, %w
      %4: f32[16,8] = sigmoid %3
      %5: f32[16,8] = matmul %4, %w
      %6: f32[8,16] = permute %5 {perm=[1,0]}
      %7: f32[16,1] = max %5 {axes=[1], keepdim=true}
      return %6, %7
    }"""


def _graph(text=CHAIN):
    return fuse_elementwise(parse(textwrap.dedent(text)))


def _inputs(g, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(v.shape).astype(np.float32) * 0.5 for v in g.inputs]


def _null(g, compute=True):
    dev = NullDevice(compute=compute)
    return build_executable(plan_memory(build_schedule(g)), dev), dev


def test_null_device_records_launches_and_calls_in_order():
    exe, dev = _null(_graph(), compute=False)
    exe(_inputs(_graph()))
    assert dev.launches == ["fused_0", "fused_1", "fused_2", "fused_3"]
    assert dev.calls == ["matmul"] * 3


def test_null_device_computes_what_the_interpreter_does():
    g = _graph()
    exe, _ = _null(g)
    xs = _inputs(g)
    for got, want in zip(exe(xs), interpret(g, xs)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_temps_whose_lives_do_not_overlap_share_arena_bytes():
    s = plan_memory(build_schedule(_graph()))
    temps = [b for b in s.buffers if b.kind == "temp"]
    assert len({b.offset for b in temps}) < len(temps)
    assert s.arena_bytes < s.naive_bytes


@pytest.mark.parametrize("device", ["null", "cpu"])
def test_outputs_survive_the_next_call(device):
    """The arena is reused by every call; outputs (and views of temps a `run` step returns,
    such as the permute here) must not live in it."""
    g = _graph()
    exe = _null(g)[0] if device == "null" else compile_graph(g)
    a, b = _inputs(g, 1), _inputs(g, 2)
    first = exe(a)
    kept = [np.array(o, copy=True) for o in first]
    exe(b)
    for got, want in zip(first, kept):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(first, interpret(g, a)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_concurrent_calls_use_their_own_arenas():
    g = _graph()
    exe = compile_graph(g)
    results, errors = {}, []

    def run(seed):
        try:
            xs = _inputs(g, seed)
            for _ in range(20):
                out = exe(xs)
            results[seed] = (out, interpret(g, xs))
        except Exception as e:     # NOTE: reported by the assertion below
            errors.append(e)
    threads = [threading.Thread(target=run, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for got, want in results.values():
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_write_backs_land_in_the_callers_arrays():
    g = _graph("""
        graph @step(%p: f32[5], %g: f32[5]) {
          %0: f32[5] = sub %p, %g
          %1: f32[5] = copy_ %p, %0
          return %0
        }""")
    exe, _ = _null(g)
    p, grad = np.ones(5, np.float32), np.full(5, 0.25, np.float32)
    (out,) = exe([p, grad])
    assert p.tolist() == [0.75] * 5 and out.tolist() == [0.75] * 5
