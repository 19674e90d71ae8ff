"""`kiln.explain(f, *args)`: what `@kiln.jit` makes of a call, in words a user can act on.

It traces and compiles like the first call of a jitted function and reports the graph, the
kernels fusion made, what still runs through NumPy references, every guard, the tensors
captured from outside (parameters, globals) and where they are first used, random seeds, and a
graph break or compile failure with its source line.
"""
from __future__ import annotations

import dataclasses

from . import autograd
from .jit import JitFunction, _flatten, compile_trace, trace_function
from .trace import GraphBreak


@dataclasses.dataclass
class Explanation:
    """The report; `str()` prints it."""

    name: str
    guards: list[str]
    captured: list[str] = dataclasses.field(default_factory=list)
    seeds: list[str] = dataclasses.field(default_factory=list)
    traced_nodes: int = 0
    kernels: list[str] = dataclasses.field(default_factory=list)
    reference_ops: list[str] = dataclasses.field(default_factory=list)
    graph_break: str | None = None
    compile_error: str | None = None

    @property
    def graphs(self) -> int:
        return 0 if self.graph_break or self.compile_error else 1

    def __str__(self) -> str:
        lines = [f"kiln.explain({self.name}): {self.graphs} graph(s), "
                 f"{self.traced_nodes} traced op(s), {len(self.kernels)} compiled kernel(s)"]
        if self.graph_break:
            lines += ["graph break (runs eagerly):", "  " + self.graph_break.replace(
                "\n", "\n  ")]
        if self.compile_error:
            lines += ["compile failure (runs eagerly):", "  " + self.compile_error]
        for title, items in (("guards (a change retraces)", self.guards),
                             ("captured tensors (graph inputs, read at every call)",
                              self.captured),
                             ("random seeds (fresh per call)", self.seeds),
                             ("kernels", self.kernels),
                             ("ops run by their NumPy reference", self.reference_ops)):
            if items:
                lines.append(title + ":")
                lines += ["  " + item for item in items]
        lines.append("side effects: not analysed yet (bytecode analysis is not built)")
        return "\n".join(lines)


def _guards(args, kwargs, leaves) -> list[str]:
    spec_leaves: list = []
    spec = _flatten((args, kwargs), spec_leaves)
    out = [f"tensor argument {i}: {t.dtype.value}{list(t.shape)}"
           f"{', requires_grad' if t.requires_grad else ''}" for i, t in enumerate(leaves)]
    out += [f"static argument: {v!r}" for v in _static_values(spec)]
    out.append(f"grad mode: {'on' if autograd.is_grad_enabled() else 'off'}")
    return out


def _static_values(spec) -> list:
    if spec[0] == "S":
        return [spec[2]]
    if spec[0] in ("list", "tuple"):
        return [v for s in spec[1] for v in _static_values(s)]
    if spec[0] == "dict":
        return [v for _, s in spec[1] for v in _static_values(s)]
    return []


def _first_use(graph, value) -> str:
    for node in graph.nodes:
        if value in node.inputs:
            return f"first used by {node.op} at {node.loc}" if node.loc else node.op
    return "returned directly"


def _describe_graph(report: Explanation, trace, compiled) -> None:
    graph = trace.builder.graph
    report.traced_nodes = len(graph.nodes)
    for m, state in trace.modules.values():
        attrs = ", ".join(f"{k}={v!r}" for k, v in state)
        report.guards.append(f"{type(m).__name__} called during the trace: {attrs}")
    for t, v in trace.captured.values():
        report.captured.append(f"%{v.hint}: {v.type}, {_first_use(graph, v)}")
    report.seeds = [f"%{v.hint}: {_first_use(graph, v)}" for v in trace.seed_inputs]
    for node in compiled.graph.nodes:
        where = f"  # {node.loc}" if node.loc else ""
        if node.op == "kernel":
            ops = " ".join(n.op for n in node.attrs.body.nodes)
            report.kernels.append(f"{node.attrs.name}: {node.outputs[0].type} <- {ops}{where}")
        else:
            report.reference_ops.append(f"{node.op}: {node.outputs[0].type}{where}")


def explain(fn, *args, **kwargs) -> Explanation:
    """Trace and compile `fn(*args, **kwargs)` as `@kiln.jit` would, and say what happened.

    >>> import kiln
    >>> def f(x):
    ...     return kiln.tanh(x) * 2
    >>> print(kiln.explain(f, kiln.ones(4)).kernels[0])
    fused_0: f32[4] <- tanh full mul  # <doctest kiln.frontend.explain.explain[1]>:2
    """
    inner = fn.fn if isinstance(fn, JitFunction) else fn
    leaves: list = []
    _flatten((args, kwargs), leaves)
    report = Explanation(getattr(inner, "__name__", type(inner).__name__),
                         _guards(args, kwargs, leaves))
    report.guards += [f"global or closure value: {name} == {value!r}"
                      for name, value in JitFunction(inner)._read_values()]
    try:
        trace, out_spec = trace_function(inner, args, kwargs)
    except GraphBreak as e:
        report.graph_break = str(e)
        return report
    try:
        compiled = compile_trace(trace, out_spec)
    except Exception as e:  # NOTE: reported, as the jit would report it in its warning
        report.compile_error = f"{type(e).__name__}: {e}"
        report.traced_nodes = len(trace.builder.graph.nodes)
        return report
    _describe_graph(report, trace, compiled)
    return report
