"""Canonicalize: algebraic simplification, constant folding, CSE and DCE in one forward walk.

Every node is rebuilt in order through `_Rewriter.emit`, which tries, in turn:
1. the op's rules in `RULES` (small functions; each returns a replacement value, a `New` node
   to emit instead, or None),
2. constant folding through the interpreter (inputs all `full`/`constant`),
3. CSE (an identical node already emitted),
and otherwise keeps the node. DCE then drops what the outputs do not need. Rules see inputs
that were already rewritten, so chains (`neg(neg(neg x))`) collapse in one walk.

    >>> from kiln.ir.parser import parse
    >>> g = parse('''
    ... graph @f(%x: f32[4]) {
    ...   %0: f32[4] = full {value=1.0, shape=[4], dtype=f32}
    ...   %1: f32[4] = mul %x, %0
    ...   %2: f32[4] = neg %1
    ...   %3: f32[4] = neg %2
    ...   return %3
    ... }''')
    >>> print(canonicalize(g), end="")
    graph @f(%x: f32[4]) {
      return %x
    }
"""
from __future__ import annotations

import collections
from typing import NamedTuple

import numpy as np

from kiln.ir.builder import make_node
from kiln.ir.graph import Graph, Node, Value
from kiln.ir.interpreter import run_node
from kiln.ir.registry import get_op

FOLD_MAX_ELEMENTS = 64        # a folded non-uniform result becomes a `constant` up to this size
FOLD_MAX_WORK = 1 << 14       # elements read + written when folding by running the reference
CONSTANT_OPS = ("full", "constant")


class New(NamedTuple):
    """A rule's answer: emit this node instead (it is simplified again in turn)."""

    op: str
    inputs: tuple
    attrs: dict


# ---- helpers the rules share -----------------------------------------------------------------
def _full_value(v: Value):
    """The fill value if `v` is a `full`, else None."""
    p = v.producer
    return p.attrs.value if p is not None and p.op == "full" else None


def _is_full(v: Value, value) -> bool:
    fill = _full_value(v)
    return fill is not None and fill == value


def _from(v: Value, op: str) -> Node | None:
    p = v.producer
    return p if p is not None and p.op == op else None


def _full_of(v: Value, shape) -> New:
    return New("full", (), {"value": _full_value(v), "shape": shape, "dtype": v.dtype})


# ---- the rules: (inputs, attrs) -> Value | New | None ------------------------------------------
def mul_one(ins, attrs):
    a, b = ins
    return a if _is_full(b, 1) else b if _is_full(a, 1) else None


def add_zero(ins, attrs):
    # NOTE: x + 0.0 turns -0.0 into +0.0; like other DL compilers we treat that as equal.
    a, b = ins
    return a if _is_full(b, 0) else b if _is_full(a, 0) else None


def sub_zero(ins, attrs):
    return ins[0] if _is_full(ins[1], 0) else None


def div_one(ins, attrs):
    return ins[0] if _is_full(ins[1], 1) else None


def neg_neg(ins, attrs):
    inner = _from(ins[0], "neg")
    return inner.inputs[0] if inner is not None else None


def stop_gradient_identity(ins, attrs):
    # NOTE: only the graph autograd pass reads stop_gradient; every pipeline differentiates
    # before it canonicalizes (passes/manager.py enforces it), so here it is the identity.
    return ins[0]


def copy_identity(ins, attrs):
    # NOTE: a copy only matters while values can be written in place; canonicalize runs after
    # functionalize, where every value is immutable.
    return ins[0]


def cast_same(ins, attrs):
    return ins[0] if ins[0].dtype == attrs.dtype else None


def reshape_same(ins, attrs):
    return ins[0] if ins[0].shape == attrs.shape else None


def reshape_reshape(ins, attrs):
    inner = _from(ins[0], "reshape")
    return New("reshape", inner.inputs, {"shape": attrs.shape}) if inner is not None else None


def permute_identity(ins, attrs):
    return ins[0] if tuple(attrs.perm) == tuple(range(len(attrs.perm))) else None


def permute_permute(ins, attrs):
    inner = _from(ins[0], "permute")
    if inner is None:
        return None
    perm = tuple(inner.attrs.perm[p] for p in attrs.perm)
    return New("permute", inner.inputs, {"perm": perm})


def expand_same(ins, attrs):
    return ins[0] if ins[0].shape == attrs.shape else None


def expand_expand(ins, attrs):
    inner = _from(ins[0], "expand")
    return New("expand", inner.inputs, {"shape": attrs.shape}) if inner is not None else None


def movement_of_full(ins, attrs):
    """expand/reshape/permute/slice of a `full` is a `full` of the new shape."""
    if _full_value(ins[0]) is None:
        return None
    return _full_of(ins[0], _movement_shape(ins[0], attrs))


def _movement_shape(v: Value, attrs):
    if "perm" in attrs.as_dict():
        return tuple(v.shape[p] for p in attrs.perm)
    if "shape" in attrs.as_dict():
        return attrs.shape
    return tuple(len(range(a, b, s)) for a, b, s in zip(attrs.starts, attrs.stops, attrs.steps))


def slice_whole(ins, attrs):
    # NOTE: with every start 0 and the same length on every axis, each step is 1 or the axis
    # has at most one element, so the slice reads the whole tensor in order.
    same = _movement_shape(ins[0], attrs) == ins[0].shape
    return ins[0] if same and not any(attrs.starts) else None


RULES = {
    "mul": [mul_one],
    "add": [add_zero],
    "sub": [sub_zero],
    "div": [div_one],
    "neg": [neg_neg],
    "stop_gradient": [stop_gradient_identity],
    "copy": [copy_identity],
    "cast": [cast_same],
    "reshape": [reshape_same, reshape_reshape, movement_of_full],
    "permute": [permute_identity, permute_permute, movement_of_full],
    "expand": [expand_same, expand_expand, movement_of_full],
    "slice": [slice_whole, movement_of_full],
}


# ---- constant folding ------------------------------------------------------------------------
def fold(op: str, ins, attrs, out_types) -> New | None:
    """A `full` or small `constant` equal to the node's result, when every input is one.

    Never folds random ops (they stay visible as the program's randomness) or nodes without
    inputs (`full`, `arange` are already as small as their folded form).
    """
    opdef = get_op(op)
    if not ins or opdef.kind in ("random", "kernel", "mutation") or len(out_types) != 1:
        return None
    if any(v.producer is None or v.producer.op not in CONSTANT_OPS for v in ins):
        return None
    out = out_types[0]
    if opdef.kind == "elementwise" and all(_full_value(v) is not None for v in ins):
        # NOTE: an elementwise op of fills is a fill; evaluate it once, on 0-d arrays.
        scalar_ins = [v.type.with_shape(()) for v in ins]
        result = _evaluate(op, attrs, scalar_ins, [_value_array(v) for v in ins])
        return New("full", (), {"value": result.item(), "shape": out.shape, "dtype": out.dtype})
    work = out.numel + sum(v.type.numel for v in ins)
    if work > FOLD_MAX_WORK:
        return None
    result = _evaluate(op, attrs, [v.type for v in ins], [_value_array(v) for v in ins])
    flat = np.ascontiguousarray(result).reshape(-1)
    if flat.size == 0 or _uniform(flat):
        value = flat[0].item() if flat.size else 0
        return New("full", (), {"value": value, "shape": out.shape, "dtype": out.dtype})
    if flat.size <= FOLD_MAX_ELEMENTS:
        return New("constant", (), {"data": result.tolist(), "shape": out.shape,
                                    "dtype": out.dtype})
    return None


def _uniform(flat: np.ndarray) -> bool:
    # NOTE: compare bit patterns, so NaNs count as equal and -0.0 stays apart from 0.0.
    rows = flat.view(np.uint8).reshape(flat.size, -1)
    return bool((rows == rows[0]).all())


def _value_array(v: Value) -> np.ndarray:
    p = v.producer
    if p.op == "full":
        return np.full((), p.attrs.value, v.dtype.np)
    return run_node(p, [])[0]


def _evaluate(op, attrs, in_types, arrays) -> np.ndarray:
    proxy = make_node(op, [Value(t) for t in in_types], attrs)
    arrays = [np.broadcast_to(a, t.shape) for a, t in zip(arrays, in_types)]
    with np.errstate(all="ignore"):     # NOTE: log(0) folds to -inf, as it runs, silently
        return run_node(proxy, arrays)[0]


# ---- the driver ------------------------------------------------------------------------------
class _Rewriter:
    """Builds the new node list; `emit` simplifies, folds and CSEs each node on the way in."""

    def __init__(self, fired: collections.Counter):
        self.nodes: list[Node] = []
        self.seen: dict = {}
        self.fired = fired

    def emit(self, op, ins, attrs, loc, original: Node | None = None) -> tuple[Value, ...]:
        ins = tuple(ins)
        opdef = get_op(op)
        attrs_obj = opdef.make_attrs(attrs) if isinstance(attrs, dict) else attrs
        if opdef.effectful:
            return self.keep(op, ins, attrs_obj, loc, original)
        for rule in RULES.get(op, ()):
            got = rule(ins, attrs_obj)
            if got is not None:
                self.fired[rule.__name__] += 1
                if isinstance(got, New):
                    return self.emit(got.op, got.inputs, got.attrs, loc)
                return (got,)
        if original is not None and original.inputs == ins:
            node = original       # NOTE: unchanged nodes are reused, never edited
        else:
            node = make_node(op, ins, attrs_obj, loc)
        folded = fold(op, ins, attrs_obj, [v.type for v in node.outputs])
        if folded is not None:
            self.fired["fold"] += 1
            return self.emit(folded.op, (), folded.attrs, loc)
        key = (op, attrs_obj, ins)
        if key in self.seen:
            self.fired["cse"] += 1
            return self.seen[key]
        self.seen[key] = node.outputs
        self.nodes.append(node)
        return node.outputs

    def keep(self, op, ins, attrs, loc, original: Node | None) -> tuple[Value, ...]:
        """An effectful node (a collective), as it is: never simplified, folded or merged
        with an equal-looking one (each runs once per call, in program order)."""
        node = original if original is not None and original.inputs == ins else \
            make_node(op, ins, attrs, loc)
        self.nodes.append(node)
        return node.outputs


def canonicalize(graph: Graph, fired: collections.Counter | None = None) -> Graph:
    """Simplify, fold, CSE and DCE `graph`; rule names that fired are counted in `fired`.

    Random ops take their seed as an input and are pure functions of it, so CSE merges two
    draws only when they read the same seed value (and shape/dtype): they are the same numbers.

    >>> import collections
    >>> from kiln.ir.parser import parse
    >>> fired = collections.Counter()
    >>> g = canonicalize(parse('''
    ... graph @f(%x: f32[2,3]) {
    ...   %0: f32[3,2] = permute %x {perm=[1,0]}
    ...   %1: f32[2,3] = permute %0 {perm=[1,0]}
    ...   %2: f32[2,3] = exp %x
    ...   %3: f32[2,3] = exp %1
    ...   return %2, %3
    ... }'''), fired)
    >>> len(g.nodes), dict(fired)
    (1, {'permute_permute': 1, 'permute_identity': 1, 'cse': 1, 'dce': 1})
    """
    fired = collections.Counter() if fired is None else fired
    rw = _Rewriter(fired)
    env: dict[Value, Value] = {v: v for v in graph.inputs}
    for node in graph.nodes:
        outs = rw.emit(node.op, [env[v] for v in node.inputs], node.attrs, node.loc, node)
        env.update(zip(node.outputs, outs))
    result = Graph(graph.name, graph.inputs, rw.nodes, [env[v] for v in graph.outputs])
    return dce(result, fired)


def dce(graph: Graph, fired: collections.Counter | None = None) -> Graph:
    """Drop nodes none of whose outputs the graph's outputs need (every op but the write-backs
    of a functional graph and the effectful ops, the collectives, is pure).

    >>> from kiln.ir.graph import Graph
    >>> dce(Graph("f")).nodes
    []
    """
    live = set(graph.outputs)
    kept = []
    for node in reversed(graph.nodes):
        # NOTE: a write-back (`copy_` into an input) or a collective is an effect, never dead
        effect = node.op == "copy_" or get_op(node.op).effectful
        if effect or any(v in live for v in node.outputs):
            kept.append(node)
            live.update(node.inputs)
    if fired is not None and len(kept) < len(graph.nodes):
        fired["dce"] += len(graph.nodes) - len(kept)
    return Graph(graph.name, graph.inputs, reversed(kept), graph.outputs)
