"""Gradients through `@kiln.jit`: the backward of a traced function, as a compiled graph.

At compile time the traced graph gets one cotangent input per float output and the scalar
`sum_k sum(out_k * cot_k)`; the graph autograd pass (the registry's VJPs, the same rules eager
autograd runs) differentiates it with respect to the inputs that require grad, and the result
is optimized and compiled like any graph. Each jitted call then records ONE tape node whose VJP
runs that executable on the call's own input arrays (and random seeds) plus the cotangents.
"""
from __future__ import annotations

import numpy as np

from kiln.ir.builder import GraphBuilder
from kiln.ir.graph import Graph

from . import autograd
from .tensor import Tensor


def differentiable_inputs(sources, leaves) -> list[int]:
    """Graph-input positions bound to float tensors that require grad."""
    out = []
    for i, (kind, ref, _) in enumerate(sources):
        t = leaves[ref] if kind == "arg" else ref if kind == "capture" else None
        if t is not None and t.requires_grad and t.dtype.is_float:
            out.append(i)
    return out


def vjp_graph(graph: Graph, wrt: list[int], float_outs: list[int]) -> Graph:
    """Inputs: graph's inputs + one cotangent per float output; outputs: d/d input[i] of
    sum_k <out_k, cot_k> for i in wrt."""
    from kiln.passes.autograd import grad_graph
    b = GraphBuilder(f"{graph.name}_vjp")
    b.graph.inputs = list(graph.inputs)
    b.graph.nodes = list(graph.nodes)       # NOTE: forward nodes are shared, not copied
    terms = []
    for k in float_outs:
        out = graph.outputs[k]
        cot = b.add_input(out.type, f"cot{k}")
        (prod,) = b.emit("mul", [out, cot], {})
        (term,) = b.emit("sum", [prod], {"axes": tuple(range(out.type.rank)),
                                         "keepdim": False})
        terms.append(term)
    total = _add_all(b, terms)
    grads = grad_graph(b.finish([total]), wrt=wrt, output=0)
    return Graph(grads.name, grads.inputs, grads.nodes, grads.outputs[1:])


def _add_all(b: GraphBuilder, terms):
    """Sum scalars, in float64 when the outputs' dtypes differ."""
    if len({t.type.dtype for t in terms}) > 1:
        terms = [b.emit("cast", [t], {"dtype": "f64"})[0] for t in terms]
    total = terms[0]
    for t in terms[1:]:
        (total,) = b.emit("add", [total, t], {})
    return total


class JitBackward:
    """The compiled backward of one cache entry, and the tape node each call records."""

    def __init__(self, name: str, graph: Graph, sources, wrt: list[int]):
        from kiln.passes.manager import run_passes
        from kiln.runtime.executable import build_executable
        self.name = name
        self.sources = sources
        self.wrt = wrt
        self.float_outs = [k for k, v in enumerate(graph.outputs) if v.type.dtype.is_float]
        self.out_types = [graph.outputs[k].type for k in self.float_outs]
        self.graph, self.stages = run_passes(vjp_graph(graph, wrt, self.float_outs))
        self.executable = build_executable(self.graph)

    def record(self, arrays: list, outputs: list, leaves: list) -> None:
        """Make the call's float outputs differentiable through one tape node."""
        inputs = [self._tensor(i, leaves) for i in self.wrt]
        outs = [outputs[k] for k in self.float_outs]
        if not outs:
            return
        node = autograd.TapeNode(f"jit_{self.name}", self._vjp_for(arrays), inputs,
                                 [t._snapshot() for t in outs], None)
        for i, t in enumerate(outs):
            t._requires_grad = True
            t.grad_fn = node
            t._out_index = i

    def _tensor(self, i: int, leaves) -> Tensor:
        kind, ref, _ = self.sources[i]
        return leaves[ref] if kind == "arg" else ref

    def _vjp_for(self, arrays: list):
        def vjp(ctx, g):
            gs = g if isinstance(g, list) else [g]
            cots = [np.zeros(ty.shape, ty.dtype.np) if gi is None else gi._data
                    for gi, ty in zip(gs, self.out_types)]
            return [Tensor._wrap(a) for a in self.executable(arrays + cots)]
        return vjp
