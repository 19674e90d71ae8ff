"""Functionalize: views and in-place writes become pure ops plus write-backs at the end.

Before this pass a graph may hold `copy_ %dst, %src` (write src into dst's storage) and
values that are views of others (ops with a `view` rule in the registry: reshape, permute,
expand, slice, stop_gradient). Reading a value after its storage was written reads the new
contents. After the pass every op is pure: a read of a written storage reads the storage's
latest value (re-viewed where it was read through a view), a write through a view rebuilds
the whole storage (`slice_update`, inverse reshape and permute), and a storage that belongs to
a graph input and was written ends the graph with one `copy_ %input, %final` (the write-back,
which the runtime performs into the caller's tensor). A graph output that is a view of an
input becomes an ordinary value here; `output_aliases` tells the runtime which ones alias.

    >>> from kiln.ir.parser import parse
    >>> g = functionalize(parse('''
    ... graph @f(%x: f32[4]) {
    ...   %0: f32[2] = slice %x {starts=[1], stops=[3], steps=[1]}
    ...   %1: f32[2] = full {value=5.0, shape=[2], dtype=f32}
    ...   %2: f32[2] = copy_ %0, %1
    ...   %3: f32[4] = exp %x
    ...   return %3
    ... }'''))
    >>> print(g, end="")
    graph @f(%x: f32[4]) {
      %0: f32[2] = full {value=5.0, shape=[2], dtype=f32}
      %1: f32[4] = slice_update %x, %0 {starts=[1], stops=[3], steps=[1]}
      %2: f32[4] = exp %1
      %3: f32[4] = copy_ %x, %1
      return %2
    }
"""
from __future__ import annotations

import collections

from kiln.ir.builder import GraphBuilder, Sym
from kiln.ir.errors import KilnError
from kiln.ir.graph import Graph, Value
from kiln.ir.registry import get_op

from .canonicalize import dce


class _Storage:
    """One storage: its root value in the input graph, its latest pure value and the
    location of its latest write (where its write-back comes from)."""

    __slots__ = ("root", "current", "version", "loc")

    def __init__(self, root: Value, current: Value):
        self.root = root
        self.current = current
        self.version = 0
        self.loc = None


class _Functionalizer:
    def __init__(self, graph: Graph, fired: collections.Counter):
        self.b = GraphBuilder(graph.name)
        self.b.graph.inputs = list(graph.inputs)
        self.fired = fired
        # value -> (storage, view ops from the root, storage version when last computed)
        self.alias: dict = {v: (_Storage(v, v), (), 0) for v in graph.inputs}
        self.env: dict = {v: v for v in graph.inputs}

    def read(self, v: Value, loc) -> Value:
        """The pure value of v now: re-viewed from its storage's latest value if written."""
        storage, ops, version = self.alias[v]
        if version == storage.version:
            return self.env[v]
        out = storage.current
        for op, attrs in ops:
            (out,) = self.b.emit(op, [out], attrs, loc)
        self.env[v] = out
        self.alias[v] = (storage, ops, storage.version)
        self.fired["reread_view" if ops else "reread"] += 1
        return out

    def node(self, node) -> None:
        ins = [self.read(v, node.loc) for v in node.inputs]
        if node.op == "copy_":
            self.write(node, ins[1])
            return
        outs = self.b.emit(node.op, ins, node.attrs, node.loc)
        view = get_op(node.op).view is not None
        for old, new in zip(node.outputs, outs):
            self.env[old] = new
            if view:
                storage, ops, _ = self.alias[node.inputs[0]]
                self.alias[old] = (storage, ops + ((node.op, node.attrs),), storage.version)
            else:
                self.alias[old] = (_Storage(old, new), (), 0)

    def write(self, node, src: Value) -> None:
        dst = node.inputs[0]
        storage, ops, _ = self.alias[dst]
        if any(op == "expand" for op, _ in ops):
            raise KilnError("unsupported operation: an in-place write into an expanded view "
                            "(several elements share one memory location)", node=node,
                            loc=node.loc)
        storage.current = self._rebuild(storage.current, ops, src, node.loc)
        storage.version += 1
        storage.loc = node.loc
        self.env[dst] = src
        self.alias[dst] = (storage, ops, storage.version)
        self.env[node.out] = src
        self.alias[node.out] = (storage, ops, storage.version)
        self.fired["copy_"] += 1

    def _rebuild(self, base: Value, ops, src: Value, loc) -> Value:
        """base with its view `ops(base)` replaced by src."""
        if not ops:
            return src
        (op, attrs), rest = ops[0], ops[1:]
        if op == "stop_gradient":   # NOTE: only the view is detached, not the storage's history
            return self._rebuild(base, rest, src, loc)
        if rest:
            (inner,) = self.b.emit(op, [base], attrs, loc)
            src = self._rebuild(inner, rest, src, loc)
        new_inner = src
        return _unview(self.b, op, attrs, base, new_inner, loc)

    def finish(self, graph: Graph) -> Graph:
        outs = [self.read(v, None) for v in graph.outputs]
        for v in graph.inputs:
            storage = self.alias[v][0]
            if storage.root is v and storage.version:
                self.b.emit("copy_", [v, storage.current], {}, storage.loc)
                self.fired["writeback"] += 1
        return self.b.finish(outs)


def _unview(b: GraphBuilder, op: str, attrs, base: Value, new: Value, loc) -> Value:
    """base with its view op(base) replaced by new: the op's `unview` rule, on this graph."""
    return get_op(op).unview(Sym(b, base, loc), Sym(b, new, loc), attrs).value


def functionalize(graph: Graph, fired: collections.Counter | None = None) -> Graph:
    """The pure graph: see the module docstring. `fired` counts `copy_` (writes removed),
    `reread`/`reread_view` (reads of written storage) and `writeback` (inputs written)."""
    fired = collections.Counter() if fired is None else fired
    if not any(n.op == "copy_" for n in graph.nodes):
        return graph
    f = _Functionalizer(graph, fired)
    for node in graph.nodes:
        f.node(node)
    result = dce(f.finish(graph))      # NOTE: views only written through are dead now
    check_functional(result)
    return result


def writebacks(graph: Graph) -> list[tuple[int, Value]]:
    """(input index, final value) for each write-back `copy_` that ends a functional graph."""
    index = {v: i for i, v in enumerate(graph.inputs)}
    return [(index[n.inputs[0]], n.inputs[1]) for n in graph.nodes if n.op == "copy_"]


def check_functional(graph: Graph) -> None:
    """Only write-backs remain: each `copy_` writes a graph input, once, after every other
    node (so nothing reads an input after it is written)."""
    seen = set()
    tail = False
    for node in graph.nodes:
        if node.op != "copy_":
            if tail:
                raise KilnError("functional graph: a node after the write-backs", node=node)
            continue
        tail = True
        dst = node.inputs[0]
        if dst not in graph.inputs or dst in seen:
            raise KilnError("functional graph: copy_ must write a graph input, once", node=node)
        seen.add(dst)


def _storage_roots(graph: Graph) -> dict:
    """value -> (the value that owns its storage, view ops from that owner to it)."""
    roots: dict = {v: (v, ()) for v in graph.inputs}
    for node in graph.nodes:
        if node.op == "copy_":
            roots[node.out] = roots[node.inputs[0]]
        elif get_op(node.op).view is not None:
            root, ops = roots[node.inputs[0]]
            roots[node.out] = (root, ops + ((node.op, node.attrs),))
        else:
            roots.update((v, (v, ())) for v in node.outputs)
    return roots


def output_aliases(graph: Graph) -> list:
    """Per output of a graph BEFORE functionalization: (input index, view ops) when the output
    is a graph input or a view of one, else None. Such an output is the input's storage as
    the function leaves it, so the runtime rebuilds it as a view of the caller's tensor after
    the write-backs (an in-place op on it then reaches the input, as in eager mode)."""
    inputs = {v: i for i, v in enumerate(graph.inputs)}
    roots = _storage_roots(graph)
    out = []
    for v in graph.outputs:
        root, ops = roots[v]
        out.append((inputs[root], ops) if root in inputs else None)
    return out


def output_view_roots(graph: Graph, n: int) -> list:
    """Per output among the first `n` of a graph BEFORE functionalization: (owner value, view
    ops) when the output shares its storage with another of them (`return h, h.t()`), the
    owner being a value the graph computes; else None. The runtime returns such outputs as
    views of one tensor holding the owner, as eager mode would."""
    roots = _storage_roots(graph)
    inputs = set(graph.inputs)
    owners = [roots[v] for v in graph.outputs[:n]]
    shared = {}
    for root, _ in owners:
        shared[root] = shared.get(root, 0) + 1
    return [(root, ops) if root not in inputs and shared[root] > 1 else None
            for root, ops in owners]
