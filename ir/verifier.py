"""The IR verifier: a Graph's invariants, checked after every pass in tests.

- SSA: each value is defined once (a graph input or one node output), every operand is
  defined before its node, every graph output is defined in the graph.
- Each node: a registered op, the op's arity, attributes exactly the op's schema with values
  of the declared kinds, and output types equal to what the op's shape rule infers.
- Graph-valued attributes (a kernel's body) are verified as closed graphs: a body sees only
  its own inputs; a kernel's operands match its body's inputs and its outputs the body's.

A VerifyError's message says what is wrong; `err.node` is the node as `print_graph` prints it
(same value names) and `err.loc` the user's source line.

    >>> from kiln.ir.parser import parse
    >>> verify(parse("graph @f(%x: f32[2]) {\\n  %1: f32[2] = exp %x\\n  return %1\\n}")).name
    'f'
"""
from __future__ import annotations

from . import printer
from .attrs import Attrs
from .dtypes import DType
from .errors import KilnError, VerifyError
from .graph import Graph, Node, Value
from .registry import get_op


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_scalar(v) -> bool:
    return isinstance(v, (bool, int, float))


def _is_ints(v) -> bool:
    return isinstance(v, tuple) and all(_is_int(x) for x in v)


def _is_data(v) -> bool:
    if isinstance(v, tuple):
        return all(_is_data(x) for x in v)
    return _is_scalar(v)


# NOTE: one predicate per attribute kind of attrs.NORMALIZE: the canonical Python type that
# Attrs.build produces (a test checks that every kind has one).
KIND_CHECKS = {
    "int": _is_int,
    "float": lambda v: isinstance(v, float),
    "bool": lambda v: isinstance(v, bool),
    "scalar": _is_scalar,
    "dtype": lambda v: isinstance(v, DType),
    "ints": _is_ints,
    "shape": lambda v: _is_ints(v) and all(d >= 0 for d in v),
    "str": lambda v: isinstance(v, str),
    "data": _is_data,
    "graph": lambda v: isinstance(v, Graph),
}


def verify(graph: Graph) -> Graph:
    """Check `graph` (and every nested graph); return it unchanged, or raise VerifyError.

    >>> from kiln.ir.builder import GraphBuilder
    >>> from kiln.ir.types import TensorType
    >>> from kiln.ir.dtypes import float32
    >>> b = GraphBuilder("f")
    >>> x = b.add_input(TensorType(float32, (2,)), "x")
    >>> g = b.finish(b.emit("exp", [x], {}))
    >>> verify(g) is g
    True
    """
    _Verifier(graph).graph(graph, f"graph @{graph.name}", frozenset())
    return graph


def _fmt(types) -> str:
    return "(" + ", ".join(str(t) for t in types) + ")"


class _Verifier:
    def __init__(self, root: Graph):
        self.root = root
        self._names = None

    # ---- messages --------------------------------------------------------------------------
    def names(self):
        """Value names exactly as print_graph(root) gives them (computed on the first error)."""
        if self._names is None:
            self._names = printer._Names()
            try:
                printer._print_graph(self.root, self._names, "", [], keyword="graph")
            except Exception:  # NOTE: a graph too broken to print still names what it reached
                pass
        return self._names

    def name(self, v: Value) -> str:
        return self.names().name(v)

    def fail(self, where: str, message: str, node: Node | None = None) -> VerifyError:
        if node is None:
            return VerifyError(f"{where}: {message}")
        lines: list[str] = []
        try:
            printer._print_node(node, self.names(), "", lines)
            text = lines[0]
        except Exception:
            text = repr(node)
        return VerifyError(f"{where}: node '{node.op}' {message}", loc=node.loc, node=text)

    # ---- graphs ----------------------------------------------------------------------------
    def graph(self, g: Graph, where: str, outer: frozenset):
        """`outer`: values of enclosing graphs (invisible here; named in the message)."""
        produced = {v for n in g.nodes for v in n.outputs}
        defined: set[Value] = set()
        for i, v in enumerate(g.inputs):
            if v in defined or v.producer is not None:
                raise self.fail(where, f"input {i} ({self.name(v)}) is defined twice")
            defined.add(v)
        for node in g.nodes:
            self.node(node, where, defined, produced, outer)
        for i, v in enumerate(g.outputs):
            if v not in defined:
                raise self.fail(where, f"output {i} ({self.name(v)}) is not defined in "
                                "this graph")

    def node(self, node: Node, where: str, defined: set, produced: set, outer: frozenset):
        try:
            opdef = get_op(node.op)
        except KilnError:
            raise self.fail(where, "is not a registered op", node) from None
        self.operands(node, opdef, where, defined, produced, outer)
        for i, v in enumerate(node.outputs):
            if v.producer is not node or v.index != i:
                raise self.fail(where, f"has output {i} ({self.name(v)}) that another node "
                                "produces", node)
            if v in defined:
                raise self.fail(where, f"defines {self.name(v)} a second time", node)
            defined.add(v)
        self.attrs(node, opdef, where)
        for key, body in node.attrs.items():
            if isinstance(body, Graph):
                inner = f"{where} > {node.op} {key} @{body.name}"
                self.graph(body, inner, outer | frozenset(defined))
        if node.op in _OP_CHECKS:
            _OP_CHECKS[node.op](self, node, where)
        self.types(node, opdef, where)

    def operands(self, node, opdef, where, defined, produced, outer):
        if opdef.arity >= 0 and len(node.inputs) != opdef.arity:
            raise self.fail(where, f"takes {opdef.arity} operand(s), got "
                            f"{len(node.inputs)}", node)
        for i, v in enumerate(node.inputs):
            if v in defined:
                continue
            if v in produced:
                why = "is used before it is defined"
            elif v in outer:
                why = "belongs to an enclosing graph (a kernel body sees only its own inputs)"
            else:
                why = "is not defined in this graph"
            raise self.fail(where, f"operand {i} ({self.name(v)}) {why}", node)

    # ---- attributes and types --------------------------------------------------------------
    def attrs(self, node: Node, opdef, where: str):
        if not isinstance(node.attrs, Attrs):
            raise self.fail(where, f"has attrs of type {type(node.attrs).__name__}, not "
                            "Attrs", node)
        names = [k for k, _ in node.attrs.items()]
        if sorted(names) != sorted(opdef.attrs):
            raise self.fail(where, f"has attributes {names}; '{node.op}' takes "
                            f"{list(opdef.attrs)}", node)
        for k, v in node.attrs.items():
            kind = opdef.attrs[k]
            if not KIND_CHECKS[kind](v):
                raise self.fail(where, f"has attribute {k}={v!r}, which is not a valid "
                                f"{kind}", node)

    def types(self, node: Node, opdef, where: str):
        ins = [v.type for v in node.inputs]
        try:
            want = list(opdef.infer(ins, node.attrs))
        except KilnError as e:
            raise self.fail(where, f"has operands {_fmt(ins)} that its shape rule rejects: "
                            f"{e.message}", node) from None
        got = [v.type for v in node.outputs]
        if got != want:
            raise self.fail(where, f"declares output type(s) {_fmt(got)}, but '{node.op}' of "
                            f"{_fmt(ins)} gives {_fmt(want)}", node)


def _check_kernel(self: _Verifier, node: Node, where: str):
    """Operands match the body's inputs; outputs match the body's results."""
    body = node.attrs.body
    ins, params = [v.type for v in node.inputs], [v.type for v in body.inputs]
    if ins != params:
        raise self.fail(where, f"has operands {_fmt(ins)} that do not match its body's "
                        f"inputs {_fmt(params)}", node)
    outs, results = [v.type for v in node.outputs], [v.type for v in body.outputs]
    if outs != results:
        raise self.fail(where, f"declares outputs {_fmt(outs)} that do not match its body's "
                        f"results {_fmt(results)}", node)


# NOTE: checks beyond the shape rule, for ops whose invariants span a nested graph.
_OP_CHECKS = {"kernel": _check_kernel}
