"""Elementwise fusion: group elementwise nodes into `kernel` nodes whose body is a Graph.

What the code generator relies on, for every kernel: the body rules of `ir/ops/kernel.py`
(one iteration space; reductions of one shape over the same axes, with elementwise members of
the space's shape or its row shape; every body value broadcasts to the space); body inputs
correspond 1:1, in order, to the kernel's operands, with no repeats.

`full` and `expand` are "free": reading them costs no more than recomputing them, so a kernel
that reads one gets its own copy in the body (an `expand` becomes an indexed read of its input).
The outer copy stays only while something outside a kernel still reads it. Matmul, argmax and
the other movement ops stay outside kernels; a reduction with keepdim=false may end a kernel
but nothing inside the kernel reads it.

Grouping merges a consumer's group into its producer's group (same iteration shape) unless
the producer's group reaches the consumer's group through some other node, which would make
a cycle once both were one kernel (`a -> sum -> expand -> b` must stay two kernels).

    >>> from kiln.ir.parser import parse
    >>> g = fuse_elementwise(parse('''
    ... graph @f(%x: f32[4]) {
    ...   %0: f32[4] = exp %x
    ...   %1: f32[4] = tanh %x
    ...   %2: f32[4] = add %0, %1
    ...   return %2
    ... }'''))
    >>> [n.op for n in g.nodes], g.nodes[0].attrs.name, len(g.nodes[0].inputs)
    (['kernel'], 'fused_0', 1)
"""
from __future__ import annotations

import collections

import networkx as nx

from kiln.ir.builder import make_node
from kiln.ir.dtypes import DType
from kiln.ir.graph import Graph, Node, Value
from kiln.ir.ops.kernel import FUSIBLE_REDUCTIONS
from kiln.ir.registry import get_op

from .canonicalize import dce

FREE_OPS = ("full", "expand")


def _is_member(node: Node) -> bool:
    kind = get_op(node.op).kind
    if kind == "elementwise":
        return True
    return (node.op in FUSIBLE_REDUCTIONS and node.inputs[0].type.dtype != DType.bool
            and node.inputs[0].type.numel > 0 and len(node.attrs.axes) > 0)


def _space(node: Node):
    """(iteration shape, reduction axes, device) of a member: an elementwise node runs over
    its output's shape, a reduction over its input's shape."""
    if get_op(node.op).kind == "reduce":
        t = node.inputs[0].type
        return tuple(t.shape), tuple(node.attrs.axes), t.device
    t = node.outputs[0].type
    return tuple(t.shape), (), t.device


def _join(a, b):
    """The space of a group holding groups of spaces a and b, or None when they cannot share
    a kernel: elementwise groups of one shape, or a reduction group with elementwise groups
    of its space's shape or of its row shape (reduced axes kept as 1)."""
    (sa, ra, da), (sb, rb, db) = a, b
    if da != db:
        return None
    if ra and rb:
        return a if (sa, ra) == (sb, rb) else None
    if not ra and not rb:
        return a if sa == sb else None
    (space, axes, _), other = (a, sb) if ra else (b, sa)
    row = tuple(1 if k in axes else d for k, d in enumerate(space))
    return (a if ra else b) if other in (space, row) else None


def _sources(v: Value) -> list[Value]:
    """What a kernel that reads `v` needs from outside: `v`, or through copied free nodes,
    their inputs (a `full` needs nothing)."""
    p = v.producer
    if p is not None and p.op in FREE_OPS:
        return [s for u in p.inputs for s in _sources(u)]
    return [v]


def _reads(node: Node) -> list[Value]:
    """The values `node` depends on once fused: members see through free nodes."""
    if _is_member(node):
        return [s for v in node.inputs for s in _sources(v)]
    return list(node.inputs)


class _Groups:
    """Members grouped on a DAG with one vertex per node; merged vertices are contracted into
    the group's earliest one, which names the group."""

    def __init__(self, graph: Graph):
        self.index = {n: i for i, n in enumerate(graph.nodes)}
        self.root = list(range(len(graph.nodes)))
        self.space = {i: _space(n) for i, n in enumerate(graph.nodes) if _is_member(n)}
        # NOTE: per group, the keepdim=false reduction results it makes and the values its
        # members read: a group may not hold both ends of one (see try_merge)
        self.flat = {i: {n.outputs[0]} if n.op in FUSIBLE_REDUCTIONS and not n.attrs.keepdim
                     else set() for i, n in enumerate(graph.nodes) if _is_member(n)}
        self.read = {i: set(_reads(n)) for i, n in enumerate(graph.nodes) if _is_member(n)}
        self.dag = nx.DiGraph()
        self.dag.add_nodes_from(range(len(graph.nodes)))
        for n in graph.nodes:
            for v in _reads(n):
                if v.producer is not None:
                    self.dag.add_edge(self.index[v.producer], self.index[n])

    def find(self, node: Node) -> int:
        i = self.index[node]
        while self.root[i] != i:
            i = self.root[i]
        return i

    def try_merge(self, producer: Node, consumer: Node) -> bool:
        a, b = self.find(producer), self.find(consumer)
        if a == b or (producer.op in FUSIBLE_REDUCTIONS and not producer.attrs.keepdim):
            return False     # NOTE: a keepdim=false result no longer lines up with the space
        joined = _join(self.space[a], self.space[b])
        if joined is None or self.flat[a] & self.read[b] or self.flat[b] & self.read[a]:
            return False     # NOTE: a keepdim=false result no longer lines up with the space
        if self._other_path(a, b):
            return False
        keep, gone = min(a, b), max(a, b)
        self.space[keep] = joined
        self.flat[keep] = self.flat[a] | self.flat[b]
        self.read[keep] = self.read[a] | self.read[b]
        for u in list(self.dag.predecessors(gone)):
            if u != keep:
                self.dag.add_edge(u, keep)
        for w in list(self.dag.successors(gone)):
            if w != keep:
                self.dag.add_edge(keep, w)
        self.dag.remove_node(gone)
        self.root[gone] = keep
        return True

    def _other_path(self, a: int, b: int) -> bool:
        """Whether a reaches b other than by the edge a -> b (merging would make a cycle)."""
        # NOTE: has_path searches from both ends and stops at the first meeting, so the common
        # cases (a short detour, or b with few ancestors) stay cheap: 6000 nodes fuse in 0.3 s.
        self.dag.remove_edge(a, b)
        try:
            return nx.has_path(self.dag, a, b)
        finally:
            self.dag.add_edge(a, b)


def _group(graph: Graph) -> _Groups:
    groups = _Groups(graph)
    for node in graph.nodes:
        if not _is_member(node):
            continue
        for v in _reads(node):
            if v.producer is not None and _is_member(v.producer):
                groups.try_merge(v.producer, node)
    return groups


def _live_outside(graph: Graph) -> set[Value]:
    """Values read by something other than a kernel: graph outputs, nodes that stay outside,
    and (through them) the free nodes those read."""
    live = set(graph.outputs)
    for node in reversed(graph.nodes):
        if _is_member(node):
            continue
        if node.op in FREE_OPS and not any(v in live for v in node.outputs):
            continue
        live.update(node.inputs)
    return live


class _Body:
    """The body graph of one kernel, built member by member."""

    def __init__(self):
        self.env: dict[Value, Value] = {}
        self.operands: list[Value] = []     # outer values, in body-input order
        self.inputs: list[Value] = []
        self.nodes: list[Node] = []
        self.copied: collections.Counter = collections.Counter()

    def value(self, v: Value) -> Value:
        """The body's value for outer value `v`: a member's result, a copied free node, or a
        new body input (a kernel operand)."""
        if v not in self.env:
            p = v.producer
            if p is not None and p.op in FREE_OPS:
                self.env[v] = self.add(p)[v.index]
                self.copied[p.op] += 1
            else:
                self.env[v] = Value(v.type)
                self.operands.append(v)
                self.inputs.append(self.env[v])
        return self.env[v]

    def add(self, node: Node) -> tuple[Value, ...]:
        copy = make_node(node.op, [self.value(v) for v in node.inputs], node.attrs, node.loc)
        self.nodes.append(copy)
        self.env.update(zip(node.outputs, copy.outputs))
        return copy.outputs


def _kernel(name: str, members: list[Node], needed: set[Value]):
    """The kernel node for `members` (in graph order) and the outer values its outputs
    replace (`needed` says which member results are read outside the kernel)."""
    body = _Body()
    for node in members:
        body.add(node)
    results = [v for n in members for v in n.outputs if v in needed]
    graph = Graph(name, body.inputs, body.nodes, [body.env[v] for v in results])
    node = make_node("kernel", body.operands, {"name": name, "body": graph}, members[0].loc)
    return node, results, body.copied


def _needed(graph: Graph, groups: _Groups, live: set[Value]) -> set[Value]:
    """Member results some other kernel or outside node reads: the kernels' outputs."""
    needed = set(live)
    for node in graph.nodes:
        if _is_member(node):
            group = groups.find(node)
            needed.update(v for v in _reads(node)
                          if v.producer is not None and _is_member(v.producer)
                          and groups.find(v.producer) != group)
    return needed


def fuse_elementwise(graph: Graph, fired: collections.Counter | None = None) -> Graph:
    """Replace groups of elementwise nodes and reductions by `kernel` nodes named fused_0,
    fused_1, ... (a reduction with keepdim=false ends its kernel: nothing in it reads it).

    Dead nodes are dropped first. Counts `kernel` (kernels made), `fused_op` (members),
    `copied_full`/`copied_expand` (free nodes copied into bodies) and `dce` in `fired`.

    >>> from kiln.ir.parser import parse
    >>> print(fuse_elementwise(parse('''
    ... graph @f(%x: f32[4,8]) {
    ...   %0: f32[4,8] = exp %x
    ...   %1: f32[4] = sum %0 {axes=[1], keepdim=false}
    ...   %2: f32[4] = neg %1
    ...   return %2
    ... }''')), end="")
    graph @f(%x: f32[4,8]) {
      %0: f32[4] = kernel %x {name="fused_0"} {
        body @fused_0(%1: f32[4,8]) {
          %2: f32[4,8] = exp %1
          %3: f32[4] = sum %2 {axes=[1], keepdim=false}
          return %3
        }
      }
      %4: f32[4] = kernel %0 {name="fused_1"} {
        body @fused_1(%5: f32[4]) {
          %6: f32[4] = neg %5
          return %6
        }
      }
      return %4
    }
    """
    fired = collections.Counter() if fired is None else fired
    graph = dce(graph, fired)     # NOTE: a kernel needs at least one result someone reads
    groups = _group(graph)
    members = collections.defaultdict(list)
    for node in graph.nodes:
        if _is_member(node):
            members[groups.find(node)].append(node)
    live = _live_outside(graph)
    needed = _needed(graph, groups, live)
    env: dict[Value, Value] = {v: v for v in graph.inputs}
    nodes: list[Node] = []
    kernels = 0
    for vertex in nx.lexicographical_topological_sort(groups.dag):
        if vertex in members:
            name = f"fused_{kernels}"
            kernels += 1
            kernel, results, copied = _kernel(name, members[vertex], needed)
            node = _rebuild(kernel, env)
            env.update(zip(results, node.outputs))
            fired.update({"kernel": 1, "fused_op": len(members[vertex])})
            fired.update({f"copied_{op}": k for op, k in copied.items()})
        else:
            old = graph.nodes[vertex]
            if old.op in FREE_OPS and not any(v in live for v in old.outputs):
                continue
            node = _rebuild(old, env)
            env.update(zip(old.outputs, node.outputs))
        nodes.append(node)
    return Graph(graph.name, graph.inputs, nodes, [env[v] for v in graph.outputs])


def _rebuild(node: Node, env: dict[Value, Value]) -> Node:
    """`node` reading the new graph's values; the same Node when nothing changed."""
    ins = [env[v] for v in node.inputs]
    if all(a is b for a, b in zip(ins, node.inputs)):
        return node
    return make_node(node.op, ins, node.attrs, node.loc)
