"""What a picture shows, read from the compiler's own objects: the graph after tracing and
after each pass, the planned schedule (memory), and each kernel's MLIR.

The compile pipeline is run the way `@kiln.jit` runs it (trace, `run_passes`, schedule, memory
plan), but kernels are only rendered to MLIR, not compiled to machine code: a picture needs
the text, and rendering takes milliseconds where LLVM takes seconds.
"""
from __future__ import annotations

import dataclasses

from kiln.ir.graph import Graph
from kiln.ir.schedule import Schedule


@dataclasses.dataclass
class GraphStage:
    """The graph `name` (a pass, or `traced`) produced; `mlir` maps the names of its
    kernels (once fused) to their MLIR."""

    name: str
    graph: Graph
    mlir: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class MemoryStage:
    """A planned schedule: its steps in launch order, its arena of temps, and the MLIR of
    the kernels it launches."""

    name: str
    schedule: Schedule
    mlir: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Picture:
    """Everything a page draws: `title` (the function's name) and `stages` in compile
    order."""

    title: str
    stages: list


def collect(fn, args, kwargs=None) -> Picture:
    """Trace `fn(*args, **kwargs)` and compile it up to MLIR, keeping every stage.

    When the function's outputs still require grad, the backward graph `@kiln.jit` would
    compile for them (frontend/jit_grad.py) follows as the stages `backward`,
    `backward fusion` and `backward memory`.

    >>> import kiln
    >>> def f(x): return kiln.exp(x).sum()
    >>> [s.name for s in collect(f, [kiln.ones(4)]).stages]
    ['traced', 'functionalize', 'canonicalize', 'fusion', 'memory']
    """
    from kiln.cli import unwrap
    from kiln.frontend.jit import trace_function

    fn = unwrap(fn)
    trace, _ = trace_function(fn, list(args), kwargs or {})
    stages: list = []
    _compile(trace.builder.graph, "", stages)
    backward = getattr(trace, "backward", None)
    if backward is not None and backward.error is not None \
            and not getattr(trace, "grad_effects", ()):
        # NOTE: a training step that runs backward() itself and returns its loss (still
        # requiring grad) has no second backward to draw: its gradients are in the forward
        # graph. Only a function whose outputs need a backward that cannot be built fails.
        raise backward.error
    if backward is not None and backward.graph is not None:
        _compile(backward.graph, "backward", stages)
    return Picture(getattr(fn, "__name__", "f"), stages)


def _compile(traced: Graph, prefix: str, stages: list) -> None:
    """Append the stages of one graph (`prefix` names a backward graph's), with the MLIR of
    its kernels (the forward's and backward's kernels have names of their own)."""
    from kiln.frontend.compile import plan_graph
    from kiln.passes.manager import run_passes

    optimized, passes = run_passes(traced)
    first = len(stages)
    if prefix:
        stages.append(GraphStage(prefix, traced))
        # NOTE: a backward's traced and fused graphs only: its functionalize and
        # canonicalize tabs would add little to a page that already shows the forward's
        stages.append(GraphStage(f"{prefix} fusion", optimized))
    else:
        stages.append(GraphStage("traced", traced))
        stages += [GraphStage(p.name, p.graph) for p in passes if p.name != "input"]
    schedule, _ = plan_graph(optimized)
    mlir = kernel_mlir(schedule)
    for stage in stages[first:]:
        stage.mlir = mlir
    stages.append(MemoryStage(f"{prefix} memory".strip(), schedule, mlir))


def kernel_mlir(schedule: Schedule) -> dict[str, str]:
    """Kernel name -> the MLIR the CPU backend renders for it (an error's text in its place,
    so that one kernel codegen refuses still leaves a picture of the rest)."""
    from kiln.codegen.cpu import default_cpu_renderer
    from kiln.ir.errors import KilnError

    renderer = default_cpu_renderer()
    out = {}
    for k in schedule.kernels:
        try:
            out[k.name] = renderer.render(k)
        except KilnError as e:
            out[k.name] = f"// codegen could not render kernel {k.name}:\n// {e.message}\n"
    return out
