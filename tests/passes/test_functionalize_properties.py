"""functionalize on generated programs: random graphs mixing elementwise ops, reductions,
views and writes into inputs, views and intermediates keep their meaning (checked against the
reference executor with real NumPy aliasing)."""
import numpy as np
from hypothesis import given, note, settings
from hypothesis import strategies as st
from test_functionalize import check_meaning

from kiln.ir.builder import GraphBuilder
from kiln.ir.dtypes import float32
from kiln.ir.parser import parse
from kiln.ir.types import TensorType
from kiln.ir.verifier import verify
from kiln.passes.functionalize import functionalize

# --- generated programs ----------------------------------------------------------------------

SHAPES = [(4,), (2, 3), (3, 2), (2, 2, 2), (2, 3, 2), (3, 2, 2)]
UNARY = ["neg", "abs", "tanh", "sigmoid", "relu"]
BINARY = ["add", "sub", "mul", "maximum"]


class _Program:
    """A graph under construction and what the generator knows of each value: whether it is
    C-contiguous (so a reshape of it is a NumPy view) and whether it may be written (no
    `expand` between it and its storage)."""

    def __init__(self, draw):
        self.draw = draw
        self.b = GraphBuilder("g")
        self.values = []
        self.contiguous = set()
        self.readonly = set()
        self.views = set()

    def pick(self, ok=lambda v: True):
        choices = [v for v in self.values if ok(v)]
        return self.draw(st.sampled_from(choices)) if choices else None

    def emit(self, op, inputs, attrs, view_of=None, contiguous=False):
        (v,) = self.b.emit(op, inputs, attrs)
        self.values.append(v)
        if contiguous:
            self.contiguous.add(v)
        if view_of is not None:
            self.views.add(v)
        if view_of in self.readonly or op == "expand":
            self.readonly.add(v)
        return v


def _unary(p):
    p.emit(p.draw(st.sampled_from(UNARY)), [p.pick()], {}, contiguous=True)


def _binary(p):
    x = p.pick()
    y = p.pick(lambda v: v.shape == x.shape)
    p.emit(p.draw(st.sampled_from(BINARY)), [x, y], {}, contiguous=True)


def _reduce(p):
    x = p.pick(lambda v: len(v.shape) > 0)
    if x is not None:
        axes = p.draw(st.sets(st.sampled_from(range(len(x.shape))), min_size=1))
        attrs = {"axes": tuple(sorted(axes)), "keepdim": p.draw(st.booleans())}
        p.emit(p.draw(st.sampled_from(["sum", "max"])), [x], attrs, contiguous=True)


def _slice(p):
    x = p.pick()
    starts, stops, steps = [], [], []
    for d in x.shape:
        starts.append(p.draw(st.integers(0, d - 1)))
        stops.append(p.draw(st.integers(starts[-1] + 1, d)))
        steps.append(p.draw(st.integers(1, 2)))
    p.emit("slice", [x], {"starts": starts, "stops": stops, "steps": steps}, view_of=x)


def _permute(p):
    x = p.pick(lambda v: len(v.shape) > 1) or p.pick()
    perm = p.draw(st.permutations(range(len(x.shape))))
    p.emit("permute", [x], {"perm": perm}, view_of=x)


def _reshape(p):
    x = p.pick(lambda v: v in p.contiguous)
    if x is not None:
        n = int(np.prod(x.shape, dtype=int))
        a = p.draw(st.sampled_from([d for d in range(1, n + 1) if n % d == 0]))
        shape = p.draw(st.sampled_from([(n,), (a, n // a), (1, a, n // a), (n // a, a, 1)]))
        p.emit("reshape", [x], {"shape": shape}, view_of=x, contiguous=True)


def _expand(p):
    x = p.pick()
    p.emit("expand", [x], {"shape": (2,) + tuple(x.shape)}, view_of=x)


def _stop_gradient(p):
    x = p.pick()
    p.emit("stop_gradient", [x], {}, view_of=x, contiguous=x in p.contiguous)


def _clone(p):
    p.emit("copy", [p.pick()], {}, contiguous=True)


def _write(p):
    view = p.draw(st.booleans())    # NOTE: writes through views are rarer, so drawn more often
    dst = p.pick(lambda v: v not in p.readonly and (v in p.views) == view)
    dst = dst or p.pick(lambda v: v not in p.readonly)
    src = p.pick(lambda v: v.type == dst.type)
    if p.draw(st.booleans()):   # NOTE: a fresh value, or one that may alias dst's storage
        src = p.emit(p.draw(st.sampled_from(UNARY)), [src], {}, contiguous=True)
    p.emit("copy_", [dst, src], {}, view_of=dst, contiguous=dst in p.contiguous)


STEPS = [_unary, _binary, _reduce, _slice, _slice, _permute, _permute, _reshape, _expand,
         _stop_gradient, _clone, _write, _write, _write]


@st.composite
def programs(draw):
    p = _Program(draw)
    for i in range(draw(st.integers(1, 2))):
        v = p.b.add_input(TensorType(float32, draw(st.sampled_from(SHAPES))), f"x{i}")
        p.values.append(v)
        p.contiguous.add(v)
    for step in draw(st.lists(st.sampled_from(STEPS), min_size=1, max_size=12)) + [_write]:
        step(p)
    return p.b.finish(draw(st.lists(st.sampled_from(p.values), min_size=1, max_size=3)))


@settings(max_examples=300)
@given(programs())
def test_generated_programs_keep_their_meaning(before):
    verify(before)
    note(str(before))
    text = str(before)
    after = verify(functionalize(before))
    note(str(after))
    assert str(before) == text
    assert str(parse(str(after))) == str(after)
    check_meaning(before, after, seed=0, executable=False)
