"""`kiln.explain(f, *args)`: what `@kiln.jit` makes of a call, in words a user can act on.

It traces and compiles like the first call of a jitted function and reports the graph (or the
graphs around each graph break, with the break's source line and the value read), the kernels
fusion made, what still runs through NumPy references, every guard, the tensors captured from
outside (parameters, globals) and where they are first used, random inputs, the Python side
effects found in the bytecode (with their source lines), why a jitted function recompiled, and
a compile failure with its source line. It takes the jit's decisions: the graph is traced for
the device of the arguments (CUDA when one is there, or when a captured tensor is), and where
the jit would run the function eagerly (replay mode with an argument or parameter that
requires grad, side effects on CUDA, a replay that falls back) the report says so, with the
jit's reason, and counts no graph. `str()` is the report in words, `.to_json()` the same as
JSON (`kiln explain --json`).
"""
from __future__ import annotations

import dataclasses
import json

from kiln.ir.errors import KilnError
from kiln.runtime.cuda.array import DeviceArray

from . import autograd
from .guards import Shown, describe, freeze
from .jit import (JitFunction, _call_side_effects, _flatten, compile_trace, recompile_reasons,
                  trace_function)
from .trace import DeviceBreak, GraphBreak, ValueBreak


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
    eager_reason: str | None = None         # the jit runs the function eagerly: why
    breaks: list[str] = dataclasses.field(default_factory=list)
    side_effects: list[str] = dataclasses.field(default_factory=list)
    recompiles: list[str] = dataclasses.field(default_factory=list)
    compiled_graphs: int = 0
    per_graph: list[dict] = dataclasses.field(default_factory=list)
    break_details: list[dict] = dataclasses.field(default_factory=list)   # one per `breaks`

    @property
    def graphs(self) -> int:
        if self.graph_break or self.compile_error or self.eager_reason:
            return 0
        return self.compiled_graphs

    def __str__(self) -> str:
        lines = [f"kiln.explain({self.name}): {self.graphs} graph(s), "
                 f"{self.traced_nodes} traced op(s), {len(self.kernels)} compiled kernel(s)"]
        if len(self.per_graph) > 1:
            lines.append("per graph: " + "; ".join(
                f"graph {g['graph']}: {g['traced_ops']} traced op(s), {g['kernels']} "
                f"kernel(s)" for g in self.per_graph))
        if self.graph_break:
            lines += ["graph break (runs eagerly):", "  " + self.graph_break.replace(
                "\n", "\n  ")]
        if self.compile_error:
            lines += ["compile failure (runs eagerly):", "  " + self.compile_error]
        if self.eager_reason:
            lines += ["runs eagerly: " + self.eager_reason]
        for title, items in _SECTIONS:
            if getattr(self, items):
                lines.append(title + ":")
                lines += ["  " + item for item in getattr(self, items)]
        if not self.side_effects:
            lines.append("Python side effects: none found")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """The report as plain data (what `to_json` writes)."""
        return {"function": self.name, "graphs": self.graphs, "traced_ops": self.traced_nodes,
                "kernel_count": len(self.kernels), "per_graph": self.per_graph,
                "graph_break": self.graph_break, "compile_error": self.compile_error,
                "eager_reason": self.eager_reason,
                "breaks": [dict(d, text=t) for t, d in zip(self.breaks, self.break_details)],
                "side_effects": self.side_effects,
                "recompile_reasons": self.recompiles, "guards": self.guards,
                "captured": self.captured, "random_inputs": self.seeds,
                "kernels": self.kernels, "reference_ops": self.reference_ops}

    def to_json(self, indent: int | None = 1) -> str:
        """The report as a JSON object: the counts, per graph its traced ops and kernels,
        graph breaks, side effects, recompile reasons, guards, captured tensors, kernels.

        >>> import json, kiln
        >>> report = json.loads(kiln.explain(lambda x: kiln.tanh(x) * 2, kiln.ones(4)).to_json())
        >>> report["graphs"], report["per_graph"], report["side_effects"]
        (1, [{'graph': 1, 'traced_ops': 3, 'kernels': 1, 'reference_ops': 0}], [])
        """
        return json.dumps(self.to_dict(), indent=indent)


_SECTIONS = (
    ("graph breaks (the graph before runs, the value is read, the graph after is compiled "
     "for that value)", "breaks"),
    ("Python side effects (the function re-runs on every call; its graphs are reused)",
     "side_effects"),
    ("guards (a change retraces)", "guards"),
    ("captured tensors (graph inputs, read at every call)", "captured"),
    ("random inputs (drawn per call)", "seeds"),
    ("kernels", "kernels"),
    ("ops run by their NumPy reference", "reference_ops"),
    ("recompile reasons (this jitted function's earlier calls)", "recompiles"),
)


def _guards(args, kwargs, leaves) -> list[str]:
    spec_leaves: list = []
    spec = _flatten((args, kwargs), spec_leaves)
    out = [f"tensor argument {i}: {t.dtype.value}{list(t.shape)}"
           f"{', requires_grad' if t.requires_grad else ''}" for i, t in enumerate(leaves)]
    out += [f"static argument: {v!r}" for v in _static_values(spec)]
    out.append(f"grad mode: {'on' if autograd.is_grad_enabled() else 'off'}")
    return out


def _guard_line(label: str, value) -> str:
    """A read guard in words (`global lr == 0.5`, `global opt.step is the bound method
    SGD.step`); the function's defaults as `default values == (0.5,)`."""
    if label == "default values":
        positional, keyword = value
        out = [] if positional == freeze(None) else [describe("default values", positional)]
        if keyword != freeze(None):
            out.append(describe("keyword default values", keyword))
        return ", ".join(out)
    return value.describe(label) if isinstance(value, Shown) else describe(label, value)


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


def _describe_graph(report: Explanation, trace, compiled, label: str = "") -> None:
    graph = trace.builder.graph
    report.compiled_graphs += 1
    report.traced_nodes += len(graph.nodes)
    kernels = _kernel_lines(compiled, label)
    others = [n for n in compiled.graph.nodes if n.op != "kernel"]
    report.per_graph.append({"graph": report.compiled_graphs, "traced_ops": len(graph.nodes),
                             "kernels": len(kernels), "reference_ops": len(others)})
    for m, state in trace.modules.values():
        attrs = ", ".join(f"{k}={v!r}" for k, v in state)
        report.guards.append(f"{label}{type(m).__name__} called during the trace: {attrs}")
    for t, v in trace.captured.values():
        report.captured.append(f"{label}%{v.hint}: {v.type}, {_first_use(graph, v)}")
    report.seeds += [f"{label}%{v.hint}: {_first_use(graph, v)}" for v in trace.seed_inputs]
    report.kernels += kernels
    for node in others:
        where = f"  # {node.loc}" if node.loc else ""
        report.reference_ops.append(f"{label}{node.op}: {node.outputs[0].type}{where}")


def _kernel_lines(compiled, label: str) -> list[str]:
    """One line per kernel launch of the compiled schedule, in launch order: the count
    `KILN_DEBUG=1` and `kiln ir` give (copy kernels the schedule adds included); from the
    fused graph's kernel nodes where there is no schedule."""
    from kiln.ir.schedule import Launch
    schedule = getattr(getattr(compiled, "executable", None), "schedule", None)
    if schedule is None:
        found = [(n.attrs.name, n.outputs[0].type, n.attrs.body, n.loc)
                 for n in compiled.graph.nodes if n.op == "kernel"]
    else:
        found = [(st.kernel.name, st.outs[0].type, st.kernel.body, st.loc)
                 for st in schedule.steps if isinstance(st, Launch)]
    return [f"{label}{name}: {typ} <- {' '.join(n.op for n in body.nodes)}"
            f"{f'  # {loc}' if loc else ''}" for name, typ, body, loc in found]


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
    report.guards += [_guard_line(label, value)
                      for label, value in JitFunction(inner)._read_values()]
    if isinstance(fn, JitFunction):
        report.recompiles = _recompiles(fn)
    # NOTE: the decisions of JitFunction._compile, in its order
    device = "cuda" if any(type(t._data) is DeviceArray for t in leaves) else "cpu"
    if any(t._copy_of is not None for t in leaves):
        report.eager_reason = ("not supported yet: an argument is a view of a CUDA tensor (a "
                               "copy standing for the view)")
        return report
    effects = _call_side_effects(inner, args, kwargs)
    report.side_effects = [e.describe() for e in effects]
    if effects:
        reason = "Python side effects: " + ", ".join(report.side_effects)
        return _explain_replay(report, inner, effects, reason, device, (args, kwargs), leaves)
    try:
        try:
            trace, out_spec = trace_function(inner, args, kwargs, device)
        except DeviceBreak:     # NOTE: a captured CUDA tensor: the jit retries for CUDA
            device = "cuda"
            trace, out_spec = trace_function(inner, args, kwargs, device)
    except ValueBreak as e:
        return _explain_replay(report, inner, getattr(e, "effects", []), str(e), device,
                               (args, kwargs), leaves)
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


def _replay_refusal(fn, effects, reason: str, device: str, call, leaves) -> str | None:
    """Why the jit would run `fn` eagerly instead of in replay mode (the checks of
    JitFunction._compile and JitFunction._replay, with their words), or None."""
    if device == "cuda":
        return f"{reason}; replay mode is not supported yet on CUDA"
    if not autograd.is_grad_enabled():
        return None
    if any(t._requires_grad for t in leaves):
        return (f"{reason}; an argument requires grad and replay mode does not compute "
                "gradients yet")
    if effects and JitFunction(fn)._reads_trainable(call):
        return (f"{reason}; it uses parameters that require grad and replay mode does not "
                "compute gradients yet")
    return None


def _recompiles(fn: JitFunction) -> list[str]:
    out = list(recompile_reasons(fn))
    for entries in fn.cache.values():
        for entry in entries:
            out += getattr(entry, "reasons", [])
    return out


def _explain_replay(report: Explanation, fn, effects, reason: str, device: str, call,
                    leaves) -> Explanation:
    """Run `fn` once in replay mode (as a jitted call would) and describe every segment; or
    say why the jit runs it eagerly instead."""
    from .replay import ReplayEntry, Session, _FallBack
    report.eager_reason = _replay_refusal(fn, effects, reason, device, call, leaves)
    if report.eager_reason is not None:
        return report
    record: list = []
    entry = ReplayEntry(fn, report.name, effects, "explain", limit=1 << 30)
    try:
        Session(entry, record)._run(call[0], call[1], leaves)
    except GraphBreak as e:
        report.graph_break = str(e)
    except _FallBack as e:      # NOTE: the jit runs this call eagerly (Session.run)
        if isinstance(e.__cause__, Exception) and str(e).startswith("compilation failed"):
            report.compile_error = f"{type(e.__cause__).__name__}: {e.__cause__}"
        else:
            report.eager_reason = str(e)
    except KilnError as e:     # NOTE: the jitted call would raise it too
        report.compile_error = f"{type(e).__name__}: {e}"
    n = 0
    for rec in record:
        if rec["segment"] is None:
            why, loc, value = rec["read"]
            report.breaks.append(f"{why} = {value!r} read from an input, no graph split, "
                                 f"at {_where(loc)}")
            report.break_details.append(_break_detail(None, why, loc, value))
            continue
        n += 1
        if rec["compiled"] is not None:
            _describe_graph(report, rec["segment"], rec["compiled"], f"graph {n}: ")
        if "break" in rec:
            why, loc, value = rec["break"]
            report.breaks.append(f"after graph {n}: {why} = {value!r} (graph {n + 1} is "
                                 f"compiled for that value) at {_where(loc)}")
            report.break_details.append(_break_detail(n, why, loc, value))
    return report


def _break_detail(after_graph, why, loc, value) -> dict:
    return {"after_graph": after_graph, "read": why, "value": repr(value),
            "loc": None if loc is None else str(loc),
            "source": None if loc is None else loc.source}


def _where(loc) -> str:
    return f"{loc}: {loc.source}" if loc is not None else "?"
