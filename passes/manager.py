"""The pass pipeline: ONE list of named passes, and a driver that keeps every stage.

Each stage records the pass name, the graph it produced, its wall time and which rewrite rules
fired (like Lightning Thunder's stamped traces). `KILN_PRINT_AFTER=canonicalize` (a
comma-separated list of pass names, `input`, or `all`) prints the IR after those passes to
stderr (`KILN_DEBUG=3` prints it after every pass); `KILN_VERIFY=1` runs the IR verifier on
the input and after every pass (tests pass `verify=True`).

    >>> from kiln.passes.manager import run_passes, DEFAULT_PIPELINE
    >>> [p.name for p in DEFAULT_PIPELINE]
    ['functionalize', 'canonicalize', 'fusion']
"""
from __future__ import annotations

import collections
import dataclasses
import os
import time
from typing import Callable

from kiln import debug
from kiln.ir.errors import KilnError, VerifyError
from kiln.ir.graph import Graph
from kiln.ir.verifier import verify as verify_graph

from .autograd import grad_graph
from .canonicalize import canonicalize
from .functionalize import functionalize
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
    Pass("functionalize", functionalize),
    Pass("canonicalize", canonicalize),
    Pass("fusion", fuse_elementwise),
]


def autograd(wrt: list[int], output: int = 0, seed=None) -> Pass:
    """The autograd transform as a pass, for a pipeline such as `[autograd([0]),
    *DEFAULT_PIPELINE]` (see `grad_graph` for the arguments).

    >>> autograd([0, 1]).name
    'autograd'
    """
    return Pass("autograd", lambda g, fired: grad_graph(g, wrt, output, seed, fired))


def run_passes(graph: Graph, passes=DEFAULT_PIPELINE, verify: bool | None = None):
    """Run `passes` in order; return `(final graph, stages)`.

    The first stage is named `input` and holds the graph given. `verify=None` reads
    `KILN_VERIFY`.

    >>> from kiln.ir.parser import parse
    >>> g = parse('''
    ... graph @f(%x: f32[4]) {
    ...   %0: f32[4] = neg %x
    ...   %1: f32[4] = neg %0
    ...   return %1
    ... }''')
    >>> out, stages = run_passes(g)
    >>> [s.name for s in stages], stages[1].fired, stages[2].fired
    (['input', 'functionalize', 'canonicalize', 'fusion'], {}, {'neg_neg': 1, 'dce': 1})
    """
    if verify is None:
        verify = os.environ.get("KILN_VERIFY", "") not in ("", "0")
    _check_order(passes)
    show = _print_after()
    stages = [Stage("input", graph, 0.0, {})]
    _check(stages[0], show, verify)
    for p in passes:
        fired: collections.Counter = collections.Counter()
        start = time.perf_counter()
        graph = p.run(graph, fired)
        stages.append(Stage(p.name, graph, (time.perf_counter() - start) * 1e3, dict(fired)))
        _check(stages[-1], show, verify)
    return graph, stages


def _check_order(passes) -> None:
    """Autograd must see the program before canonicalize turns `stop_gradient` (a traced
    `detach()`) into the identity."""
    names = [p.name for p in passes]
    if "autograd" in names and "canonicalize" in names[:names.index("autograd")]:
        raise KilnError(f"pass order {names}: autograd must run before canonicalize, which "
                        "drops stop_gradient")
    if "canonicalize" in names and "functionalize" in names[names.index("canonicalize"):]:
        raise KilnError(f"pass order {names}: functionalize must run before canonicalize, "
                        "whose rewrites assume values are never written in place")


def _print_after() -> set[str]:
    """The stages to print: KILN_PRINT_AFTER's, or all of them at KILN_DEBUG=3 and above."""
    if debug.LEVEL >= 3:
        return {"all"}
    value = os.environ.get("KILN_PRINT_AFTER", "")
    return {name.strip() for name in value.split(",") if name.strip()}


def _check(stage: Stage, show: set[str], verify: bool):
    """Print the stage if asked to; verify its graph, naming the pass that broke it."""
    if "all" in show or stage.name in show:
        from kiln import debug      # NOTE: never raises on a closed stderr pipe
        debug.write(f"{stage}\n")
    if not verify:
        return
    try:
        verify_graph(stage.graph)
    except KilnError as e:
        where = "the input graph" if stage.name == "input" else f"pass '{stage.name}'"
        raise VerifyError(f"IR invalid after {where}: {e.message}", node=e.node, loc=e.loc,
                          hint=e.hint) from e
