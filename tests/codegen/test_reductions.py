"""Reductions (sum/mean/max/min) compiled inside kernels, against NumPy.

Every case is a graph fused by `fuse_elementwise`, compiled by `compile_graph` and compared
with the interpreter on the unfused graph (NumPy's references), and the same planned schedule
run on the NullDevice with compute=True (runtime/reference.py, the oracle) must agree with
the CPU.

Tolerances: ints, max and min are exact (NaN where NumPy has NaN). Float sums and means are
judged against the same reduction of |x| (the condition of the sum): |got - want| <=
rtol * reduce(|x|), rtol = 2e-6 * sqrt(n) for f32 and 1e-12 for f64 (far tighter than a
float32 accumulator could reach, so an f64 sum kept in f32 fails).
"""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

from kiln.codegen.cpu import CpuRenderer, loop_nest
from kiln.frontend.compile import compile_graph
from kiln.ir.dtypes import DType
from kiln.ir.interpreter import interpret
from kiln.ir.parser import parse
from kiln.ir.schedule_text import parse_schedule
from kiln.passes.fusion import fuse_elementwise
from kiln.runtime.cpu import CpuDevice, CpuLauncher
from kiln.runtime.executable import build_executable
from kiln.runtime.null import NullDevice

from codegen_helpers import assert_matches, sample

F32, F64, I32, I64 = DType.float32, DType.float64, DType.int32, DType.int64
OPS = ("sum", "mean", "max", "min")
DTYPES = (F32, F64, I32, I64)
SPACES = [((7, 5), (1,)), ((7, 5), (0,)), ((3, 4, 5), (1,)), ((3, 4, 5), (0, 2)),
          ((3, 4, 5), (0, 1, 2)), ((3, 4, 5), (2,))]
UNIT_SPACES = [((7, 1), (1,)), ((1, 5), (0,)), ((3, 1, 5), (1,)), ((3, 1, 5), (0, 1)),
               ((1, 1), (0, 1))]


# ---- graphs ---------------------------------------------------------------------------------
def ty(dtype: DType, shape) -> str:
    return f"{dtype.value}[{','.join(map(str, shape))}]"


def reduced_shape(shape, axes, keepdim) -> tuple[int, ...]:
    return tuple(1 if k in axes else d for k, d in enumerate(shape)
                 if keepdim or k not in axes)


def reduce_graph(op: str, dtype: DType, shape, axes, keepdim: bool):
    out = reduced_shape(shape, axes, keepdim)
    attrs = f"axes=[{','.join(map(str, axes))}], keepdim={str(keepdim).lower()}"
    return parse(f"""
graph @{op}(%x: {ty(dtype, shape)}) {{
  %0: {ty(dtype, out)} = {op} %x {{{attrs}}}
  return %0
}}""")


SOFTMAX = """
graph @softmax(%x: {d}[{R},{N}]) {{
  %c2: {d}[{R},{N}] = full {{value=2.0, shape=[{R},{N}], dtype={d}}}
  %c1: {d}[{R},{N}] = full {{value=1.0, shape=[{R},{N}], dtype={d}}}
  %0: {d}[{R},{N}] = mul %x, %c2
  %1: {d}[{R},{N}] = add %0, %c1
  %2: {d}[{R},1] = max %1 {{axes=[1], keepdim=true}}
  %3: {d}[{R},{N}] = expand %2 {{shape=[{R},{N}]}}
  %4: {d}[{R},{N}] = sub %1, %3
  %5: {d}[{R},{N}] = exp %4
  %6: {d}[{R},1] = sum %5 {{axes=[1], keepdim=true}}
  %7: {d}[{R},{N}] = expand %6 {{shape=[{R},{N}]}}
  %8: {d}[{R},{N}] = div %5, %7
  return %8
}}"""

LAYER_NORM = """
graph @layer_norm(%x: {d}[{R},{N}], %g: {d}[{N}], %b: {d}[{N}]) {{
  %m: {d}[{R},1] = mean %x {{axes=[1], keepdim=true}}
  %me: {d}[{R},{N}] = expand %m {{shape=[{R},{N}]}}
  %xc: {d}[{R},{N}] = sub %x, %me
  %sq: {d}[{R},{N}] = mul %xc, %xc
  %v: {d}[{R},1] = mean %sq {{axes=[1], keepdim=true}}
  %eps: {d}[{R},1] = full {{value=1e-5, shape=[{R},1], dtype={d}}}
  %ve: {d}[{R},1] = add %v, %eps
  %rs: {d}[{R},1] = rsqrt %ve
  %rse: {d}[{R},{N}] = expand %rs {{shape=[{R},{N}]}}
  %y: {d}[{R},{N}] = mul %xc, %rse
  %ge: {d}[{R},{N}] = expand %g {{shape=[{R},{N}]}}
  %be: {d}[{R},{N}] = expand %b {{shape=[{R},{N}]}}
  %y2: {d}[{R},{N}] = mul %y, %ge
  %y3: {d}[{R},{N}] = add %y2, %be
  return %y3
}}"""


def softmax_graph(dtype: DType, rows: int, cols: int):
    return parse(SOFTMAX.format(d=dtype.value, R=rows, N=cols))


def layer_norm_graph(dtype: DType, rows: int, cols: int):
    return parse(LAYER_NORM.format(d=dtype.value, R=rows, N=cols))


# ---- running and comparing ------------------------------------------------------------------
def values(dtype: DType, shape, rng) -> np.ndarray:
    """Finite floats of either sign; ints mostly small with some anywhere in the dtype's
    range (so int sums wrap)."""
    if dtype.is_float:
        return (rng.standard_normal(shape) * 3).astype(dtype.np)
    return sample(dtype, shape, rng)


def compiled(graph, inputs):
    """(executable, CPU results, null-device results) of the fused graph, which must be ONE
    kernel; the null device (compute=True, runtime/reference.py) runs the same planned
    schedule, and launches the same kernels in the same order."""
    exe = compile_graph(fuse_elementwise(graph))
    assert len(exe.kernels) == 1, exe.schedule
    got = exe(inputs)
    null = NullDevice(compute=True)
    reference = build_executable(exe.schedule, null)(inputs)
    assert null.launches == [k.name for k in exe.schedule.kernels]
    return exe, got, reference


def abs_scale(op: str, x: np.ndarray, axes, keepdim: bool) -> np.ndarray:
    """The same reduction of |x| in float64: what a float sum's rounding scales with."""
    a = np.abs(x.astype(np.float64))
    fn = np.sum if op == "sum" else np.mean
    return fn(a, axis=tuple(axes), keepdims=keepdim)


def sum_rtol(dtype: DType, n: int) -> float:
    return 2e-6 * math.sqrt(max(n, 1)) if dtype == F32 else 1e-12


def assert_reduction(op, got, want, x, axes, keepdim, what=""):
    """Exact for ints, max and min (NaN where want is NaN); float sums and means within
    sum_rtol of the abs-reduction."""
    assert got.dtype == want.dtype and got.shape == want.shape, (what, got.dtype, got.shape,
                                                                 want.dtype, want.shape)
    if op in ("max", "min") or want.dtype.kind != "f":
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    n = int(np.prod([x.shape[a] for a in axes]))
    scale = abs_scale(op, x, axes, keepdim).reshape(want.shape)
    assert np.array_equal(np.isnan(got), np.isnan(want)), f"{what}: NaN positions differ"
    rtol = sum_rtol(F32 if want.dtype == np.float32 else F64, n)
    with np.errstate(invalid="ignore"):
        err = np.abs(got.astype(np.float64) - want)
        bad = ~np.isnan(want) & ~(got == want) & ~(err <= rtol * scale)
    if bad.any():
        raise AssertionError(f"{what}: {bad.sum()} mismatches, e.g. got {got[bad][:4]} want "
                             f"{want[bad][:4]} (scale {scale[bad][:4]})")


# ---- the table ------------------------------------------------------------------------------
def _table():
    for op in OPS:
        for dtype in DTYPES:
            if op == "mean" and not dtype.is_float:
                continue
            for shape, axes in SPACES:
                for keepdim in (True, False):
                    yield pytest.param(op, dtype, shape, axes, keepdim, id=(
                        f"{op}-{dtype.value}-{'x'.join(map(str, shape))}-"
                        f"ax{''.join(map(str, axes))}-{'keep' if keepdim else 'drop'}"))


TABLE = list(_table())


def test_table_covers_every_op_and_dtype():
    combos = {(p.values[0], p.values[1]) for p in TABLE}
    assert combos == {(op, d) for op in OPS for d in DTYPES if op != "mean" or d.is_float}
    assert len(TABLE) == len(combos) * len(SPACES) * 2


@pytest.mark.parametrize("op,dtype,shape,axes,keepdim", TABLE)
def test_reduction_matches_numpy(op, dtype, shape, axes, keepdim, rng):
    graph = reduce_graph(op, dtype, shape, axes, keepdim)
    x = values(dtype, shape, rng)
    exe, (got,), (ref,) = compiled(graph, [x])
    (kernel,) = exe.schedule.kernels
    assert kernel.space == shape and kernel.reduce == axes
    (want,) = interpret(graph, [x])
    what = f"{op} {dtype.value}{list(shape)} axes={list(axes)} keepdim={keepdim}"
    assert_reduction(op, got, want, x, axes, keepdim, what)
    assert_reduction(op, ref, want, x, axes, keepdim, what + " (null device)")
    assert_reduction(op, got, ref, x, axes, keepdim, what + " (cpu vs null device)")


@pytest.mark.parametrize("shape,axes", UNIT_SPACES,
                         ids=[f"{'x'.join(map(str, s))}-ax{''.join(map(str, a))}"
                              for s, a in UNIT_SPACES])
@pytest.mark.parametrize("op,dtype", [("sum", F32), ("sum", I32), ("mean", F64),
                                      ("max", I64), ("min", F32)],
                         ids=["sum-f32", "sum-i32", "mean-f64", "max-i64", "min-f32"])
def test_reduction_over_unit_axes(op, dtype, shape, axes, rng):
    """An axis of extent 1 is dropped from the loop nest; reducing only such axes leaves no
    reduction loop and the result is the input (mean divides by 1)."""
    for keepdim in (True, False):
        graph = reduce_graph(op, dtype, shape, axes, keepdim)
        x = values(dtype, shape, rng)
        exe, (got,), (ref,) = compiled(graph, [x])
        nest = loop_nest(exe.schedule.kernels[0])
        assert [d.extent for d in nest.reduce] == [shape[a] for a in axes if shape[a] != 1]
        (want,) = interpret(graph, [x])
        assert_reduction(op, got, want, x, axes, keepdim, f"{op} {shape} {axes}")
        if dtype.is_float and op in ("sum", "mean") and any(shape[a] > 1 for a in axes):
            # NOTE: a float sum over a real axis is reassociated (render_kernel._combine):
            # its bits may differ from the null device's (NumPy's) order, by rounding only
            assert_reduction(op, got, ref, x, axes, keepdim, f"{op} {shape} {axes} vs ref")
        else:
            np.testing.assert_array_equal(got, ref)
        if all(shape[a] == 1 for a in axes):
            np.testing.assert_array_equal(got.ravel(), x.ravel())


# ---- reductions fused with elementwise producers and consumers ------------------------------
@pytest.mark.parametrize("dtype,rtol", [(F32, 6e-6), (F64, 1e-13)], ids=["f32", "f64"])
@pytest.mark.parametrize("rows,cols", [(7, 33), (16, 1000)])
def test_softmax_is_one_kernel_and_matches(dtype, rtol, rows, cols, rng):
    """x*2+1 -> max -> sub -> exp -> sum -> div over the last axis: one kernel. f32 error is
    about |x*2+1 - max| ulps of exp's argument (inputs up to ~25 here)."""
    graph = softmax_graph(dtype, rows, cols)
    x = values(dtype, (rows, cols), rng)
    exe, (got,), (ref,) = compiled(graph, [x])
    (kernel,) = exe.schedule.kernels
    assert kernel.space == (rows, cols) and kernel.reduce == (1,)
    assert [d.extent for d in loop_nest(kernel).parallel] == [rows]
    (want,) = interpret(graph, [x])
    assert_matches(got, want, rtol=rtol, what="softmax")
    assert_matches(ref, want, rtol=rtol, what="softmax (null device)")
    np.testing.assert_allclose(got.astype(np.float64).sum(axis=1), 1.0, rtol=rtol * 4)


# NOTE: the libm symbols math_expansions' `libm_` entries (f64 erf and pow) become, and their
# float variants: the only calls a kernel may make.
LIBM_FALLBACKS = {"erf", "erff", "pow", "powf"}


def function_asm(asm: str, symbol: str) -> str:
    start = asm.index(f"{symbol}:")
    end = asm.find(".Lfunc_end", start)
    return asm[start:end]


def called_symbols(body: str) -> list[str]:
    """What a function calls: direct `call sym` targets, and for `call *%reg` the symbols
    moved into registers (`movabsq $erf, %r13`, how MCJIT code reaches libm)."""
    calls = re.findall(r"\bcall\w*\s+([^\n]*)", body)
    direct = [c.strip() for c in calls if not c.strip().startswith("*")]
    loaded = re.findall(r"\bmov\w*\s+\$([A-Za-z_]\w*)", body) if len(direct) < len(calls) else []
    return direct + loaded


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_softmax_assembly_is_vectorized(dtype):
    exe = compile_graph(fuse_elementwise(softmax_graph(dtype, 16, 1000)))
    (kernel,) = exe.kernels
    body = function_asm(kernel.asm, kernel.function)
    suffix = "ps" if dtype == F32 else "pd"
    packed = re.findall(rf"\bv\w+{suffix}\s+[^\n]*%[yz]mm", body)
    assert len(packed) > 20, "the row loops did not vectorize (no packed ymm/zmm ops)"
    calls = called_symbols(body)
    assert re.search(r"\bcall", body) is None or calls, "a call to an unknown target"
    assert all(c.removesuffix("@PLT") in LIBM_FALLBACKS for c in calls), calls
    assert calls == [], "softmax needs no libm fallback (exp is expanded inline)"


@pytest.mark.parametrize("dtype,atol", [(F32, 5e-6), (F64, 2e-14)], ids=["f32", "f64"])
def test_layer_norm_is_one_kernel_and_matches(dtype, atol, rng):
    """mean -> x - mean -> mean of squares -> rsqrt(var + eps) -> * gamma + beta ([N]
    broadcast): two reductions over the same axis in one kernel, one pass reading the
    other's result. Error judged as |got - want| <= atol * (|want| + 1)."""
    rows, cols = 9, 67
    graph = layer_norm_graph(dtype, rows, cols)
    xs = [(values(dtype, s, rng) + 1).astype(dtype.np) for s in [(rows, cols), (cols,),
                                                                   (cols,)]]
    exe, (got,), (ref,) = compiled(graph, xs)
    (kernel,) = exe.schedule.kernels
    assert kernel.reduce == (1,)
    assert [a.strides for a in kernel.loads] == [(cols, 1), (0, 1), (0, 1)]
    (want,) = interpret(graph, xs)
    for name, a in (("cpu", got), ("null device", ref)):
        err = np.abs(a.astype(np.float64) - want)
        assert np.all(err <= atol * (np.abs(want) + 1)), (name, err.max())


def test_bias_broadcast_before_reduction_over_axis_0(rng):
    """A [5] bias added to [7,5] then reduced over axis 0 (flat sum and keepdim max): the
    bias is a zero-stride load along the reduction axis, the loop nest is the 5 columns
    outside and the 7 rows inside."""
    graph = parse("""
graph @bias(%x: f32[7,5], %b: f32[5]) {
  %be: f32[7,5] = expand %b {shape=[7,5]}
  %y: f32[7,5] = add %x, %be
  %s: f32[5] = sum %y {axes=[0], keepdim=false}
  %m: f32[1,5] = max %y {axes=[0], keepdim=true}
  return %s, %m
}""")
    xs = [values(F32, (7, 5), rng), values(F32, (5,), rng)]
    exe, got, ref = compiled(graph, xs)
    (kernel,) = exe.schedule.kernels
    assert kernel.reduce == (0,)
    assert [a.strides for a in kernel.loads] == [(5, 1), (0, 1)]
    assert [a.strides for a in kernel.stores] == [(0, 1), (0, 1)]
    nest = loop_nest(kernel)
    assert [(d.extent, d.strides) for d in nest.parallel] == [(5, (1, 1, 1, 1))]
    assert [(d.extent, d.strides) for d in nest.reduce] == [(7, (5, 0, 0, 0))]
    want = interpret(graph, xs)
    y = xs[0] + xs[1]
    assert_reduction("sum", got[0], want[0], y, (0,), False, "bias sum")
    assert_reduction("max", got[1], want[1], y, (0,), True, "bias max")
    assert_reduction("sum", ref[0], want[0], y, (0,), False, "bias sum (null device)")
    np.testing.assert_array_equal(ref[1], want[1])


def test_mixed_outputs_of_one_reduction_kernel(rng):
    """A kernel storing full values, row values (keepdim), a flat (keepdim=false) value, a
    row value broadcast back to the space, and reading a [6,1] row input."""
    graph = parse("""
graph @mixed(%x: f64[6,9], %r: f64[6,1]) {
  %re: f64[6,9] = expand %r {shape=[6,9]}
  %a: f64[6,9] = mul %x, %re
  %m: f64[6,1] = max %a {axes=[1], keepdim=true}
  %me: f64[6,9] = expand %m {shape=[6,9]}
  %d: f64[6,9] = sub %a, %me
  %s: f64[6] = sum %d {axes=[1], keepdim=false}
  %n: f64[6,1] = min %d {axes=[1], keepdim=true}
  %mr: f64[6,1] = add %m, %r
  return %d, %s, %n, %mr, %a
}""")
    xs = [values(F64, (6, 9), rng), values(F64, (6, 1), rng)]
    exe, got, ref = compiled(graph, xs)
    assert [a.strides for a in exe.schedule.kernels[0].loads] == [(9, 1), (1, 0)]
    want = interpret(graph, xs)
    for g, r, w in zip(got, ref, want):
        assert_matches(g, w, rtol=1e-13)
        assert_matches(r, w, rtol=1e-13)
    np.testing.assert_array_equal(got[2], want[2])        # min: exact


# ---- schedules written as text: transposed and offset accesses ------------------------------
TRANSPOSED_LOAD = """
schedule @t(%x: f32[5,7]) {
  buffer %0: f32[7,1] output
  buffer %1: f32[7,5] output
  launch @tk (%x) -> (%0, %1) {space=[7,5], reduce=[1]} {
    load %x strides=[1,7] offset=0
    store %0 strides=[1,0] offset=0
    store %1 strides=[5,1] offset=0
    body @tk(%2: f32[7,5]) {
      %3: f32[7,1] = max %2 {axes=[1], keepdim=true}
      %4: f32[7,5] = expand %3 {shape=[7,5]}
      %5: f32[7,5] = sub %2, %4
      return %3, %5
    }
  }
  return %0, %1
}"""

TRANSPOSED_REDUCE_0 = """
schedule @t0(%x: f32[5,7]) {
  buffer %0: f32[1,5] output
  launch @tk0 (%x) -> (%0) {space=[7,5], reduce=[0]} {
    load %x strides=[1,7] offset=0
    store %0 strides=[0,1] offset=0
    body @tk0(%2: f32[7,5]) {
      %3: f32[1,5] = sum %2 {axes=[0], keepdim=true}
      return %3
    }
  }
  return %0
}"""

OFFSET_LOAD_TRANSPOSED_STORE = """
schedule @o(%x: f32[40]) {
  buffer %0: f32[5,7] output
  buffer %1: f32[7] output
  launch @ok (%x) -> (%0, %1) {space=[7,5], reduce=[1]} {
    load %x strides=[5,1] offset=5
    store %0 strides=[1,7] offset=0
    store %1 strides=[1,0] offset=0
    body @ok(%2: f32[7,5]) {
      %3: f32[7,1] = sum %2 {axes=[1], keepdim=true}
      %4: f32[7,5] = expand %3 {shape=[7,5]}
      %5: f32[7,5] = div %2, %4
      %6: f32[7] = min %2 {axes=[1], keepdim=false}
      return %5, %6
    }
  }
  return %0, %1
}"""


def run_schedule_text(text: str, inputs):
    """(cpu results, null-device results, kernel) of a schedule written as text."""
    s = parse_schedule(text)
    cpu = build_executable(s, CpuDevice(), CpuRenderer().compile)(inputs)
    ref = build_executable(parse_schedule(text), NullDevice(compute=True))(inputs)
    return cpu, ref, s.kernels[0]


def test_transposed_load_row_reduction(rng):
    """The kernel reads x[5,7] as its transpose (strides [1,7]): the max of each column and
    x.T minus it, never copying the transpose."""
    x = values(F32, (5, 7), rng)
    (mx, centred), ref, kernel = run_schedule_text(TRANSPOSED_LOAD, [x])
    nest = loop_nest(kernel)
    assert [(d.extent, d.strides) for d in nest.parallel] == [(7, (1, 1, 5))]
    assert [(d.extent, d.strides) for d in nest.reduce] == [(5, (7, 0, 1))]
    np.testing.assert_array_equal(mx.ravel(), x.max(axis=0))
    np.testing.assert_array_equal(centred, x.T - x.max(axis=0)[:, None])
    np.testing.assert_array_equal(mx, ref[0])
    np.testing.assert_array_equal(centred, ref[1])


def test_transposed_load_outer_reduction(rng):
    x = values(F32, (5, 7), rng)
    (got,), (ref,), kernel = run_schedule_text(TRANSPOSED_REDUCE_0, [x])
    assert [d.extent for d in loop_nest(kernel).reduce] == [7]
    want = np.sum(x.T, axis=0, keepdims=True, dtype=np.float32)
    assert_reduction("sum", got, want, x.T, (0,), True, "transposed sum")
    assert_reduction("sum", ref, want, x.T, (0,), True, "transposed sum (null device)")


def test_offset_load_and_transposed_store(rng):
    x = (values(F32, (40,), rng) ** 2 + 1).astype(np.float32)      # positive: no 0 sums
    (normed, mins), ref, _ = run_schedule_text(OFFSET_LOAD_TRANSPOSED_STORE, [x])
    rows = x[5:].reshape(7, 5)
    assert_matches(normed, (rows / rows.sum(axis=1, keepdims=True)).T, rtol=1e-6)
    np.testing.assert_array_equal(mins, rows.min(axis=1))
    assert_matches(ref[0], normed, rtol=1e-6)
    np.testing.assert_array_equal(ref[1], mins)


# NOTE: the verifier accepts a load that broadcasts a full-shaped body input (stride 0 along a
# non-unit axis, here [7,5] read from a [7] buffer) and the CPU computes it, but the oracle's
# `_view` keeps a unit axis there and cannot reshape the view to the body input's shape.
STRIDE0_FULL_LOAD = """
schedule @s(%x: f32[7]) {
  buffer %0: f32[7,1] output
  launch @k (%x) -> (%0) {space=[7,5], reduce=[1]} {
    load %x strides=[1,0] offset=0
    store %0 strides=[1,0] offset=0
    body @k(%1: f32[7,5]) {
      %2: f32[7,1] = sum %1 {axes=[1], keepdim=true}
      return %2
    }
  }
  return %0
}"""


def test_stride0_load_of_a_full_shaped_input_on_the_cpu():
    x = np.arange(7, dtype=np.float32)
    s = parse_schedule(STRIDE0_FULL_LOAD)
    (got,) = build_executable(s, CpuDevice(), CpuRenderer().compile)([x])
    np.testing.assert_array_equal(got.ravel(), x * 5)


def test_stride0_load_of_a_full_shaped_input_on_the_null_device():
    x = np.arange(7, dtype=np.float32)
    s = parse_schedule(STRIDE0_FULL_LOAD)
    (got,) = build_executable(s, NullDevice(compute=True))([x])
    np.testing.assert_array_equal(got.ravel(), x * 5)


# ---- special values -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("op", ["max", "min"])
@pytest.mark.parametrize("cols", [5, 37, 1000])
def test_nan_propagates_like_numpy(op, dtype, cols, rng):
    """np.max/np.min propagate NaN: a NaN anywhere in a row (vector body or remainder, first
    or last) makes the row NaN; an all-NaN row is NaN; a row of the identity's opposite
    infinity stays infinite."""
    rows = min(cols, 40) + 3
    x = values(dtype, (rows, cols), rng)
    for i in range(rows - 3):
        x[i, (i * 97) % cols] = np.nan
    x[0, 0] = x[1, cols - 1] = np.nan
    x[rows - 3, :] = np.nan
    x[rows - 2, :] = -np.inf if op == "max" else np.inf
    graph = reduce_graph(op, dtype, (rows, cols), (1,), False)
    _, (got,), (ref,) = compiled(graph, [x])
    (want,) = interpret(graph, [x])
    assert np.isnan(want[:rows - 2]).all() and not np.isnan(want[rows - 2:]).any()
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ref, want)
    graph0 = reduce_graph(op, dtype, (rows, cols), (0,), True)     # NaN down the columns
    _, (got0,), _ = compiled(graph0, [x])
    np.testing.assert_array_equal(got0, interpret(graph0, [x])[0])


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("op", OPS)
def test_infinities(op, dtype):
    """inf + finite = inf, inf - inf = NaN, huge f32 sums overflow to inf like NumPy's."""
    big = float(np.finfo(dtype.np).max) / 4
    x = np.array([[np.inf, 1, 2, 3, 4, 5, 6, 7, 8],
                  [-np.inf] * 9,
                  [np.inf, -np.inf, 0, 0, 0, 0, 0, 0, 0],
                  [big] * 9,
                  [np.inf] * 9,
                  [-big, 1, 2, 3, -np.inf, 5, 6, 7, 8]], dtype.np)
    graph = reduce_graph(op, dtype, x.shape, (1,), False)
    with np.errstate(all="ignore"):
        _, (got,), (ref,) = compiled(graph, [x])
        (want,) = interpret(graph, [x])
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ref, want)


@pytest.mark.parametrize("op", ["sum", "mean"])
@pytest.mark.parametrize("shape,axes", [((1 << 20,), (0,)), ((4, 1 << 18), (1,)),
                                        ((1 << 18, 4), (0,))],
                         ids=["2^20-ax0", "4x2^18-ax1", "2^18x4-ax0"])
def test_large_float32_sum_is_accurate(op, shape, axes):
    """2**20 float32 values 1 + small positive noise: the result is within 1e-6 relative of
    the float64 sum. (float32 partial sums round each term with a bias here and end about
    3e-5 off: this fails if the float64 accumulator of large float32 sums is lost.)"""
    rng = np.random.default_rng(2)
    x = (1 + 1e-4 * rng.uniform(0, 1, 1 << 20)).astype(np.float32).reshape(shape)
    graph = reduce_graph(op, F32, shape, axes, False)
    _, (got,), (ref,) = compiled(graph, [x])
    fn = np.sum if op == "sum" else np.mean
    exact = fn(x.astype(np.float64), axis=axes)
    assert got.dtype == np.float32
    rel = np.abs(got.astype(np.float64) - exact) / exact
    assert rel.max() <= 1e-6, rel.max()
    # NOTE: the oracle is NumPy's float32 sum: pairwise along a contiguous axis, a running
    # sum down a strided one ([2**18, 4] over axis 0 is about 5e-5 off).
    ref_rtol = 1e-6 if axes == (len(shape) - 1,) else 2e-4
    assert (np.abs(ref.astype(np.float64) - exact) / exact).max() <= ref_rtol


@pytest.mark.parametrize("dtype", [I32, I64], ids=["i32", "i64"])
def test_int_sum_wraps_like_numpy(dtype):
    info = np.iinfo(dtype.np)
    x = np.full((4, 1000), info.max // 3, dtype.np)
    x[1] = info.min // 7
    x[2, ::2] = info.max
    x[3] = np.arange(1000, dtype=dtype.np) * (info.max // 999)
    graph = reduce_graph("sum", dtype, x.shape, (1,), False)
    _, (got,), (ref,) = compiled(graph, [x])
    want = np.sum(x, axis=1, dtype=dtype.np)
    exact = [sum(int(v) for v in row) for row in x]
    assert any(int(w) != e for w, e in zip(want, exact)), "the case must overflow"
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ref, want)


# ---- threads --------------------------------------------------------------------------------
def _threads_cases():
    rng = np.random.default_rng(5)
    yield "softmax", softmax_graph(F32, 37, 515), [values(F32, (37, 515), rng)]
    yield "sum-axis0", reduce_graph("sum", F32, (64, 1000), (0,), False), [
        values(F32, (64, 1000), rng)]
    yield "max-axes02", reduce_graph("max", I64, (6, 40, 33), (0, 2), True), [
        values(I64, (6, 40, 33), rng)]
    yield "layer-norm", layer_norm_graph(F64, 21, 130), [
        values(F64, s, rng) for s in [(21, 130), (130,), (130,)]]


THREADS_CASES = list(_threads_cases())


@pytest.mark.parametrize("name,graph,inputs", THREADS_CASES, ids=[c[0] for c in THREADS_CASES])
def test_split_launch_is_bitwise_identical(name, graph, inputs):
    """Each thread computes whole rows of the outer parallel loop: two threads give the same
    bits as one."""
    fused = fuse_elementwise(graph)
    one = compile_graph(fused, CpuLauncher(threads=1))(inputs)
    launcher = CpuLauncher(threads=2, min_parallel_work=0)
    try:
        exe = compile_graph(fused, launcher)
        (kernel,) = exe.kernels
        assert len(launcher.chunks(kernel.outer, kernel.work)) == 2
        two = exe(inputs)
    finally:
        launcher.close()
    assert [a.tobytes() for a in one] == [b.tobytes() for b in two]
