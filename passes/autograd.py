"""Reverse-mode autograd as a graph transform.

The backward nodes come from each op's VJP in the registry, the same rules eager autograd
runs, applied to `Sym` values so that `P.mul(...)` inside a rule appends nodes to the graph
being built. Eager and compiled gradients therefore cannot disagree. Each backward node
carries the location of the forward node it differentiates (module path and source line),
as PyTorch's backward nodes point to their forward op.

    >>> from kiln.ir.parser import parse
    >>> g = grad_graph(parse('''
    ... graph @f(%x: f32[]) {
    ...   %0: f32[] = exp %x
    ...   return %0
    ... }'''), wrt=[0])
    >>> print(g, end="")
    graph @f_grad(%x: f32[]) {
      %0: f32[] = exp %x
      %1: f32[] = full {value=1.0, shape=[], dtype=f32}
      %2: f32[] = mul %1, %0
      return %0, %2
    }
"""
from __future__ import annotations

import collections

from kiln.ir.builder import GraphBuilder, Sym
from kiln.ir.errors import DTypeError, KilnError, NotSupportedError
from kiln.ir.graph import Graph, Node, Value
from kiln.ir.registry import NOT_DIFFERENTIABLE, VJPContext, apply, get_op


def grad_graph(graph: Graph, wrt: list[int], output: int = 0, seed=None,
               fired: collections.Counter | None = None) -> Graph:
    """A graph with `graph`'s inputs whose outputs are `graph`'s outputs followed by the
    gradients of `graph.outputs[output]` with respect to `graph.inputs[i]` for i in `wrt`.

    The output's cotangent (the seed): 1 for a scalar output; `seed` (a number) fills it when
    given; otherwise a non-scalar output gets a new last input `%cotangent` of its type.
    Only nodes on a path from the chosen inputs to the output are differentiated; an input the
    output does not depend on gets a zero gradient. `fired` counts `vjp_<op>` per VJP applied.

    >>> from kiln.ir.parser import parse
    >>> g = grad_graph(parse('''
    ... graph @f(%x: f32[2,3], %w: f32[3,4]) {
    ...   %0: f32[2,4] = matmul %x, %w
    ...   return %0
    ... }'''), wrt=[1])
    >>> [str(v.type) for v in g.inputs], [n.op for n in g.nodes]
    (['f32[2,3]', 'f32[3,4]', 'f32[2,4]'], ['matmul', 'permute', 'matmul'])
    """
    b = GraphBuilder(f"{graph.name}_grad")
    b.graph.inputs = list(graph.inputs)
    b.graph.nodes = list(graph.nodes)      # NOTE: forward nodes are kept, not copied
    y = graph.outputs[output]
    if not y.dtype.is_float:
        raise DTypeError(f"grad_graph: output {output} is {y.type}; only floating-point "
                         "outputs have gradients")
    sources = [graph.inputs[i] for i in wrt]
    for i, x in zip(wrt, sources):
        if not x.dtype.is_float:
            raise DTypeError(f"grad_graph: input {i} is {x.type}; only floating-point inputs "
                             "have gradients")
    grads = {y: _seed(b, y, seed)}
    active = _active(graph, sources, y)
    differentiated = set(sources) | {v for n in active for v in n.outputs}
    for node in reversed(graph.nodes):
        if node in active and _backward(b, node, grads, differentiated) and fired is not None:
            fired[f"vjp_{node.op}"] += 1
    outs = [grads[x].value if x in grads else _zeros(b, x) for x in sources]
    return b.finish(list(graph.outputs) + outs)


def _seed(b: GraphBuilder, y: Value, seed) -> Sym:
    if seed is None and y.shape != ():
        return Sym(b, b.add_input(y.type, "cotangent"))
    value = 1.0 if seed is None else seed
    # NOTE: like every backward node, the seed carries its forward node's location
    loc = y.producer.loc if y.producer is not None else None
    full = b.emit("full", [], {"value": value, "shape": y.shape, "dtype": y.dtype}, loc)[0]
    return Sym(b, full)


def _zeros(b: GraphBuilder, x: Value) -> Value:
    return b.emit("full", [], {"value": 0, "shape": x.shape, "dtype": x.dtype})[0]


def _active(graph: Graph, sources: list[Value], y: Value) -> set[Node]:
    """Nodes on a path from `sources` to `y`; paths run through float values only (integer
    and bool values carry no cotangent)."""
    reached = set(sources)
    forward = set()
    for node in graph.nodes:
        if any(v in reached for v in node.inputs):
            forward.add(node)
            reached.update(v for v in node.outputs if v.dtype.is_float)
    needed = {y}
    active = set()
    for node in reversed(graph.nodes):
        if node in forward and any(v in needed for v in node.outputs):
            active.add(node)
            needed.update(node.inputs)
    return active


def _backward(b: GraphBuilder, node: Node, grads: dict, differentiated: set[Value]) -> bool:
    """Add the cotangents of `node`'s inputs to `grads`, from the op's VJP rule; say whether
    it applied one (a node whose outputs got no cotangent has nothing to pass back)."""
    # NOTE: only float values on the path from the chosen inputs carry cotangents.
    needs = [v in differentiated and v.dtype.is_float for v in node.inputs]
    if not any(v in grads for v in node.outputs) or not any(needs):
        return False
    if len(node.outputs) != 1:
        raise NotSupportedError(f"not supported yet: autograd through multi-output op "
                                f"'{node.op}'", node=node, loc=node.loc)
    opdef = get_op(node.op)
    if opdef.vjp == NOT_DIFFERENTIABLE:
        raise KilnError(f"op '{node.op}' is not differentiable, but the output's gradient "
                        "flows through it", node=node, loc=node.loc,
                        hint="detach the value or compute it from non-differentiated inputs")
    # NOTE: every value the rule sees carries the node's location, so every node it makes
    # does (a node made from a Sym gets that Sym's location)
    wrap = [Sym(b, v, node.loc) for v in node.inputs]
    ctx = VJPContext(wrap, [Sym(b, node.out, node.loc)], node.attrs, needs)
    cotangents = opdef.vjp(ctx, Sym(b, grads[node.out].value, node.loc))
    for v, need, ct in zip(node.inputs, needs, cotangents):
        if need and ct is not None:
            _accumulate(grads, v, ct, node)
    return True


def _accumulate(grads: dict, v: Value, ct: Sym, node: Node):
    if tuple(ct.shape) != v.shape or ct.dtype != v.dtype:
        raise KilnError(f"VJP of '{node.op}' gave a cotangent {ct.value.type} for an input "
                        f"{v.type}", node=node, loc=node.loc)
    if v in grads:
        ct = apply("add", [Sym(ct.builder, grads[v].value, node.loc), ct])
    grads[v] = ct
