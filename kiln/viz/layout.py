"""Coordinates for a diagram, from grandalf's Sugiyama (layered, `dot`-style) layout.

grandalf (pure Python, on PyPI) ranks the boxes in layers, orders each layer to cut crossings
(barycenter sweeps) and places them with Brandes and Köpf's method; long arrows get dummy
points, which become their route. A cluster is laid out inside-out: its contents first, then
it is one box of that size in its parent's layout. Unconnected parts are laid out one by one
and set side by side, in the order their first box appears. A part whose layout would hold
more than `layers.MAX_LAYERED_POINTS` boxes and dummy points (a training step of a dozen
blocks: minutes in grandalf) is laid out by layers.py instead, in linear time.
"""
from __future__ import annotations

from . import layers
from .diagram import Box, Diagram

XSPACE = 18.0         # between boxes in a layer
YSPACE = 34.0         # between layers (room for the arrows)
GAP = 40.0            # between unconnected parts
DUMMY_W = 10.0        # a long arrow's width where it passes a layer
ORDERING_ROUNDS = 4.5  # grandalf's crossing-reduction sweeps (down and up = 1; default 1.5)


class _View:
    """What grandalf reads (w, h) and writes (xy: the centre) per vertex."""

    def __init__(self, w: float, h: float):
        self.w, self.h, self.xy = w, h, None


class _Route:
    """What grandalf writes per edge: the centres it passes (ends and dummies)."""

    def __init__(self):
        self.points: list = []

    def setpath(self, points) -> None:
        self.points = [tuple(p) for p in points]


def layout(d: Diagram) -> Diagram:
    """Set every box's `x`, `y`, `w`, `h`, every link's `points` and the diagram's size
    (clusters' contents in their own coordinates, from the cluster's inner origin).

    >>> from kiln.viz.diagram import Box, Link
    >>> d = Diagram([Box("a", "input", ["a"], {}), Box("b", "elementwise", ["b"], {})],
    ...             [Link("a", "b", "")])
    >>> d = layout(d)
    >>> d.boxes[0].y < d.boxes[1].y, len(d.links[0].points)
    (True, 2)
    """
    try:
        from grandalf.graphs import Edge, Vertex
    except ImportError as e:
        raise ImportError("kiln viz lays graphs out with the grandalf package, which is "
                          "not installed: pip install grandalf") from e

    for b in d.boxes:
        if b.inner is not None:
            layout(b.inner)
        b.size_to_text()
    if not d.boxes:
        return d
    vertex = {}
    for b in d.boxes:
        vertex[b.id] = Vertex(b)
        vertex[b.id].view = _View(b.w, b.h)
    edges: dict = {}
    for link in d.links:
        if link.src != link.dst and (link.src, link.dst) not in edges:
            # NOTE: reversed, and the result drawn upside down (see _place_part)
            e = Edge(vertex[link.dst], vertex[link.src])
            e.view = _Route()
            edges[(link.src, link.dst)] = e
    left = 0.0
    box = {b.id: b for b in d.boxes}
    for ids, pairs in _parts(d, edges):
        if layers.too_large(ids, pairs):
            left += _place_large([box[i] for i in ids], pairs, edges, left) + GAP
        else:
            left += _place_part([vertex[i] for i in ids], [edges[p] for p in pairs],
                                left) + GAP
    _finish(d, edges)
    return d


def _parts(d: Diagram, edges: dict) -> list:
    """The connected parts: (box ids, edge keys), each in the diagram's order, the parts in
    the order of their first box. NOTE: grandalf's own `Graph` splits parts too, but collects
    each part's edges in a Python set, whose order changes from run to run; this keeps the
    layout, and so the page, the same in every run."""
    root = {b.id: b.id for b in d.boxes}

    def find(i):
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    for src, dst in edges:
        root[find(src)] = find(dst)
    parts: dict = {}
    for b in d.boxes:
        parts.setdefault(find(b.id), ([], []))[0].append(b.id)
    for key in edges:
        parts[find(key[0])][1].append(key)
    return list(parts.values())


def _place_part(vs: list, es: list, left: float) -> float:
    """Lay out one connected part (vertices, edges) and move it right of the parts placed
    before; returns its width."""
    from grandalf.graphs import graph_core

    # NOTE: the edges are reversed, so grandalf ranks each box by its longest path to the
    # graph's outputs (as late as possible), and the drawing is flipped back. A value made
    # early but read late (Adam's bias corrections, an optimizer's `momentum * buf`) then
    # sits above its reader instead of at the top with a long arrow down: a training
    # step's picture has about a third fewer arrow bends this way.
    sug = _sugiyama_class()(graph_core(vs, es))
    sug.xspace, sug.yspace = XSPACE, YSPACE
    sug.dw = DUMMY_W
    sug.init_all(optimize=True)
    sug.draw(ORDERING_ROUNDS)
    x0 = min(v.view.xy[0] - v.view.w / 2 for v in vs)
    x1 = max(v.view.xy[0] + v.view.w / 2 for v in vs)
    y1 = max(v.view.xy[1] + v.view.h / 2 for v in vs)
    for v in vs:
        b: Box = v.data
        cx, cy = v.view.xy
        b.x, b.y = cx - b.w / 2 - x0 + left, y1 - cy - b.h / 2
    for e in es:
        e.view.points = [(x - x0 + left, y1 - y) for x, y in reversed(e.view.points)]
    return x1 - x0


def _place_large(boxes: list, pairs: list, edges: dict, left: float) -> float:
    """Lay out one part too large for grandalf (layers.py) right of the parts before;
    returns its width."""
    routes = layers.place(boxes, pairs, XSPACE, YSPACE)
    for b in boxes:
        b.x += left
    for p in pairs:
        edges[p].view.points = [(x + left, y) for x, y in routes[p]]
    return max(b.x + b.w for b in boxes) - left


def _sugiyama_class():
    """grandalf's SugiyamaLayout, with its list of alignment conflicts held in a set.

    NOTE: grandalf keeps the conflicting (vertex, vertex) pairs in a list and asks `pair in
    conflicts` for every median of every vertex, four times per `draw`: quadratic in the
    graph's size, and most of the time of a medium model's picture. Vertices compare by
    identity, so a set answers the same question: the layout is unchanged."""
    from grandalf.layouts import SugiyamaLayout

    class Sugiyama(SugiyamaLayout):
        def _detect_alignment_conflicts(self):
            super()._detect_alignment_conflicts()
            self.conflicts = set(self.conflicts)

    return Sugiyama


def _finish(d: Diagram, edges: dict) -> None:
    """Routes for the links (ends moved from box centres to box borders; links of the same
    pair of boxes share one route) and the diagram's size."""
    box = {b.id: b for b in d.boxes}
    for link in d.links:
        e = edges.get((link.src, link.dst))
        if e is None or len(e.view.points) < 2:
            link.points = []        # NOTE: a box that reads its own output: no arrow
            continue
        pts = list(e.view.points)
        pts[0] = _border(box[link.src], pts[1])
        pts[-1] = _border(box[link.dst], pts[-2])
        link.points = pts
    d.w = max(b.x + b.w for b in d.boxes)
    d.h = max(b.y + b.h for b in d.boxes)


def _border(b: Box, toward) -> tuple[float, float]:
    """Where the segment from the centre of `b` toward the point `toward` leaves `b`."""
    cx, cy = b.x + b.w / 2, b.y + b.h / 2
    dx, dy = toward[0] - cx, toward[1] - cy
    if dx == 0 and dy == 0:
        return cx, cy
    scale = min(b.w / 2 / abs(dx) if dx else float("inf"),
                b.h / 2 / abs(dy) if dy else float("inf"))
    return cx + dx * min(scale, 1.0), cy + dy * min(scale, 1.0)
