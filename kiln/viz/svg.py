"""SVG markup of a laid-out diagram: arrows under boxes, a cluster as a framed group with its
contents inside. Every box is a `<g class="box" id=... data-box>` the page's script makes
clickable; every arrow names its ends (`data-src`, `data-dst`) so a selected box can light up
its arrows."""
from __future__ import annotations

from html import escape

from .diagram import HEADER_H, LINE_H, PAD, Diagram

MARGIN = 20


def diagram_svg(d: Diagram, svg_id: str) -> str:
    """One `<svg>` element (no namespace attribute: inline SVG in HTML needs none, and the
    page then names no URL at all)."""
    w, h = d.w + 2 * MARGIN, d.h + 2 * MARGIN
    out = [f'<svg class="graph" id="{svg_id}" data-w="{num(w)}" data-h="{num(h)}" '
           f'viewBox="0 0 {num(w)} {num(h)}">',
           f'<defs><marker id="{svg_id}-arrow" viewBox="0 0 10 10" refX="9" refY="5" '
           'markerWidth="8" markerHeight="8" markerUnits="userSpaceOnUse" '
           'orient="auto-start-reverse">'
           '<path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker></defs>']
    # NOTE: marker-end is inherited: set once here, not on each of thousands of arrows
    out.append(f'<g transform="translate({MARGIN},{MARGIN})" '
               f'marker-end="url(#{svg_id}-arrow)">')
    _draw(d, out)
    out.append("</g></svg>")
    return "\n".join(out)


def _draw(d: Diagram, out: list) -> None:
    for link in d.links:
        if link.points:
            out.append(f'<path class="link" d="{_curve(link.points)}" data-src="{link.src}" '
                       f'data-dst="{link.dst}">'
                       f'<title>{escape(link.tip)}</title></path>')
    for b in d.boxes:
        out.append(f'<g class="box k-{escape(b.kind)}" id="{b.id}" data-box="" '
                   f'transform="translate({num(b.x)},{num(b.y)})">')
        out.append(f'<title>{escape(b.tip or " ".join(b.lines))}</title>')
        out.append(f'<rect class="frame" width="{num(b.w)}" height="{num(b.h)}" rx="4"/>')
        if b.inner is None:
            out.append(_text(b.lines, PAD + 10))
        else:
            out.append(_text(b.lines, 16))
            out.append(f'<g transform="translate({num(PAD)},{num(HEADER_H)})">')
            _draw(b.inner, out)
            out.append("</g>")
        out.append("</g>")


def _text(lines: list, first_baseline: float) -> str:
    spans = []
    for i, line in enumerate(lines):
        head = ' class="head"' if i == 0 else ""
        spans.append(f'<tspan x="{num(PAD)}" y="{num(first_baseline + i * LINE_H)}"{head}>'
                     f"{escape(line)}</tspan>")
    return f"<text>{''.join(spans)}</text>"


def _curve(points: list) -> str:
    """A smooth path through `points`: each step a cubic leaving and arriving vertically,
    as layered drawings route their edges. A point straight between two others of the same
    x is left out (the curve through it is that straight line anyway)."""
    points = [p for i, p in enumerate(points)
              if i in (0, len(points) - 1) or not points[i - 1][0] == p[0] == points[i + 1][0]]
    (x, y), rest = points[0], points[1:]
    path = [f"M{num(x)},{num(y)}"]
    for nx, ny in rest:
        mid = (y + ny) / 2
        path.append(f"C{num(x)},{num(mid)} {num(nx)},{num(mid)} {num(nx)},{num(ny)}")
        x, y = nx, ny
    return " ".join(path)


def num(v: float) -> str:
    """A coordinate with one decimal at most (the file stays small)."""
    r = round(v, 1)
    return str(int(r)) if r == int(r) else str(r)
