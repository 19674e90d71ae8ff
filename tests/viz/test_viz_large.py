"""Pictures of medium and large training steps are built in bounded work: grandalf lays out
no part of more than `layers.MAX_LAYERED_POINTS` boxes and dummy points, larger parts get
the linear layered layout (kiln/viz/layers.py), and both keep the page's promises (every
node drawn, no box over another, the same layout every run)."""
from __future__ import annotations

import pytest

import kiln
import kiln.nn as nn
from kiln.viz import layers
from kiln.viz import layout as layout_module
from kiln.viz.collect import collect
from kiln.viz.diagram import Box, Diagram, Link, graph_diagram
from kiln.viz.layout import layout


def _step(blocks: int):
    kiln.manual_seed(0)
    parts = []
    for _ in range(blocks):
        parts += [nn.Linear(32, 32), nn.LayerNorm(32), nn.GELU()]
    model = nn.Sequential(*parts, nn.Linear(32, 10))
    opt = kiln.optim.AdamW(model.parameters(), lr=1e-3)

    def step(x, y):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.detach()

    return step, [kiln.randn(8, 32), kiln.randint(0, 10, (8,))]


def _traced_diagram(blocks: int):
    step, args = _step(blocks)
    graph = collect(step, args).stages[0].graph
    return graph, graph_diagram(graph, "s0")


@pytest.fixture
def grandalf_runs(monkeypatch):
    """The number of vertices (boxes and dummy points) of every grandalf layout."""
    runs: list = []
    make = layout_module._sugiyama_class

    def counting():
        base = make()

        class Counted(base):
            def init_all(self, *a, **k):
                super().init_all(*a, **k)
                runs.append(sum(len(layer) for layer in self.layers))

        return Counted

    monkeypatch.setattr(layout_module, "_sugiyama_class", counting)
    return runs


def _check_drawn_apart(d: Diagram, graph) -> None:
    """Every node is a box; no two boxes overlap (sweep over y: only boxes whose rows
    meet are compared); every arrow has a route."""
    ids = {b.id for b in d.boxes}
    assert {f"s0-n{j}" for j in range(len(graph.nodes))} <= ids
    rows = sorted(d.boxes, key=lambda b: b.y)
    for k, a in enumerate(rows):
        for b in rows[k + 1:]:
            if b.y >= a.y + a.h - 0.5:
                break
            assert a.x + a.w <= b.x + 0.5 or b.x + b.w <= a.x + 0.5, \
                f"{a.id} and {b.id} overlap"
    assert all(len(link.points) >= 2 for link in d.links if link.src != link.dst)


def test_a_three_block_step_runs_grandalf_on_bounded_parts(grandalf_runs):
    graph, d = _traced_diagram(3)
    layout(d)
    assert grandalf_runs, "a medium graph is still laid out by grandalf"
    assert max(grandalf_runs) <= layers.MAX_LAYERED_POINTS
    _check_drawn_apart(d, graph)


def test_a_twelve_block_step_is_laid_out_in_layers_without_grandalf(grandalf_runs):
    graph, d = _traced_diagram(12)
    ids = [b.id for b in d.boxes]
    pairs = list(dict.fromkeys((x.src, x.dst) for x in d.links if x.src != x.dst))
    assert layers.too_large(ids, pairs)
    layout(d)
    assert grandalf_runs == []      # NOTE: one connected part, past the budget
    _check_drawn_apart(d, graph)
    ranks = layers.ranks(ids, pairs)
    assert all(ranks[s] < ranks[t] for s, t in pairs)      # every arrow points down
    box = {b.id: b for b in d.boxes}
    assert all(box[s].y + box[s].h <= box[t].y for s, t in pairs)
    again = layout(graph_diagram(graph, "s0"))
    assert [(b.x, b.y) for b in again.boxes] == [(b.x, b.y) for b in d.boxes]


def test_layered_layout_breaks_a_cycle_and_keeps_boxes_apart():
    boxes = [Box(i, "elementwise", [i], {}) for i in "abcd"]
    links = [Link("a", "b", ""), Link("b", "c", ""), Link("c", "b", ""), Link("c", "d", "")]
    d = Diagram(boxes, links)
    for b in d.boxes:
        b.size_to_text()
    routes = layers.place(d.boxes, [(x.src, x.dst) for x in links], 18.0, 34.0)
    assert set(routes) == {(x.src, x.dst) for x in links}
    r = layers.ranks([b.id for b in boxes], [(x.src, x.dst) for x in links])
    assert r["a"] < r["b"] < r["c"] < r["d"]
