"""The pass pipeline: ONE list of named passes, and a driver that keeps every stage.

Each stage records the pass name, the graph it produced, its wall time and which rewrite rules
fired (like Lightning Thunder's stamped traces). `KILN_PRINT_AFTER=canonicalize` (a
comma-separated list of pass names, or `all`) prints the IR after those passes to stderr;
`KILN_VERIFY=1` runs the IR verifier after every pass (tests pass `verify=True`).

    >>> from kiln.passes.manager import run_passes, DEFAULT_PIPELINE
    >>> [p.name for p in DEFAULT_PIPELINE]
    ['canonicalize', 'fusion']
"""
from __future__ import annotations

import collections
import dataclasses
import os
import sys
import time
from typing import Callable

from kiln.ir.errors import KilnError, VerifyError
from kiln.ir.graph import Graph

from .canonicalize import canonicalize
from .fusion import fuse_elementwise


@dataclasses.dataclass(frozen=True)
class Pass:
    """A named graph transform: `run(graph, fired) -> graph`, where `fired` is a Counter the
    pass adds rule names to."""

    name: str
    run: Callable[[Graph, collections.Counter], Graph]


@dataclasses.dataclass
class Stage:
    """One step of a pipeline run: the graph `name` produced, in `ms` milliseconds."""

    name: str
    graph: Graph
    ms: float
    fired: dict

    def header(self) -> str:
        rules = ", ".join(f"{k}={v}" for k, v in sorted(self.fired.items())) or "none"
        return f"# after {self.name} ({self.ms:.2f} ms; fired: {rules})"

    def __str__(self) -> str:
        return f"{self.header()}\n{self.graph}"


DEFAULT_PIPELINE: list[Pass] = [
    Pass("canonicalize", canonicalize),
    Pass("fusion", fuse_elementwise),
]


def run_passes(graph: Graph, passes=DEFAULT_PIPELINE, verify: bool | None = None):
    """Run `passes` in order; return `(final graph, stages)`.

    The first stage is named `input` and holds the graph given. `verify=None` reads
    `KILN_VERIFY`.

    >>> from kiln.ir.builder import GraphBuilder, Sym
    >>> from kiln.ir.registry import P
    >>> from kiln.ir.types import TensorType
    >>> from kiln.ir.dtypes import DType
    >>> b = GraphBuilder("f")
    >>> x = Sym(b, b.add_input(TensorType(DType.float32, (4,)), "x"))
    >>> g = b.finish([P.neg(P.neg(x)).value])
    >>> out, stages = run_passes(g)
    >>> [s.name for s in stages], stages[1].fired
    (['input', 'canonicalize', 'fusion'], {'neg_neg': 1, 'dce': 1})
    """
    if verify is None:
        verify = os.environ.get("KILN_VERIFY", "") not in ("", "0")
    show = _print_after()
    stages = [Stage("input", graph, 0.0, {})]
    for p in passes:
        fired: collections.Counter = collections.Counter()
        start = time.perf_counter()
        graph = p.run(graph, fired)
        ms = (time.perf_counter() - start) * 1e3
        stage = Stage(p.name, graph, ms, dict(fired))
        stages.append(stage)
        if "all" in show or p.name in show:
            print(stage, file=sys.stderr)
        if verify:
            _verify(graph, p.name)
    return graph, stages


def _print_after() -> set[str]:
    value = os.environ.get("KILN_PRINT_AFTER", "")
    return {name.strip() for name in value.split(",") if name.strip()}


def _verify(graph: Graph, pass_name: str):
    try:
        from kiln.ir.verifier import verify
    except ModuleNotFoundError as e:
        if e.name != "kiln.ir.verifier":
            raise
        return      # NOTE: the verifier is optional while it is being written
    try:
        verify(graph)
    except KilnError as e:
        raise VerifyError(f"IR invalid after pass '{pass_name}': {e.message}", node=e.node,
                          loc=e.loc, hint=e.hint) from e
