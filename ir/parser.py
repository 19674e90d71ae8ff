"""Read back the IR text that `printer.py` writes: `parse(print_graph(g))` prints identically.

    >>> g = parse('''
    ... graph @f(%x: f32[4,8]) {
    ...   %1: f32[4,8] = exp %x   # model.py:41
    ...   %2: f32[4] = sum %1 {axes=[1], keepdim=false}
    ...   return %2
    ... }
    ... ''')
    >>> [n.op for n in g.nodes], g.inputs[0].hint, g.nodes[0].loc
    (['exp', 'sum'], 'x', Loc(file='model.py', line=41))

The grammar, one node a line (a graph-valued attribute opens a nested block):

    graph  := 'graph' GRAPH params '{' NL line* 'return' values? NL '}'
    line   := outs '=' OP values? attrs? block? LOC? NL
    outs   := (VALUE ':' TYPE (',' VALUE ':' TYPE)*)?
    attrs  := '{' NAME '=' literal (',' NAME '=' literal)* '}'   literals typed by the op's schema
    block  := '{' LOC? NL (NAME GRAPH params '{' NL line* 'return' values? NL '}' NL)* '}'
    params := '(' (VALUE ':' TYPE (',' VALUE ':' TYPE)*)? ')'
    TYPE   := DTYPE '[' (INT (',' INT)*)? ']' ('@' DEVICE)?
    VALUE  := '%' (digits | PART ('.' PART)*)   PART := identifier | digits
    GRAPH  := '@' (bare name | "quoted")
    LOC    := '#' (MODULE_PATH '(' CLASS ') at ')? file ':' line

Blank lines and whole-line `#` comments are skipped. Operands resolve in the enclosing graph
only: a kernel body sees its own inputs, nothing outside. Every node is built with
`make_node`, so shape rules run and a declared type that disagrees is an error.
"""
from __future__ import annotations

import dataclasses
import difflib
import re

from .builder import make_node
from .dtypes import DType, from_short
from .errors import KilnError, ParseError
from .graph import Graph, Node, Value
from .names import is_hint, is_value_name, parse_loc
from .registry import all_ops, get_op
from .types import Loc, TensorType

_TOKEN = re.compile(r"""
    (?P<NL>\n)
  | (?P<WS>[ \t\r]+)
  | (?P<COMMENT>\#[^\n]*)
  | (?P<VALUE>%\w+(?:\.\w+)*)
  | (?P<GRAPH>@(?:"(?:[^"\\]|\\.)*"|[\w.<>$:-]*))
  | (?P<STRING>"(?:[^"\\]|\\.)*")
  | (?P<NUMBER>-?(?:inf|nan)\b|-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<NAME>[^\W\d]\w*)
  | (?P<PUNCT>->|<-|[()\[\]{},:=])
""", re.VERBOSE | re.DOTALL)
_INT = re.compile(r"-?\d+")


@dataclasses.dataclass(frozen=True)
class _Tok:
    kind: str        # a group name of _TOKEN, or EOF
    text: str
    line: int
    col: int

    def describe(self) -> str:
        special = {"NL": "end of line", "EOF": "end of input", "COMMENT": "a comment"}
        return special.get(self.kind, repr(self.text))


def parse(text: str) -> Graph:
    """The Graph that `text` (as `print_graph` writes it) describes; ParseError otherwise.

    >>> parse("graph @g(%0: i64[]) {\\n  return %0\\n}").inputs[0].type.dtype
    kiln.int64
    """
    p = _Parser(text)
    p.skip_blank()
    p.expect("graph", "`graph @name(...) {` to start the text")
    graph = p.graph()
    p.skip_blank()
    p.expect_kind("EOF", "end of input after the graph's closing `}`")
    return graph


def _fail(lines: list[str], line: int, col: int, message: str, hint=None) -> ParseError:
    """A ParseError that names the line and column and shows the line with a caret."""
    src = lines[line - 1] if 0 < line <= len(lines) else ""
    caret = " " * (col - 1) + "^"
    err = ParseError(f"line {line}, column {col}: {message}\n    {src}\n    {caret}", hint=hint)
    err.line, err.column = line, col
    return err


def _tokenize(text: str, lines: list[str]) -> list[_Tok]:
    toks, pos, line, line_start = [], 0, 1, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise _fail(lines, line, pos - line_start + 1,
                        f"unexpected character {text[pos]!r}")
        if m.lastgroup != "WS":
            toks.append(_Tok(m.lastgroup, m.group(), line, pos - line_start + 1))
        # NOTE: a string literal may hold newlines (attrs.format_attr does not escape them).
        breaks = m.group().count("\n")
        if breaks:
            line += breaks
            line_start = m.start() + m.group().rindex("\n") + 1
        pos = m.end()
    toks.append(_Tok("EOF", "", line, pos - line_start + 1))
    return toks


def _unquote(tok_text: str) -> str | None:
    """The str of a quoted literal; None when it holds an escape other than \\\\ or \\"."""
    body = tok_text[1:-1]
    if re.search(r'\\[^\\"]', body.replace("\\\\", "")):
        return None
    return re.sub(r'\\(["\\])', r"\1", body)


class _Parser:
    def __init__(self, text: str):
        self.lines = text.split("\n")
        self.toks = _tokenize(text, self.lines)
        self.pos = 0
        # NOTE: names are unique over the whole text (nested graphs included), as printed.
        self.defined: dict[str, int] = {}

    # ---- tokens ----------------------------------------------------------------------------
    def peek(self, k: int = 0) -> _Tok:
        return self.toks[min(self.pos + k, len(self.toks) - 1)]

    def next(self) -> _Tok:
        tok = self.peek()
        self.pos = min(self.pos + 1, len(self.toks) - 1)
        return tok

    def at(self, text: str, k: int = 0) -> bool:
        tok = self.peek(k)
        return tok.kind in ("PUNCT", "NAME") and tok.text == text

    def error(self, tok: _Tok, message: str, hint=None) -> ParseError:
        return _fail(self.lines, tok.line, tok.col, message, hint)

    def expect(self, text: str, what: str) -> _Tok:
        if not self.at(text):
            raise self.error(self.peek(), f"expected {what}, got {self.peek().describe()}")
        return self.next()

    def expect_kind(self, kind: str, what: str) -> _Tok:
        if self.peek().kind != kind:
            raise self.error(self.peek(), f"expected {what}, got {self.peek().describe()}")
        return self.next()

    def skip_blank(self):
        """Blank lines and whole-line comments."""
        while True:
            if self.peek().kind == "NL":
                self.next()
            elif self.peek().kind == "COMMENT" and self.peek(1).kind in ("NL", "EOF"):
                self.next()
            else:
                return

    def end_line(self):
        if self.peek().kind == "COMMENT":
            raise self.error(self.peek(), "expected end of line, got a comment; only node "
                             "lines carry a `# file.py:LINE` location")
        if self.peek().kind != "EOF":
            self.expect_kind("NL", "end of line")

    # ---- graphs ----------------------------------------------------------------------------
    def graph(self) -> Graph:
        """After the keyword: `@name(params) { lines return values }`."""
        name = self.graph_name()
        scope: dict[str, Value] = {}
        inputs = self.params(scope)
        self.expect("{", "`{` to open the graph")
        self.end_line()
        nodes = []
        self.skip_blank()
        while not self.at("return"):
            if self.at("}") or self.peek().kind == "EOF":
                raise self.error(self.peek(), "expected a node or `return %value, ...` before "
                                 f"the end of graph @{name}, got {self.peek().describe()}")
            nodes.append(self.node(scope))
            self.skip_blank()
        self.next()
        outputs = self.values(scope) if self.peek().kind == "VALUE" else []
        self.end_line()
        self.skip_blank()
        self.expect("}", f"`}}` to close graph @{name} after its `return`")
        return Graph(name, inputs, nodes, outputs)

    def graph_name(self) -> str:
        tok = self.expect_kind("GRAPH", "a graph name `@name`")
        if not tok.text.startswith('@"'):
            return tok.text[1:]
        name = _unquote(tok.text[1:])
        if name is None:
            raise self.error(tok, 'a quoted name may only escape \\\\ and \\"')
        return name

    def params(self, scope: dict) -> list[Value]:
        self.expect("(", "`(` and the graph's parameters")
        inputs = []
        while not self.at(")"):
            if inputs:
                self.expect(",", "`,` or `)` after a parameter")
            tok, name, ty = self.typed_name("a parameter `%name: type`")
            hint = name if is_hint(name) else None
            scope[name] = Value(ty, hint=hint)
            inputs.append(scope[name])
        self.next()
        return inputs

    def typed_name(self, what: str) -> tuple[_Tok, str, TensorType]:
        """`%name: type`, reserving the name (defined once over the whole text)."""
        tok = self.expect_kind("VALUE", what)
        name = self.value_name(tok)
        if name in self.defined:
            raise self.error(tok, f"value %{name} is already defined (line "
                             f"{self.defined[name]}); each value is defined once")
        self.defined[name] = tok.line
        self.expect(":", f"`:` and the type of %{name}")
        return tok, name, self.type()

    def value_name(self, tok: _Tok) -> str:
        name = tok.text[1:]
        if not is_value_name(name):
            raise self.error(tok, f"value name {tok.text} must be a number or an identifier"
                             ", or such parts joined by dots (`%fc1.weight`)")
        return name

    def type(self) -> TensorType:
        tok = self.expect_kind("NAME", "a type like `f32[4,8]`")
        try:
            dtype = from_short(tok.text)
        except ValueError:
            raise self.error(tok, f"expected a dtype ({', '.join(d.value for d in DType)}), "
                             f"got {tok.describe()}") from None
        self.expect("[", f"`[` and the shape after {tok.text}")
        dims = self.int_list("a dimension size", minimum=0)
        device = "cpu"
        if self.peek().kind == "GRAPH":
            device = self.next().text[1:]
        return TensorType(dtype, dims, device)

    def int_list(self, what: str, minimum=None) -> tuple[int, ...]:
        """After `[`: `INT, INT, ... ]`."""
        out = []
        while not self.at("]"):
            if out:
                self.expect(",", "`,` or `]`")
            out.append(self.int_literal(what, minimum))
        self.next()
        return tuple(out)

    def int_literal(self, what: str, minimum=None) -> int:
        tok = self.peek()
        if tok.kind != "NUMBER" or not _INT.fullmatch(tok.text):
            raise self.error(tok, f"expected {what} (an integer), got {tok.describe()}")
        if minimum is not None and int(tok.text) < minimum:
            raise self.error(tok, f"expected {what} >= {minimum}, got {tok.text}")
        return int(self.next().text)

    def values(self, scope: dict) -> list[Value]:
        """`%a, %b, ...`, each defined earlier in this graph."""
        out = [self.use(scope)]
        while self.at(","):
            self.next()
            out.append(self.use(scope))
        return out

    def use(self, scope: dict) -> Value:
        tok = self.expect_kind("VALUE", "a value `%name`")
        name = self.value_name(tok)
        if name in scope:
            return scope[name]
        hint = None
        if name in self.defined:
            hint = ("a value is visible only in the graph that defines it, after its line; "
                    "a kernel body sees only its own inputs")
        raise self.error(tok, f"value %{name} is not defined before this use", hint)

    # ---- nodes -----------------------------------------------------------------------------
    def node(self, scope: dict) -> Node:
        """One node line (and its nested blocks, for graph-valued attributes)."""
        outs = []
        while not self.at("="):
            if outs:
                self.expect(",", "`,` or `=` after an output")
            outs.append(self.typed_name("an output `%name: type` or `=`"))
        self.next()
        op_tok = self.expect_kind("NAME", "an op name after `=`")
        opdef = self.op(op_tok)
        operands = self.values(scope) if self.peek().kind == "VALUE" else []
        attrs = self.attrs(opdef) if self.at("{") and self.peek(1).kind == "NAME" else {}
        if self.at("{"):
            loc = self.blocks(opdef, attrs)
        else:
            loc = self.loc()
            self.end_line()
        node = self.build(op_tok, opdef, operands, attrs, loc, outs)
        scope.update((name, v) for (_, name, _), v in zip(outs, node.outputs))
        return node

    def op(self, tok: _Tok):
        try:
            return get_op(tok.text)
        except KilnError:
            names = [o.name for o in all_ops()]
            close = difflib.get_close_matches(tok.text, names, n=3)
            hint = f"did you mean {' or '.join(close)}?" if close else None
            raise self.error(tok, f"unknown op '{tok.text}'", hint) from None

    def loc(self) -> Loc | None:
        if self.peek().kind != "COMMENT":
            return None
        tok = self.next()
        loc = parse_loc(tok.text[1:])
        if loc is None:
            raise self.error(tok, f"expected a location comment `# file.py:LINE` or "
                             f"`# model.fc1 (Linear) at file.py:LINE`, got {tok.text!r}")
        return loc

    def build(self, op_tok, opdef, operands, given: dict, loc, outs) -> Node:
        """make_node (shape rules run); the declared outputs must be what they infer."""
        missing = [k for k in opdef.attrs if k not in given]
        if missing:
            raise self.error(op_tok, f"op '{opdef.name}' needs attribute(s) {missing}")
        try:
            node = make_node(opdef.name, operands, given, loc)
        except (KilnError, ValueError, TypeError) as e:
            message = e.message if isinstance(e, KilnError) else f"{type(e).__name__}: {e}"
            raise self.error(op_tok, message, getattr(e, "hint", None)) from None
        if len(outs) != len(node.outputs):
            raise self.error(op_tok, f"'{opdef.name}' gives {len(node.outputs)} output(s), "
                             f"the line declares {len(outs)}")
        for (tok, name, declared), v in zip(outs, node.outputs):
            if declared != v.type:
                raise self.error(tok, f"%{name} is declared {declared} but '{opdef.name}' "
                                 f"gives {v.type} for these operands")
        return node

    # ---- attributes ------------------------------------------------------------------------
    def attrs(self, opdef) -> dict:
        """`{name=literal, ...}`, each literal read as the kind the op's schema declares."""
        self.expect("{", "`{`")
        given: dict = {}
        while True:
            tok = self.expect_kind("NAME", "an attribute name")
            kind = opdef.attrs.get(tok.text)
            if kind is None:
                raise self.error(tok, f"op '{opdef.name}' has no attribute '{tok.text}'; it "
                                 f"takes {sorted(opdef.attrs)}")
            if kind == "graph":
                raise self.error(tok, f"graph attribute '{tok.text}' is written as a nested "
                                 "block after the other attributes")
            if tok.text in given:
                raise self.error(tok, f"attribute '{tok.text}' is given twice")
            self.expect("=", f"`=` after attribute '{tok.text}'")
            given[tok.text] = self.literal(kind, tok.text)
            if not self.at(","):
                self.expect("}", "`,` or `}` after an attribute")
                return given
            self.next()

    def blocks(self, opdef, given: dict) -> Loc | None:
        """`{ # loc` NL, then one `name @g(...) {...}` block per graph attribute, then `}`."""
        self.next()
        loc = self.loc()
        self.end_line()
        self.skip_blank()
        while not self.at("}"):
            tok = self.expect_kind("NAME", "a graph attribute block `name @g(...) {` or `}`")
            if opdef.attrs.get(tok.text) != "graph":
                raise self.error(tok, f"op '{opdef.name}' has no graph attribute "
                                 f"'{tok.text}'")
            if tok.text in given:
                raise self.error(tok, f"attribute '{tok.text}' is given twice")
            given[tok.text] = self.graph()
            self.end_line()
            self.skip_blank()
        self.next()
        self.end_line()
        return loc

    def literal(self, kind: str, name: str):
        tok = self.peek()
        reader = _LITERALS[kind]
        value = reader(self)
        if value is None:
            raise self.error(tok, f"expected {_KIND_TEXT[kind]} for attribute '{name}', "
                             f"got {tok.describe()}")
        return value

    def number(self):
        """An int (`3`), a float (`3.0`, `1e-05`, `nan`, `-inf`), or None."""
        tok = self.peek()
        if tok.kind != "NUMBER":
            return None
        self.next()
        return int(tok.text) if _INT.fullmatch(tok.text) else float(tok.text)

    def boolean(self):
        if self.at("true") or self.at("false"):
            return self.next().text == "true"
        return None

    def scalar(self):
        b = self.boolean()
        return b if b is not None else self.number()

    def integer(self):
        tok = self.peek()
        return self.number() if tok.kind == "NUMBER" and _INT.fullmatch(tok.text) else None

    def float_(self):
        v = self.number()
        return None if v is None else float(v)

    def dtype(self):
        tok = self.peek()
        if tok.kind != "NAME" or tok.text not in {d.value for d in DType}:
            return None
        return from_short(self.next().text)

    def ints(self):
        if not self.at("["):
            return None
        self.next()
        return self.int_list("a list element")

    def string(self):
        tok = self.peek()
        if tok.kind != "STRING":
            return None
        text = _unquote(tok.text)
        if text is None:
            raise self.error(tok, 'a string may only escape \\\\ and \\"')
        self.next()
        return text

    def data(self):
        """A scalar, or `[data, ...]` nested to the tensor's rank."""
        if not self.at("["):
            return self.scalar()
        self.next()
        items = []
        while not self.at("]"):
            if items:
                self.expect(",", "`,` or `]` in data")
            items.append(self.literal("data", "data"))
        self.next()
        return tuple(items)


_LITERALS = {
    "int": _Parser.integer,
    "float": _Parser.float_,
    "bool": _Parser.boolean,
    "scalar": _Parser.scalar,
    "dtype": _Parser.dtype,
    "ints": _Parser.ints,
    "shape": _Parser.ints,
    "str": _Parser.string,
    "data": _Parser.data,
}
_KIND_TEXT = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "scalar": "a number, true or false",
    "dtype": f"a dtype ({', '.join(d.value for d in DType)})",
    "ints": "a list of integers like [0,1]",
    "shape": "a shape like [4,8]",
    "str": 'a string like "name"',
    "data": "a number, true, false or a nested [list]",
}
