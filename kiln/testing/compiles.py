"""`assert_compiles`: a function compiles to the number of graphs, with the number of graph
breaks, a test expects; otherwise the failure shows why, with source lines (from
`kiln.explain`)."""
from __future__ import annotations

from kiln.frontend.explain import Explanation, explain


def assert_compiles(fn, *args, graphs: int = 1, breaks: int = 0, **kwargs) -> Explanation:
    """Trace and compile `fn(*args, **kwargs)` as `@kiln.jit` would (through
    `kiln.explain`, which leaves a jitted function's cache alone) and raise AssertionError
    unless it makes `graphs` compiled graphs with `breaks` graph breaks. Returns the
    explanation.

    The message lists each break with its reason and source line, the reason a function
    would run eagerly instead (a graph break Kiln cannot split at, a compile failure, replay
    mode refused because an argument or a parameter requires grad, side effects on CUDA),
    and the Python side effects found; a function the jit runs eagerly has 0 graphs. Like
    `kiln.explain`, a function with breaks or side effects is run once, in replay mode, and
    CUDA arguments (or captured CUDA tensors) are traced for CUDA, as the jit does.

    >>> import kiln
    >>> def f(x):
    ...     return kiln.relu(x) * 2
    >>> assert_compiles(f, kiln.ones(3)).graphs
    1
    >>> def g(x):
    ...     if x.sum() > 0:
    ...         return x * 2
    ...     return x
    >>> assert_compiles(g, kiln.ones(3))      # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    AssertionError: assert_compiles(g): expected 1 graph(s) and 0 graph break(s), got 2 ...
      graph break: after graph 1: bool() = True (graph 2 is compiled ...) at <doctest ...>:2: ...
    ...
    """
    for name, n in (("graphs", graphs), ("breaks", breaks)):
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"assert_compiles: {name} must be a non-negative int, got {n!r}")
    report = explain(fn, *args, **kwargs)
    if report.graphs == graphs and len(report.breaks) == breaks:
        return report
    lines = [f"assert_compiles({report.name}): expected {graphs} graph(s) and {breaks} graph "
             f"break(s), got {report.graphs} graph(s) and {len(report.breaks)} graph "
             "break(s)"]
    lines += [f"  graph break: {b}" for b in report.breaks]
    if report.graph_break:
        lines.append("  runs eagerly instead, at a graph break Kiln cannot split at:\n    "
                     + report.graph_break.replace("\n", "\n    "))
    if report.compile_error:
        lines.append(f"  runs eagerly instead: compilation failed: {report.compile_error}")
    if report.eager_reason:
        lines.append(f"  runs eagerly instead: {report.eager_reason}")
    lines += [f"  Python side effect (the function re-runs on every call): {e}"
              for e in report.side_effects]
    lines.append(f"\nkiln.explain({report.name}):\n{report}")
    raise AssertionError("\n".join(lines))
