"""The op registry: every tensor operation is declared here once (DESIGN.md, "the one rule").

An `OpDef` holds the op's signature, its shape/dtype rule, its NumPy reference, its VJP
(written with `P`, the registry's own ops) and its lowering (a scalar body for elementwise ops).
Eager tensors, the tracer, the interpreter, autograd and codegen all read it.

    >>> from kiln.ir.registry import get_op
    >>> get_op("exp").kind
    'elementwise'
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from .attrs import Attrs
from .errors import ArgumentTypeError, KilnError, type_name

NOT_DIFFERENTIABLE = "not differentiable"

KINDS = ("elementwise", "reduce", "matmul", "movement", "source", "random", "kernel",
         "mutation", "collective")


@dataclasses.dataclass
class OpDef:
    """The one declaration of an op.

    infer(in_types, attrs) -> list[TensorType]; raises ShapeError/DTypeError.
    ref(arrays, attrs) -> ndarray or tuple of ndarrays (NumPy reference semantics).
    vjp(ctx, g) -> one cotangent (or None) per input; or NOT_DIFFERENTIABLE.
    scalar(b, args, attrs) -> scalar: the elementwise body over a codegen ScalarBuilder.
    view(shape, strides, attrs) -> (strides, offset) or None: set for ops whose output is a
        view of their input (it shares the input's storage, as in PyTorch); strides and
        offset count elements; None when this input layout cannot be viewed so (a reshape
        of a transposed tensor), and the frontend copies first.
    unview(before, new, attrs) -> value: for a view op, `before` with its view replaced by
        `new` (registry ops via P): how a write through the view changes its base.
    effectful: running the op does something beyond computing its outputs (a collective
        talks to the other processes): passes never fold, merge (CSE) or drop (DCE) it, so
        it runs exactly once per call.
    """

    name: str
    kind: str
    arity: int                  # -1: variadic
    attrs: dict
    infer: Callable
    ref: Callable
    vjp: Callable | str
    scalar: Callable | None = None
    doc: str = ""
    view: Callable | None = None
    unview: Callable | None = None
    effectful: bool = False

    def make_attrs(self, given) -> Attrs:
        if isinstance(given, Attrs):
            return given        # NOTE: already validated (a recorded view op, replayed)
        return Attrs.build(self.name, self.attrs, given)

    @property
    def differentiable(self) -> bool:
        return self.vjp != NOT_DIFFERENTIABLE


_OPS: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    assert op.kind in KINDS, op.kind
    assert op.name not in _OPS, f"op {op.name} declared twice"
    _OPS[op.name] = op
    return op


def get_op(name: str) -> OpDef:
    op = _OPS.get(name)
    if op is None:
        _load()
        op = _OPS.get(name)
        if op is None:
            raise KilnError(f"unknown op '{name}'")
    return op


def all_ops() -> list[OpDef]:
    _load()
    return list(_OPS.values())


def _load():
    # NOTE: only reached on a miss (every op eager mode runs goes through get_op): importing
    # the declarations registers them, once.
    from . import ops  # noqa: F401


@dataclasses.dataclass
class VJPContext:
    """What a VJP rule sees: the op's inputs and outputs (same kind as the caller's values),
    its attrs, and which inputs need a cotangent."""

    inputs: list
    outputs: list
    attrs: Attrs
    needs: list

    @property
    def out(self):
        return self.outputs[0]


def apply(op: str, inputs, attrs: dict | None = None, like=None):
    """Apply a registry op to values of any kind that implements `_kiln_apply` (eager or
    traced tensors, graph-builder values). Returns one value, or a tuple for multi-output ops."""
    holder = like
    for v in inputs:
        if hasattr(v, "_kiln_apply"):
            holder = v
            break
    if holder is None:
        if inputs:
            raise ArgumentTypeError(f"{op}: expected Tensor inputs, got "
                                    f"{', '.join(type_name(v) for v in inputs)}",
                                    loc=_user_loc())
        raise KilnError(f"apply('{op}') needs an input or `like=` value to dispatch on")
    for v in inputs:
        if not hasattr(v, "_kiln_apply"):
            raise ArgumentTypeError(f"{op}: expected Tensor inputs, got {type_name(v)} among "
                                    "them", loc=_user_loc())
    return type(holder)._kiln_apply(op, list(inputs), attrs or {}, holder)



class _Prims:
    """`P.mul(a, b)`, `P.sum(x, axes=(0,), keepdim=True)`: registry ops as functions, for
    VJP rules and decompositions that must work on every kind of value."""

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)

        def call(*inputs, **attrs):
            return apply(name, inputs, attrs)
        call.__name__ = name
        return call

    @staticmethod
    def full_like(x, value):
        return apply("full", [], {"value": value, "shape": x.shape, "dtype": x.dtype}, like=x)

    @staticmethod
    def arange_like(x, n: int):
        """0, 1, ..., n-1 as int64, built where x lives."""
        from .dtypes import DType
        return apply("arange", [], {"start": 0, "stop": n, "step": 1, "dtype": DType.int64},
                     like=x)

    @staticmethod
    def zeros_like(x):
        return P.full_like(x, 0)

    @staticmethod
    def scale(x, c: float):
        return P.mul(x, P.full_like(x, c))

    @staticmethod
    def sum_to(g, shape):
        """Undo an `expand` to `shape`: sum the broadcast axes of g."""
        shape = tuple(shape)
        lead = len(g.shape) - len(shape)
        axes = tuple(i for i in range(len(g.shape))
                     if i < lead or (shape[i - lead] == 1 and g.shape[i] != 1))
        if axes:
            g = P.sum(g, axes=axes, keepdim=True)
        if tuple(g.shape) != shape:
            g = P.reshape(g, shape=shape)
        return g

    @staticmethod
    def keepdim_shape(shape, axes):
        return tuple(1 if i in axes else d for i, d in enumerate(shape))

    @staticmethod
    def unreduce(g, in_shape, axes, keepdim):
        """Broadcast a reduction's cotangent back to the input's shape."""
        if not keepdim:
            g = P.reshape(g, shape=P.keepdim_shape(in_shape, axes))
        return P.expand(g, shape=tuple(in_shape))


P = _Prims()


def _user_loc():
    from .types import user_loc
    return user_loc()
