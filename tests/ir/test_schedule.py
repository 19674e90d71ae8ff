"""The schedule IR: built from fused graphs, printed, parsed back identically, and verified;
bad text and broken invariants are refused with the line and what is wrong."""
import textwrap

import numpy as np
import pytest

from kiln.ir.errors import ParseError, VerifyError
from kiln.ir.parser import parse
from kiln.ir.schedule import Access, live_ranges, verify_schedule
from kiln.ir.schedule_text import parse_schedule, print_schedule
from kiln.passes.fusion import fuse_elementwise
from kiln.passes.plan_memory import plan_memory
from kiln.passes.schedule import build_schedule

PROGRAMS = {
    "elementwise": """
        graph @f(%x: f32[4,8], %b: f32[8]) {
          %0: f32[4,8] = expand %b {shape=[4,8]}
          %1: f32[4,8] = add %x, %0   # model.py:3
          %2: f32[4,8] = tanh %1
          return %2
        }""",
    "softmax": """
        graph @softmax(%x: f32[6,10]) {
          %0: f32[6,1] = max %x {axes=[1], keepdim=true}
          %1: f32[6,10] = expand %0 {shape=[6,10]}
          %2: f32[6,10] = sub %x, %1
          %3: f32[6,10] = exp %2
          %4: f32[6,1] = sum %3 {axes=[1], keepdim=true}
          %5: f32[6,10] = expand %4 {shape=[6,10]}
          %6: f32[6,10] = div %3, %5
          return %6
        }""",
    "matmul_and_reference": """
        graph @mlp(%x: f32[4,8], %w: f32[8,3]) {
          %0: f32[4,8] = tanh %x
          %1: f32[4,3] = matmul %0, %w
          %2: f32[3,4] = permute %1 {perm=[1,0]}
          %3: f32[3,4] = exp %2
          %4: f32[3] = sum %3 {axes=[1], keepdim=false}
          return %4, %1
        }""",
    "write_back": """
        graph @step(%p: f32[5], %g: f32[5]) {
          %0: f32[5] = sub %p, %g
          %1: f32[5] = copy_ %p, %0
          return %0
        }""",
    "column_sum": """
        graph @f(%x: i32[7,5]) {
          %0: i32[5] = sum %x {axes=[0], keepdim=false}
          %1: i32[7,5] = neg %x
          return %0, %1
        }""",
}


def _schedule(name, planned=False):
    s = build_schedule(fuse_elementwise(parse(textwrap.dedent(PROGRAMS[name]))))
    return plan_memory(s) if planned else verify_schedule(s)


@pytest.mark.parametrize("planned", [False, True])
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_print_parse_round_trip(name, planned):
    text = print_schedule(_schedule(name, planned))
    again = parse_schedule(text)
    assert print_schedule(again) == text


def test_kernels_carry_space_reduction_axes_and_strided_accesses():
    s = _schedule("softmax")
    (k,) = s.kernels
    assert (k.space, k.reduce, k.parallel) == ((6, 10), (1,), (0,))
    assert k.loads == (Access((10, 1), 0),) and k.stores == (Access((10, 1), 0),)
    e = _schedule("elementwise")
    assert [a.strides for a in e.kernels[0].loads] == [(8, 1), (0, 1)]
    c = _schedule("column_sum")
    assert c.kernels[0].reduce == (0,)
    assert [a.strides for a in c.kernels[0].stores] == [(0, 1)]


def test_steps_buffers_and_writes():
    s = _schedule("matmul_and_reference")
    kinds = [type(st).__name__ for st in s.steps]
    # NOTE: the permute is read through strides by the kernel; the graph output %1 is the
    # call's own buffer
    assert kinds == ["Launch", "Call", "Launch"]
    assert [b.kind for b in s.buffers] == ["temp", "output", "output"]
    assert s.kernels[1].loads[0].strides == (1, 3)
    w = _schedule("write_back")
    assert [(d.name, src.kind) for d, src in w.writes] == [("p", "output")]


def test_text_shows_the_plan_and_locations():
    text = print_schedule(_schedule("elementwise", planned=True))
    assert "arena bytes=0 naive=0" in text
    assert "# model.py:3" in text and "launch @fused_0 (%x, %b) -> (%t0)" in text
    m = print_schedule(_schedule("matmul_and_reference", planned=True))
    assert "buffer %t0: f32[4,8] temp {arena=0, offset=0, nbytes=128}" in m


GOOD = """
schedule @f(%x: f32[4,8]) {
  buffer %0: f32[4,1] temp
  launch @k (%x) -> (%0) {space=[4,8], reduce=[1]} {
    load %x strides=[8,1] offset=0
    store %0 strides=[1,0] offset=0
    body @k(%1: f32[4,8]) {
      %2: f32[4,1] = max %1 {axes=[1], keepdim=true}
      return %2
    }
  }
  return %0
}
"""


@pytest.mark.parametrize("old,new,error,message", [
    ("strides=[8,1] offset=0", "strides=[8,2] offset=0", VerifyError,
     "reaches element 38, past its 32 elements"),
    ("store %0 strides=[1,0]", "store %0 strides=[8,1]", VerifyError,
     "not 0 along the reduction axes"),
    ("reduce=[1]", "reduce=[2]", VerifyError, "reduce axes [2] must be sorted"),
    ("buffer %0: f32[4,1] temp", "buffer %0: f32[4,1] value", VerifyError,
     "a launch writes temp or output buffers"),
    ("(%x) -> (%0)", "(%x) <- (%0)", ParseError, "expected `->`"),
    ("  return %0", "  return %9", ParseError, "buffer %9 is not declared"),
    ("load %x", "load %0", ParseError, "expected the load of %x here"),
    ("temp\n", "hot\n", ParseError, "buffer kind must be one of"),
    ("strides=[8,1] offset=0", "strides=[8,1,1] offset=0", VerifyError,
     "has strides [8, 1, 1]"),
])
def test_bad_schedules_are_refused(old, new, error, message):
    assert old in GOOD
    text = GOOD.replace(old, new, 1)
    if "strides=[8,1] offset=0\n    body" in text:     # NOTE: a [4,8] buffer for a row value
        text = text.replace("buffer %0: f32[4,1]", "buffer %0: f32[4,8]")
    with pytest.raises(error, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_schedule(text)


def test_a_step_reading_before_any_write_is_refused():
    text = GOOD.replace("  return %0", "  run exp (%1) -> (%2)\n  return %0")
    with pytest.raises(ParseError, match="buffer %1 is not declared"):
        parse_schedule(text)
    twice = GOOD.replace("  return %0", "  call matmul (%x, %x) -> (%0)\n  return %0")
    with pytest.raises(VerifyError, match="writes %0, which is already written"):
        parse_schedule(twice)


def test_overlapping_live_temps_in_the_same_bytes_are_refused():
    s = plan_memory(_schedule("matmul_and_reference"))
    temp = [b for b in s.buffers if b.kind == "temp"]
    assert temp
    text = print_schedule(s).replace("arena bytes=128", "arena bytes=64")
    with pytest.raises(VerifyError, match="planned at"):
        parse_schedule(text)


def test_run_inputs_live_as_long_as_their_outputs():
    # permute's NumPy result is a view of the matmul's buffer: the buffer must outlive it
    s = _schedule("matmul_and_reference")
    live = live_ranges(s)
    call_out = s.steps[1].outs[0]
    view = s.steps[2].outs[0]
    assert live[id(call_out)][1] >= live[id(view)][1]


def test_the_reference_executor_reads_strided_loads():
    from kiln.runtime.reference import run_kernel_reference
    s = parse_schedule(GOOD.replace("strides=[8,1] offset=0", "strides=[1,4] offset=0"))
    x = np.arange(32, dtype=np.float32)
    out = np.zeros((4, 1), np.float32)
    run_kernel_reference(s.kernels[0], [x.reshape(4, 8)], [out])
    # element (i, j) is read at i + 4 j: the max of row i is at j = 7
    assert out.ravel().tolist() == [28.0, 29.0, 30.0, 31.0]


def test_a_buffer_updated_in_place_lives_from_its_first_write():
    # %a is made at step 0 and updated in place at step 2; %b lives in between: the plan must
    # keep them apart (a range restarted at the update would let %b share %a's bytes)
    s = plan_memory(parse_schedule('''
schedule @f(%x: f32[8,8]) {
  buffer %a: f32[8,8] temp
  buffer %b: f32[8,8] temp
  buffer %c: f32[8,8] output
  call matmul (%x, %x) -> (%a)
  call matmul (%x, %x) -> (%b)
  launch @k (%a, %b) -> (%a) {space=[8,8], reduce=[], inplace=[0,0]} {
    load %a strides=[8,1] offset=0
    load %b strides=[8,1] offset=0
    store %a strides=[8,1] offset=0
    body @k(%0: f32[8,8], %1: f32[8,8]) {
      %2: f32[8,8] = add %0, %1
      return %2
    }
  }
  call matmul (%a, %x) -> (%c)
  return %c
}'''))
    a, b = s.buffers[:2]
    assert live_ranges(s)[id(a)] == (0, 3)
    assert a.offset != b.offset
