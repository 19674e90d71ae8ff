"""The executable runs a planned schedule on a Device. Most checks use the null device (no
compiler): launch order, library calls, the arena reused across calls without ever leaking
into what the caller keeps, and equality with the interpreter. Each runs twice: through the
generated runner and through the step loop (`run_steps`)."""
import textwrap
import threading

import numpy as np
import pytest

from kiln.frontend.compile import compile_graph
from kiln.ir.interpreter import interpret
from kiln.ir.parser import parse
from kiln.passes.fusion import fuse_elementwise
from kiln.passes.plan_memory import plan_memory
from kiln.passes.schedule import build_schedule
from kiln.runtime.executable import build_executable
from kiln.runtime.null import NullDevice

CHAIN = """
    graph @chain(%x: f32[16,8], %w: f32[8,8]) {
      %0: f32[16,8] = tanh %x
      %1: f32[16,8] = matmul %0, %w
      %2: f32[16,8] = exp %1
      %3: f32[16,8] = matmul %2, %w
      %4: f32[16,8] = sigmoid %3
      %5: f32[16,8] = matmul %4, %w
      %6: f32[8,16] = permute %5 {perm=[1,0]}
      %7: f32[16,1] = max %5 {axes=[1], keepdim=true}
      return %6, %7
    }"""


@pytest.fixture(autouse=True)
def _both_call_paths(call_path):
    """Every test runs with the generated runner and with the step interpreter (conftest)."""
    return call_path


def _graph(text=CHAIN):
    return fuse_elementwise(parse(textwrap.dedent(text)))


def _inputs(g, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(v.shape) * 0.5).astype(v.type.dtype.np) for v in g.inputs]


def _null(g, compute=True):
    dev = NullDevice(compute=compute)
    return build_executable(plan_memory(build_schedule(g)), dev), dev


def test_null_device_records_launches_and_calls_in_order():
    exe, dev = _null(_graph(), compute=False)
    exe(_inputs(_graph()))
    # NOTE: the returned transpose of a temp is materialized by a copy kernel
    assert dev.launches == ["fused_0", "fused_1", "fused_2", "fused_3", "copy_7"]
    assert dev.calls == ["matmul"] * 3


def test_null_device_computes_what_the_interpreter_does():
    g = _graph()
    exe, _ = _null(g)
    xs = _inputs(g)
    for got, want in zip(exe(xs), interpret(g, xs)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_temps_whose_lives_do_not_overlap_share_arena_bytes():
    s = plan_memory(build_schedule(_graph()))
    temps = [b for b in s.buffers if b.kind == "temp"]
    assert len({b.offset for b in temps}) < len(temps)
    assert s.arena_bytes < s.naive_bytes


@pytest.mark.parametrize("device", ["null", "cpu"])
def test_outputs_survive_the_next_call(device):
    """The arena is reused by every call; outputs (and views of temps a `run` step returns,
    such as the permute here) must not live in it."""
    g = _graph()
    exe = _null(g)[0] if device == "null" else compile_graph(g)
    a, b = _inputs(g, 1), _inputs(g, 2)
    first = exe(a)
    kept = [np.array(o, copy=True) for o in first]
    exe(b)
    for got, want in zip(first, kept):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(first, interpret(g, a)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_concurrent_calls_use_their_own_arenas():
    g = _graph()
    exe = compile_graph(g)
    results, errors = {}, []

    def run(seed):
        try:
            xs = _inputs(g, seed)
            for _ in range(20):
                out = exe(xs)
            results[seed] = (out, interpret(g, xs))
        except Exception as e:     # NOTE: reported by the assertion below
            errors.append(e)
    threads = [threading.Thread(target=run, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for got, want in results.values():
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_write_backs_land_in_the_callers_arrays():
    g = _graph("""
        graph @step(%p: f32[5], %g: f32[5]) {
          %0: f32[5] = sub %p, %g
          %1: f32[5] = copy_ %p, %0
          return %0
        }""")
    exe, _ = _null(g)
    p, grad = np.ones(5, np.float32), np.full(5, 0.25, np.float32)
    (out,) = exe([p, grad])
    assert p.tolist() == [0.75] * 5 and out.tolist() == [0.75] * 5


MLP = """
    graph @mlp(%x: f32[6,5], %w: f32[4,5], %b: f32[4], %v: f32[3,4]) {
      %0: f32[5,4] = permute %w {perm=[1,0]}
      %1: f32[6,4] = matmul %x, %0
      %2: f32[6,4] = expand %b {shape=[6,4]}
      %3: f32[6,4] = add %1, %2
      %4: f32[6,4] = relu %3
      %5: f32[4,3] = permute %v {perm=[1,0]}
      %6: f32[6,3] = matmul %4, %5
      %7: f32[3,6] = permute %6 {perm=[1,0]}
      %8: f32[3,6] = tanh %7
      %9: f32[18] = reshape %8 {shape=[18]}
      %10: f32[18] = neg %9
      return %10, %7
    }"""

BATCHED = """
    graph @bmm(%a: f32[3,4,5], %b: f32[3,6,5], %c: f64[2,2,2]) {
      %0: f32[3,5,6] = permute %b {perm=[0,2,1]}
      %1: f32[3,4,6] = matmul %a, %0
      %2: f32[3,4,6] = exp %1
      %3: f64[2,2,2] = matmul %c, %c
      return %2, %3
    }"""


FLATTEN = """
    graph @flat(%x: f32[4,2,3], %w: f32[5,6]) {
      %0: f32[4,6] = reshape %x {shape=[4,6]}
      %1: f32[6,5] = permute %w {perm=[1,0]}
      %2: f32[4,5] = matmul %0, %1
      %3: f32[4,5] = tanh %2
      return %3
    }"""


def test_a_reshaped_matmul_operand_is_read_with_its_own_shape():
    g = _graph(FLATTEN)
    exe = compile_graph(g)
    # NOTE: materialized by a copy kernel in the same compiled entry, not a NumPy step
    assert "launch @copy_0 (%x) -> (%t0)" in str(exe.schedule) and exe.entries == 1
    xs = _inputs(g, 5)
    np.testing.assert_allclose(exe(xs)[0], interpret(g, xs)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("text", [MLP, BATCHED])
def test_views_fold_into_accesses_and_blas_transposes(text):
    g = _graph(text)
    exe = compile_graph(g)
    printed = str(exe.schedule)
    # NOTE: the transposes feeding matmuls and kernels are strides and BLAS flags, not steps
    assert "run permute" not in printed.split("return")[0].rsplit("call matmul", 1)[0]
    assert "transpose=[false,true]" in printed
    xs = _inputs(g, 3)
    for got, want in zip(exe(xs), interpret(g, xs)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_one_entry_into_compiled_code_runs_every_small_step():
    g = _graph(MLP)
    exe = compile_graph(g)
    assert exe.entries == 1 and len(exe.segments) == 1
    assert [k.name for k in exe.kernels] == ["fused_0", "fused_1", "fused_2"]
    for k in exe.kernels:
        assert k.symbol in k.llvm_ir and f"{k.function}:" in k.asm and k.address


def test_segments_give_what_separate_threaded_launches_give():
    from kiln.runtime.cpu import CpuLauncher
    g = _graph(CHAIN)
    xs = _inputs(g, 4)
    one = compile_graph(g)
    split = compile_graph(g, CpuLauncher(threads=2, min_parallel_work=0))
    assert one.entries == 1 and split.entries > 1
    for a, b in zip(one(xs), split(xs)):
        np.testing.assert_array_equal(a, b)


def test_a_matmul_read_only_transposed_computes_the_transposed_product():
    # the weight-gradient pattern: (x^T g)^T is computed as g^T x, with no transpose after
    g = _graph("""
        graph @wgrad(%x: f32[6,5], %g: f32[6,4]) {
          %0: f32[5,6] = permute %x {perm=[1,0]}
          %1: f32[5,4] = matmul %0, %g
          %2: f32[4,5] = permute %1 {perm=[1,0]}
          %3: f32[4,5] = neg %2
          return %2, %3
        }""")
    exe = compile_graph(g)
    text = str(exe.schedule)
    assert "call matmul (%g, %x) -> (%t0) {transpose=[true,false]}" in text
    assert "copy" not in text and "run" not in text
    xs = _inputs(g, 6)
    for got, want in zip(exe(xs), interpret(g, xs)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


SGD = """
    graph @sgd(%p: f32[4,3], %g: f32[4,3], %m: f32[4,3]) {
      %0: f32[4,3] = add %m, %g
      %1: f32[4,3] = sub %p, %0
      %2: f32[4,3] = copy_ %p, %1
      %3: f32[4,3] = copy_ %m, %0
      %4: f32[] = sum %1 {axes=[0,1], keepdim=false}
      return %4
    }"""


def _sgd_want(p, g, m):
    m_new = m + g
    return p - m_new, m_new


@pytest.mark.parametrize("device", ["null", "cpu"])
def test_write_backs_become_updates_in_place(device):
    g = _graph(SGD)
    exe = _null(g)[0] if device == "null" else compile_graph(g)
    s = exe.schedule
    # NOTE: %p is read by the sum's kernel after the update: it keeps its write-back
    assert [d.name for d, _ in s.writes] == ["p"] or [d.name for d, _ in s.writes] == []
    assert any(b.kind == "input" for st in s.steps for b in st.outs)
    # NOTE: the frontend bumps versions and refuses overlapping arguments from this list
    assert exe.written_inputs == [0, 2]
    p, grad, m = _inputs(g, 7)
    want_p, want_m = _sgd_want(p, grad, m)
    (total,) = exe([p, grad, m])
    np.testing.assert_allclose(p, want_p, rtol=1e-6)
    np.testing.assert_allclose(m, want_m, rtol=1e-6)
    np.testing.assert_allclose(total, want_p.sum(), rtol=1e-5)


def test_an_update_in_place_reaches_a_non_contiguous_callers_array():
    g = _graph(SGD)
    exe = compile_graph(g)
    p, grad, m = _inputs(g, 8)
    wide = np.zeros((4, 6), np.float32)
    wide[:, ::2] = m
    strided = wide[:, ::2]          # NOTE: not contiguous: the call works on a copy
    want_p, want_m = _sgd_want(p, grad, m)
    exe([p, grad, strided])
    np.testing.assert_allclose(wide[:, ::2], want_m, rtol=1e-6)
    assert not wide[:, 1::2].any()


def test_no_update_in_place_of_an_input_read_later():
    g = _graph("""
        graph @f(%p: f32[5], %g: f32[5]) {
          %0: f32[5] = sub %p, %g
          %1: f32[5] = copy_ %p, %0
          %2: f32[5,5] = expand %p {shape=[5,5]}
          %3: f32[5] = sum %2 {axes=[1], keepdim=false}
          %4: f32[5] = exp %0
          return %3, %4
        }""")
    exe = compile_graph(g)
    assert [d.name for d, _ in exe.schedule.writes] == ["p"]
    p, grad = _inputs(g, 9)
    old = p.copy()
    got_sum, _ = exe([p, grad])
    np.testing.assert_allclose(got_sum, np.full(5, old.sum()), rtol=1e-5)
    np.testing.assert_allclose(p, old - grad, rtol=1e-6)


@pytest.mark.parametrize("device", ["null", "cpu-threads", "cpu-segment"])
def test_an_epilogue_updates_the_matmul_result_in_place(device):
    from kiln.runtime.cpu import CpuLauncher
    g = _graph("""
        graph @linear_relu(%x: f32[8,6], %w: f32[5,6], %b: f32[5]) {
          %0: f32[6,5] = permute %w {perm=[1,0]}
          %1: f32[8,5] = matmul %x, %0
          %2: f32[8,5] = expand %b {shape=[8,5]}
          %3: f32[8,5] = add %1, %2
          %4: f32[8,5] = relu %3
          return %4
        }""")
    if device == "null":
        exe = _null(g)[0]
    else:
        launcher = CpuLauncher(threads=2, min_parallel_work=0) if device == "cpu-threads" \
            else None
        exe = compile_graph(g, launcher)
    (kernel,) = exe.schedule.kernels
    assert kernel.inplace == ((0, 0),) and not any(
        b.kind == "temp" for b in exe.schedule.buffers)
    xs = _inputs(g, 10)
    for _ in range(2):
        np.testing.assert_allclose(exe(xs)[0], interpret(g, xs)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduce", [False, True])
def test_a_kernel_writing_over_its_input_reads_every_value_first(reduce):
    # the first result is written over the matmul's buffer; the second still reads it
    # NOTE: with the sum, exp(%1) is kept from the sum's loop (scratch) and stored before
    # anything in the last loop loads %1
    tail = ("%4: f32[6,1] = sum %2 {axes=[1], keepdim=true}\n"
            "      %5: f32[6,4] = expand %4 {shape=[6,4]}\n"
            "      %6: f32[6,4] = sub %1, %5") if reduce else "%6: f32[6,4] = neg %1"
    g = _graph(f"""
        graph @f(%x: f32[6,5], %w: f32[5,4]) {{
          %1: f32[6,4] = matmul %x, %w
          %2: f32[6,4] = exp %1
          {tail}
          %7: f32[6,4] = mul %6, %2
          return %2, %7
        }}""")
    exe = compile_graph(g)
    (kernel,) = exe.schedule.kernels
    assert kernel.inplace, "the exp is written over the matmul's buffer"
    xs = _inputs(g, 11)
    for got, want in zip(exe(xs), interpret(g, xs)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_the_runner_and_the_step_loop_agree_call_after_call(call_path):
    g = _graph()
    exe, _ = _null(g)
    xs = _inputs(g)
    want = interpret(g, xs)
    for _ in range(3):
        got = exe(xs)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert (exe.runner == exe.run_steps) == (call_path == "steps")


def test_a_wrong_input_is_named_by_the_runner():
    g = _graph()
    exe, _ = _null(g)
    xs = _inputs(g)
    with pytest.raises(Exception, match="takes 2 inputs, got 1"):
        exe(xs[:1])
    with pytest.raises(Exception, match=r"input 1 must be f32\[8, ?8\]"):
        exe([xs[0], xs[1][:4]])
    # NOTE: a non-contiguous input of the right type is made contiguous, not refused
    got = exe([xs[0], np.asfortranarray(xs[1])])
    np.testing.assert_allclose(got[1], interpret(g, xs)[1], rtol=1e-5)


# NOTE: two write-backs sharing a buffer, found by the random mutation programs. One value
# written into two inputs: updating %a in place took the value's buffer from the write into
# %c (the schedule was refused). `c.copy_(a); a.add_(0.5)`: updating %a in place made the
# write-back into %c, which runs after every step, copy the new value (a wrong result).
WRITE_BACK_PAIRS = {
    "one value into two inputs": ("%1", lambda old: (old + 0.5, old + 0.5)),
    "an input's old value into another": ("%a", lambda old: (old + 0.5, old)),
}


@pytest.mark.parametrize("device", ["null", "cpu"])
@pytest.mark.parametrize("case", sorted(WRITE_BACK_PAIRS))
def test_write_backs_sharing_a_buffer_each_get_their_value(case, device):
    source, want = WRITE_BACK_PAIRS[case]
    g = _graph(f"""
        graph @pair(%a: f64[2,3], %c: f64[2,3]) {{
          %0: f64[2,3] = full {{value=0.5, shape=[2,3], dtype=f64}}
          %1: f64[2,3] = add %a, %0
          %2: f64[2,3] = copy_ %a, %1
          %3: f64[2,3] = copy_ %c, {source}
          return
        }}""")
    exe = _null(g)[0] if device == "null" else compile_graph(g)
    a, c = _inputs(g, 3)
    want_a, want_c = want(a.copy())
    exe([a, c])
    np.testing.assert_allclose(a, want_a)
    np.testing.assert_allclose(c, want_c)


@pytest.mark.parametrize("text", [CHAIN, MLP, BATCHED, FLATTEN, SGD],
                         ids=["chain", "mlp", "batched", "flatten", "sgd"])
@pytest.mark.parametrize("device", ["null", "cpu"])
def test_the_unchecked_runner_gives_what_the_checked_one_gives(text, device, call_path):
    """`unchecked_runner` (the jit's direct call, frontend/jit_fast.py) takes the input
    arrays as arguments without checking them; on checked inputs it runs the same steps."""
    g = _graph(text)
    exe = _null(g)[0] if device == "null" else compile_graph(g)
    run = exe.unchecked_runner()
    if call_path == "steps":
        assert run is None
        return
    for seed in (0, 1):     # NOTE: twice: the second call reuses the first call's arena
        xs = _inputs(g, seed)
        checked_ins, unchecked_ins = [x.copy() for x in xs], [x.copy() for x in xs]
        want = exe(checked_ins)
        got = run(*unchecked_ins)
        assert len(got) == len(want)
        # NOTE: the inputs too: SGD's updates are written back into them
        for a, b in zip(got + unchecked_ins, want + checked_ins):
            assert a.shape == b.shape and a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
