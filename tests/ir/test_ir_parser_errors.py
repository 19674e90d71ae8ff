"""Parse errors name the line, the column and what was expected."""
from __future__ import annotations

import pytest

from kiln.ir.errors import KilnError, ParseError
from kiln.ir.parser import parse

HEAD = "graph @f(%x: f32[4], %y: f32[4]) {\n"


def _error(text: str) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse(text)
    return info.value


def _node_error(line: str) -> ParseError:
    """The error for one node line (line 2) inside a small graph."""
    return _error(HEAD + line + "\n  return %x\n}\n")


def test_bad_token():
    err = _node_error("  %1: f32[4] = exp $x")
    assert "line 2, column 20: unexpected character '$'" in str(err)
    assert (err.line, err.column) == (2, 20)
    # NOTE: the message shows the line and a caret under the column.
    assert "\n    " + "  %1: f32[4] = exp $x" + "\n    " + " " * 19 + "^" in str(err)


def test_unknown_op_suggests_a_close_name():
    err = _node_error("  %1: f32[4] = expp %x")
    assert "line 2, column 16: unknown op 'expp'" in str(err)
    assert "did you mean exp" in str(err)


def test_declared_type_disagrees_with_the_shape_rule():
    err = _node_error("  %1: f32[8] = exp %x")
    assert "line 2, column 3: %1 is declared f32[8] but 'exp' gives f32[4]" in str(err)


def test_wrong_output_count():
    err = _node_error("  %1: f32[4], %2: f32[4] = exp %x")
    assert "line 2, column 28: 'exp' gives 1 output(s), the line declares 2" in str(err)


def test_shape_rule_error_is_reported_at_the_op():
    err = _error("graph @f(%x: f32[4], %y: f32[3]) {\n  %1: f32[4] = add %x, %y\n"
                 "  return %1\n}\n")
    assert "line 2, column 16: add: operand shapes differ (f32[4], f32[3])" in str(err)


def test_undefined_value():
    err = _node_error("  %1: f32[4] = add %x, %z")
    assert "line 2, column 24: value %z is not defined before this use" in str(err)


def test_use_before_definition():
    err = _error(HEAD + "  %1: f32[4] = exp %2\n  %2: f32[4] = exp %x\n  return %1\n}\n")
    assert "line 2, column 20: value %2 is not defined before this use" in str(err)


def test_value_defined_twice():
    err = _error(HEAD + "  %1: f32[4] = exp %x\n  %1: f32[4] = neg %x\n  return %1\n}\n")
    assert "line 3, column 3: value %1 is already defined (line 2)" in str(err)


def test_kernel_body_cannot_see_outer_values():
    text = (HEAD + '  %1: f32[4] = kernel %x {name="k"} {\n    body @k(%a: f32[4]) {\n'
            "      %2: f32[4] = add %a, %y\n      return %2\n    }\n  }\n  return %1\n}\n")
    err = _error(text)
    assert "line 4, column 28: value %y is not defined before this use" in str(err)
    assert "a kernel body sees only its own inputs" in str(err)


def test_kernel_body_mismatch_is_reported():
    text = (HEAD + '  %1: f32[4] = kernel %x {name="k"} {\n    body @k(%a: f32[2]) {\n'
            "      return %a\n    }\n  }\n  return %1\n}\n")
    err = _error(text)
    assert "line 2, column 16:" in str(err)
    assert "do not match body inputs (f32[2])" in str(err)


@pytest.mark.parametrize("line, message", [
    ("  %1: f32[4] = sum %x {axes=[0]}", "line 2, column 16: op 'sum' needs attribute(s) "
                                         "['keepdim']"),
    ("  %1: f32[] = sum %x {axes=[0], keepdim=0}", "line 2, column 41: expected true or "
                                                   "false for attribute 'keepdim', got '0'"),
    ("  %1: f32[] = sum %x {axis=[0], keepdim=true}", "line 2, column 23: op 'sum' has no "
                                                      "attribute 'axis'"),
    ("  %1: f32[] = sum %x {axes=[0], axes=[0]}", "line 2, column 33: attribute 'axes' is "
                                                  "given twice"),
    ("  %1: f32[4] = cast %x {dtype=f16}", "line 2, column 31: expected a dtype (bool, i32, "
                                           "i64, f32, f64) for attribute 'dtype', got 'f16'"),
    ("  %1: f32[2] = reshape %x {shape=[2,2.0]}", "line 2, column 37: expected a list "
                                                  "element (an integer), got '2.0'"),
    ("  %1: f32[4] = kernel %x {name=k}", "line 2, column 32: expected a string like "
                                          "\"name\" for attribute 'name', got 'k'"),
    ("  %1: f32[4] = kernel %x {body=1}", "line 2, column 27: graph attribute 'body' is "
                                          "written as a nested block"),
])
def test_attribute_errors(line, message):
    assert message in str(_node_error(line))


@pytest.mark.parametrize("text, message", [
    ("func @f() {\n  return\n}\n", "line 1, column 1: expected `graph @name(...) {` to "
                                   "start the text, got 'func'"),
    ("graph @f(%x: f33[4]) {\n  return %x\n}\n", "line 1, column 14: expected a dtype"),
    ("graph @f(%x: f32[-4]) {\n  return %x\n}\n", "line 1, column 18: expected a dimension "
                                                  "size >= 0, got -4"),
    ("graph @f(%x: f32[4]) {\n  %1: f32[4] = exp %x\n", "line 3, column 1: expected a node "
                                                        "or `return %value, ...`"),
    ("graph @f(%x: f32[4]) {\n  return %x\n", "line 3, column 1: expected `}` to close "
                                              "graph @f"),
    ("graph @f(%x: f32[4]) {\n  return %x\n}\ngraph @g() {\n", "line 4, column 1: expected "
                                                               "end of input"),
    ("graph @f(%x: f32[4]) {\n  return %x  # model.py:3\n}\n", "line 2, column 14: expected "
                                                               "end of line, got a comment"),
    ("graph @f(%x: f32[4]) {\n  %1: f32[4] = exp %x  # somewhere\n  return %1\n}\n",
     "line 2, column 24: expected a location comment `# file.py:LINE`"),
    ("graph @f(%1a: f32[4]) {\n  return %1a\n}\n", "line 1, column 10: value name %1a must "
                                                   "be a number or an identifier"),
    ("graph @f(%x: f32[4]) {\n  %1 f32[4] = exp %x\n  return %1\n}\n", "line 2, column 6: "
                                                                        "expected `:`"),
    ('graph @f() {\n  %0: i32[] = full {value="a\\n", shape=[], dtype=i32}\n  return %0\n}\n',
     "line 2, column 27: expected a number, true or false for attribute 'value'"),
])
def test_structure_errors(text, message):
    assert message in str(_error(text))


def test_wrong_arity_is_a_kiln_error_with_category():
    err = _node_error("  %1: f32[4] = exp")
    assert isinstance(err, KilnError) and err.category == "parse"
    assert "line 2, column 16: op 'exp' takes 1 operand(s), got 0" in str(err)


@pytest.mark.parametrize("line, message", [
    ("  %1: i32[] = full {value=99999999999999999999999, shape=[], dtype=i32}",
     "full: value cannot be converted to type int32 without overflow"),
    ("  %1: i64[] = full {value=99999999999999999999999, shape=[], dtype=i64}",
     "full: value cannot be converted to type int64 without overflow"),
    ("  %1: i64[] = full {value=nan, shape=[], dtype=i64}",
     "full: value nan is not an integer"),
    ("  %1: i64[2] = constant {data=[1.5, 2], shape=[2], dtype=i64}",
     "constant: value 1.5 is not an integer"),
    ("  %1: i64[2] = constant {data=[nan, 2], shape=[2], dtype=i64}",
     "constant: value nan is not an integer"),
    ("  %1: i32[2] = constant {data=[99999999999, 2], shape=[2], dtype=i32}",
     "constant: value cannot be converted to type int32 without overflow"),
    ("  %1: bool[] = full {value=2, shape=[], dtype=bool}",
     "full: value 2 cannot be converted to type bool"),
])
def test_literals_that_do_not_fit_their_dtype_are_parse_errors(line, message):
    err = _node_error(line)
    assert "line 2" in str(err) and message in str(err)


@pytest.mark.parametrize("hint", ["A\u00b7", "x\u0301", "\u00b7", "a-b", "1x"])
def test_input_names_the_parser_cannot_read_print_as_numbers(hint):
    from kiln.ir.builder import GraphBuilder
    from kiln.ir.dtypes import float32
    from kiln.ir.printer import print_graph
    from kiln.ir.types import TensorType
    b = GraphBuilder("f")
    v = b.add_input(TensorType(float32, (2,)), hint)
    text = print_graph(b.finish([v]))
    assert f"%{hint}:" not in text
    assert print_graph(parse(text)) == text
