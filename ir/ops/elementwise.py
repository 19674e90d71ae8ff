"""Elementwise ops: NumPy reference, VJP in registry ops, scalar body for codegen.

Operands of one op always share shape and dtype (the frontend inserts expand and cast).
"""
from __future__ import annotations

import math

import numpy as np

from ..dtypes import DType
from ..errors import DTypeError
from ..registry import NOT_DIFFERENTIABLE, OpDef, P, register
from . import rules


def _infer_same(name, float_only=False, numeric=False, out_dtype=None):
    def infer(types, attrs):
        t = rules.same_types(name, types)
        if float_only:
            rules.need_float(name, t)
        if numeric:
            rules.need_numeric(name, t)
        return [t.with_dtype(out_dtype) if out_dtype else t]
    return infer


def _unary(name, ref, vjp, scalar, float_only=True, numeric=True, doc=""):
    register(OpDef(name, "elementwise", 1, {}, _infer_same(name, float_only, numeric),
                   lambda xs, a: ref(xs[0]), vjp, _no_attrs(scalar), doc))


def _binary(name, ref, vjp, scalar, float_only=False, numeric=True, out_dtype=None, doc=""):
    register(OpDef(name, "elementwise", 2, {},
                   _infer_same(name, float_only, numeric, out_dtype),
                   lambda xs, a: ref(xs[0], xs[1]), vjp, _no_attrs(scalar), doc))


def _no_attrs(body):
    """Scalar bodies take (builder, attrs, *operands); most ops ignore attrs."""
    return lambda b, attrs, *xs: body(b, *xs)


def _erf_ref(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x).astype(x.dtype)


def _sigmoid_ref(x):
    # NOTE: split by sign so neither branch overflows exp.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)


def _mask(x, cond):
    """cond (bool) as 0/1 in x's dtype."""
    return P.cast(cond, dtype=x.dtype)


# ---- unary ---------------------------------------------------------------------------------
_unary("neg", np.negative, lambda c, g: [P.neg(g)], lambda b, x: b.neg(x), float_only=False)
_unary("exp", np.exp, lambda c, g: [P.mul(g, c.out)], lambda b, x: b.exp(x))
_unary("log", np.log, lambda c, g: [P.div(g, c.inputs[0])], lambda b, x: b.log(x))
_unary("sqrt", np.sqrt, lambda c, g: [P.div(g, P.scale(c.out, 2.0))],
       lambda b, x: b.sqrt(x))
_unary("rsqrt", lambda x: (1 / np.sqrt(x)).astype(x.dtype),
       lambda c, g: [P.mul(P.scale(g, -0.5), P.mul(c.out, P.mul(c.out, c.out)))],
       lambda b, x: b.rsqrt(x))
_unary("tanh", np.tanh,
       lambda c, g: [P.mul(g, P.sub(P.full_like(c.out, 1.0), P.mul(c.out, c.out)))],
       lambda b, x: b.tanh(x))
_unary("sigmoid", _sigmoid_ref,
       lambda c, g: [P.mul(g, P.mul(c.out, P.sub(P.full_like(c.out, 1.0), c.out)))],
       lambda b, x: b.sigmoid(x))
_unary("erf", _erf_ref,
       lambda c, g: [P.mul(g, P.scale(P.exp(P.neg(P.mul(c.inputs[0], c.inputs[0]))),
                                      2.0 / math.sqrt(math.pi)))],
       lambda b, x: b.erf(x))
# NOTE: from the output, as PyTorch saves it (out > 0 exactly where x > 0): a later in-place
# write into relu's input does not invalidate its gradient.
_unary("relu", lambda x: np.maximum(x, np.zeros((), x.dtype)),
       lambda c, g: [P.where(P.gt(c.out, P.zeros_like(c.out)), g, P.zeros_like(g))],
       lambda b, x: b.max(x, b.const(0, b.dtype(x))), float_only=False)
# NOTE: rounding: piecewise constant, so zero gradient (PyTorch's); round is half-to-even
for _name, _ref, _body in (("floor", np.floor, lambda b, x: b.floor(x)),
                           ("ceil", np.ceil, lambda b, x: b.ceil(x)),
                           ("trunc", np.trunc, lambda b, x: b.trunc(x)),
                           ("round", np.round, lambda b, x: b.roundeven(x))):
    _unary(_name, _ref, lambda c, g: [P.zeros_like(g)], _body,
           doc=f"{_name} of each element (floats; zero gradient).")

_unary("sin", np.sin, lambda c, g: [P.mul(g, P.cos(c.inputs[0]))], lambda b, x: b.sin(x))
_unary("cos", np.cos, lambda c, g: [P.neg(P.mul(g, P.sin(c.inputs[0])))],
       lambda b, x: b.cos(x))
_unary("log1p", np.log1p,
       lambda c, g: [P.div(g, P.add(c.inputs[0], P.full_like(c.inputs[0], 1.0)))],
       lambda b, x: b.log1p(x))
_unary("expm1", np.expm1,
       lambda c, g: [P.mul(g, P.add(c.out, P.full_like(c.out, 1.0)))],
       lambda b, x: b.expm1(x))
_unary("abs", np.abs,
       lambda c, g: [P.mul(g, P.sub(_mask(g, P.gt(c.inputs[0], P.zeros_like(c.inputs[0]))),
                                    _mask(g, P.lt(c.inputs[0], P.zeros_like(c.inputs[0])))))],
       lambda b, x: b.abs(x), float_only=False)


# NOTE: the identity whose cotangent is zero: `detach()` inside a traced function, so the
# graph autograd pass does not differentiate through it. Eager detach needs no node.
register(OpDef("stop_gradient", "elementwise", 1, {}, lambda types, attrs: [types[0]],
               lambda xs, a: xs[0], lambda c, g: [None], lambda b, attrs, x: x,
               "The input, with no gradient flowing back (a traced `detach()`).",
               view=lambda shape, strides, offset, attrs: (tuple(strides), offset),
               unview=lambda before, new, attrs: new))

# NOTE: a real copy (`clone()`, a reshape that cannot view its input): a new value, never a
# view, so a later in-place op on it cannot reach its input.
register(OpDef("copy", "elementwise", 1, {}, lambda types, attrs: [types[0]],
               lambda xs, a: np.array(xs[0], copy=True), lambda c, g: [g],
               lambda b, attrs, x: x, "A copy of the input (new storage)."))


def _copy_into_infer(types, attrs):
    dst, src = types
    if dst != src:
        raise DTypeError(f"copy_: the value written ({src}) must have the type of the tensor "
                         f"written into ({dst}); insert `cast` and `expand`")
    return [dst]


# NOTE: the one mutation op. `copy_ %dst, %src` writes src into dst's storage (and every view
# of it); its result names dst after the write. Traced in-place ops and `t[i] = v` emit it; the
# functionalize pass (the first pass) replaces it with pure ops and write-backs.
register(OpDef("copy_", "mutation", 2, {}, _copy_into_infer,
               lambda xs, a: np.array(xs[1], copy=True), NOT_DIFFERENTIABLE,
               doc="Write the second operand into the first one's storage (in place)."))


def _cast_infer(types, attrs):
    return [types[0].with_dtype(attrs.dtype)]


def _cast_vjp(c, g):
    if not c.inputs[0].dtype.is_float:
        return [None]
    return [P.cast(g, dtype=c.inputs[0].dtype)]


register(OpDef("cast", "elementwise", 1, {"dtype": "dtype"}, _cast_infer,
               lambda xs, a: xs[0].astype(a.dtype.np), _cast_vjp,
               lambda b, attrs, x: b.cast(x, attrs.dtype),
               "Convert to `dtype` (float->int truncates toward zero, like NumPy)."))

# ---- binary --------------------------------------------------------------------------------
_binary("add", np.add, lambda c, g: [g, g], lambda b, x, y: b.add(x, y))
_binary("sub", np.subtract, lambda c, g: [g, P.neg(g)], lambda b, x, y: b.sub(x, y))
_binary("mul", np.multiply,
        lambda c, g: [P.mul(g, c.inputs[1]), P.mul(g, c.inputs[0])],
        lambda b, x, y: b.mul(x, y))
# NOTE: PyTorch's formula, from the inputs (not the quotient): an in-place write into the
# quotient then does not invalidate the gradient, as in PyTorch.
_binary("div", np.divide,
        lambda c, g: [P.div(g, c.inputs[1]),
                      P.div(P.mul(P.neg(g), c.inputs[0]), P.mul(c.inputs[1], c.inputs[1]))],
        lambda b, x, y: b.div(x, y), float_only=True)


def _pow_vjp(c, g):
    # NOTE: PyTorch's masks: x**0 has gradient 0 in x (not 0 * 0**-1 = nan), and 0**e with
    # e >= 0 has gradient 0 in e (not 0 * log 0)
    a, e = c.inputs
    ga = gb = None
    zero = P.zeros_like(g)
    if c.needs[0]:
        em1 = P.sub(e, P.full_like(e, 1.0))
        ga = P.where(P.eq(e, P.zeros_like(e)), zero, P.mul(g, P.mul(e, P.pow(a, em1))))
    if c.needs[1]:
        gb = P.mul(g, P.mul(c.out, P.log(a)))
        at_zero = P.eq(a, P.zeros_like(a))
        gb = P.where(at_zero, P.where(P.ge(e, P.zeros_like(e)), zero, gb), gb)
    return [ga, gb]


def _int_pow(a, e):
    """PyTorch's integer power: wraps on overflow like every integer op; a negative exponent
    gives 1 for base 1, +-1 for base -1 and 0 otherwise (1 // a**|e| rounded toward zero)."""
    with np.errstate(over="ignore"):
        out = np.power(a, np.maximum(e, 0))
    minus_one = np.where(e % 2 == 1, -1, 1).astype(a.dtype)
    negative = np.where(a == 1, 1, np.where(a == -1, minus_one, 0)).astype(a.dtype)
    return np.where(e < 0, negative, out).astype(a.dtype)


def _pow_ref(a, e):
    return np.power(a, e) if a.dtype.kind == "f" else _int_pow(a, e)


_binary("pow", _pow_ref, _pow_vjp, lambda b, x, y: b.pow(x, y))


# NOTE: PyTorch's floor division and remainder (Python's sign rules), from fmod so that the
# quotient and remainder agree: a == b * floor_divide(a, b) + remainder(a, b) where exact.
def _fmod_parts(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        mod = np.fmod(a, b)
    off_sign = (mod != 0) & ((b < 0) != (mod < 0))
    return mod, off_sign


def _floor_divide_float(a, b):
    mod, off_sign = _fmod_parts(a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        div = (a - mod) / b
        div = np.where(off_sign, div - 1, div)
        floor = np.floor(div)
        floor = np.where(div - floor > 0.5, floor + 1, floor)
        out = np.where(div != 0, floor, np.copysign(np.zeros_like(div), a / b))
        return np.where(b == 0, a / b, out).astype(a.dtype)


def _safe_divisor(b):
    """Integer divisors with 0 and -1 replaced by 1: x86 traps on x // 0 and INT_MIN // -1,
    and so NumPy's answers (0, and -x wrapping) are made by hand."""
    return np.where((b == 0) | (b == -1), np.ones_like(b), b)


def _floor_divide_ref(a, b):
    if a.dtype.kind == "f":
        return _floor_divide_float(a, b)
    q = np.floor_divide(a, _safe_divisor(b))
    with np.errstate(over="ignore"):
        q = np.where(b == -1, np.negative(a), q)
    return np.where(b == 0, np.zeros_like(a), q).astype(a.dtype)


def _remainder_ref(a, b):
    if a.dtype.kind == "f":
        mod, off_sign = _fmod_parts(a, b)
        return np.where(off_sign, mod + b, mod).astype(a.dtype)
    r = np.remainder(a, _safe_divisor(b))
    return np.where((b == 0) | (b == -1), np.zeros_like(a), r).astype(a.dtype)


def _floor_divide_vjp(c, g):
    # NOTE: a step function: zero almost everywhere, as PyTorch's floor_divide gradient
    return [P.zeros_like(g), P.zeros_like(g)]


def _remainder_vjp(c, g):
    a, b = c.inputs
    gb = P.neg(P.mul(g, P.floor_divide(a, b))) if c.needs[1] else None
    return [g, gb]


_binary("floor_divide", _floor_divide_ref, _floor_divide_vjp,
        lambda b, x, y: b.floor_divide(x, y),
        doc="Division rounded toward -inf (Python's `//`); x // 0 is 0 for integers (the "
            "frontend raises first in eager mode, as PyTorch).")
_binary("remainder", _remainder_ref, _remainder_vjp, lambda b, x, y: b.remainder(x, y),
        doc="x - y * floor(x / y), with the sign of y (Python's `%`).")


def _bitwise(name, arity, ref, scalar, doc):
    def infer(types, attrs):
        t = rules.same_types(name, types)
        if t.dtype.is_float:
            raise DTypeError(f"{name}: needs integer or bool operands, got {rules.fmt(types)}")
        return [t]
    register(OpDef(name, "elementwise", arity, {}, infer, lambda xs, a: ref(*xs),
                   NOT_DIFFERENTIABLE, _no_attrs(scalar), doc))


_bitwise("bitwise_and", 2, np.bitwise_and, lambda b, x, y: b.band(x, y), "x & y (and on bool).")
_bitwise("bitwise_or", 2, np.bitwise_or, lambda b, x, y: b.bor(x, y), "x | y (or on bool).")
_bitwise("bitwise_xor", 2, np.bitwise_xor, lambda b, x, y: b.bxor(x, y), "x ^ y (xor on bool).")
_bitwise("bitwise_not", 1, np.invert, lambda b, x: b.bnot(x), "~x (not on bool).")


def _minmax_vjp(pick):
    def vjp(c, g):
        a, b = c.inputs
        win_a = _mask(g, pick(a, b))
        tie = P.scale(_mask(g, P.eq(a, b)), 0.5)
        ga = P.mul(g, P.add(win_a, tie))
        gb = P.sub(g, ga)
        return [ga, gb]
    return vjp


_binary("maximum", np.maximum, _minmax_vjp(P.gt), lambda b, x, y: b.max(x, y))
_binary("minimum", np.minimum, _minmax_vjp(P.lt), lambda b, x, y: b.min(x, y))

for _name, _ref in (("eq", np.equal), ("ne", np.not_equal), ("lt", np.less),
                    ("le", np.less_equal), ("gt", np.greater), ("ge", np.greater_equal)):
    _binary(_name, _ref, NOT_DIFFERENTIABLE,
            (lambda pred: lambda b, x, y: b.cmp(pred, x, y))(_name),
            numeric=False, out_dtype=DType.bool)


# ---- where ---------------------------------------------------------------------------------
def _where_infer(types, attrs):
    from ..errors import DTypeError
    c, a, b = types
    if c.dtype != DType.bool:
        raise DTypeError(f"where: condition must be bool, got {c}")
    rules.same_types("where", [c.with_dtype(a.dtype), a, b])
    return [a]


def _where_vjp(c, g):
    z = P.zeros_like(g)
    cond = c.inputs[0]
    return [None, P.where(cond, g, z), P.where(cond, z, g)]


register(OpDef("where", "elementwise", 3, {}, _where_infer,
               lambda xs, a: np.where(xs[0], xs[1], xs[2]), _where_vjp,
               lambda b, attrs, c, x, y: b.select(c, x, y),
               "where(cond, a, b): a where cond is true, else b."))
