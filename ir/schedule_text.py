"""The schedule IR as text: `print_schedule` writes it, `parse_schedule` reads it back.

    >>> s = parse_schedule('''
    ... schedule @f(%x: f32[4,8]) {
    ...   buffer %0: f32[4,1] temp
    ...   launch @fused_0 (%x) -> (%0) {space=[4,8], reduce=[1]} {
    ...     load %x strides=[8,1] offset=0
    ...     store %0 strides=[1,0] offset=0
    ...     body @fused_0(%1: f32[4,8]) {
    ...       %2: f32[4,1] = max %1 {axes=[1], keepdim=true}
    ...       return %2
    ...     }
    ...   }
    ...   return %0
    ... }''')
    >>> s.kernels[0].reduce, s.kernels[0].stores[0].strides
    ((1,), (1, 0))

The grammar, one item a line (nested graphs as the graph IR writes them):

    schedule := 'schedule' GRAPH params '{' NL arena? buffer* step* write* 'return' values? NL '}'
    arena    := 'arena bytes=' INT ' naive=' INT       (once memory is planned)
    buffer   := 'buffer' VALUE ':' TYPE KIND plan?      plan := '{arena=N, offset=N, nbytes=N}'
    step     := 'launch' GRAPH args '->' args '{space=[..], reduce=[..]}' '{' LOC? NL
                    ('load'|'store') VALUE 'strides=[..]' 'offset=' INT NL ...
                    'body' GRAPH params '{' ... '}' NL
                '}'
              | ('call'|'run') OP args '->' args attrs? LOC?
    write    := 'write' VALUE '<-' VALUE
"""
from __future__ import annotations

from .attrs import Attrs, format_attr
from .errors import ParseError
from .graph import Graph
from .names import VALUE_TOKEN
from .parser import _Parser
from .printer import _Names, _print_graph, graph_ref
from .registry import get_op
from .schedule import (BUFFER_KINDS, Access, Buffer, Call, Kernel, Launch, Run, Schedule,
                       step_kind, verify_schedule)

_PLAN_KEYS = ("arena", "offset", "nbytes")


# ---- printing -------------------------------------------------------------------------------
def print_schedule(s: Schedule, planned: bool = True) -> str:
    """The text of a schedule; `parse_schedule(print_schedule(s))` prints identically.
    `planned=False` leaves the memory plan out (the text before planning)."""
    names = _Names()
    params = ", ".join(f"{names.name(b, b.name)}: {b.type}" for b in s.inputs)
    lines = [f"schedule {graph_ref(s.name)}({params}) {{"]
    if s.arena_bytes is not None and planned:
        lines.append(f"  arena bytes={s.arena_bytes} naive={s.naive_bytes or 0}")
    for b in s.buffers:
        plan = ""
        if b.planned and planned:
            plan = f" {{arena={b.arena}, offset={b.offset}, nbytes={b.nbytes}}}"
        lines.append(f"  buffer {names.name(b, b.name)}: {b.type} {b.kind}{plan}")
    for step in s.steps:
        _print_step(step, names, lines)
    for dst, src in s.writes:
        lines.append(f"  write {names.name(dst)} <- {names.name(src)}")
    lines.append("  return " + ", ".join(names.name(b) for b in s.outputs))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _args(bufs, names: _Names) -> str:
    return "(" + ", ".join(names.name(b) for b in bufs) + ")"


def _print_step(step, names: _Names, lines: list):
    kind = step_kind(step)
    loc = f"   # {step.loc}" if step.loc is not None else ""
    head = f"  {kind} "
    io = f"{_args(step.ins, names)} -> {_args(step.outs, names)}"
    if kind != "launch":
        items = [(k, format_attr(v)) for k, v in step.attrs.items()]
        if kind == "call" and step.transpose:
            items.append(("transpose", format_attr(tuple(step.transpose))))
        attrs = " {" + ", ".join(f"{k}={v}" for k, v in items) + "}" if items else ""
        lines.append(f"{head}{step.op} {io}{attrs}{loc}")
        return
    k = step.kernel
    inplace = ""
    if k.inplace:
        inplace = f", inplace={format_attr(tuple(x for pair in k.inplace for x in pair))}"
    lines.append(f"{head}{graph_ref(k.name)} {io} {{space={format_attr(tuple(k.space))}, "
                 f"reduce={format_attr(tuple(k.reduce))}{inplace}}} {{{loc}")
    for what, bufs, accs in (("load", step.ins, k.loads), ("store", step.outs, k.stores)):
        for b, a in zip(bufs, accs):
            lines.append(f"    {what} {names.name(b)} strides={format_attr(tuple(a.strides))} "
                         f"offset={a.offset}")
    _print_graph(k.body, names, "    ", lines, keyword=f"body {graph_ref(k.body.name)}")
    lines.append("  }")


def kernel_signature(k: Kernel) -> str:
    """A kernel's canonical text without names or locations (equal code, equal text)."""
    from .printer import print_graph
    body = print_graph(Graph("k", k.body.inputs, k.body.nodes, k.body.outputs))
    body = "\n".join(line.split("   # ")[0] for line in body.splitlines())
    acc = ";".join(f"{a.strides}+{a.offset}" for a in k.loads + k.stores)
    return f"space={k.space} reduce={k.reduce} inplace={k.inplace} {acc}\n{_anonymous(body)}"


def _anonymous(text: str) -> str:
    """Graph text with input hints replaced by numbers (`%x` -> `%in0`)."""
    import re
    first = text.split("\n", 1)[0]
    # NOTE: one pass, so that a hint like `in1` is never renamed twice
    number = {h: f"%in{i}" for i, h in enumerate(re.findall(rf"{VALUE_TOKEN}(?=:)", first))}
    return re.sub(VALUE_TOKEN, lambda m: number.get(m.group(), m.group()), text)


# ---- parsing --------------------------------------------------------------------------------
def parse_schedule(text: str, verify: bool = True) -> Schedule:
    """The Schedule `text` describes (as `print_schedule` writes it); ParseError otherwise,
    VerifyError when it parses but breaks an invariant (`verify=False` skips that)."""
    p = _ScheduleParser(text)
    p.skip_blank()
    p.expect("schedule", "`schedule @name(...) {` to start the text")
    s = p.schedule()
    p.skip_blank()
    p.expect_kind("EOF", "end of input after the schedule's closing `}`")
    return verify_schedule(s) if verify else s


class _ScheduleParser(_Parser):
    def schedule(self) -> Schedule:
        name = self.graph_name()
        scope: dict[str, Buffer] = {}
        inputs = self.buffer_params(scope)
        self.expect("{", "`{` to open the schedule")
        self.end_line()
        s = Schedule(name, inputs, [], [], [])
        self.skip_blank()
        if self.at("arena"):
            self.next()
            for key in ("bytes", "naive"):
                self.expect(key, f"`{key}=` in `arena bytes=N naive=N`")
                self.expect("=", f"`=` after {key}")
                setattr(s, "arena_bytes" if key == "bytes" else "naive_bytes",
                        self.int_literal(key, minimum=0))
            self.end_line()
            self.skip_blank()
        while self.at("buffer"):
            self.next()
            s.buffers.append(self.buffer(scope))
            self.skip_blank()
        while self.at("launch") or self.at("call") or self.at("run"):
            s.steps.append(self.step(scope))
            self.skip_blank()
        while self.at("write"):
            self.next()
            dst = self.buffer_use(scope)
            self.expect("<-", "`<-` after the written input")
            s.writes.append((dst, self.buffer_use(scope)))
            self.end_line()
            self.skip_blank()
        self.expect("return", "`buffer`, `launch`, `call`, `run`, `write` or `return`")
        if self.peek().kind == "VALUE":
            s.outputs = [self.buffer_use(scope)]
            while self.at(","):
                self.next()
                s.outputs.append(self.buffer_use(scope))
        self.end_line()
        self.skip_blank()
        self.expect("}", f"`}}` to close schedule @{name}")
        return s

    def buffer_params(self, scope: dict) -> list[Buffer]:
        self.expect("(", "`(` and the schedule's parameters")
        out = []
        while not self.at(")"):
            if out:
                self.expect(",", "`,` or `)` after a parameter")
            _, name, ty = self.typed_name("a parameter `%name: type`")
            scope[name] = Buffer(name, ty, "input")
            out.append(scope[name])
        self.next()
        return out

    def buffer(self, scope: dict) -> Buffer:
        _, name, ty = self.typed_name("a buffer `%name: type kind`")
        tok = self.expect_kind("NAME", f"a buffer kind ({', '.join(BUFFER_KINDS[1:])})")
        if tok.text not in BUFFER_KINDS[1:]:
            raise self.error(tok, f"buffer kind must be one of {', '.join(BUFFER_KINDS[1:])}, "
                             f"got {tok.describe()}")
        b = Buffer(name, ty, tok.text)
        if self.at("{"):
            self.next()
            for i, key in enumerate(_PLAN_KEYS):
                if i:
                    self.expect(",", "`,` in the buffer's plan")
                self.expect(key, f"`{key}=` in the buffer's plan `{{arena=, offset=, nbytes=}}`")
                self.expect("=", f"`=` after {key}")
                setattr(b, key, self.int_literal(key, minimum=0))
            self.expect("}", "`}` after the buffer's plan")
        scope[name] = b
        self.end_line()
        return b

    def buffer_use(self, scope: dict) -> Buffer:
        tok = self.expect_kind("VALUE", "a buffer `%name`")
        name = self.value_name(tok)
        if name not in scope:
            raise self.error(tok, f"buffer %{name} is not declared")
        return scope[name]

    def buffer_args(self, scope: dict) -> list[Buffer]:
        self.expect("(", "`(` and buffers")
        out = []
        while not self.at(")"):
            if out:
                self.expect(",", "`,` or `)`")
            out.append(self.buffer_use(scope))
        self.next()
        return out

    def io(self, scope: dict):
        ins = self.buffer_args(scope)
        self.expect("->", "`->` between operands and results")
        return ins, self.buffer_args(scope)

    def step(self, scope: dict):
        kind = self.next().text
        if kind == "launch":
            return self.launch(scope)
        op_tok = self.expect_kind("NAME", "an op name")
        opdef = self.op(op_tok)
        ins, outs = self.io(scope)
        schema = dict(opdef.attrs)
        if kind == "call":
            schema["transpose"] = "bools"
        attrs = self.step_attrs(opdef.name, schema) if self.at("{") else {}
        transpose = attrs.pop("transpose", ())
        loc = self.loc()
        self.end_line()
        try:
            built = Attrs.build(opdef.name, opdef.attrs, attrs)
        except Exception as e:
            raise self.error(op_tok, str(e)) from None
        if kind == "call":
            return Call(opdef.name, built, ins, outs, loc, tuple(transpose))
        return Run(opdef.name, built, ins, outs, loc)

    def step_attrs(self, op: str, schema: dict) -> dict:
        """`{name=literal, ...}` for a call or run step (a call may add `transpose=[..]`)."""
        self.expect("{", "`{`")
        given: dict = {}
        while True:
            tok = self.expect_kind("NAME", "an attribute name")
            kind = schema.get(tok.text)
            if kind is None:
                raise self.error(tok, f"'{op}' has no attribute '{tok.text}'; it takes "
                                 f"{sorted(schema)}")
            self.expect("=", f"`=` after attribute '{tok.text}'")
            if kind == "bools":
                self.expect("[", "`[` and true/false flags")
                flags = []
                while not self.at("]"):
                    if flags:
                        self.expect(",", "`,` or `]`")
                    flags.append(self.literal("bool", tok.text))
                self.next()
                given[tok.text] = tuple(flags)
            else:
                given[tok.text] = self.literal(kind, tok.text)
            if not self.at(","):
                self.expect("}", "`,` or `}` after an attribute")
                return given
            self.next()

    def launch(self, scope: dict) -> Launch:
        name = self.graph_name()
        ins, outs = self.io(scope)
        self.expect("{", "`{space=[...], reduce=[...]}`")
        space = self.named_ints("space")
        self.expect(",", "`,` before reduce")
        reduce = self.named_ints("reduce")
        inplace: tuple = ()
        if self.at(","):
            self.next()
            flat = self.named_ints("inplace")
            if len(flat) % 2:
                raise self.error(self.peek(), "inplace= lists (store, load) pairs")
            inplace = tuple(zip(flat[::2], flat[1::2]))
        self.expect("}", "`}` after reduce")
        self.expect("{", "`{` to open the launch's block")
        loc = self.loc()
        self.end_line()
        self.skip_blank()
        loads = [self.access("load", b, scope) for b in ins]
        stores = [self.access("store", b, scope) for b in outs]
        self.expect("body", "`body @name(...) {` with the kernel's body")
        body = self.graph()
        self.end_line()
        self.skip_blank()
        self.expect("}", "`}` to close the launch")
        self.end_line()
        kernel = Kernel(name, space, reduce, body, tuple(loads), tuple(stores), inplace)
        return Launch(kernel, ins, outs, loc)

    def named_ints(self, key: str) -> tuple[int, ...]:
        self.expect(key, f"`{key}=`")
        self.expect("=", f"`=` after {key}")
        self.expect("[", f"`[` and the {key}")
        return self.int_list(key, minimum=0)

    def access(self, what: str, want: Buffer, scope: dict) -> Access:
        self.skip_blank()
        self.expect(what, f"`{what} %{want.name} strides=[...] offset=N`")
        tok = self.peek()
        got = self.buffer_use(scope)
        if got is not want:
            raise self.error(tok, f"expected the {what} of %{want.name} here (one per "
                             f"{'operand' if what == 'load' else 'result'}, in order)")
        strides = self.named_ints("strides")
        self.expect("offset", "`offset=`")
        self.expect("=", "`=` after offset")
        offset = self.int_literal("offset", minimum=0)
        self.end_line()
        return Access(tuple(strides), offset)


__all__ = ["print_schedule", "parse_schedule", "kernel_signature", "ParseError", "get_op"]
