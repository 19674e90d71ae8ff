"""Compiled plans on disk (frontend/plan_cache.py) keyed by what a traced graph computes,
not by its names: two programs that differ only in the function's name, the inputs' names
and the source lines (the same nodes sharing a line) share one plan. A plan read back is
given the names and locations of the graph that asked for it, so what `kiln ir`, explain and
the profiler show is that program's.

    >>> from kiln.ir.parser import parse
    >>> a = parse('''
    ... graph @loss(%x: f32[4]) {
    ...   %0: f32[4] = exp %x   # train.py:3
    ...   return %0
    ... }''')
    >>> b = parse('''
    ... graph @other(%inputs: f32[4]) {
    ...   %0: f32[4] = exp %inputs   # model.act (Exp) at eval.py:9
    ...   return %0
    ... }''')
    >>> plan_key_text(a) == plan_key_text(b)
    True
"""
from __future__ import annotations

from kiln.ir.graph import Graph
from kiln.ir.printer import print_structure


def plan_key_text(traced: Graph) -> str:
    """The text a plan is keyed by: the traced graph without names (see print_structure)."""
    return print_structure(traced)[0]


def plan_payload(traced: Graph, optimized: Graph, schedule, schedule_text: str) -> tuple:
    """What is stored for a plan: the plan and the traced graph's locations, in the order
    `plan_key_text` numbers them (so `rebind` can map them to another program's)."""
    return (optimized, schedule, schedule_text, print_structure(traced)[1])


def rebind(payload: tuple, traced: Graph):
    """(optimized graph, schedule, schedule text before planning) of a stored payload whose
    key text is `traced`'s, carrying `traced`'s function name, input names and locations.
    ValueError when the payload is not one `plan_payload` made for such a graph."""
    from kiln.ir.schedule_text import print_schedule
    if not (isinstance(payload, tuple) and len(payload) == 4):
        raise ValueError("not a plan")
    optimized, schedule, _, old_locs = payload
    new_locs = print_structure(traced)[1]
    if len(old_locs) != len(new_locs) or len(optimized.inputs) != len(traced.inputs):
        raise ValueError("the plan is for another graph")
    where = dict(zip(old_locs, new_locs))
    optimized.name = schedule.name = traced.name
    for i, (old, new) in enumerate(zip(optimized.inputs, traced.inputs)):
        old.hint = new.hint
        schedule.inputs[i].name = new.hint or f"in{i}"      # NOTE: as passes/schedule.py names
    # NOTE: the payload was just unpickled: its nodes are this plan's own, never shared
    seen: set = set()
    for g in [optimized] + [k.body for k in schedule.kernels]:
        _relocate(g, where, seen)
    for step in schedule.steps:
        step.loc = where.get(step.loc, step.loc)
    return optimized, schedule, print_schedule(schedule, planned=False)


def _relocate(g: Graph, where: dict, seen: set) -> None:
    """Each node of `g` (and of its nested graphs) once: its location through `where`."""
    for node in g.nodes:
        if id(node) in seen:
            continue
        seen.add(id(node))
        node.loc = where.get(node.loc, node.loc)
        for _, value in node.attrs.items():
            if isinstance(value, Graph):
                _relocate(value, where, seen)
