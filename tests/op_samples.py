"""Sample inputs for every registered op: one table (`_TABLE`), keyed by op name.

Each `Case` holds seeded NumPy inputs and the op's attrs, chosen inside the op's domain so that
finite differences are valid: positive bases for log/sqrt/rsqrt/pow, denominators away from
zero, no ties and no values near a kink for max/min/maximum/minimum/relu/abs. The IR tests,
the gradient checks and every backend's tests read this table; `tests/ir/test_ir_registry.py`
fails when a registered op has no entry here.

    >>> [c.id for c in samples("sum")][:2]
    ['f64-axis1', 'f64-axes02-keepdim']
    >>> case = samples("div")[0]
    >>> case.op, case.differentiable_inputs, [a.dtype.name for a in case.inputs]
    ('div', (0, 1), ['float64', 'float64'])
"""
from __future__ import annotations

import dataclasses
import zlib

import numpy as np

from kiln.ir import all_ops, get_op
from kiln.ir.builder import GraphBuilder
from kiln.ir.dtypes import from_numpy
from kiln.ir.graph import Graph
from kiln.ir.types import Loc, TensorType

f64, f32, i64, i32 = np.float64, np.float32, np.int64, np.int32


@dataclasses.dataclass(frozen=True)
class Case:
    """One sample of an op: `op(*inputs, **attrs)`; `id` is unique within the op."""

    op: str
    id: str
    inputs: tuple
    attrs: dict
    differentiable_inputs: tuple

    @property
    def name(self) -> str:
        """`op[id]`, unique over the table (a pytest id)."""
        return f"{self.op}[{self.id}]"

    @property
    def types(self) -> list[TensorType]:
        return [TensorType(from_numpy(a.dtype), a.shape) for a in self.inputs]

    def graph(self, loc: Loc | None = None) -> Graph:
        """A graph of this one node; inputs are named x0, x1, ... and every output returned.

        >>> print(samples("exp")[0].graph(), end="")
        graph @exp(%x0: f64[3,4]) {
          %0: f64[3,4] = exp %x0
          return %0
        }
        """
        b = GraphBuilder(self.op)
        xs = [b.add_input(t, f"x{i}") for i, t in enumerate(self.types)]
        return b.finish(b.emit(self.op, xs, self.attrs, loc))


class _Gen:
    """Seeded arrays in named domains, and `case` to wrap them; one per op so that adding a
    case to one op leaves every other op's numbers unchanged."""

    def __init__(self, op: str):
        self.op = op
        self.rng = np.random.default_rng(zlib.crc32(op.encode()))

    def normal(self, dtype, shape, scale=1.0):
        return (scale * self.rng.standard_normal(shape)).astype(dtype)

    def positive(self, dtype, shape):
        return self.rng.uniform(0.5, 2.0, shape).astype(dtype)

    def nonzero(self, dtype, shape):
        """|x| in [0.2, 2): away from zero, the kink of relu/abs and the pole of 1/x."""
        sign = np.where(self.rng.random(shape) < 0.5, -1.0, 1.0)
        return (sign * self.rng.uniform(0.2, 2.0, shape)).astype(dtype)

    def distinct(self, dtype, shape):
        """All values distinct, at least 0.1 apart and none at zero: no ties for max/argmax."""
        n = int(np.prod(shape, dtype=np.int64))
        k = self.rng.permutation(n) - n // 2
        values = k if np.dtype(dtype).kind == "i" else 0.1 * k + 0.05
        return np.asarray(values).reshape(shape).astype(dtype)

    def apart(self, a):
        """b with |a - b| >= 0.1 everywhere, so maximum/minimum pick a side."""
        return (a + self.nonzero(np.float64, a.shape) / 2).astype(a.dtype)

    def ints(self, dtype, shape, low=-5, high=6):
        return self.rng.integers(low, high, shape).astype(dtype)

    def bools(self, shape):
        return self.rng.random(shape) < 0.5

    def case(self, id: str, inputs, attrs=None, differentiable=None) -> Case:
        inputs = tuple(np.asarray(a) for a in inputs)
        attrs = dict(attrs or {})
        if differentiable is None:
            differentiable = _float_inputs(self.op, inputs, attrs)
        return Case(self.op, id, inputs, attrs, tuple(differentiable))


def _float_inputs(op: str, inputs, attrs) -> tuple[int, ...]:
    """Float inputs of a differentiable op whose outputs are all float."""
    opdef = get_op(op)
    if not opdef.differentiable:
        return ()
    types = [TensorType(from_numpy(a.dtype), a.shape) for a in inputs]
    outs = opdef.infer(types, opdef.make_attrs(attrs))
    if not all(t.dtype.is_float for t in outs):
        return ()
    return tuple(i for i, t in enumerate(types) if t.dtype.is_float)


def _tag(dtype) -> str:
    return from_numpy(dtype).value


# ---- elementwise -------------------------------------------------------------------------
def _unary(domain: str, int_dtypes=()):
    def make(g: _Gen):
        arr = getattr(g, domain)
        cases = [g.case("f64", [arr(f64, (3, 4))]),
                 g.case("f32-rank3", [arr(f32, (2, 3, 4))]),
                 g.case("f64-rank0", [arr(f64, ())])]
        cases += [g.case(_tag(dt), [g.ints(dt, (4, 3))]) for dt in int_dtypes]
        return cases
    return make


def _stop_gradient(g: _Gen):
    """The identity with a zero cotangent: its gradient is deliberately not the derivative, so
    no input is marked differentiable (tests/ops checks the blocking directly)."""
    return [g.case("f64", [g.normal(f64, (3, 4))], differentiable=()),
            g.case("f32-rank0", [g.normal(f32, ())], differentiable=()),
            g.case("i64", [g.ints(i64, (4,))], differentiable=())]


def _cast(g: _Gen):
    x = g.normal(f64, (3, 4), scale=3.0)
    return [g.case("f64-to-f32", [x], {"dtype": "f32"}),
            g.case("f32-to-f64", [x.astype(f32)], {"dtype": "f64"}),
            g.case("f32-to-i32", [x.astype(f32)], {"dtype": "i32"}),
            g.case("i64-to-f32", [g.ints(i64, (5,))], {"dtype": "f32"}),
            g.case("i32-to-i64", [g.ints(i32, (2, 2))], {"dtype": "i64"}),
            g.case("bool-to-f64", [g.bools((3,))], {"dtype": "f64"}),
            g.case("f64-to-bool", [g.nonzero(f64, (4,)) * (g.rng.random(4) < 0.5)],
                   {"dtype": "bool"})]


def _binary(domain_a="normal", domain_b="normal", ints=True):
    def make(g: _Gen):
        a_of, b_of = getattr(g, domain_a), getattr(g, domain_b)
        cases = [g.case("f64", [a_of(f64, (3, 4)), b_of(f64, (3, 4))]),
                 g.case("f32-rank3", [a_of(f32, (2, 3, 2)), b_of(f32, (2, 3, 2))]),
                 g.case("f64-rank0", [a_of(f64, ()), b_of(f64, ())])]
        if ints:
            cases += [g.case(_tag(dt), [g.ints(dt, (4,)), g.ints(dt, (4,))]) for dt in (i32, i64)]
        return cases
    return make


def _extreme2(g: _Gen):
    """maximum/minimum: operands never tie, so the VJP has no half-and-half case."""
    cases = []
    for dt, shape in ((f64, (3, 4)), (f32, (2, 3, 2)), (f64, ())):
        a = g.normal(dt, shape)
        cases.append(g.case(f"{_tag(dt)}-rank{len(shape)}", [a, g.apart(a)]))
    cases.append(g.case("i64", [g.ints(i64, (5,)), g.ints(i64, (5,))]))
    return cases


def _compare(g: _Gen):
    """Comparisons, with some equal elements so eq/le/ge see both outcomes."""
    def pair(a, b):
        return [a, np.where(g.bools(a.shape), a, b)]
    return [g.case("f64", pair(g.normal(f64, (3, 4)), g.normal(f64, (3, 4)))),
            g.case("f32", pair(g.normal(f32, (5,)), g.normal(f32, (5,)))),
            g.case("i32", pair(g.ints(i32, (2, 3)), g.ints(i32, (2, 3)))),
            g.case("i64-rank0", pair(g.ints(i64, ()), g.ints(i64, ()))),
            g.case("bool", [g.bools((6,)), g.bools((6,))])]


def _where(g: _Gen):
    return [g.case("f64", [g.bools((3, 4)), g.normal(f64, (3, 4)), g.normal(f64, (3, 4))]),
            g.case("f32-rank3", [g.bools((2, 2, 3)), g.normal(f32, (2, 2, 3)),
                                 g.normal(f32, (2, 2, 3))]),
            g.case("i64", [g.bools((5,)), g.ints(i64, (5,)), g.ints(i64, (5,))]),
            g.case("bool-rank0", [g.bools(()), g.bools(()), g.bools(())])]


def _int_pow(g: _Gen):
    """pow's integer form: a negative exponent gives PyTorch's 1, +-1 or 0."""
    base = np.array([2, -3, 1, -1, 0, 5, 7, -2], i64)
    exponent = np.array([3, 2, -4, -3, 2, 0, -1, 5], i64)
    return [*_binary("positive", "normal", ints=False)(g),
            g.case("i64-negative-exponents", [base, exponent]),
            g.case("i32", [g.ints(i32, (3, 2), -4, 5), g.ints(i32, (3, 2), 0, 6)])]


def _divide_like(g: _Gen):
    """floor_divide/remainder: both signs on both sides; integer divisors include 0 and -1
    (compiled code gives NumPy's 0 there; the frontend raises first in eager mode)."""
    def ints(dt, shape):
        b = g.ints(dt, shape, -4, 5)
        b.flat[:2] = (0, -1)
        return [g.ints(dt, shape, -20, 21), b]
    return [g.case("f64", [g.normal(f64, (3, 4), 3.0), g.nonzero(f64, (3, 4))]),
            g.case("f32-rank3", [g.normal(f32, (2, 3, 2), 3.0), g.nonzero(f32, (2, 3, 2))]),
            g.case("f64-rank0", [g.normal(f64, (), 3.0), g.nonzero(f64, ())]),
            g.case("i64", ints(i64, (8,))),
            g.case("i32-rank2", ints(i32, (3, 3)))]


def _bitwise2(g: _Gen):
    return [g.case("bool", [g.bools((3, 4)), g.bools((3, 4))]),
            g.case("i64", [g.ints(i64, (5,), -50, 50), g.ints(i64, (5,), -50, 50)]),
            g.case("i32-rank0", [g.ints(i32, ()), g.ints(i32, ())])]


def _bitwise_not(g: _Gen):
    return [g.case("bool", [g.bools((3, 4))]),
            g.case("i64", [g.ints(i64, (5,), -50, 50)]),
            g.case("i32-rank0", [g.ints(i32, ())])]


# ---- scans, sorting ------------------------------------------------------------------------
def _scan(g: _Gen):
    with_zero = g.normal(f64, (2, 5))
    with_zero[0, 2] = 0.0
    with_zero[1, 1] = with_zero[1, 3] = 0.0
    return [g.case("f64-axis1", [g.normal(f64, (3, 4))], {"axis": 1}),
            g.case("f64-axis0-rank3", [g.normal(f64, (3, 2, 2))], {"axis": 0}),
            g.case("f64-zeros", [with_zero], {"axis": 1}),
            g.case("f32-axis2", [g.normal(f32, (2, 2, 3))], {"axis": 2}),
            g.case("f64-rank0", [g.normal(f64, ())], {"axis": 0}),
            g.case("i64", [g.ints(i64, (4, 3))], {"axis": 0})]


def _argsort(g: _Gen):
    ties = np.array([[3, 1, 3, 2, 1], [0, 0, 0, 0, 0]], i64)
    nans = np.array([2.0, np.nan, -1.0, np.nan, 5.0], f32)
    return [g.case("f64-axis1", [g.distinct(f64, (3, 4))], {"axis": 1, "descending": False}),
            g.case("f64-axis0-descending", [g.distinct(f64, (4, 3))],
                   {"axis": 0, "descending": True}),
            g.case("i64-ties", [ties], {"axis": 1, "descending": False}),
            g.case("i64-ties-descending", [ties], {"axis": 1, "descending": True}),
            g.case("f32-nan-descending", [nans], {"axis": 0, "descending": True}),
            g.case("f32-nan", [nans], {"axis": 0, "descending": False})]


def _flip(g: _Gen):
    return [g.case("f64-axis0", [g.normal(f64, (3, 4))], {"axes": (0,)}),
            g.case("f32-axes02", [g.normal(f32, (2, 3, 4))], {"axes": (0, 2)}),
            g.case("f64-none", [g.normal(f64, (2, 2))], {"axes": ()}),
            g.case("i64", [g.ints(i64, (5,))], {"axes": (0,)})]


# ---- matmul, movement ----------------------------------------------------------------------
def _matmul(g: _Gen):
    return [g.case("f64-2d", [g.normal(f64, (3, 4)), g.normal(f64, (4, 5))]),
            g.case("f32-batched", [g.normal(f32, (2, 3, 4)), g.normal(f32, (2, 4, 2))]),
            g.case("f64-batched-rank4", [g.normal(f64, (2, 2, 3, 2)),
                                         g.normal(f64, (2, 2, 2, 3))]),
            g.case("f64-outer", [g.normal(f64, (3, 1)), g.normal(f64, (1, 2))]),
            g.case("i64-2d", [g.ints(i64, (2, 3)), g.ints(i64, (3, 2))])]


def _reshape(g: _Gen):
    return [g.case("f64", [g.normal(f64, (3, 4))], {"shape": (2, 6)}),
            g.case("f32-flatten", [g.normal(f32, (2, 3, 4))], {"shape": (24,)}),
            g.case("f64-rank0-to-1x1", [g.normal(f64, ())], {"shape": (1, 1)}),
            g.case("f64-to-rank0", [g.normal(f64, (1, 1))], {"shape": ()}),
            g.case("i32-unit-axes", [g.ints(i32, (6,))], {"shape": (1, 2, 3, 1)}),
            g.case("f64-empty", [g.normal(f64, (0, 3))], {"shape": (3, 0)})]


def _permute(g: _Gen):
    return [g.case("f64-rank3", [g.normal(f64, (2, 3, 4))], {"perm": (2, 0, 1)}),
            g.case("f32-transpose", [g.normal(f32, (3, 5))], {"perm": (1, 0)}),
            g.case("f64-rank4", [g.normal(f64, (2, 1, 3, 2))], {"perm": (3, 1, 0, 2)}),
            g.case("i64-identity", [g.ints(i64, (2, 3))], {"perm": (0, 1)})]


def _expand(g: _Gen):
    return [g.case("f64-leading-axes", [g.normal(f64, (3, 1))], {"shape": (2, 3, 4)}),
            g.case("f32-unit-axis", [g.normal(f32, (1, 4))], {"shape": (3, 4)}),
            g.case("f64-rank0", [g.normal(f64, ())], {"shape": (2, 3)}),
            g.case("f64-same", [g.normal(f64, (2, 3))], {"shape": (2, 3)}),
            g.case("bool", [g.bools((1, 3))], {"shape": (2, 3)}),
            g.case("i32", [g.ints(i32, (2, 1))], {"shape": (4, 2, 5)})]


def _window(starts, stops, steps):
    return {"starts": starts, "stops": stops, "steps": steps}


def _slice(g: _Gen):
    return [g.case("f64-steps", [g.normal(f64, (5, 6))], _window((1, 0), (4, 6), (1, 2))),
            g.case("f32-step3", [g.normal(f32, (7,))], _window((0,), (7,), (3,))),
            g.case("f64-rank3", [g.normal(f64, (2, 5, 4))],
                   _window((0, 1, 1), (2, 5, 4), (1, 3, 2))),
            g.case("f64-empty", [g.normal(f64, (4, 3))], _window((2, 0), (2, 3), (1, 1))),
            g.case("i64", [g.ints(i64, (6,))], _window((1,), (5,), (2,)))]


def _unslice(g: _Gen):
    return [g.case("f64-steps", [g.normal(f64, (3, 3))],
                   dict(shape=(5, 6), **_window((1, 0), (4, 6), (1, 2)))),
            g.case("f32-step3", [g.normal(f32, (3,))],
                   dict(shape=(7,), **_window((0,), (7,), (3,)))),
            g.case("f64-rank3", [g.normal(f64, (2, 2, 2))],
                   dict(shape=(2, 5, 4), **_window((0, 1, 1), (2, 5, 4), (1, 3, 2)))),
            g.case("i64", [g.ints(i64, (2,))], dict(shape=(6,), **_window((1,), (5,), (2,))))]


def _slice_update(g: _Gen):
    return [g.case("f64-steps", [g.normal(f64, (5, 6)), g.normal(f64, (3, 3))],
                   _window((1, 0), (4, 6), (1, 2))),
            g.case("f32-row", [g.normal(f32, (3, 4)), g.normal(f32, (1, 4))],
                   _window((1, 0), (2, 4), (1, 1))),
            g.case("f64-empty", [g.normal(f64, (4, 3)), g.normal(f64, (0, 3))],
                   _window((2, 0), (2, 3), (1, 1))),
            g.case("i64", [g.ints(i64, (6,)), g.ints(i64, (2,))], _window((1,), (5,), (2,)))]


def _diagonal(g: _Gen):
    return [g.case("f64-square", [g.normal(f64, (3, 3))]),
            g.case("f32-wide", [g.normal(f32, (2, 4))]),
            g.case("f64-tall-batched", [g.normal(f64, (2, 4, 3))]),
            g.case("i64", [g.ints(i64, (3, 2))])]


def _copy_into(g: _Gen):
    """The mutation op: run alone, its result is the value written (the dst after it)."""
    return [g.case("f64", [g.normal(f64, (3, 4)), g.normal(f64, (3, 4))], differentiable=()),
            g.case("f32-rank0", [g.normal(f32, ()), g.normal(f32, ())], differentiable=()),
            g.case("i64", [g.ints(i64, (4,)), g.ints(i64, (4,))], differentiable=())]


def _concat(g: _Gen):
    return [g.case("f64-axis0", [g.normal(f64, (2, 3)), g.normal(f64, (4, 3))], {"axis": 0}),
            g.case("f32-three-axis1", [g.normal(f32, (2, 1)), g.normal(f32, (2, 3)),
                                       g.normal(f32, (2, 2))], {"axis": 1}),
            g.case("f64-four-axis2", [g.normal(f64, (1, 2, k)) for k in (1, 2, 1, 3)],
                   {"axis": 2}),
            g.case("f64-one", [g.normal(f64, (3,))], {"axis": 0}),
            g.case("i64", [g.ints(i64, (2,)), g.ints(i64, (3,))], {"axis": 0}),
            g.case("bool", [g.bools((1, 2)), g.bools((2, 2))], {"axis": 0})]


# ---- reductions ----------------------------------------------------------------------------
def _axes(axes, keepdim=False):
    return {"axes": axes, "keepdim": keepdim}


def _reduce(domain: str, int_dtypes=()):
    def make(g: _Gen):
        arr = getattr(g, domain)
        cases = [g.case("f64-axis1", [arr(f64, (3, 4, 5))], _axes((1,))),
                 g.case("f64-axes02-keepdim", [arr(f64, (3, 4, 5))], _axes((0, 2), True)),
                 g.case("f64-all", [arr(f64, (3, 4))], _axes((0, 1))),
                 g.case("f32-axis0-keepdim", [arr(f32, (4, 6))], _axes((0,), True)),
                 g.case("f64-no-axes", [arr(f64, (2, 3))], _axes(())),
                 g.case("f64-rank0", [arr(f64, ())], _axes((), True))]
        cases += [g.case(_tag(dt), [g.ints(dt, (3, 4))], _axes((1,))) for dt in int_dtypes]
        return cases
    return make


def _argmax(g: _Gen):
    def am(axis, keepdim=False):
        return {"axis": axis, "keepdim": keepdim}
    return [g.case("f64-axis0", [g.distinct(f64, (3, 4))], am(0)),
            g.case("f64-axis2-keepdim", [g.distinct(f64, (2, 3, 4))], am(2, True)),
            g.case("f32-axis1", [g.distinct(f32, (4, 5))], am(1)),
            g.case("i64-axis0", [g.distinct(i64, (5,))], am(0)),
            g.case("i32-axis1-keepdim", [g.distinct(i32, (2, 3))], am(1, True))]


# ---- sources -------------------------------------------------------------------------------
def _full(g: _Gen):
    def full(value, shape, dtype):
        return {"value": value, "shape": shape, "dtype": dtype}
    return [g.case("f32", [], full(1.5, (2, 3), "f32")),
            g.case("f64-int-value", [], full(2, (4,), "f64")),
            g.case("i64", [], full(-7, (3, 1), "i64")),
            g.case("bool", [], full(True, (2,), "bool")),
            g.case("f64-rank0-neg-inf", [], full(float("-inf"), (), "f64")),
            g.case("f32-nan", [], full(float("nan"), (3,), "f32")),
            g.case("f64-neg-zero", [], full(-0.0, (2, 2), "f64"))]


def _constant(g: _Gen):
    def const(data, shape, dtype):
        return {"data": data, "shape": shape, "dtype": dtype}
    return [g.case("f32-2x2", [], const([[1.5, -2.0], [0.1, 3.0]], (2, 2), "f32")),
            g.case("i64", [], const([1, 2, 3], (3,), "i64")),
            g.case("bool", [], const([True, False], (2,), "bool")),
            g.case("i32-rank0", [], const(7, (), "i32")),
            g.case("f64-special", [], const([float("nan"), float("inf"), -float("inf"),
                                             1e-300, -0.0], (5,), "f64")),
            g.case("f32-empty", [], const([], (0,), "f32"))]


def _arange(g: _Gen):
    def ar(start, stop, step, dtype):
        return {"start": start, "stop": stop, "step": step, "dtype": dtype}
    return [g.case("i64", [], ar(0, 5, 1, "i64")),
            g.case("f32-fractional", [], ar(0.5, 2.0, 0.25, "f32")),
            g.case("i32-negative-step", [], ar(10, 0, -3, "i32")),
            g.case("f64-symmetric", [], ar(-1.5, 1.5, 0.5, "f64")),
            g.case("i64-empty", [], ar(5, 5, 1, "i64"))]


def _random(g: _Gen):
    def seed(s):
        return np.array(s, np.int64)
    return [g.case("f32", [seed(42)], {"shape": (3, 4), "dtype": "f32"}),
            g.case("f64", [seed(7)], {"shape": (5,), "dtype": "f64"}),
            g.case("f32-rank0", [seed(0)], {"shape": (), "dtype": "f32"})]


# ---- kernel --------------------------------------------------------------------------------
def _body_chain(dtype, shape) -> Graph:
    """body(a, b) = exp(a * b) + a: one result."""
    b = GraphBuilder("k_chain")
    t = TensorType(from_numpy(dtype), shape)
    x, y = b.add_input(t, "a"), b.add_input(t, "b")
    (p,) = b.emit("mul", [x, y], {})
    (e,) = b.emit("exp", [p], {})
    return b.finish(b.emit("add", [e, x], {}))


def _body_two_results(dtype, shape) -> Graph:
    """body(a) = (a * 2, sum(a over the last axis)): two results of different shapes."""
    b = GraphBuilder("k_two")
    x = b.add_input(TensorType(from_numpy(dtype), shape))
    (two,) = b.emit("full", [], {"value": 2.0, "shape": shape, "dtype": from_numpy(dtype)})
    (m,) = b.emit("mul", [x, two], {})
    (s,) = b.emit("sum", [x], {"axes": (len(shape) - 1,), "keepdim": False})
    return b.finish([m, s])


def _kernel(g: _Gen):
    return [g.case("f64-chain", [g.normal(f64, (3, 4)), g.normal(f64, (3, 4))],
                   {"name": "k_chain", "body": _body_chain(f64, (3, 4))}),
            g.case("f32-two-results", [g.normal(f32, (2, 5))],
                   {"name": "k_two", "body": _body_two_results(f32, (2, 5))})]


# ---- convolution, pooling ------------------------------------------------------------------
def _conv_attrs(stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    return {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}


# NOTE: "rows-skipped" leaves input rows 2 and 5 outside every window (their gradient is 0).
_CONV_CONFIGS = (  # id, x shape, w shape, attrs
    ("f64-plain", (2, 3, 5, 6), (4, 3, 3, 3), _conv_attrs()),
    ("f64-stride-pad", (1, 2, 6, 5), (3, 2, 3, 2), _conv_attrs((2, 1), (1, 2))),
    ("f64-dilation-groups", (2, 4, 7, 6), (6, 2, 2, 3), _conv_attrs((1, 2), (1, 0), (2, 1), 2)),
    ("f64-rows-skipped", (1, 1, 6, 4), (2, 1, 2, 2), _conv_attrs((3, 1))),
    ("f32-depthwise", (2, 3, 5, 5), (3, 1, 3, 3), _conv_attrs(padding=(1, 1), groups=3)),
)


def _dt(case_id: str):
    """The dtype a case id starts with ("f64-..." or "f32-...")."""
    return {"f64": f64, "f32": f32}[case_id[:3]]


def _out_shape(op: str, types, attrs) -> tuple:
    opdef = get_op(op)
    return opdef.infer(types, opdef.make_attrs(attrs))[0].shape


def _conv_out(x_shape, w_shape, dtype, attrs) -> tuple:
    t = [TensorType(from_numpy(dtype), x_shape), TensorType(from_numpy(dtype), w_shape)]
    return _out_shape("conv2d", t, attrs)


def _conv2d(g: _Gen):
    return [g.case(id, [g.normal(_dt(id), xs), g.normal(_dt(id), ws)], at)
            for id, xs, ws, at in _CONV_CONFIGS]


def _conv2d_grad_input(g: _Gen):
    return [g.case(id, [g.normal(_dt(id), _conv_out(xs, ws, _dt(id), at)), g.normal(_dt(id), ws)],
                   dict(input_shape=xs, **at)) for id, xs, ws, at in _CONV_CONFIGS]


def _conv2d_grad_weight(g: _Gen):
    return [g.case(id, [g.normal(_dt(id), xs), g.normal(_dt(id), _conv_out(xs, ws, _dt(id), at))],
                   dict(weight_shape=ws, **at)) for id, xs, ws, at in _CONV_CONFIGS]


def _pool_attrs(k, s, p=(0, 0), ceil=False, dilation=None, count_include_pad=None):
    """max_pool2d attrs when `dilation` is given, else avg_pool2d attrs."""
    at = {"kernel_size": k, "stride": s, "padding": p, "ceil_mode": ceil}
    if dilation is not None:
        at["dilation"] = dilation
    if count_include_pad is not None:
        at["count_include_pad"] = count_include_pad
    return at


_MAX_CONFIGS = (  # id, x shape, attrs; inputs are `distinct`: no ties inside a window
    ("f64-k2", (2, 2, 4, 6), _pool_attrs((2, 2), (2, 2), dilation=(1, 1))),
    ("f64-overlap-pad", (1, 3, 5, 5), _pool_attrs((3, 3), (1, 2), (1, 1), dilation=(1, 1))),
    ("f64-dilation-ceil", (1, 2, 7, 6), _pool_attrs((2, 3), (2, 2), (1, 1), True, (2, 1))),
    ("f32-k3s2", (2, 1, 7, 7), _pool_attrs((3, 3), (2, 2), dilation=(1, 1))),
)
_AVG_CONFIGS = (  # id, x shape, attrs
    ("f64-k2", (2, 2, 4, 6), _pool_attrs((2, 2), (2, 2), count_include_pad=True)),
    ("f64-pad-exclude", (1, 3, 5, 5), _pool_attrs((3, 3), (2, 1), (1, 1),
                                                  count_include_pad=False)),
    ("f64-ceil-pad", (1, 2, 6, 7), _pool_attrs((3, 2), (2, 2), (1, 1), True,
                                               count_include_pad=True)),
    ("f32-k3s2", (2, 1, 7, 7), _pool_attrs((3, 3), (2, 2), count_include_pad=True)),
)


def _pool_out(op: str, x_shape, dtype, attrs) -> tuple:
    return _out_shape(op, [TensorType(from_numpy(dtype), x_shape)], attrs)


def _max_pool2d(g: _Gen):
    return [g.case(id, [g.distinct(_dt(id), xs)], at) for id, xs, at in _MAX_CONFIGS]


def _max_pool2d_pair(g: _Gen):
    """(x, v): v has the pooled shape (max_pool2d_grad) or x's shape (max_pool2d_gather)."""
    pooled = g.op == "max_pool2d_grad"
    return [g.case(id, [g.distinct(_dt(id), xs),
                        g.normal(_dt(id), _pool_out("max_pool2d", xs, _dt(id), at) if pooled
                                 else xs)], at) for id, xs, at in _MAX_CONFIGS]


def _avg_pool2d(g: _Gen):
    return [g.case(id, [g.normal(_dt(id), xs)], at) for id, xs, at in _AVG_CONFIGS]


def _avg_pool2d_grad(g: _Gen):
    return [g.case(id, [g.normal(_dt(id), _pool_out("avg_pool2d", xs, _dt(id), at))],
                   dict(input_shape=xs, **at)) for id, xs, at in _AVG_CONFIGS]


# ---- indexing ------------------------------------------------------------------------------
# NOTE: indices repeat, so scatter_add (and gather's gradient) must accumulate duplicates.
_GATHER_CONFIGS = (  # id, x shape, index shape, axis
    ("f64-axis1", (3, 4), (3, 5), 1),
    ("f64-axis0-smaller", (4, 3), (5, 2), 0),
    ("f32-rank3-axis2", (2, 3, 4), (2, 2, 3), 2),
    ("f64-rank1", (6,), (4,), 0),
)


def _gather(g: _Gen):
    cases = [g.case(id, [g.normal(_dt(id), xs), g.ints(i64, ix, 0, xs[ax])], {"axis": ax})
             for id, xs, ix, ax in _GATHER_CONFIGS]
    cases.append(g.case("i64-x-i32-index", [g.ints(i64, (3, 4)), g.ints(i32, (3, 2), 0, 3)],
                        {"axis": 0}))
    return cases


def _scatter_add(g: _Gen):
    cases = [g.case(id, [g.normal(_dt(id), ix), g.ints(i64, ix, 0, xs[ax])],
                    {"shape": xs, "axis": ax}) for id, xs, ix, ax in _GATHER_CONFIGS]
    cases.append(g.case("i64-i32-index", [g.ints(i64, (3, 2)), g.ints(i32, (3, 2), 0, 3)],
                        {"shape": (3, 4), "axis": 0}))
    return cases


# ---- the table -----------------------------------------------------------------------------
_TABLE = {
    "neg": _unary("normal", (i32, i64)),
    "stop_gradient": _stop_gradient,
    "exp": _unary("normal"),
    # NOTE: "nonzero" keeps every value 0.2 or more from 0, and standard normal values almost
    # never sit within finite differences' step of an integer (a jump of floor/round)
    "floor": _unary("nonzero"),
    "ceil": _unary("nonzero"),
    "trunc": _unary("nonzero"),
    "round": _unary("nonzero"),
    "log": _unary("positive"),
    "sqrt": _unary("positive"),
    "rsqrt": _unary("positive"),
    "tanh": _unary("normal"),
    "sigmoid": _unary("normal"),
    "erf": _unary("normal"),
    "relu": _unary("nonzero", (i32, i64)),
    "abs": _unary("nonzero", (i32, i64)),
    "cast": _cast,
    "add": _binary(),
    "sub": _binary(),
    "mul": _binary(),
    "div": _binary("normal", "nonzero", ints=False),
    "pow": _int_pow,
    "sin": _unary("normal"),
    "cos": _unary("normal"),
    "log1p": _unary("positive"),
    "expm1": _unary("normal"),
    "floor_divide": _divide_like,
    "remainder": _divide_like,
    "bitwise_and": _bitwise2,
    "bitwise_or": _bitwise2,
    "bitwise_xor": _bitwise2,
    "bitwise_not": _bitwise_not,
    "cumsum": _scan,
    "cumprod": _scan,
    "argsort": _argsort,
    "flip": _flip,
    "maximum": _extreme2,
    "minimum": _extreme2,
    "eq": _compare,
    "ne": _compare,
    "lt": _compare,
    "le": _compare,
    "gt": _compare,
    "ge": _compare,
    "where": _where,
    "matmul": _matmul,
    "reshape": _reshape,
    "permute": _permute,
    "expand": _expand,
    "slice": _slice,
    "unslice": _unslice,
    "slice_update": _slice_update,
    "diagonal": _diagonal,
    "copy_": _copy_into,
    "copy": _unary("normal", (i32, i64)),
    "concat": _concat,
    "sum": _reduce("normal", (i32, i64)),
    "mean": _reduce("normal"),
    "max": _reduce("distinct", (i64,)),
    "min": _reduce("distinct", (i32,)),
    "argmax": _argmax,
    "full": _full,
    "constant": _constant,
    "arange": _arange,
    "random_normal": _random,
    "random_uniform": _random,
    "kernel": _kernel,
    "conv2d": _conv2d,
    "conv2d_grad_input": _conv2d_grad_input,
    "conv2d_grad_weight": _conv2d_grad_weight,
    "max_pool2d": _max_pool2d,
    "max_pool2d_grad": _max_pool2d_pair,
    "max_pool2d_gather": _max_pool2d_pair,
    "avg_pool2d": _avg_pool2d,
    "avg_pool2d_grad": _avg_pool2d_grad,
    "gather": _gather,
    "scatter_add": _scatter_add,
}

# NOTE: the indexing ops' samples have a file of their own (tests/op_samples_indexing.py)
from op_samples_indexing import TABLE as _INDEXING_TABLE  # noqa: E402

_TABLE.update(_INDEXING_TABLE)
SAMPLED_OPS: tuple[str, ...] = tuple(sorted(_TABLE))


def samples(op_name: str) -> list[Case]:
    """Fresh sample cases of one op (new arrays each call, the same numbers every time).

    >>> len(samples("concat")[1].inputs)
    3
    """
    if op_name not in _TABLE:
        raise KeyError(f"no samples for op '{op_name}'; add an entry to tests/op_samples.py")
    return _TABLE[op_name](_Gen(op_name))


def all_cases() -> list[Case]:
    """Every case of every registered op that has samples, in registry order."""
    return [c for op in all_ops() if op.name in _TABLE for c in samples(op.name)]


def missing_ops() -> list[str]:
    """Registered ops without samples (the completeness test wants none)."""
    # NOTE: collectives need a process group: tests/distributed samples them
    return sorted(op.name for op in all_ops() if op.name not in _TABLE and op.kind != "collective")
