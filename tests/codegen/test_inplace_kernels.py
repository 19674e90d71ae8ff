"""A kernel that updates buffers in place (an optimizer step: parameter and state read and
written at the same element) stores through the pointer it loads from, so every pointer is
its buffer's only one: it is vectorized like any other kernel, and its results are exact."""
import re
import textwrap

import numpy as np

from kiln.frontend.compile import compile_graph
from kiln.ir.parser import parse
from kiln.passes.fusion import fuse_elementwise

ADAM_LIKE = """
    graph @adam(%p: f32[256,64], %g: f32[256,64], %m: f32[256,64], %v: f32[256,64], %c1: f32[], %c2: f32[]) {
      %0: f32[256,64] = expand %c1 {shape=[256,64]}
      %1: f32[256,64] = mul %m, %0
      %2: f32[256,64] = add %1, %g
      %3: f32[256,64] = mul %g, %g
      %4: f32[256,64] = add %v, %3
      %5: f32[256,64] = sqrt %4
      %6: f32[256,64] = expand %c2 {shape=[256,64]}
      %7: f32[256,64] = add %5, %6
      %8: f32[256,64] = div %2, %7
      %9: f32[256,64] = sub %p, %8
      %10: f32[256,64] = copy_ %p, %9
      %11: f32[256,64] = copy_ %m, %2
      %12: f32[256,64] = copy_ %v, %4
      return
    }"""


def _function(ir: str, symbol: str) -> str:
    m = re.search(r"define [^\n]*@" + re.escape(symbol) + r"\(.*?\n}\n", ir, re.S)
    assert m, f"no function {symbol} in the optimized IR"
    return m.group(0)


def _adam():
    return compile_graph(fuse_elementwise(parse(textwrap.dedent(ADAM_LIKE))))


def test_an_update_in_place_is_one_vectorized_kernel():
    exe = _adam()
    (update,) = [k for k in exe.kernels if k.name.startswith("fused")]
    assert len(exe.kernels) == 1 and exe.written_inputs == [0, 2, 3]
    ir = _function(update.llvm_ir_optimized, update.function)
    assert "x float>" in ir, "the in-place update was not vectorized"
    # NOTE: with a load and a store pointer on one buffer, LLVM vectorized behind a runtime
    # overlap check, which then failed at every call: the scalar loop ran
    assert "memcheck" not in ir, "the vector loop is guarded by a runtime overlap check"


def test_an_update_in_place_computes_every_element_before_it_stores():
    rng = np.random.default_rng(0)
    p, g, m = (rng.standard_normal((256, 64)).astype(np.float32) for _ in range(3))
    v = np.abs(rng.standard_normal((256, 64))).astype(np.float32)
    m_new = m * np.float32(0.9) + g
    v_new = v + g * g
    p_new = p - m_new / (np.sqrt(v_new) + np.float32(1e-8))
    _adam()([p, g, m, v, np.float32(0.9), np.float32(1e-8)])
    np.testing.assert_allclose(m, m_new, rtol=1e-6)
    np.testing.assert_allclose(v, v_new, rtol=1e-6)
    np.testing.assert_allclose(p, p_new, rtol=1e-5, atol=1e-6)
