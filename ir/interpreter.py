"""Run a graph over the ops' NumPy references: the oracle for every backend and for folding."""
from __future__ import annotations

import numpy as np

from .errors import KilnError
from .graph import Graph
from .registry import get_op


def run_node(node, arrays: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """One node's reference result, checked against its declared output types."""
    out = get_op(node.op).ref(arrays, node.attrs)
    outs = out if isinstance(out, tuple) else (out,)
    results = []
    for v, a in zip(node.outputs, outs):
        a = np.asarray(a)
        if a.dtype != v.type.dtype.np:
            a = a.astype(v.type.dtype.np)
        if a.shape != v.type.shape:
            raise KilnError(f"reference of '{node.op}' returned shape {a.shape}, "
                            f"declared {v.type}", node=node, loc=node.loc)
        results.append(a)
    return tuple(results)


def interpret(graph: Graph, inputs) -> list[np.ndarray]:
    """Evaluate `graph` on NumPy arrays; errors say which node was running.

    >>> from kiln.ir.parser import parse
    >>> g = parse("graph @f(%x: f32[2]) {\\n  %1: f32[2] = exp %x\\n  return %1\\n}\\n")
    >>> interpret(g, [np.zeros(2, np.float32)])[0].tolist()
    [1.0, 1.0]
    """
    if len(inputs) != len(graph.inputs):
        raise KilnError(f"graph @{graph.name} takes {len(graph.inputs)} inputs, "
                        f"got {len(inputs)}")
    env = {}
    for v, a in zip(graph.inputs, inputs):
        a = np.asarray(a)
        if a.shape != v.type.shape or a.dtype != v.type.dtype.np:
            raise KilnError(f"graph @{graph.name}: input {v.type} given array "
                            f"{a.dtype}{list(a.shape)}")
        env[v] = a
    for node in graph.nodes:
        try:
            outs = run_node(node, [env[v] for v in node.inputs])
        except KilnError:
            raise
        except Exception as e:  # NOTE: reference failures name the node and the user's line
            raise KilnError(f"while interpreting {node.op}: {type(e).__name__}: {e}",
                            node=node, loc=node.loc) from e
        env.update(zip(node.outputs, outs))
    return [env[v] for v in graph.outputs]
