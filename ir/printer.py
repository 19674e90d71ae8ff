"""IR text a person reads and the parser reads back.

    graph @f(%x: f32[4,8]) {
      %1: f32[4,8] = exp %x   # model.py:41
      %2: f32[4] = sum %1 {axes=[1], keepdim=false}   # model.py:42
      return %2
    }

Values are numbered in print order (one counter across nested graphs, so names are unique);
graph inputs keep their readable hint (`%x`, `%fc1.weight`: ir/names.py), made unique with a
suffix (`%x_1`) when another value has it. Graph-valued attributes (a fused kernel's body)
print as a nested block after the other attributes.
"""
from __future__ import annotations

import re

from .attrs import format_attr
from .graph import Graph
from .names import is_hint, unique_name

# NOTE: graph names are free text (`<lambda>`, `Model.forward`); one that could be misread
# (spaces, parentheses, quotes, empty) prints as a quoted string, `@"my graph"`.
_BARE_GRAPH_NAME = re.compile(r"[\w.<>$:-]+")


def graph_ref(name: str) -> str:
    """`@name` as the IR prints it: bare when unambiguous, else quoted like a str attr."""
    return "@" + (name if _BARE_GRAPH_NAME.fullmatch(name) else format_attr(name))


class _Names:
    """Value names in print order, and how locations print: as written (`# model.py:41`),
    or with `anonymous`, values numbered whatever their hints and each location as the
    position where it first appears (`# L0`; `locs` holds them in that order)."""

    def __init__(self, anonymous: bool = False):
        self.names: dict = {}
        self.taken: set = set()
        self.counter = 0
        self.anonymous = anonymous
        self.locs: dict = {}

    def loc(self, loc) -> str:
        if not self.anonymous:
            return str(loc)
        return f"L{self.locs.setdefault(loc, len(self.locs))}"

    def name(self, v, hint=None) -> str:
        if v not in self.names:
            # NOTE: a hint that would not parse back (`A·`, `❶`, `a b`) prints as a number
            if is_hint(hint) and not self.anonymous:
                n = unique_name(hint, self.taken)
            else:
                while str(self.counter) in self.taken:
                    self.counter += 1
                n = str(self.counter)
                self.counter += 1
            self.taken.add(n)
            self.names[v] = n
        return "%" + self.names[v]


def print_graph(g: Graph) -> str:
    """The text of a graph; `parse(print_graph(g))` prints identically."""
    lines: list[str] = []
    _print_graph(g, _Names(), "", lines, keyword=f"graph {graph_ref(g.name)}")
    return "\n".join(lines) + "\n"


def print_structure(g: Graph) -> tuple[str, list]:
    """What a graph computes without its names: (text, locations). The text names the graph
    `@f`, numbers every value and writes each location as the position of its first
    appearance (`# L0`); `locations` lists them in that order. Two graphs that differ only in
    their names, inputs' names and source lines (the same nodes sharing a line) print the
    same: compiled plans are cached by this text (frontend/plan_names.py).

    >>> from kiln.ir.parser import parse
    >>> text, locs = print_structure(parse('''
    ... graph @loss(%fc1.weight: f32[4]) {
    ...   %0: f32[4] = exp %fc1.weight   # model.fc1 (Linear) at train.py:41
    ...   return %0
    ... }'''))
    >>> print(text, end=""); [str(loc) for loc in locs]
    graph @f(%0: f32[4]) {
      %1: f32[4] = exp %0   # L0
      return %1
    }
    ['model.fc1 (Linear) at train.py:41']
    """
    lines: list[str] = []
    names = _Names(anonymous=True)
    _print_graph(g, names, "", lines, keyword="graph @f")
    return "\n".join(lines) + "\n", list(names.locs)


def _params(g: Graph, names: _Names) -> str:
    return ", ".join(f"{names.name(v, v.hint)}: {v.type}" for v in g.inputs)


def _print_graph(g: Graph, names: _Names, indent: str, lines: list, keyword: str):
    lines.append(f"{indent}{keyword}({_params(g, names)}) {{")
    for node in g.nodes:
        _print_node(node, names, indent + "  ", lines)
    outs = ", ".join(names.name(v) for v in g.outputs)
    lines.append(f"{indent}  return {outs}")
    lines.append(f"{indent}}}")


def _print_node(node, names: _Names, indent: str, lines: list):
    ins = ", ".join(names.name(v) for v in node.inputs)
    plain = [(k, v) for k, v in node.attrs.items() if not isinstance(v, Graph)]
    graphs = [(k, v) for k, v in node.attrs.items() if isinstance(v, Graph)]
    head_outs = ", ".join(f"{names.name(v)}: {v.type}" for v in node.outputs)
    text = f"{indent}{head_outs} = {node.op}"
    if ins:
        text += " " + ins
    if plain:
        text += " {" + ", ".join(f"{k}={format_attr(v)}" for k, v in plain) + "}"
    loc = f"   # {names.loc(node.loc)}" if node.loc is not None else ""
    if not graphs:
        lines.append(text + loc)
        return
    lines.append(text + " {" + loc)
    for k, body in graphs:
        _print_graph(body, names, indent + "  ", lines, keyword=f"{k} {graph_ref(body.name)}")
    lines.append(f"{indent}}}")
