"""An IR graph as boxes and arrows: ops are boxes, graph inputs and outputs are boxes of their
own, a fused kernel is a cluster box holding its body's diagram, and an arrow is a value (its
name and type are its tooltip). Sizes come from the label text; `layout.py` places them.

Names and locations are read from the IR objects (`Value.hint`, `Node.loc`), never from
printed text, and values are numbered in the printer's order, so `%3` here is `%3` in
`kiln ir`.
"""
from __future__ import annotations

import dataclasses

from kiln.ir.attrs import format_attr
from kiln.ir.graph import Graph
from kiln.ir.names import is_hint, unique_name

CHAR_W = 7.2          # NOTE: monospace 12px; the page's CSS uses the same font and size
LINE_H = 15.0
PAD = 7.0
HEADER_H = 24.0       # a cluster's title line
LABEL_CHARS = 24      # past this a label line is cut (the details panel has the full text)
ATTR_CHARS = 400


@dataclasses.dataclass(eq=False)
class Box:
    """One drawn thing. `x`, `y` (top-left), `w`, `h` are in its diagram's coordinates;
    `inner` is a cluster's contents, drawn below its `lines` (the cluster's title)."""

    id: str
    kind: str
    lines: list
    details: dict
    inner: Diagram | None = None
    tip: str = ""
    w: float = 0.0
    h: float = 0.0
    x: float = 0.0
    y: float = 0.0

    def size_to_text(self) -> None:
        width = max(len(line) for line in self.lines) * CHAR_W + 2 * PAD
        if self.inner is None:
            self.w, self.h = width, len(self.lines) * LINE_H + 2 * PAD - 4
        else:
            self.w = max(width, self.inner.w + 2 * PAD)
            self.h = HEADER_H + self.inner.h + PAD


@dataclasses.dataclass(eq=False)
class Link:
    """An arrow from box `src` to box `dst`; `points` is its route once laid out."""

    src: str
    dst: str
    tip: str
    points: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass(eq=False)
class Diagram:
    boxes: list = dataclasses.field(default_factory=list)
    links: list = dataclasses.field(default_factory=list)
    w: float = 0.0
    h: float = 0.0

    def walk(self):
        """Every box, clusters' contents included."""
        for b in self.boxes:
            yield b
            if b.inner is not None:
                yield from b.inner.walk()


class _Names:
    """`%name` per value, in the order and with the rules of ir/printer.py: a graph input
    keeps its readable hint (`%x`, `%fc1.weight`; ir/names.py), made unique with a suffix;
    the others are numbered, one counter across a graph and the kernel bodies inside it."""

    def __init__(self):
        self.names: dict = {}
        self.taken: set = set()
        self.counter = 0

    def __call__(self, v, hint=None) -> str:
        if v not in self.names:
            if is_hint(hint):
                name = unique_name(hint, self.taken)
            else:
                while str(self.counter) in self.taken:
                    self.counter += 1
                name = str(self.counter)
                self.counter += 1
            self.taken.add(name)
            self.names[v] = name
        return "%" + self.names[v]


def graph_diagram(graph: Graph, id_prefix: str, mlir_key=None) -> Diagram:
    """The diagram of `graph`; box ids start with `id_prefix` (`s3` -> `s3-i0` for input 0,
    `s3-n5` for node 5, `s3-n5-n2` for node 2 of node 5's kernel body, `s3-o0` for output 0).
    `mlir_key(kernel name)` is the key its details use for the kernel's MLIR.

    >>> from kiln.ir.parser import parse
    >>> g = parse('''graph @f(%x: f32[4]) {
    ...   %0: f32[4] = exp %x
    ...   return %0
    ... }''')
    >>> for b in graph_diagram(g, "s0").boxes:
    ...     print(b.id, b.kind, b.lines)
    s0-i0 input ['%x', 'f32[4]']
    s0-n0 elementwise ['exp', '%0: f32[4]']
    s0-o0 output ['output 0', '%0: f32[4]']
    """
    return _Builder(_Names(), mlir_key or (lambda name: None)).diagram(graph, id_prefix)


class _Builder:
    def __init__(self, names: _Names, mlir_key):
        self.name = names
        self.mlir_key = mlir_key

    def diagram(self, graph: Graph, prefix: str, outer=None) -> Diagram:
        """`outer`: for a kernel body, the kernel node (its inputs are what the body loads,
        its outputs what the body stores)."""
        d = Diagram()
        box_of: dict = {}
        for i, v in enumerate(graph.inputs):
            box = self._input_box(f"{prefix}-i{i}", v, outer.inputs[i] if outer else None)
            d.boxes.append(box)
            box_of[v] = box.id
        for j, node in enumerate(graph.nodes):
            box = self._node_box(f"{prefix}-n{j}", node, outer)
            d.boxes.append(box)
            for v in node.outputs:
                box_of[v] = box.id
            for v in node.inputs:
                d.links.append(Link(box_of[v], box.id, self._typed(v)))
        for k, v in enumerate(graph.outputs):
            box = self._output_box(f"{prefix}-o{k}", k, v, outer.outputs[k] if outer else None)
            d.boxes.append(box)
            d.links.append(Link(box_of[v], box.id, self._typed(v)))
        return d

    def _typed(self, v) -> str:
        return f"{self.name(v)}: {v.type}"

    def _input_box(self, box_id: str, v, loaded) -> Box:
        self.name(v, v.hint)       # NOTE: only graph inputs keep a hint, as in the printer
        if loaded is None:
            return Box(box_id, "input", [self.name(v), str(v.type)],
                       {"title": f"input {self.name(v)}", "rows": [["type", str(v.type)]]})
        name, outer = self.name(v), self.name(loaded)
        return Box(box_id, "input", [f"{name} = load {outer}", str(v.type)],
                   {"title": f"kernel input {name}",
                    "rows": [["type", str(v.type)], ["loads", outer]]})

    def _output_box(self, box_id: str, k: int, v, stored) -> Box:
        if stored is None:
            return Box(box_id, "output", [f"output {k}", self._typed(v)],
                       {"title": f"output {k}", "rows": [["value", self._typed(v)]]})
        return Box(box_id, "output", [f"store {self.name(stored)}", str(v.type)],
                   {"title": f"kernel output {k}",
                    "rows": [["value", self._typed(v)], ["stored as", self._typed(stored)]]})

    def _node_box(self, box_id: str, node, outer) -> Box:
        outs = ", ".join(self._typed(v) for v in node.outputs)
        ins = ", ".join(self._typed(v) for v in node.inputs)
        details = {"title": node.op, "rows": [["outputs", outs], ["inputs", ins or "(none)"]]}
        plain = [(k, a) for k, a in node.attrs.items() if not isinstance(a, Graph)]
        attrs = ", ".join(f"{k}={format_attr(a)}" for k, a in plain)
        if attrs:
            details["rows"].append(["attrs", _cut(attrs, ATTR_CHARS)])
        rows, source = _location(node.loc)
        details["rows"] += rows
        if source:
            details["source"] = source
        kernel = outer.attrs.name if outer is not None else None
        if node.op == "kernel":
            kernel = node.attrs.name
        if kernel is not None:
            details["kernel"] = kernel
            details["mlir"] = self.mlir_key(kernel)
        if node.op == "kernel":
            return self._cluster(box_id, node, outs, details)
        label = _cut(f"{node.op} {attrs}" if attrs else node.op, LABEL_CHARS)
        return Box(box_id, _op_kind(node.op), [label, _cut(outs, LABEL_CHARS)], details,
                   tip=f"{outs} = {node.op}")

    def _cluster(self, box_id: str, node, outs: str, details: dict) -> Box:
        body = node.attrs.body
        inner = self.diagram(body, box_id, outer=node)
        details["title"] = f"kernel @{node.attrs.name}"
        details["rows"].insert(0, ["ops", str(len(body.nodes))])
        title = f"kernel @{node.attrs.name} ({count(len(body.nodes), 'op')})"
        return Box(box_id, "kernel", [title], details, inner=inner, tip=f"{outs} = {title}")


def _location(loc) -> tuple[list, str | None]:
    """(detail rows, source line) of a node's location: its printed form, file and line, and
    the line's text, as far as the `Loc` offers them."""
    if loc is None:
        return [], None
    rows = [["location", str(loc)]]
    file, line = getattr(loc, "file", None), getattr(loc, "line", None)
    if file is not None and line is not None:
        rows.append(["file", f"{file}:{line}"])
    return rows, getattr(loc, "source", None) or None


def _op_kind(op: str) -> str:
    from kiln.ir.errors import KilnError
    from kiln.ir.registry import get_op
    try:
        return get_op(op).kind
    except KilnError:   # NOTE: an op this build's registry lacks is still drawn
        return "other"


def count(n: int, word: str) -> str:
    """`count(1, 'step')` -> `'1 step'`, `count(3, 'step')` -> `'3 steps'`."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"
