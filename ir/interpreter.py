"""Run a graph over the ops' NumPy references: the oracle for every backend and for folding."""
from __future__ import annotations

import numpy as np

from .errors import KilnError
from .graph import Graph
from .registry import get_op


def run_op(op: str, attrs, arrays, out_types, node=None, loc=None) -> tuple[np.ndarray, ...]:
    """An op's NumPy reference on `arrays`, cast to and checked against `out_types`: the one
    reference executor (eager mode, this interpreter and the executable's `run` steps).

    >>> from kiln.ir.registry import get_op
    >>> from kiln.ir.types import TensorType
    >>> from kiln.ir.dtypes import float32
    >>> run_op("exp", get_op("exp").make_attrs({}), [np.zeros(2, np.float32)],
    ...        [TensorType(float32, (2,))])[0].tolist()
    [1.0, 1.0]
    """
    out = get_op(op).ref(arrays, attrs)
    outs = out if isinstance(out, tuple) else (out,)
    results = []
    for t, a in zip(out_types, outs):
        a = np.asarray(a)
        if a.dtype != t.dtype.np:
            a = a.astype(t.dtype.np)
        if a.shape != t.shape:
            raise KilnError(f"reference of '{op}' returned shape {a.shape}, declared {t}",
                            node=node, loc=loc)
        results.append(a)
    return tuple(results)


def run_node(node, arrays: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """One node's reference result, checked against its declared output types."""
    return run_op(node.op, node.attrs, arrays, [v.type for v in node.outputs], node, node.loc)


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
        except KilnError as e:
            raise e.at(node.loc)
        except Exception as e:  # NOTE: reference failures name the node and the user's line
            raise KilnError(f"while interpreting {node.op}: {type(e).__name__}: {e}",
                            node=node, loc=node.loc) from e
        env.update(zip(node.outputs, outs))
    return [env[v] for v in graph.outputs]
