"""Build graphs op by op, running each op's shape rule as it goes.

`GraphBuilder.emit` is the one place a node is created from an op name; the tracer and the
autograd pass use it. `Sym` wraps a Value so registry code (`P.mul(a, b)`) can build graphs.
"""
from __future__ import annotations

from .errors import KilnError
from .graph import Graph, Node, Value
from .registry import get_op
from .types import Loc, TensorType


def make_node(op: str, inputs, attrs: dict, loc: Loc | None = None) -> Node:
    """Validate attrs, check arity, infer output types; shape errors carry the loc."""
    opdef = get_op(op)
    inputs = list(inputs)
    if opdef.arity >= 0 and len(inputs) != opdef.arity:
        raise KilnError(f"op '{op}' takes {opdef.arity} operand(s), got {len(inputs)}", loc=loc)
    a = attrs if not isinstance(attrs, dict) else opdef.make_attrs(attrs)
    try:
        out_types = opdef.infer([v.type for v in inputs], a)
    except KilnError as e:
        if e.loc is None:
            e.loc = loc
            e.args = (e._render(),)
        raise
    return Node(op, a, inputs, out_types, loc)


class GraphBuilder:
    """Appends nodes to a graph under construction."""

    def __init__(self, name: str = "main"):
        self.graph = Graph(name)

    def add_input(self, type: TensorType, hint: str | None = None) -> Value:
        v = Value(type, hint=hint)
        self.graph.inputs.append(v)
        return v

    def emit(self, op: str, inputs, attrs: dict, loc: Loc | None = None) -> tuple[Value, ...]:
        node = make_node(op, inputs, attrs, loc)
        self.graph.nodes.append(node)
        return node.outputs

    def finish(self, outputs) -> Graph:
        self.graph.outputs = list(outputs)
        return self.graph


class Sym:
    """A Value inside a GraphBuilder, usable with `P` (used by graph transforms)."""

    __slots__ = ("builder", "value", "loc")

    def __init__(self, builder: GraphBuilder, value: Value, loc: Loc | None = None):
        self.builder = builder
        self.value = value
        self.loc = loc

    @property
    def shape(self):
        return self.value.type.shape

    @property
    def dtype(self):
        return self.value.type.dtype

    @staticmethod
    def _kiln_apply(op, inputs, attrs, holder):
        values = [v.value for v in inputs]
        outs = holder.builder.emit(op, values, attrs, holder.loc)
        wrapped = tuple(Sym(holder.builder, o, holder.loc) for o in outs)
        return wrapped[0] if len(wrapped) == 1 else wrapped
