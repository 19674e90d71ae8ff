"""The `kiln` command: argument parsing, module loading, stage selection, and end to end in a
subprocess (`python -m kiln ir examples/demo.py:step ...`)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from kiln import cli

ROOT = Path(__file__).resolve().parents[2]
FAKE_STAGES = [("traced", "graph @f(%x: f32[4]) {\n  return %x\n}\n"),
               ("canonicalize", "canon text\n"), ("asm", "kernel 0\nkernel 1\n")]


@pytest.mark.parametrize("spec, dtype, shape", [
    ("f32[4,8]", "f32", (4, 8)),
    ("i64[3]", "i64", (3,)),
    ("bool[2,2]", "bool", (2, 2)),
    ("f64[1, 2, 3]", "f64", (1, 2, 3)),
    ("i32[0]", "i32", (0,)),
    ("f32[]", "f32", ()),
])
def test_tensor_specs(spec, dtype, shape):
    got = cli.parse_arg_spec(spec)
    assert got == cli.TensorSpec(dtype, shape)
    assert str(got) == f"{dtype}[{','.join(map(str, shape))}]"


@pytest.mark.parametrize("spec, value", [
    ("2.0", 2.0), ("3", 3), ("-1e-3", -1e-3), ("+7", 7), ("True", True), ("False", False)])
def test_static_number_specs(spec, value):
    got = cli.parse_arg_spec(spec)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("spec, why", [
    ("f16[4]", "unknown dtype 'f16'"),
    ("f32[4", "expected a tensor type"),
    ("f32[-1]", "non-negative integers"),
    ("f32[4,,8]", "non-negative integers"),
    ("f32[a]", "non-negative integers"),
    ("x", "expected a tensor type"),
    ("", "expected a tensor type"),
])
def test_bad_specs_name_the_spec_and_the_form(spec, why):
    with pytest.raises(cli.SpecError) as e:
        cli.parse_arg_spec(spec)
    msg = str(e.value)
    assert repr(spec) in msg and why in msg and "f32[4,8]" in msg


def test_bad_spec_on_the_command_line_exits_2(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["ir", "examples/demo.py:step", "--arg", "f32[4,x]"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "'f32[4,x]'" in err and "f32[4,8]" in err


@pytest.mark.parametrize("target, path, name", [
    ("examples/demo.py:step", Path("examples/demo.py"), "step"),
    ("C:/x/m.py:f", Path("C:/x/m.py"), "f"),
])
def test_parse_target(target, path, name):
    assert cli.parse_target(target) == (path, name)


@pytest.mark.parametrize("target", ["demo.py", "demo.py:", ":step", "demo.py:not-a-name"])
def test_bad_target(target):
    with pytest.raises(cli.SpecError, match="FILE.py:FUNCTION"):
        cli.parse_target(target)


_MODULE = '''
import functools
RAN_AS = __name__
def plain(x):
    return x
def _jit(fn):
    @functools.wraps(fn)   # sets __wrapped__, as a jit wrapper would
    def wrapper(*a):
        raise AssertionError("the CLI must compile the plain function, not call the wrapper")
    return wrapper
@_jit
def jitted(x):
    return x + 1
class HasFn:
    def __init__(self, fn):
        self.fn = fn
    def __call__(self, *a):
        raise AssertionError("unwrapped via .fn")
held = HasFn(plain)
NOT_A_FUNCTION = 3
if __name__ == "__main__":
    raise SystemExit("the CLI must not run the script part")
'''


@pytest.fixture
def user_module(tmp_path):
    path = tmp_path / "user_mod.py"
    path.write_text(_MODULE)
    return path


def test_load_function_imports_not_as_main(user_module):
    fn = cli.load_function(user_module, "plain")
    assert fn(5) == 5
    assert fn.__globals__["RAN_AS"] != "__main__"


def test_unwrap_jitted_and_fn_holder(user_module):
    assert cli.unwrap(cli.load_function(user_module, "jitted"))(1) == 2
    held = cli.load_function(user_module, "held")
    assert cli.unwrap(held) is held     # NOTE: an object with a .fn is the target itself
    plain = cli.load_function(user_module, "plain")
    assert cli.unwrap(plain) is plain


def test_load_function_errors(user_module, tmp_path):
    with pytest.raises(cli.SpecError, match="no attribute 'missing'.*jitted, plain"):
        cli.load_function(user_module, "missing")
    with pytest.raises(cli.SpecError, match="int, not a function"):
        cli.load_function(user_module, "NOT_A_FUNCTION")
    with pytest.raises(cli.SpecError, match="no such file"):
        cli.load_function(tmp_path / "nope.py", "f")


def test_format_stage_truncates_with_hint():
    text = "\n".join(f"line {i}" for i in range(10))
    out = cli.format_stage("llvm", text, max_lines=3, hint="see all: kiln ir ...")
    assert out.split("\n") == ["=== stage: llvm ===", "line 0", "line 1", "line 2",
                               "... (7 more lines; see all: kiln ir ...)"]
    assert cli.format_stage("llvm", text).count("\n") == 10


def _fake_listing():
    from kiln.cli_stages import KernelRef, Listing, Stage
    stages = [Stage(name, text, kernels={"k0": "kernel 0", "k1": "kernel 1"}
                    if name == "asm" else None) for name, text in FAKE_STAGES]
    return Listing(stages, [KernelRef(0, "forward", "k0"), KernelRef(1, "forward", "k1")])


@pytest.fixture
def fake_compiler(monkeypatch):
    """Stands in for the compiler and the random inputs, to test the command's plumbing."""
    from kiln import cli_ir
    seen = {}

    def fake_collect(fn, args, device="cpu"):
        seen["fn"], seen["args"], seen["device"] = fn, args, device
        return _fake_listing()

    monkeypatch.setattr(cli_ir, "collect_listing", fake_collect)
    monkeypatch.setattr(cli, "make_inputs", lambda specs, seed: list(specs))
    return seen


def test_ir_prints_every_stage_with_headers(fake_compiler, user_module, capsys):
    assert cli.main(["ir", f"{user_module}:jitted", "--arg", "f32[4]"]) == 0
    out = capsys.readouterr().out
    headers = re.findall(r"^=== stage: (\w+) ===$", out, re.M)
    assert headers == ["traced", "canonicalize", "asm"]
    assert fake_compiler["fn"](1) == 2   # the plain function under the wrapper
    assert fake_compiler["args"] == [cli.TensorSpec("f32", (4,))]


def test_ir_one_stage_and_list(fake_compiler, user_module, capsys):
    assert cli.main(["ir", f"{user_module}:plain", "--arg", "2.0", "--stage", "asm"]) == 0
    assert capsys.readouterr().out == "kernel 0\nkernel 1\n"
    assert cli.main(["ir", f"{user_module}:plain", "--arg", "2.0", "--list-stages"]) == 0
    assert capsys.readouterr().out == "traced\ncanonicalize\nasm\n"


def test_ir_unknown_stage_lists_available(fake_compiler, user_module, capsys):
    assert cli.main(["ir", f"{user_module}:plain", "--arg", "1", "--stage", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown stage 'nope'" in err and "traced, canonicalize, asm" in err


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "kiln ir examples/demo.py:step" in capsys.readouterr().out


def test_delegated_command_gets_its_own_arguments(tmp_path, monkeypatch, capsys):
    (tmp_path / "kiln_fake_cmd.py").write_text(
        "SEEN = []\ndef main(argv):\n    SEEN.append(argv)\n    return 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.DELEGATED, "fake", ("kiln_fake_cmd", "a command of its own"))
    assert cli.main(["fake", "--help", "x.py:f", "--arg", "f32[2]"]) == 3
    import kiln_fake_cmd
    assert kiln_fake_cmd.SEEN == [["--help", "x.py:f", "--arg", "f32[2]"]]
    assert cli.main([]) == 2
    assert re.search(r"^\s+fake\s+a command of its own$", capsys.readouterr().out, re.M)


def run_kiln(*argv, timeout=300):
    return subprocess.run([sys.executable, "-m", "kiln", *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_python_m_kiln_help():
    for argv in (["--help"], ["ir", "--help"]):
        r = run_kiln(*argv, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "kiln ir examples/demo.py:step --arg f32[1024]" in r.stdout


def _stage_texts(out: str) -> dict[str, str]:
    parts = re.split(r"^=== stage: (\S+) ===$", out, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


# NOTE: the tests below need the whole pipeline (kiln.jit, compile_stages, passes, codegen).
def test_ir_demo_step_end_to_end():
    r = run_kiln("ir", "examples/demo.py:step", "--arg", "f32[1024]")
    assert r.returncode == 0, r.stderr
    stages = _stage_texts(r.stdout)
    names = list(stages)
    for name in ("traced", "canonicalize", "fusion", "schedule", "memory", "mlir", "llvm",
                 "asm"):
        assert name in names, f"no stage {name!r} in {names}"
    assert names[0] == "traced" and names[-5:] == ["schedule", "memory", "mlir", "llvm", "asm"]
    assert "f32[1024]" in stages["traced"]
    assert _kernel_lines(stages["traced"]) == []
    # NOTE: the graph after the last pass is what runs: the whole expression, one kernel.
    assert len(_kernel_lines(stages["fusion"])) == 1, stages["fusion"]
    assert stages["schedule"].count("launch @fused_0") == 1
    assert "arena bytes=" in stages["memory"]
    assert "func.func" in stages["mlir"] and "define" in stages["llvm"]


def _kernel_lines(ir_text: str) -> list[str]:
    return re.findall(r"^.*=\s*kernel\b.*$", ir_text, flags=re.M)


def test_ir_demo_step_one_stage_and_unknown_stage():
    r = run_kiln("ir", "examples/demo.py:step", "--arg", "f32[1024]", "--stage", "mlir")
    assert r.returncode == 0, r.stderr
    assert "=== stage:" not in r.stdout and "func.func" in r.stdout
    r = run_kiln("ir", "examples/demo.py:step", "--arg", "f32[1024]", "--stage", "nope")
    assert r.returncode == 2
    assert "unknown stage 'nope'" in r.stderr and "traced, " in r.stderr


def test_explain_command_prints_the_report():
    proc = subprocess.run([sys.executable, "-m", "kiln", "explain", "examples/demo.py:step",
                           "--arg", "f32[64]"], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr
    assert "1 compiled kernel(s)" in proc.stdout and "tensor argument 0: f32[64]" in proc.stdout


# ---- kiln cache info | clear ---------------------------------------------------------------
@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """KILN_CACHE_DIR in tmp_path (never the user's cache), with two entries in it."""
    from kiln.runtime.disk_cache import DiskCache

    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "kc"))
    monkeypatch.delenv("KILN_CACHE_MAX_BYTES", raising=False)
    cache = DiskCache()
    assert cache.put("key one", b"x" * 2000) and cache.put("key two", b"y" * 100)
    return tmp_path / "kc"


def test_cache_info_and_clear(cache_dir, capsys):
    assert cli.main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    total = sum(p.stat().st_size for p in (cache_dir / "v1").iterdir())
    assert f"path:    {cache_dir / 'v1'}\n" in out and "entries: 2\n" in out
    assert f"({total} bytes); at most 1.0 GiB" in out and "status:  enabled" in out
    assert cli.main(["cache", "clear"]) == 0
    assert capsys.readouterr().out == (f"removed 2 entries, 2.2 KiB ({total} bytes), "
                                       f"from {cache_dir / 'v1'}\n")
    assert list((cache_dir / "v1").iterdir()) == []
    assert cli.main(["cache", "info"]) == 0
    assert "entries: 0\n" in capsys.readouterr().out


def test_cache_off(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("KILN_CACHE_DIR", "off")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["cache", "info"]) == 0
    assert capsys.readouterr().out.startswith("disk cache: off")
    assert cli.main(["cache", "clear"]) == 0
    assert "nothing to clear" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_cache_in_an_unusable_folder_exits_1_with_a_warning(tmp_path, monkeypatch, capsys):
    (tmp_path / "afile").write_text("a file where the cache folder should be")
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "afile" / "kc"))
    assert cli.main(["cache", "info"]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("kiln cache: warning: kiln disk cache disabled for this "
                                   "process: cannot list") and "Not a directory" in captured.err
    assert "status:  disabled" in captured.out
    # the same process: the cache stays disabled, and says so once
    assert cli.main(["cache", "clear"]) == 1
    assert capsys.readouterr().err == ""


def test_cache_without_an_action_prints_its_help(capsys):
    assert cli.main(["cache"]) == 2
    out = capsys.readouterr().out
    assert "KILN_CACHE_DIR" in out and "kiln cache info" in out


def test_python_m_kiln_cache(cache_dir):
    import os

    env = dict(os.environ, KILN_CACHE_DIR=str(cache_dir))
    r = subprocess.run([sys.executable, "-m", "kiln", "cache", "info"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"path:    {cache_dir / 'v1'}" in r.stdout and "entries: 2" in r.stdout
    r = subprocess.run([sys.executable, "-m", "kiln", "cache", "--help"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "kiln cache clear" in r.stdout and "KILN_CACHE_MAX_BYTES" \
        in r.stdout
