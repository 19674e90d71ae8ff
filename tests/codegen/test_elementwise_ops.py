"""Every elementwise op of the registry, for every dtype it allows, compiled as a one-op
kernel and compared with the interpreter. Declaring an op adds it here."""
from __future__ import annotations

import itertools
import re
import warnings
import zlib

import numpy as np
import pytest

from kiln.codegen.math_expansions import EXPANSIONS
from kiln.ir.dtypes import DType
from kiln.ir.errors import KilnError
from kiln.ir.builder import make_node
from kiln.ir.interpreter import interpret
from kiln.ir.registry import all_ops
from kiln.frontend.compile import compile_graph

from codegen_helpers import assert_matches, emit1, kernel_graph, sample, t

SHAPE = (4, 251)          # 1004 elements: vector body plus a scalar remainder
# NOTE: relative tolerances in units of each dtype's epsilon; ops not listed must be exact.
# The references are NumPy's own float32/float64 routines (a few ulp themselves).
ULPS = {"exp": 8, "log": 8, "tanh": 8, "sigmoid": 8, "erf": 8, "pow": 8, "sin": 8, "cos": 8,
        "log1p": 8, "expm1": 8}
ATTR_VALUES = {"dtype": list(DType)}


def _cases():
    for op in all_ops():
        if op.kind != "elementwise":
            continue
        for attrs in _attr_combinations(op):
            for dtypes in itertools.product(list(DType), repeat=op.arity):
                if _accepts(op.name, dtypes, attrs):
                    names = "-".join(d.value for d in dtypes)
                    extra = "".join(f"-{v.value if isinstance(v, DType) else v}"
                                    for v in attrs.values())
                    yield pytest.param(op.name, dtypes, attrs, id=f"{op.name}-{names}{extra}")


def _attr_combinations(op):
    for kind in op.attrs.values():
        if kind not in ATTR_VALUES:
            raise AssertionError(f"elementwise op {op.name}: no sample values for attribute "
                                 f"kind {kind!r}; add them to ATTR_VALUES")
    names = list(op.attrs)
    for values in itertools.product(*(ATTR_VALUES[op.attrs[n]] for n in names)):
        yield dict(zip(names, values))


def _accepts(op, dtypes, attrs) -> bool:
    from kiln.ir.graph import Value
    try:
        make_node(op, [Value(t(d, *SHAPE)) for d in dtypes], attrs)
    except KilnError:
        return False
    return True


CASES = list(_cases())


def test_every_elementwise_op_has_cases():
    covered = {c.values[0] for c in CASES}
    declared = {op.name for op in all_ops() if op.kind == "elementwise"}
    assert covered == declared
    assert len(CASES) > 80


@pytest.mark.parametrize("op,dtypes,attrs", CASES)
def test_one_op_kernel_matches_interpreter(op, dtypes, attrs):
    rng = np.random.default_rng(zlib.crc32(repr((op, dtypes, attrs)).encode()))
    graph = kernel_graph([t(d, *SHAPE) for d in dtypes],
                         lambda gb, *xs: [emit1(gb, op, xs, attrs)])
    inputs = [sample(d, SHAPE, rng) for d in dtypes]
    if op == "pow":
        inputs[1] = np.clip(inputs[1], -40, 40)   # keep most results finite
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = interpret(graph, inputs)[0]
    got = compile_graph(graph)(inputs)[0]
    eps = float(np.finfo(want.dtype).eps) if want.dtype.kind == "f" else 0.0
    assert_matches(got, want, rtol=ULPS.get(op, 0) * eps, what=f"{op} {dtypes} {attrs}")


def test_bool_storage_is_numpy_bytes():
    """bool buffers are 1 byte per element; any nonzero byte reads as True."""
    graph = kernel_graph([t(DType.bool, 6), t(DType.bool, 6)],
                         lambda gb, a, b: [emit1(gb, "eq", [a, b])])
    raw = np.array([0, 1, 2, 255, 0, 7], np.uint8).view(np.bool_)
    other = np.array([False, True, True, True, True, False])
    got = compile_graph(graph)([raw, other])[0]
    assert got.dtype == np.bool_ and got.itemsize == 1
    assert got.view(np.uint8).tolist() == [1, 1, 1, 1, 0, 0]


@pytest.mark.parametrize("src", [DType.float32, DType.float64])
@pytest.mark.parametrize("dst", [DType.int32, DType.int64, DType.bool])
def test_float_cast_edges_match_numpy(src, dst):
    """NaN, inf and out-of-range give INT_MIN like NumPy on x86; NaN is True as bool."""
    x = np.array([np.nan, np.inf, -np.inf, 3e9, -3e9, 2.0**31, -2.0**31, -2147483648.5,
                  -2147483649.0, 1e19, -1e19, 2.0**63, 5.7, -5.7, -0.0, 0.4], src.np)
    graph = kernel_graph([t(src, len(x))],
                         lambda gb, a: [emit1(gb, "cast", [a], {"dtype": dst})])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = x.astype(dst.np)
    np.testing.assert_array_equal(compile_graph(graph)([x])[0], want)


# NOTE: float `//` and `%` call libm's fmod (exact): not an expansion, so listed here.
FMOD_OPS = ("floor_divide", "remainder")


def _uses_libm(op, dtypes) -> bool:
    if op in FMOD_OPS and dtypes[0].is_float:
        return True
    entry = EXPANSIONS.get(op, {}).get(dtypes[0])
    return entry is not None and entry.__name__.startswith("libm_")


def test_kernels_call_nothing_except_libm_fallbacks():
    """Every op's loop is straight-line code (so it vectorizes); only the table's declared
    libm fallbacks (f64 erf, f64 pow, sin, cos) and float fmod (`//`, `%`) may call out."""
    calling = []
    for case in CASES:
        op, dtypes, attrs = case.values
        graph = kernel_graph([t(d, *SHAPE) for d in dtypes],
                             lambda gb, *xs: [emit1(gb, op, xs, attrs)])
        (kernel,) = compile_graph(graph).kernels
        body = kernel.asm[kernel.asm.index(f"{kernel.function}:"):]
        if re.search(r"\bcall", body):
            calling.append(case.id)
    expected = [c.id for c in CASES if _uses_libm(c.values[0], c.values[1])]
    assert calling == expected and len(expected) == 10


def test_every_elementwise_op_declares_a_scalar_body():
    missing = [op.name for op in all_ops() if op.kind == "elementwise" and op.scalar is None]
    assert missing == []
