"""One self-contained HTML page: a tab per stage, its SVG drawn in Python, the script and style
inline (page.js, page.css beside this file), box details and kernels' MLIR as one JSON block.
The page names no URL and loads nothing: it opens from disk, offline, in any browser.
"""
from __future__ import annotations

import json
from html import escape
from pathlib import Path

from .collect import GraphStage, Picture
from .diagram import count, graph_diagram
from .layout import layout
from .memory import memory_svg
from .svg import diagram_svg

_HERE = Path(__file__).parent
KIND_LEGEND = (("input", "input"), ("elementwise", "elementwise"), ("reduce", "reduction"),
               ("matmul", "matmul / conv"), ("movement", "view / data movement"),
               ("source", "constant / random"), ("mutation", "write"),
               ("kernel", "fused kernel"), ("output", "output"))


def render_html(picture: Picture) -> str:
    """The page for `picture` (see collect.py)."""
    tabs, sections = [], []
    details: dict = {}
    mlir: dict = {}
    groups: dict = {}
    for i, stage in enumerate(picture.stages):
        group = groups.setdefault(id(stage.mlir), f"k{len(groups)}")
        for name, text in stage.mlir.items():
            mlir[f"{group}/{name}"] = text
        key = _mlir_key(group, stage.mlir)
        if isinstance(stage, GraphStage):
            d = layout(graph_diagram(stage.graph, f"s{i}", key))
            svg = diagram_svg(d, f"s{i}-svg")
            details.update((b.id, b.details) for b in d.walk())
            summary = _graph_summary(stage.graph)
        else:
            svg, more, summary = memory_svg(stage.schedule, f"s{i}", key)
            details.update(more)
        anchor = stage.name.replace(" ", "-")
        tabs.append(f'<button type="button" data-stage="{i}">{escape(stage.name)}</button>')
        sections.append(f'<section class="stage" id="stage-{i}" data-name="{escape(anchor)}">'
                        f'<div class="summary">{escape(stage.name)}: {escape(summary)}</div>'
                        f"{svg}</section>")
    data = json.dumps({"details": details, "mlir": mlir}, separators=(",", ":"))
    return _PAGE.format(
        title=escape(picture.title), tabs="".join(tabs), sections="\n".join(sections),
        legend=_legend(), css=_asset("page.css"), js=_asset("page.js"),
        # NOTE: `</` would end the script element early; JSON reads `<\/` as `</`
        data=data.replace("</", "<\\/"))


def _mlir_key(group: str, kernels: dict):
    return lambda name: f"{group}/{name}" if name in kernels else None


def _graph_summary(graph) -> str:
    kernels = [n for n in graph.nodes if n.op == "kernel"]
    fused = sum(len(n.attrs.body.nodes) for n in kernels)
    text = count(len(graph.nodes), "node")
    if kernels:
        text += f" ({count(len(kernels), 'fused kernel')} holding {count(fused, 'op')})"
    return f"{text}, {count(len(graph.inputs), 'input')}, {count(len(graph.outputs), 'output')}"


def _legend() -> str:
    return "".join(f'<span class="swatch k-{kind}"><i></i>{escape(text)}</span>'
                   for kind, text in KIND_LEGEND)


def _asset(name: str) -> str:
    return (_HERE / name).read_text(encoding="utf-8")


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>kiln viz: {title}</title>
<style>
{css}
</style>
</head>
<body>
<header>
<h1>kiln viz: {title}</h1>
<nav>{tabs}</nav>
<input id="find" type="search" placeholder="find: op, %name, line" aria-label="find a box">
<span class="hint">drag: pan · wheel: zoom · F: fit · click a box: details</span>
</header>
<div class="legend">{legend}</div>
<main>
<div class="stages">
{sections}
</div>
<aside id="details"><p class="empty">Click a box to see its values, its source line and, for a
fused kernel, its MLIR. On the memory tab, click a buffer or a step.</p></aside>
</main>
<script type="application/json" id="kiln-data">{data}</script>
<script>
{js}
</script>
</body>
</html>
"""
