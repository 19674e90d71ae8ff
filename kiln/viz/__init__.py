"""Pictures of what the compiler makes of a function: ONE self-contained HTML file (no network,
nothing to install to open it) with the graph at every stage and the memory plan.

    kiln viz train.py:step --arg f32[64,784] --arg i64[64] -o step.html

or from Python, `kiln.viz(f, *args)` (the HTML text) and `kiln.viz(f, *args, path="f.html")`
(writes the file and returns its path):

    >>> import kiln, kiln.viz
    >>> def f(x): return kiln.exp(x).sum()
    >>> html = kiln.viz(f, kiln.ones(4))
    >>> html.startswith("<!DOCTYPE html>"), "kernel @fused_0" in html
    (True, True)

A tab per stage (`traced`, one per pass, `memory`; `backward`, `backward fusion` and
`backward memory` when the outputs still require grad): ops are boxes, fused kernels are
clusters holding their body's ops, arrows are values (hover for name, dtype and shape); a
click on a box shows its values, its source line and, in a kernel, the kernel's MLIR. The
memory tab draws each planned buffer over the steps it lives in at its arena offset, with the
planned and naive peaks. The layout is grandalf's Sugiyama layout (see layout.py); a graph too
large for it (a training step of a dozen blocks) gets a linear layered layout (layers.py).
"""
from __future__ import annotations

import sys
import types
from pathlib import Path


def viz(f, *args, path=None, **kwargs):
    """The page for `f(*args, **kwargs)` (traced, not run): its HTML text, or, given `path`,
    the file written there (its `Path` is returned). `f` may be plain or `@kiln.jit`."""
    from .collect import collect
    from .page import render_html

    html = render_html(collect(f, args, kwargs))
    if path is None:
        return html
    out = Path(path)
    out.write_text(html, encoding="utf-8")
    return out


def main(argv=None) -> int:
    """`kiln viz FILE.py:FUNCTION --arg SPEC ... -o OUT.html`; returns the exit status."""
    from .cli import main as run
    return run(argv)


class _CallableModule(types.ModuleType):
    # NOTE: `kiln.viz` is both this package (kiln.viz.main for the CLI) and the function users
    # call, `kiln.viz(f, x)`: a function named viz in kiln/__init__.py would be replaced by
    # the package the moment anything imports kiln.viz.cli.
    def __call__(self, f, *args, path=None, **kwargs):
        return viz(f, *args, path=path, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
