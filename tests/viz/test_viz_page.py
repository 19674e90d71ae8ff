"""The picture of an MLP training step (tests/viz/mlp_step.py): one self-contained HTML file
(nothing that would load from a network) that holds every node of every stage, every buffer
and step of the memory plan, with the geometry the layout and the plan say."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

import kiln
import kiln.viz
from kiln.cli import load_function, make_inputs, parse_arg_spec
from kiln.ir.schedule import live_ranges
from kiln.viz.collect import GraphStage, MemoryStage, collect
from kiln.viz.memory import PLOT_H, STEP_W
from kiln.viz.page import render_html

HERE = Path(__file__).parent
ARGS = ("f32[32,64]", "i64[32]")
# NOTE: attributes through which a page could load something (or send the reader off)
URL_ATTRS = {"src", "href", "xlink:href", "action", "formaction", "srcset", "poster", "data",
             "background", "ping", "manifest", "codebase", "cite", "longdesc"}
TAGS = {"html", "head", "meta", "title", "style", "body", "header", "h1", "nav", "button",
        "input", "span", "div", "main", "section", "aside", "p", "script", "i", "svg",
        "defs", "marker", "path", "g", "rect", "text", "tspan", "line", "polyline"}


class _Page(HTMLParser):
    """Every element (tag, attributes) and the text of each script and style."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.elements: list = []
        self.by_id: dict = {}
        self.raw: dict = {"script": [], "style": []}
        self._open = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.elements.append((tag, attrs))
        if "id" in attrs:
            assert attrs["id"] not in self.by_id, f"two elements with id {attrs['id']}"
            self.by_id[attrs["id"]] = (tag, attrs)
        self._open = tag if tag in self.raw else None

    handle_startendtag = handle_starttag

    def handle_data(self, data):
        if self._open:
            self.raw[self._open].append(data)


def _stage(picture, name: str):
    """(index, stage): the page's ids for stage i start with `s{i}-`."""
    names = [s.name for s in picture.stages]
    return names.index(name), picture.stages[names.index(name)]


def _mlp_step():
    return load_function(HERE / "mlp_step.py", "train_step")


@pytest.fixture(scope="module")
def picture():
    return collect(_mlp_step(), make_inputs([parse_arg_spec(a) for a in ARGS]))


@pytest.fixture(scope="module")
def html(picture):
    return render_html(picture)


@pytest.fixture(scope="module")
def page(html):
    return _Page(html)


@pytest.fixture(scope="module")
def data(page):
    scripts = [s for s in page.raw["script"] if s.lstrip().startswith("{")]
    return json.loads(scripts[0])


def test_the_training_step_has_its_stages(picture):
    names = [s.name for s in picture.stages]
    assert names == ["traced", "functionalize", "canonicalize", "fusion", "memory"]
    traced = picture.stages[0].graph
    # NOTE: forward, backward and the optimizer's update in one graph
    assert 80 <= len(traced.nodes) <= 300
    assert {"matmul", "exp", "log", "relu", "copy_"} <= {n.op for n in traced.nodes}


def test_page_loads_nothing_from_outside(html, page):
    assert html.startswith("<!DOCTYPE html>")
    for tag, attrs in page.elements:
        assert tag in TAGS, f"unexpected element <{tag}>"
        for name, value in attrs.items():
            if name in URL_ATTRS:
                assert value is not None and value.startswith("#"), f"<{tag} {name}={value!r}>"
            assert not re.search(r"(?i)(https?:|file:|ftp:|//)", value or "") or name == "d", \
                f"<{tag} {name}={value!r}> names a URL"
    assert not re.search(r"(?i)\b(https?|ftp|wss?):", html), "the page names a URL"
    # NOTE: CSS can fetch too (url(), @import); SVG references stay inside the page
    css = "".join(page.raw["style"]) + html
    assert "@import" not in css
    assert set(re.findall(r"url\(\s*([^)\s]*)", css)) <= {
        f"#{attrs['id']}" for tag, attrs in page.elements if tag == "marker"}
    scripts = [attrs for tag, attrs in page.elements if tag == "script"]
    assert len(scripts) == 2 and all("src" not in s for s in scripts)
    js = "".join(s for s in page.raw["script"] if not s.lstrip().startswith("{"))
    for call in ("fetch(", "XMLHttpRequest", "WebSocket", "EventSource", "sendBeacon",
                 "import(", "importScripts", "Worker(", "innerHTML", "location.href",
                 "window.open"):
        assert call not in js, f"the script uses {call}"
    assert not re.search(r"\.(src|href)\s*=(?!=)", js), "the script sets a src or href"


def _expect_graph(graph, prefix: str, want: dict) -> None:
    """box id -> node (or `input` / `output`), as the page's ids are documented
    (kiln/viz/diagram.py `graph_diagram`)."""
    for i, _ in enumerate(graph.inputs):
        want[f"{prefix}-i{i}"] = "input"
    for j, node in enumerate(graph.nodes):
        want[f"{prefix}-n{j}"] = node
        if node.op == "kernel":
            _expect_graph(node.attrs.body, f"{prefix}-n{j}", want)
    for k, _ in enumerate(graph.outputs):
        want[f"{prefix}-o{k}"] = "output"


def test_every_node_of_every_stage_is_drawn(picture, page, data):
    kernels = 0
    for i, stage in enumerate(picture.stages):
        if not isinstance(stage, GraphStage):
            continue
        want: dict = {}
        _expect_graph(stage.graph, f"s{i}", want)
        drawn = {k for k in page.by_id if re.fullmatch(rf"s{i}-[ino]\d+(-[ino]\d+)*", k)}
        assert drawn == set(want), f"stage {stage.name}: boxes drawn {len(drawn)}, " \
                                   f"IR boxes {len(want)}"
        for box_id, node in want.items():
            tag, attrs = page.by_id[box_id]
            assert tag == "g" and "box" in attrs["class"].split()
            details = data["details"][box_id]
            if node in ("input", "output"):
                assert node in details["title"]
            elif node.op == "kernel":
                kernels += 1
                assert details["title"] == f"kernel @{node.attrs.name}"
                assert "func.func" in data["mlir"][details["mlir"]]
            else:
                assert details["title"] == node.op
    assert kernels == _stage(picture, "fusion")[1].graph.count("kernel") >= 3


def test_every_value_is_an_arrow_with_its_type(picture, html):
    """One arrow per use of a value (and per output), its tooltip the value's name and type."""
    graph = picture.stages[0].graph
    arrows = re.findall(r'<path class="link" d="[^"]*" data-src="(s0-[^"]+)" '
                        r'data-dst="s0-[^"]+"[^>]*><title>([^<]*)</title>', html)
    assert len(arrows) == sum(len(n.inputs) for n in graph.nodes) + len(graph.outputs)
    for _, tip in arrows:
        assert re.fullmatch(r"%[\w.]+: (f32|f64|i32|i64|bool)\[[\d,]*\]", tip), tip
    assert "%x: f32[32,64]" in {tip for _, tip in arrows}


def test_a_body_op_shows_its_source_line_and_its_kernels_mlir(picture, data):
    i, fusion = _stage(picture, "fusion")
    fusion = fusion.graph
    j, kernel = next((j, n) for j, n in enumerate(fusion.nodes)
                     if n.op == "kernel" and any(b.op == "exp" for b in n.attrs.body.nodes))
    k = next(k for k, b in enumerate(kernel.attrs.body.nodes) if b.op == "exp")
    details = data["details"][f"s{i}-n{j}-n{k}"]
    rows = dict(details["rows"])
    assert "cross_entropy" in details["source"]
    assert rows["location"] == str(kernel.attrs.body.nodes[k].loc)
    assert rows["file"].endswith("mlp_step.py:" + str(kernel.attrs.body.nodes[k].loc.line))
    assert details["kernel"] == kernel.attrs.name
    assert f"@kiln_{kernel.attrs.name}" in data["mlir"][details["mlir"]]


def test_values_are_named_as_the_printer_names_them(picture, data):
    """Each op box lists its outputs by the names `kiln ir` prints (for every stage)."""
    for i, stage in enumerate(picture.stages):
        if not isinstance(stage, GraphStage):
            continue
        printed = [", ".join(re.findall(r"%[\w.]+(?=:)", line)) for line in
                   re.findall(r"^\s*(.*?) = \S+", str(stage.graph), re.M)]
        drawn = [", ".join(re.findall(r"%[\w.]+(?=:)", dict(d["rows"])["outputs"]))
                 for box_id, d in data["details"].items()
                 if box_id.startswith(f"s{i}-") and "outputs" in dict(d["rows"])]
        assert drawn == printed, stage.name


def test_memory_tab_draws_each_buffer_at_its_planned_bytes(picture, page, data, html):
    i, memory = _stage(picture, "memory")
    assert isinstance(memory, MemoryStage)
    s = memory.schedule
    live = live_ranges(s)
    temps = [b for b in s.buffers if b.kind == "temp"]
    assert temps and s.arena_bytes < s.naive_bytes
    scale = PLOT_H / s.arena_bytes
    rects = {}
    for tag, attrs in page.elements:
        if tag == "rect" and rects.get("_in"):
            rects[rects.pop("_in")] = attrs
        if tag == "g" and attrs.get("id", "").startswith(f"s{i}-b"):
            rects["_in"] = attrs["id"]
    for k, b in enumerate(temps):
        r = rects[f"s{i}-b{k}"]
        first, last = live[id(b)]
        last = min(last, len(s.steps) - 1)
        assert float(r["x"]) == pytest.approx(first * STEP_W, abs=0.1)
        assert float(r["width"]) == pytest.approx((last - first + 1) * STEP_W, abs=0.1)
        assert float(r["y"]) == pytest.approx(PLOT_H - (b.offset + b.nbytes) * scale, abs=0.1)
        rows = dict(data["details"][f"s{i}-b{k}"]["rows"])
        assert rows["bytes"].startswith(f"[{b.offset}, {b.offset + b.nbytes})")
    for t, step in enumerate(s.steps):
        assert f"s{i}-t{t}" in page.by_id
        details = data["details"][f"s{i}-t{t}"]
        if hasattr(step, "kernel"):
            assert "func.func" in data["mlir"][details["mlir"]]
    assert f"planned peak: {s.arena_bytes} bytes" in html
    assert f"naive peak: {s.naive_bytes} bytes" in html


def test_boxes_do_not_overlap_and_clusters_hold_their_contents(picture):
    from kiln.viz.diagram import graph_diagram
    from kiln.viz.layout import layout

    d = layout(graph_diagram(_stage(picture, "fusion")[1].graph, "s3"))
    _check_no_overlap(d)


def _check_no_overlap(d) -> None:
    for a_i, a in enumerate(d.boxes):
        for b in d.boxes[a_i + 1:]:
            apart = (a.x + a.w <= b.x + 0.5 or b.x + b.w <= a.x + 0.5 or
                     a.y + a.h <= b.y + 0.5 or b.y + b.h <= a.y + 0.5)
            assert apart, f"{a.id} and {b.id} overlap"
        if a.inner is not None:
            assert a.inner.w <= a.w and a.inner.h <= a.h
            _check_no_overlap(a.inner)
    for link in d.links:
        assert len(link.points) >= 2


def test_same_function_same_page(picture):
    """The layout is deterministic (grandalf's own part splitting is not: layout.py)."""
    again = collect(_mlp_step(), make_inputs([parse_arg_spec(a) for a in ARGS]))
    assert render_html(again) == render_html(picture)


def test_kiln_viz_returns_or_writes_the_page(tmp_path):
    def f(x):
        return kiln.tanh(x).sum()

    html = kiln.viz(f, kiln.ones(3, 4))
    assert "kiln viz: f" in html and "kernel @fused_0" in html
    path = kiln.viz(f, kiln.ones(3, 4), path=tmp_path / "f.html")
    assert path == tmp_path / "f.html" and path.read_text(encoding="utf-8") == html


def test_a_loss_that_requires_grad_gets_backward_stages():
    import kiln.nn as nn

    kiln.manual_seed(0)
    layer = nn.Linear(8, 4)

    def loss(x):
        return layer(x).relu().sum()

    stages = [s.name for s in collect(loss, [kiln.ones(2, 8)]).stages]
    assert stages[-3:] == ["backward", "backward fusion", "backward memory"]
    html = kiln.viz(loss, kiln.ones(2, 8))
    assert 'data-name="backward-fusion"' in html
