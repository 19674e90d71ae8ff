"""Reductions down columns (codegen/cpu/render_columns.py): the reduced axis strided, the kept
one contiguous (a bias gradient, `sum(g * mask, axis=0)`). The interchanged loops give
NumPy's results for every reduction, dtype and shape they take, split over threads or not,
and NaN still propagates through max and min."""
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln.codegen.cpu import CpuRenderer, loop_nest
from kiln.codegen.cpu import render_columns as columns
from kiln.frontend.compile import compile_graph
from kiln.ir.parser import parse
from kiln.ir.schedule_text import parse_schedule
from kiln.passes.fusion import fuse_elementwise
from kiln.passes.schedule import build_schedule
from kiln.runtime.cpu import CpuDevice, CpuLauncher
from kiln.runtime.executable import build_executable

NP = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min}


def _graph(op, dtype, shape, axis, keepdim=False, masked=False):
    out = [d for k, d in enumerate(shape) if k != axis or keepdim]
    if keepdim:
        out[axis] = 1
    t = lambda s: f"{dtype}[{','.join(map(str, s))}]"       # noqa: E731
    body = f"%0: {t(shape)} = mul %x, %m" if masked else f"%0: {t(shape)} = neg %x"
    return fuse_elementwise(parse(textwrap.dedent(f"""
        graph @f(%x: {t(shape)}, %m: {t(shape)}) {{
          {body}
          %1: {t(out)} = {op} %0 {{axes=[{axis}], keepdim={str(keepdim).lower()}}}
          return %1
        }}""")))


def _want(op, x, m, axis, keepdim, masked):
    v = x.astype(np.float64) * m if masked else -x.astype(np.float64)
    return NP[op](v, axis=axis, keepdims=keepdim)


CASES = [(op, dtype, shape, axis, keepdim, masked)
         for op in NP
         for dtype, shape, axis in [("f32", (512, 128), 0), ("f64", (64, 33), 0),
                                    ("f32", (6, 40, 24), 1), ("f32", (9, 8), 0)]
         for keepdim, masked in [(False, True), (True, False)]]


@pytest.mark.parametrize("op,dtype,shape,axis,keepdim,masked", CASES)
def test_column_reductions_match_numpy(op, dtype, shape, axis, keepdim, masked):
    g = _graph(op, dtype, shape, axis, keepdim, masked)
    k = build_schedule(g).kernels[0]
    assert columns.applies(k, loop_nest(k))
    rng = np.random.default_rng(0)
    npd = np.float32 if dtype == "f32" else np.float64
    x = rng.standard_normal(shape).astype(npd)
    m = (rng.standard_normal(shape) > 0).astype(npd)
    got = compile_graph(g)([x, m])[0]
    rtol = 1e-5 if dtype == "f32" else 1e-12
    np.testing.assert_allclose(got, _want(op, x, m, axis, keepdim, masked), rtol=rtol,
                               atol=rtol * np.sqrt(shape[axis]))


def test_columns_split_over_threads_give_the_same_result():
    g = _graph("sum", "f32", (700, 96), 0, masked=True)
    rng = np.random.default_rng(1)
    x, m = (rng.standard_normal((700, 96)).astype(np.float32) for _ in range(2))
    one = compile_graph(g, CpuLauncher(threads=1))([x, m])[0]
    two = compile_graph(g, CpuLauncher(threads=2, min_parallel_work=0))([x, m])[0]
    np.testing.assert_array_equal(one, two)
    np.testing.assert_allclose(one, (x.astype(np.float64) * m).sum(0), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("op", ["max", "min"])
def test_nan_propagates_down_a_column(op):
    g = _graph(op, "f32", (64, 16), 0)
    x = np.random.default_rng(2).standard_normal((64, 16)).astype(np.float32)
    x[17, 3] = np.nan
    got = compile_graph(g)([x, np.ones_like(x)])[0]
    assert np.isnan(got[3]) and not np.isnan(np.delete(got, 3)).any()


def test_a_long_column_sums_in_float64():
    rows = 1 << 17          # NOTE: past WIDE_SUM_FROM: float32 terms, float64 accumulator
    g = _graph("sum", "f32", (rows, 8), 0)
    x = np.full((rows, 8), 0.1, np.float32)
    got = compile_graph(g)([x, np.ones_like(x)])[0]
    np.testing.assert_allclose(got, -(x.astype(np.float64).sum(0)), rtol=1e-6)


def _graph_with_elementwise_output(op, dtype, shape, axis, first):
    """`y = x * m` returned beside `op(y, axis)` (a ReLU's backward beside its bias
    gradient)."""
    out = [d for k, d in enumerate(shape) if k != axis]
    t = lambda s: f"{dtype}[{','.join(map(str, s))}]"       # noqa: E731
    return fuse_elementwise(parse(textwrap.dedent(f"""
        graph @f(%x: {t(shape)}, %m: {t(shape)}) {{
          %0: {t(shape)} = mul %x, %m
          %1: {t(out)} = {op} %0 {{axes=[{axis}], keepdim=false}}
          return {"%0, %1" if first else "%1, %0"}
        }}""")))


@pytest.mark.parametrize("op,dtype,shape,axis,first", [
    (op, dtype, shape, axis, first) for op in ("sum", "mean", "max")
    for dtype, shape, axis in [("f32", (512, 128), 0), ("f64", (64, 33), 0),
                               ("f32", (6, 40, 24), 1)]
    for first in (True, False)])
def test_an_elementwise_output_is_stored_beside_the_column_reduction(op, dtype, shape, axis,
                                                                      first):
    g = _graph_with_elementwise_output(op, dtype, shape, axis, first)
    k = build_schedule(g).kernels[0]
    assert len(build_schedule(g).kernels) == 1 and columns.applies(k, loop_nest(k))
    rng = np.random.default_rng(3)
    npd = np.float32 if dtype == "f32" else np.float64
    x = rng.standard_normal(shape).astype(npd)
    m = (rng.standard_normal(shape) > 0).astype(npd)
    got = compile_graph(g)([x, m])
    y, r = (got[0], got[1]) if first else (got[1], got[0])
    np.testing.assert_array_equal(y, x * m)
    rtol = 1e-5 if dtype == "f32" else 1e-12
    np.testing.assert_allclose(r, NP[op]((x * m).astype(np.float64), axis=axis), rtol=rtol,
                               atol=rtol * np.sqrt(shape[axis]))


# NOTE: fusion puts `y - mean(y, 0)` in a second kernel; a schedule may still hold it in one.
NEEDS_THE_RESULT = """
schedule @f(%x: f32[256,64], %m: f32[256,64]) {
  buffer %t2: f32[256,64] output
  buffer %t1: f32[1,64] output
  launch @fused_0 (%x, %m) -> (%t2, %t1) {space=[256,64], reduce=[0]} {
    load %x strides=[64,1] offset=0
    load %m strides=[64,1] offset=0
    store %t2 strides=[64,1] offset=0
    store %t1 strides=[0,1] offset=0
    body @fused_0(%0: f32[256,64], %1: f32[256,64]) {
      %2: f32[256,64] = mul %0, %1
      %3: f32[1,64] = mean %2 {axes=[0], keepdim=true}
      %5: f32[256,64] = expand %3 {shape=[256,64]}
      %6: f32[256,64] = sub %2, %5
      return %6, %3
    }
  }
  return %t2, %t1
}"""


def test_an_elementwise_output_that_needs_the_result_keeps_the_row_schedule():
    s = parse_schedule(NEEDS_THE_RESULT)
    k = s.kernels[0]
    assert not columns.applies(k, loop_nest(k))
    rng = np.random.default_rng(4)
    x, m = (rng.standard_normal((256, 64)).astype(np.float32) for _ in range(2))
    got = build_executable(s, CpuDevice(), CpuRenderer().compile)([x, m])
    y = x * m
    np.testing.assert_allclose(got[0], y - y.mean(0, keepdims=True), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[1], y.mean(0, keepdims=True), rtol=1e-5, atol=1e-6)


def test_row_reductions_and_narrow_columns_keep_the_row_schedule():
    for shape, axis in [((128, 512), 1), ((512, 4), 0)]:
        k = build_schedule(_graph("sum", "f32", shape, axis)).kernels[0]
        assert not columns.applies(k, loop_nest(k))


@st.composite
def _reductions(draw):
    rank = draw(st.integers(2, 3))
    shape = tuple(draw(st.integers(1, 40)) for _ in range(rank))
    axis = draw(st.integers(0, rank - 1))
    op = draw(st.sampled_from(sorted(NP)))
    return op, shape, axis, draw(st.booleans()), draw(st.booleans())


@settings(max_examples=40, deadline=None)
@given(_reductions())
def test_any_single_axis_reduction_matches_numpy(case):
    """Row or column schedule, whichever the kernel gets: NumPy's result."""
    op, shape, axis, keepdim, masked = case
    g = _graph(op, "f32", shape, axis, keepdim, masked)
    rng = np.random.default_rng(len(shape) * 100 + axis)
    x = rng.standard_normal(shape).astype(np.float32)
    m = (rng.standard_normal(shape) > 0).astype(np.float32)
    got = compile_graph(g)([x, m])[0]
    np.testing.assert_allclose(got, _want(op, x, m, axis, keepdim, masked), rtol=2e-5,
                               atol=2e-5 * np.sqrt(shape[axis]))
