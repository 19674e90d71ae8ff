"""SSA graph IR: a Graph holds input Values, Nodes in order, and output Values.

A Node is `(op, attrs, inputs, output types, loc)` and does not change after it is built;
passes build new graphs. Values are identified by object identity; a graph input may carry a
readable name (`hint`: `x`, `fc1.weight`, see ir/names.py) that the printer keeps, and a
node's `loc` says where in the user's program it came from (a `ModuleLoc` adds the module
path). Neither changes what the graph computes.
"""
from __future__ import annotations

from typing import Iterable

from .attrs import Attrs
from .types import Loc, TensorType


class Value:
    """An SSA value: a graph input or one output of a node."""

    __slots__ = ("type", "producer", "index", "hint")

    def __init__(self, type: TensorType, producer: "Node | None" = None, index: int = 0,
                 hint: str | None = None):
        self.type = type
        self.producer = producer
        self.index = index
        self.hint = hint          # a graph input's readable name (`x`, `fc1.weight`)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def dtype(self):
        return self.type.dtype

    def __repr__(self) -> str:
        src = self.producer.op if self.producer is not None else "input"
        return f"<Value {self.type} from {src}>"


class Node:
    """One operation. `outputs` are created with the node, one Value per output type."""

    __slots__ = ("op", "attrs", "inputs", "outputs", "loc")

    def __init__(self, op: str, attrs: Attrs, inputs: Iterable[Value],
                 out_types: Iterable[TensorType], loc: Loc | None = None):
        self.op = op
        self.attrs = attrs
        self.inputs = tuple(inputs)
        self.outputs = tuple(Value(t, self, i) for i, t in enumerate(out_types))
        self.loc = loc

    @property
    def out(self) -> Value:
        """The single output (most ops have one)."""
        assert len(self.outputs) == 1, f"{self.op} has {len(self.outputs)} outputs"
        return self.outputs[0]

    def __repr__(self) -> str:
        ins = ", ".join(str(v.type) for v in self.inputs)
        outs = ", ".join(str(v.type) for v in self.outputs)
        where = f"  # {self.loc}" if self.loc else ""
        return f"{outs} = {self.op}({ins}) {self.attrs!r}{where}"


class Graph:
    """A function in SSA form: `inputs` -> `nodes` (in execution order) -> `outputs`."""

    def __init__(self, name: str = "main", inputs: Iterable[Value] = (),
                 nodes: Iterable[Node] = (), outputs: Iterable[Value] = ()):
        self.name = name
        self.inputs = list(inputs)
        self.nodes = list(nodes)
        self.outputs = list(outputs)

    def __str__(self) -> str:
        from .printer import print_graph
        return print_graph(self)

    def __repr__(self) -> str:
        return f"<Graph @{self.name}: {len(self.inputs)} inputs, {len(self.nodes)} nodes>"

    def users(self) -> dict[Value, list[Node]]:
        """Value -> nodes that read it (in order)."""
        out: dict[Value, list[Node]] = {}
        for n in self.nodes:
            for v in n.inputs:
                out.setdefault(v, []).append(n)
        return out

    def count(self, op: str) -> int:
        return sum(1 for n in self.nodes if n.op == op)
