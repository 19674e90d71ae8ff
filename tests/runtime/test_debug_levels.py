"""KILN_DEBUG: 1 compiles and recompiles, 2 a line per kernel launch, library call, host step
and eager op with its time and rates against the peaks, 3 the graph after each pass, 4 the
generated code; and bad values are refused."""
import os
import re
import subprocess
import sys

import pytest

import kiln
import kiln.debug
from kiln.runtime import floors, profiling

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# NOTE: the format runtime/profiling.py documents: kind, name, time, GB/s and its share of the
# bandwidth peak, GFLOP/s and its share of the flops peak, types, the user's line (after the
# module path, where there is one: `model.fc1 (Linear) at train.py:41`)
LINE = re.compile(r"kiln: (?P<kind>kernel|call|host|segment|eager) +(?P<name>\S+) +"
                  r"(?P<us>\d+\.\d\d) us +(?P<gbps>\d+\.\d\d) GB/s +(?P<bw>\d+%|-) +"
                  r"(?P<gflops>\d+\.\d\d) GFLOP/s +(?P<fl>\d+%|-)  (?P<types>.*?)"
                  r"(?:  (?P<loc>(?:\S.* at )?[^ ]+:\d+))?$")


PEAK_GBPS, PEAK_GFLOPS = 2.0, 0.5


@pytest.fixture
def level(monkeypatch):
    """`level(n)`: the debug level for this test, with the peaks set (no measurement)."""
    monkeypatch.setenv("KILN_PEAK_GBPS", str(PEAK_GBPS))
    monkeypatch.setenv("KILN_PEAK_GFLOPS", str(PEAK_GFLOPS))
    monkeypatch.setattr(floors, "_PEAKS", {})
    monkeypatch.setattr(profiling, "_ANNOUNCED", set())
    old = kiln.debug.level()
    yield kiln.debug.set_level
    kiln.debug.set_level(old)


def _lines(text: str) -> list[str]:
    return [line for line in re.split(r"[\r\n]", text) if line.startswith("kiln: ")]


def test_level_2_prints_a_line_per_kernel_launch(level, capsys):
    @kiln.jit
    def f(x, w):
        return kiln.relu(x @ w).sum(1) + 1.25

    x, w = kiln.ones(8, 4), kiln.ones(4, 3)
    f(x, w)
    capsys.readouterr()
    level(2)
    for _ in range(3):
        f(x, w)
    lines = _lines(capsys.readouterr().err)
    assert lines[0].startswith("kiln: peaks of cpu: 2.0 GB/s, 0.5 GFLOP/s (KILN_PEAK_GBPS, "
                               "KILN_PEAK_GFLOPS)")
    steps = [LINE.fullmatch(line) for line in lines[1:]]
    assert all(steps), lines
    kinds = [m["kind"] for m in steps]
    assert kinds == ["call", "kernel", "kernel"] * 3
    assert steps[0]["types"] == "f32[8,4], f32[4,3] -> f32[8,3]"
    for m in steps:
        assert m["name"].startswith("@f/") and "test_debug_levels.py:" in m["loc"]
        # NOTE: the shares are of the peaks set above (the rates print rounded to 0.01)
        for rate, share, peak in (("gbps", "bw", PEAK_GBPS), ("gflops", "fl", PEAK_GFLOPS)):
            want = 100 * float(m[rate]) / peak
            assert abs(int(m[share][:-1]) - want) <= 100 * 0.005 / peak + 0.5, m.string


def test_level_2_prints_eager_ops_and_nothing_at_level_0(level, capsys):
    x = kiln.ones(16)
    x * 3
    assert _lines(capsys.readouterr().err) == []
    level(2)
    x * 3
    lines = _lines(capsys.readouterr().err)[1:]
    assert [LINE.fullmatch(line)["name"] for line in lines] == ["full", "mul"]
    assert LINE.fullmatch(lines[1])["types"] == "f32[16], f32[16] -> f32[16]"


def test_level_1_prints_compiles_and_recompiles_with_the_reason(level, capsys):
    @kiln.jit
    def g(x):
        return kiln.exp(x) - 0.75

    level(1)
    g(kiln.ones(4))
    g(kiln.ones(4))
    g(kiln.ones(5))
    lines = _lines(capsys.readouterr().err)
    assert len(lines) == 2
    assert re.fullmatch(r"kiln: compile @g #1 \(first call\): 1 kernels, 0 library calls, "
                        r"0 host steps, arena 0 bytes in \d+\.\d ms.*", lines[0])
    assert lines[1].startswith("kiln: recompile @g #2 (the tensor (dtype, shape, "
                               "requires_grad) guard failed:")


def test_level_1_says_why_a_function_runs_in_replay_mode_or_eagerly(level, capsys):
    @kiln.jit
    def h(x):
        return kiln.tensor(x.numpy()) * 2       # NOTE: a value read: replay mode

    def k(x):
        return x * 2

    level(1)
    h(kiln.ones(2))
    with pytest.warns(kiln.KilnJitWarning):
        kiln.jit(k, recompile_limit=0)(kiln.ones(2))
    lines = _lines(capsys.readouterr().err)
    replay, eager = [line for line in lines if not line.startswith("kiln: compile @h graph")]
    assert any(line.startswith("kiln: compile @h graph 1 #1") for line in lines)
    assert re.match(r"kiln: @h runs in replay mode \(first call\): not supported yet: numpy\(\)",
                    replay)
    assert re.fullmatch(r"kiln: @k runs eagerly \(first call\): recompile limit \(0\) reached; "
                        r".* \[\d+\.\d ms\]", eager)


def test_level_1_names_the_guard_that_failed_when_a_function_goes_eager(level, capsys):
    @kiln.jit(recompile_limit=2)
    def grow(x):
        return x * 2.5

    level(1)
    with pytest.warns(kiln.KilnJitWarning):
        for n in range(1, 5):
            grow(kiln.ones(n))
    eager = [line for line in _lines(capsys.readouterr().err) if "runs eagerly" in line]
    assert len(eager) == 1
    # NOTE: one guard, the one that failed on this call (shape (2,) -> (3,)), not also the
    # one the previous recompile reported
    assert re.fullmatch(r"kiln: @grow runs eagerly \(after 2 traces\): recompile limit \(2\) "
                        r"reached; the tensor .* guard failed: argument 0 \(x\): shape "
                        r"\(2,\) -> \(3,\) \[\d+\.\d ms\]", eager[0]), eager[0]
    assert eager[0].count("guard failed") == 1


def test_level_1_prints_each_graph_compiled_in_replay_mode(level, capsys, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", "off")

    @kiln.jit
    def split(x):
        y = x * 2.0
        return y + int(y.sum().item() > 0)

    level(1)
    split(kiln.ones(4))
    lines = _lines(capsys.readouterr().err)
    assert lines[0].startswith("kiln: @split runs in replay mode (first call)")
    for i, line in enumerate(lines[1:], 1):
        assert re.fullmatch(rf"kiln: compile @split graph {i} #1 \(first time reached\): "
                            r"\d+ kernels, .* in \d+\.\d ms", line), line
    assert len(lines) == 3


def test_level_3_prints_every_pass_and_the_planned_schedule(level, capsys, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", "off")     # NOTE: a cached plan runs no passes
    level(3)
    kiln.jit(lambda x: kiln.tanh(x) * 0.375)(kiln.ones(6))
    err = capsys.readouterr().err
    for stage in ("input", "functionalize", "canonicalize", "fusion"):
        assert f"# after {stage} (" in err
    assert "kiln: schedule of @<lambda>, memory planned:\nschedule @<lambda>(" in err


def test_level_4_prints_each_kernels_code(level, capsys, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", "off")
    level(4)
    kiln.jit(lambda x: kiln.sigmoid(x) * 0.625)(kiln.ones(6))
    err = capsys.readouterr().err
    for what, sample in (("MLIR", "func.func"), ("LLVM IR", "define void"),
                         ("assembly", ".globl")):
        header = re.search(rf"kiln: kernel (\S+) of @<lambda>: {what}\n", err)
        assert header, what
        assert sample in err[header.end():]


@pytest.mark.parametrize("text, level_", [(None, 0), ("", 0), (" 3 ", 3), ("4", 4)])
def test_the_level_is_read_from_the_environment(text, level_):
    assert kiln.debug._parse(text) == level_


@pytest.mark.parametrize("text, level_", [("5", 4), ("99", 4)])
def test_a_level_above_4_acts_as_4(text, level_):
    assert kiln.debug._parse(text) == level_


@pytest.mark.parametrize("text", ["-1", "two", "1.5", "2.0"])
def test_an_unreadable_level_warns_and_is_off(text):
    with pytest.warns(RuntimeWarning, match=f"KILN_DEBUG must be an integer from 0 to 4, got "
                                            f"'{re.escape(text)}'; debug output is off"):
        assert kiln.debug._parse(text) == 0
    with pytest.raises(ValueError, match="debug level must be an integer from 0 to 4"):
        kiln.debug.set_level(7)


def test_an_unreadable_level_does_not_stop_import_kiln():
    env = dict(os.environ, KILN_DEBUG="abc")
    done = subprocess.run([sys.executable, "-c", "import kiln, kiln.debug; "
                           "print(kiln.debug.level())"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (0, "0\n"), done.stderr
    assert done.stderr.count("KILN_DEBUG must be an integer") == 1


BUSY_PROGRAM = """
import kiln
f = kiln.jit(lambda x: x * 2.0 + 1.0)
x = kiln.ones(64)
for _ in range(2000):
    x = f(x) * 0.5          # NOTE: a jitted launch and an eager op, each printing a line
print("done", float(x.sum()))
"""


def test_a_closed_stderr_pipe_never_breaks_the_program(tmp_path):
    """`KILN_DEBUG=2 python train.py 2>&1 | head -1`: once the reader is gone, debug printing
    stops; the program runs on and exits normally."""
    script = tmp_path / "busy.py"
    script.write_text(BUSY_PROGRAM)
    env = dict(os.environ, KILN_DEBUG="2", KILN_PEAK_GBPS="20", KILN_PEAK_GFLOPS="100")
    proc = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stderr.readline()
    proc.stderr.close()             # NOTE: as `head -1` does after its line
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert out == "done 64064.0\n"


def test_bad_peaks_are_refused(monkeypatch):
    monkeypatch.setattr(floors, "_PEAKS", {})
    monkeypatch.setenv("KILN_PEAK_GBPS", "fast")
    with pytest.raises(ValueError, match="KILN_PEAK_GBPS must be a positive number, got 'fast'"):
        floors.peaks(None)


def test_digits_classifier_at_level_2_prints_a_line_per_launch():
    """The issue's acceptance: `KILN_DEBUG=2 python examples/digits_classifier.py`."""
    env = dict(os.environ, KILN_DEBUG="2", KILN_PEAK_GBPS="20", KILN_PEAK_GFLOPS="100")
    script = ("import sys; sys.argv = ['digits_classifier.py', '--epochs', '1']; "
              "import runpy; runpy.run_path('examples/digits_classifier.py', "
              "run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = _lines(done.stderr)
    assert lines[0].startswith("kiln: peaks of cpu: 20.0 GB/s, 100.0 GFLOP/s")
    steps = [line for line in lines[1:] if not line.startswith(("kiln: compile",
                                                                "kiln: recompile"))]
    assert len(steps) > 1000
    bad = [line for line in steps if not LINE.fullmatch(line)]
    assert not bad, bad[:5]
    names = {LINE.fullmatch(line)["name"] for line in steps}
    assert "matmul" in names or any(n.endswith("/matmul") for n in names)
    assert "test accuracy" in done.stdout
