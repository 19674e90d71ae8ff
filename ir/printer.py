"""IR text a person reads and the parser reads back.

    graph @f(%x: f32[4,8]) {
      %1: f32[4,8] = exp %x   # model.py:41
      %2: f32[4] = sum %1 {axes=[1], keepdim=false}   # model.py:42
      return %2
    }

Values are numbered in print order (one counter across nested graphs, so names are unique);
graph inputs keep their readable hint (`%x`) when it is unique. Graph-valued attributes (a
fused kernel's body) print as a nested block after the other attributes.
"""
from __future__ import annotations

import re

from .attrs import format_attr
from .graph import Graph

# NOTE: graph names are free text (`<lambda>`, `Model.forward`); one that could be misread
# (spaces, parentheses, quotes, empty) prints as a quoted string, `@"my graph"`.
_BARE_GRAPH_NAME = re.compile(r"[\w.<>$:-]+")
# NOTE: the parser's name token; Python identifiers may hold more (`A·`, combining marks),
# which would print but not parse back, and the token allows non-identifiers (`❶`, a \w that
# is no digit): such a hint prints as a number instead
_HINT = re.compile(r"[^\W\d]\w*")


def graph_ref(name: str) -> str:
    """`@name` as the IR prints it: bare when unambiguous, else quoted like a str attr."""
    return "@" + (name if _BARE_GRAPH_NAME.fullmatch(name) else format_attr(name))


class _Names:
    def __init__(self):
        self.names: dict = {}
        self.taken: set = set()
        self.counter = 0

    def name(self, v, hint=None) -> str:
        if v not in self.names:
            if hint and _HINT.fullmatch(hint) and hint.isidentifier() and hint not in self.taken:
                n = hint
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
    loc = f"   # {node.loc}" if node.loc is not None else ""
    if not graphs:
        lines.append(text + loc)
        return
    lines.append(text + " {" + loc)
    for k, body in graphs:
        _print_graph(body, names, indent + "  ", lines, keyword=f"{k} {graph_ref(body.name)}")
    lines.append(f"{indent}}}")
