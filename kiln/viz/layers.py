"""A layered layout for graphs too large for grandalf: Sugiyama's steps without dummy points.

grandalf's cost grows with the boxes plus one dummy point per layer each arrow crosses; a
training step of a dozen blocks has tens of thousands of those (a weight is read at the top
by the forward pass and at the bottom by the optimizer), and took minutes. Past a budget of
such points (`too_large`) a part is laid out here instead, in linear passes:

- ranks by longest path to the part's outputs (as late as possible, as the grandalf layout
  ranks: see layout.py), a node on a cycle taking the next rank in diagram order;
- each layer ordered by barycenter sweeps (down, then up, `SWEEPS` times), started from the
  diagram's order (Sugiyama, Tagawa and Toda's crossing reduction heuristic);
- each box placed at the mean x of its neighbours in the layer above, pushed right past its
  left neighbour (boxes never overlap);
- each arrow one smooth curve from its source to its destination (no route around boxes).
Everything is in the diagram's order, so the page is the same in every run.
"""
from __future__ import annotations

import heapq
from collections import defaultdict

SWEEPS = 2
MAX_LAYERED_POINTS = 20000    # boxes + dummy points beyond which grandalf is not used


def ranks(ids: list, pairs: list) -> dict:
    """id -> layer (0 at the top): longest path to a box without successors, flipped."""
    succ, npred = defaultdict(list), dict.fromkeys(ids, 0)
    for src, dst in pairs:
        succ[src].append(dst)
        npred[dst] += 1
    order = _topological(ids, succ, npred)
    height: dict = {}
    for i in reversed(order):
        height[i] = 1 + max((height[j] for j in succ[i] if j in height), default=-1)
    top = max(height.values(), default=0)
    return {i: top - height[i] for i in ids}


def _topological(ids: list, succ, npred: dict) -> list:
    """Kahn's order, smallest diagram position first; on a cycle, the first remaining box."""
    pos = {i: k for k, i in enumerate(ids)}
    left = dict(npred)
    ready = [pos[i] for i in ids if left[i] == 0]
    heapq.heapify(ready)
    done, out = set(), []
    nxt = 0
    while len(out) < len(ids):
        if not ready:       # NOTE: a cycle: break it at the earliest box not placed yet
            while ids[nxt] in done:
                nxt += 1
            heapq.heappush(ready, nxt)
            left[ids[nxt]] = 0
        i = ids[heapq.heappop(ready)]
        if i in done:
            continue
        done.add(i)
        out.append(i)
        for j in succ[i]:
            left[j] -= 1
            if left[j] == 0 and j not in done:
                heapq.heappush(ready, pos[j])
    return out


def too_large(ids: list, pairs: list) -> bool:
    """Whether a Sugiyama layout of this part would hold more than MAX_LAYERED_POINTS boxes
    and dummy points (one per layer an arrow crosses)."""
    r = ranks(ids, pairs)
    return len(ids) + sum(max(0, abs(r[d] - r[s]) - 1) for s, d in pairs) > MAX_LAYERED_POINTS


def place(boxes: list, pairs: list, xspace: float, yspace: float) -> dict:
    """Set each box's x, y (top left, from 0) and return (src, dst) -> [src centre, dst
    centre] for every pair."""
    ids = [b.id for b in boxes]
    box = {b.id: b for b in boxes}
    rank = ranks(ids, pairs)
    layers: list = [[] for _ in range(max(rank.values()) + 1)]
    for i in ids:
        layers[rank[i]].append(i)
    up, down = defaultdict(list), defaultdict(list)
    for s, d in pairs:
        down[s].append(d)
        up[d].append(s)
    _order(layers, up, down)
    y, placed = 0.0, set()
    for layer in layers:
        _place_layer(layer, box, up, xspace, placed)
        placed.update(layer)
        h = max(box[i].h for i in layer)
        for i in layer:
            box[i].y = y + (h - box[i].h) / 2
        y += h + yspace
    shift = min(b.x for b in boxes)
    for b in boxes:
        b.x -= shift
    centre = {i: (box[i].x + box[i].w / 2, box[i].y + box[i].h / 2) for i in ids}
    return {(s, d): [centre[s], centre[d]] for s, d in pairs}


def _order(layers: list, up, down) -> None:
    pos = {i: k for layer in layers for k, i in enumerate(layer)}
    for _ in range(SWEEPS):
        for sweep, near in ((layers, up), (layers[::-1], down)):
            for layer in sweep:
                keyed = [(_mean([pos[j] for j in near[i]], pos[i]), pos[i], i) for i in layer]
                layer[:] = [i for _, _, i in sorted(keyed)]
                pos.update((i, k) for k, i in enumerate(layer))


def _place_layer(layer: list, box: dict, up, xspace: float, placed: set) -> None:
    right = None
    for i in layer:
        b = box[i]
        above = [box[j].x + box[j].w / 2 for j in up[i] if j in placed]
        want = _mean(above, None)
        x = (want - b.w / 2) if want is not None else (right if right is not None else 0.0)
        if right is not None:
            x = max(x, right)
        b.x = x
        right = x + b.w + xspace


def _mean(values: list, default):
    return sum(values) / len(values) if values else default
