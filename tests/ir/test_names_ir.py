"""Readable names and module locations in the IR text: they print, parse back, and change
nothing a graph computes (kernel signatures and the structure text leave them out)."""
import doctest

import pytest

from kiln.ir import names as names_module
from kiln.ir import printer as printer_module
from kiln.ir.builder import GraphBuilder
from kiln.ir.dtypes import float32
from kiln.ir.errors import ParseError
from kiln.ir.names import ModuleLoc, is_hint, is_value_name, mlir_loc, parse_loc, unique_name
from kiln.ir.parser import parse
from kiln.ir.printer import print_graph, print_structure
from kiln.ir.schedule_text import parse_schedule, print_schedule
from kiln.ir.types import Loc, TensorType
from kiln.passes.fusion import fuse_elementwise
from kiln.passes.plan_memory import plan_memory
from kiln.passes.schedule import build_schedule

T = TensorType(float32, (4,))

NAMED = """\
graph @loss(%x: f32[4], %fc1.weight: f32[4], %layers.0.weight: f32[4], %0.bias: f32[4]) {
  %0: f32[4] = mul %x, %fc1.weight   # model.fc1 (Linear) at train.py:41
  %1: f32[4] = add %0, %layers.0.weight   # model.layers.0 (Linear) at train.py:42
  %2: f32[4] = add %1, %0.bias   # train.py:43
  %3: f32[4] = exp %2
  return %3
}
"""


def test_dotted_names_and_module_locations_round_trip():
    g = parse(NAMED)
    assert [v.hint for v in g.inputs] == ["x", "fc1.weight", "layers.0.weight", "0.bias"]
    assert g.nodes[0].loc == ModuleLoc("train.py", 41, "model.fc1", "Linear")
    assert g.nodes[2].loc == Loc("train.py", 43) and g.nodes[3].loc is None
    assert print_graph(g) == NAMED


def test_module_loc_prints_path_class_and_line():
    loc = ModuleLoc("/home/u/train.py", 41, "model.fc1", "Linear")
    assert str(loc) == "model.fc1 (Linear) at train.py:41"
    assert parse_loc(str(loc)) == ModuleLoc("train.py", 41, "model.fc1", "Linear")
    assert parse_loc("my file.py:3") == Loc("my file.py", 3)
    assert parse_loc("no line here") is None
    assert loc != Loc("/home/u/train.py", 41)


def test_duplicate_hints_get_a_suffix_that_parses_back():
    b = GraphBuilder("f")
    a1, a2, a3 = b.add_input(T, "fc1.weight"), b.add_input(T, "fc1.weight"), \
        b.add_input(T, "fc1.weight_1")
    (s,) = b.emit("add", [a1, a2], {})
    (t,) = b.emit("add", [s, a3], {})
    text = print_graph(b.finish([t]))
    assert text.startswith("graph @f(%fc1.weight: f32[4], %fc1.weight_1: f32[4], "
                           "%fc1.weight_1_1: f32[4])")
    assert print_graph(parse(text)) == text


@pytest.mark.parametrize("hint", ["a b", "fc1.", ".x", "a..b", "12", "x-y", "A·", ""])
def test_hints_that_would_not_parse_print_as_numbers(hint):
    b = GraphBuilder("f")
    x = b.add_input(T, hint)
    text = print_graph(b.finish([x]))
    assert text.startswith("graph @f(%0: f32[4])")
    assert print_graph(parse(text)) == text


def test_name_rules():
    assert is_value_name("3") and is_value_name("fc1.weight") and is_value_name("0.weight")
    assert not is_value_name("a..b") and not is_value_name("a b") and not is_value_name("")
    assert is_hint("x") and is_hint("layers.0.bias") and not is_hint("3") and not is_hint(None)
    assert unique_name("x", set()) == "x" and unique_name("x", {"x", "x_1"}) == "x_2"


@pytest.mark.parametrize("text, message", [
    ("graph @f(%a..b: f32[4]) {\n  return %a\n}\n", "unexpected character '.'"),
    ("graph @f(%x: f32[4]) {\n  %0: f32[4] = exp %x   # model.fc1 (Linear)\n  return %0\n}\n",
     "expected a location comment"),
])
def test_bad_names_and_locations_are_parse_errors(text, message):
    with pytest.raises(ParseError, match="line 1|line 2") as e:
        parse(text)
    assert message in str(e.value)


def test_structure_text_ignores_names_and_lines_but_not_what_shares_a_line():
    renamed = NAMED.replace("@loss", "@other").replace("%x", "%inputs") \
        .replace("fc1.weight", "w").replace("model.fc1 (Linear) at train.py:41", "eval.py:1") \
        .replace("train.py:42", "eval.py:2").replace("train.py:43", "eval.py:3")
    a, locs_a = print_structure(parse(NAMED))
    b, locs_b = print_structure(parse(renamed))
    assert a == b and "%x" not in a and "train.py" not in a and "@f(" in a
    assert [str(loc) for loc in locs_a] == ["model.fc1 (Linear) at train.py:41",
                                            "model.layers.0 (Linear) at train.py:42",
                                            "train.py:43"]
    assert len(locs_b) == 3
    shared = NAMED.replace("# train.py:43", "# model.fc1 (Linear) at train.py:41")
    assert print_structure(parse(shared))[0] != a
    other_op = NAMED.replace("exp %2", "neg %2")
    assert print_structure(parse(other_op))[0] != a


def test_kernel_signatures_leave_names_and_locations_out():
    plain = NAMED.replace("fc1.weight", "w").replace("layers.0.weight", "v") \
        .replace("0.bias", "b").replace("model.fc1 (Linear) at ", "").replace(
            "model.layers.0 (Linear) at ", "")
    sig = [k.signature() for k in build_schedule(fuse_elementwise(parse(NAMED))).kernels]
    assert sig == [k.signature() for k in build_schedule(fuse_elementwise(parse(plain))).kernels]


def test_schedule_text_keeps_names_and_locations():
    s = build_schedule(fuse_elementwise(parse(NAMED)))
    text = print_schedule(s)
    assert "schedule @loss(%x: f32[4], %fc1.weight: f32[4]" in text
    assert "# model.fc1 (Linear) at train.py:41" in text
    assert print_schedule(parse_schedule(text)) == text
    plan_memory(s)
    planned = print_schedule(s)
    assert "arena bytes=" in planned and print_schedule(s, planned=False) == text
    assert print_schedule(parse_schedule(planned)) == planned


def test_mlir_locations():
    assert mlir_loc(ModuleLoc("/a/train.py", 41, "model.fc1", "Linear")) == \
        'loc("model.fc1 (Linear)"("train.py":41:0))'
    assert mlir_loc(Loc('we"ird.py', 3)) == 'loc("we\\"ird.py":3:0)'
    assert mlir_loc(None) == "loc(unknown)"


@pytest.mark.parametrize("module", [names_module, printer_module])
def test_docstring_examples_run(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
