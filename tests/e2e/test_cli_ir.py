"""`kiln ir` on real programs: the backward stages, `--grad`, `--kernel N`, readable MLIR float
constants, `--json`, `--version`, and every error as one line (graph breaks, wrong --arg,
a function that raises, a file that does not import, ...), including a closed pipe."""
from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import kiln
from kiln import cli
from kiln.cli_stages import annotate_float_constants, asm_functions, float_from_bits

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "examples" / "demo.py") + ":step"
KERNEL_STAGES = ["fusion", "schedule", "memory", "mlir", "llvm", "asm"]


def kiln_ir(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main(["ir", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def stage_texts(out: str) -> dict[str, str]:
    parts = re.split(r"^=== stage: (\S+) ===$", out, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


# ---- the backward stages --------------------------------------------------------------------
def test_demo_backward_stage_is_the_gradient_graph(capsys):
    from kiln.ir.parser import parse
    rc, out, err = kiln_ir(capsys, DEMO, "--arg", "f32[64]", "--stage", "backward")
    assert rc == 0, err
    assert out.startswith("# backward of @step: input %")
    assert "# returns the gradients of %x\n" in out
    graph = parse(out)          # NOTE: the comment lines are IR comments: it parses back
    assert graph.name == "step_vjp"
    assert [str(v.type) for v in graph.outputs] == ["f32[64]"]
    assert str(graph.inputs[0].type) == "f32[64]"     # the output's gradient comes in
    # d/dx [x*sigmoid(x)*0.5 + tanh(x)] uses 1 - sigmoid and 1 - tanh^2
    assert [n.op for n in graph.nodes].count("sub") == 2


def test_backward_stages_follow_the_forward_ones(capsys):
    rc, out, _ = kiln_ir(capsys, DEMO, "--arg", "f32[64]", "--grad", "0", "--list-stages")
    assert rc == 0
    names = out.split()
    forward = ["traced", "functionalize", "canonicalize", "fusion", "schedule", "memory",
               "mlir", "llvm", "asm"]
    assert names == forward + ["backward"] + [f"backward.{n}" for n in forward[1:]]
    # NOTE: without --grad nothing requires grad: the forward stages only, as before
    rc, out, _ = kiln_ir(capsys, DEMO, "--arg", "f32[64]", "--list-stages")
    assert out.split() == forward


def test_grad_chooses_the_arguments(tmp_path, capsys):
    path = tmp_path / "two.py"
    path.write_text("def f(x, w):\n    return (x * w).sum()\n")
    for grad, wrt in (("0", "%x"), ("1", "%w"), ("0,1", "%x, %w")):
        rc, out, err = kiln_ir(capsys, f"{path}:f", "--arg", "f32[3]", "--arg", "f32[3]",
                               "--grad", grad, "--stage", "backward")
        assert rc == 0, err
        assert f"# returns the gradients of {wrt}\n" in out
        # NOTE: a scalar output's gradient is a 0-d input (1.0 for loss.backward())
        assert re.search(r"^graph @f_vjp\(%\w+: f32\[\],", out, re.M), out


def test_parameters_give_a_backward_without_grad(tmp_path, capsys):
    path = tmp_path / "mlp.py"
    path.write_text(textwrap.dedent("""\
        import kiln.nn as nn
        model = nn.Linear(4, 2)
        def loss(x):
            return model(x).sum()
        """))
    rc, out, err = kiln_ir(capsys, f"{path}:loss", "--arg", "f32[3,4]", "--list-stages")
    assert rc == 0, err and "backward.fusion" in out.split()
    rc, out, err = kiln_ir(capsys, f"{path}:loss", "--arg", "f32[3,4]", "--grad", "none",
                           "--stage", "backward")
    assert rc == 0, err
    gradients = re.search(r"# returns the gradients of (.*)", out)[1].split(", ")
    assert len(gradients) == 2 and "%x" not in gradients     # weight and bias, not x


# ---- --kernel N -----------------------------------------------------------------------------
def test_kernel_0_at_every_stage_that_holds_kernels(capsys):
    rc, out, err = kiln_ir(capsys, DEMO, "--arg", "f32[64]", "--kernel", "0")
    assert rc == 0, err
    assert out.startswith("# kernel 0 of 1: fused_0 (forward graph)\n")
    stages = stage_texts(out)
    assert list(stages) == KERNEL_STAGES
    assert stages["fusion"].strip().startswith("%0: f32[64] = kernel %x")
    assert stages["fusion"].rstrip().endswith("}") and "return %0" not in stages["fusion"]
    for name in ("schedule", "memory"):
        assert stages[name].strip().startswith("launch @fused_0 ")
        assert "buffer %" not in stages[name]
    assert stages["mlir"].count("func.func @") == 1
    assert stages["llvm"].count("define void @") == 1
    # NOTE: the kernel's function alone, with its constant pool, not the segment's entry
    assert "kiln_entry" not in stages["asm"]
    assert re.search(r"^\s*\.size\s+kiln_\w*fused_0", stages["asm"], re.M)


def test_one_kernel_at_one_stage_prints_bare(capsys):
    rc, whole, _ = kiln_ir(capsys, DEMO, "--arg", "f32[64]", "--stage", "mlir")
    rc, one, err = kiln_ir(capsys, DEMO, "--arg", "f32[64]", "--kernel", "0", "--stage", "mlir")
    assert rc == 0, err
    assert one.startswith("// kernel fused_0\nmodule {") and one in whole


def test_one_kernels_llvm_ir_is_a_module_llvm_reads(capsys):
    from llvmlite import binding
    rc, out, err = kiln_ir(capsys, DEMO, "--arg", "f32[64]", "--kernel", "0", "--stage", "llvm")
    assert rc == 0, err
    assert out.startswith("; kernel fused_0\n")
    module = binding.parse_assembly(out)
    [defined] = [f.name for f in module.functions if not f.is_declaration]
    assert defined.endswith("fused_0")


def test_backward_kernels_come_after_the_forward_ones(capsys):
    rc, out, err = kiln_ir(capsys, DEMO, "--arg", "f32[64]", "--grad", "0", "--list-kernels")
    assert rc == 0, err
    assert out.split("\n")[:2] == ["0\tforward\tfused_0", "1\tbackward\tfused_0"]
    rc, out, err = kiln_ir(capsys, DEMO, "--arg", "f32[64]", "--grad", "0", "--kernel", "1")
    assert rc == 0, err
    assert list(stage_texts(out)) == [f"backward.{s}" for s in KERNEL_STAGES]


@pytest.mark.parametrize("argv, message", [
    (["--kernel", "3"], "--kernel 3 is out of range: there are 1 kernels (0: fused_0); "
                        "--grad adds the backward graph's kernels"),
    (["--kernel", "-1"], "--kernel -1 is out of range"),
    (["--kernel", "0", "--stage", "traced"],
     "kernel 0 (fused_0) is not at stage 'traced'; it is at: fusion, schedule, memory, mlir, "
     "llvm, asm"),
])
def test_kernel_errors(capsys, argv, message):
    rc, out, err = kiln_ir(capsys, DEMO, "--arg", "f32[64]", *argv)
    assert rc == 2 and out == ""
    assert err.startswith("kiln ir: error: " + message) and err.count("\n") == 1


# ---- readable float constants ---------------------------------------------------------------
def test_mlir_float_constants_carry_their_value(capsys):
    rc, out, err = kiln_ir(capsys, DEMO, "--arg", "f32[64]", "--stage", "mlir")
    assert rc == 0, err
    constants = re.findall(r"arith\.constant 0x([0-9A-F]{8}) : f32(.*)$", out, re.M)
    assert len(constants) > 5
    for bits, comment in constants:
        value = re.fullmatch(r"  // (\S+)", comment)[1]
        # NOTE: the decimal reads back as exactly these bits
        assert struct.pack(">f", float(value)).hex().upper() == bits
    assert "0x3F000000 : f32  // 0.5" in out      # the 0.5 of the demo's expression


@pytest.mark.parametrize("bits, dtype, text", [
    ("3F800000", "f32", "1.0"), ("BF000000", "f32", "-0.5"), ("7F800000", "f32", "inf"),
    ("7FC00000", "f32", "nan"), ("00000001", "f32", "1e-45"),
    ("3FB999999999999A", "f64", "0.1"), ("FFF0000000000000", "f64", "-inf"),
])
def test_float_from_bits(bits, dtype, text):
    assert float_from_bits(bits, dtype) == text


def test_annotation_changes_no_compiled_code():
    from kiln.codegen.mlir_pipeline import mlir_to_llvm_ir
    from kiln.frontend.compile import compile_traced
    from kiln.frontend.jit import trace_function
    trace, _ = trace_function(lambda x: kiln.tanh(x) * 0.25 - 1.5, [kiln.ones(8)], {})
    mlir = compile_traced(trace.builder.graph)[2].kernels[0].mlir
    annotated = annotate_float_constants(mlir)
    assert "0x3E800000 : f32  // 0.25\n" in annotated and "0x3FC00000 : f32  // 1.5\n" in annotated
    assert mlir_to_llvm_ir(annotated) == mlir_to_llvm_ir(mlir)
    # NOTE: only a constant at the end of its line: nothing else in the text changes
    assert re.sub(r"  // \S+$", "", annotated, flags=re.M) == mlir


def test_docstring_examples():
    import doctest

    from kiln import cli_stages
    result = doctest.testmod(cli_stages)
    assert result.attempted >= 4 and result.failed == 0


def test_asm_functions_split_a_module_at_size_directives():
    asm = ("\t.text\n.LCPI0_0:\n\t.long 1\nf:\n\tret\n.Lfunc_end0:\n\t.size\tf, .Lfunc_end0-f\n"
           "g:\n\tret\n\t.size\tg, .Lfunc_end1-g\n")
    parts = asm_functions(asm)
    assert list(parts) == ["f", "g"]
    assert parts["f"].startswith("\t.text\n.LCPI0_0:") and parts["g"].startswith("g:")


# ---- --json ---------------------------------------------------------------------------------
def test_json_holds_every_stage_and_the_graph_as_data(capsys):
    rc, out, err = kiln_ir(capsys, DEMO, "--arg", "f32[64]", "--grad", "0", "--json")
    assert rc == 0, err
    data = json.loads(out)
    assert data["function"] == "step" and data["args"] == ["f32[64]"] and data["grad"] == [0]
    names = [s["name"] for s in data["stages"]]
    assert names[0] == "traced" and "backward" in names and names[-1] == "backward.asm"
    assert [k["graph"] for k in data["kernels"]] == ["forward", "backward"]
    for stage in data["stages"]:
        if "ir" not in stage:
            continue
        ir = stage["ir"]
        # NOTE: one node per `= op` line of the text, in order (kernel bodies nested)
        text_ops = re.findall(r"^\s*%\S+: [^=]+= (\w+)", stage["text"], re.M)
        assert _ops(ir) == text_ops, stage["name"]
        for node in ir["nodes"]:
            assert {"op", "outputs", "inputs", "loc"} <= set(node)
            assert all(set(o) == {"dtype", "shape"} for o in node["outputs"])
    traced = data["stages"][0]["ir"]
    assert traced["inputs"][0] == {"name": "x", "dtype": "f32", "shape": [64]}
    assert traced["nodes"][0]["loc"]["line"] == 29 and traced["nodes"][0]["loc"]["file"] \
        .endswith("demo.py")


def _ops(ir: dict) -> list:
    out = []
    for node in ir["nodes"]:
        out.append(node["op"])
        if "body" in node:
            out += _ops(node["body"])
    return out


def test_json_of_one_kernel(capsys):
    rc, out, err = kiln_ir(capsys, DEMO, "--arg", "f32[64]", "--kernel", "0", "--json")
    assert rc == 0, err
    data = json.loads(out)
    assert data["kernel"] == {"index": 0, "graph": "forward", "name": "fused_0"}
    assert [s["name"] for s in data["stages"]] == KERNEL_STAGES
    fusion = data["stages"][0]
    assert [n["kernel"] for n in fusion["ir"]["nodes"]] == ["fused_0"]


# ---- --version and --device cuda --------------------------------------------------------------
def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"kiln {kiln.__version__}\n"


def test_cuda_backward_needs_no_gpu(capsys):
    rc, out, err = kiln_ir(capsys, DEMO, "--arg", "f32[64]", "--device", "cuda", "--grad", "0",
                           "--kernel", "1", "--stage", "backward.ptx")
    assert rc == 0, err
    assert out.startswith("// kernel fused_0: .entry ") and ".visible .entry" in out


# ---- every error is one line ------------------------------------------------------------------
PROGRAM = '''\
import numpy as np
import kiln

def breaks(x):
    if x.sum().item() > 0:
        return x
    return -x

def raises(x):
    raise ValueError("the user's own bug")

def numpy_call(x):
    return np.sin(x)

def shapes(x, w):
    return x @ w

def nothing(x):
    x * 2

def on_cuda(x):
    return x + kiln.ones(4, device="cuda")

def loss(x):
    return (x * x).sum()
'''


@pytest.fixture
def program(tmp_path):
    path = tmp_path / "prog.py"
    path.write_text(PROGRAM)
    (tmp_path / "broken.py").write_text("import kiln\nraise RuntimeError('at import')\n")
    (tmp_path / "syntax.py").write_text("def f(x:\n    return x\n")
    (tmp_path / "notes.txt").write_text("hello\n")
    return tmp_path


@pytest.mark.parametrize("argv, rc, message", [
    (["prog.py:breaks", "--arg", "f32[4]"], 1,
     "graph break: not supported yet: item() on a traced tensor inside @kiln.jit (a graph "
     "break) at prog.py:5 (`if x.sum().item() > 0:`); `kiln ir` compiles one graph, "
     "`kiln explain` shows the graphs around a break"),
    (["prog.py:raises", "--arg", "f32[4]"], 1,
     "ValueError: the user's own bug (raised at prog.py:10: raise ValueError(\"the user's own "
     "bug\"))"),
    (["prog.py:numpy_call", "--arg", "f32[4]"], 1,
     "graph break: not supported yet: conversion to NumPy on a traced tensor"),
    (["prog.py:shapes", "--arg", "f32[2,3]", "--arg", "f32[4,5]"], 1,
     "matmul: shapes [2, 3] and [4, 5] cannot be multiplied (3 != 4) at prog.py:16"),
    (["prog.py:nothing", "--arg", "f32[4]"], 1,
     "nothing to compile: nothing() returned no tensor and computed none"),
    (["prog.py:on_cuda", "--arg", "f32[4]", "--device", "cuda"], 1,
     "graph break: not supported yet: a tensor made on cuda in a function compiled for cpu"),
    (["prog.py:shapes", "--arg", "f32[2,3]"], 2,
     "shapes(x, w) cannot take --arg f32[2,3]: missing a required argument: 'w'; give one "
     "--arg per positional parameter"),
    (["prog.py:loss", "--arg", "f32[2]", "--arg", "f32[2]"], 2,
     "loss(x) cannot take --arg f32[2] --arg f32[2]: too many positional arguments"),
    (["prog.py:loss"], 2, "loss(x) cannot take no --arg: missing a required argument: 'x'"),
    (["prog.py:missing", "--arg", "f32[2]"], 2,
     "has no attribute 'missing'; callables defined there: breaks, loss, nothing, numpy_call, "
     "on_cuda, raises, shapes"),
    (["nope.py:f"], 2, "no such file: nope.py"),
    (["notes.txt:f"], 2, "notes.txt is not a Python file"),
    (["broken.py:f"], 1, "cannot import broken.py: RuntimeError: at import (raised at "
                         "broken.py:2: raise RuntimeError('at import'))"),
    (["syntax.py:f"], 1, "cannot import syntax.py: SyntaxError: '(' was never closed at "
                         "syntax.py:1"),
    (["prog.py:loss", "--arg", "f32[2]", "--stage", "nope"], 2,
     "unknown stage 'nope'; available stages: traced, functionalize, canonicalize, fusion"),
    (["prog.py:loss", "--arg", "f32[2]", "--stage", "backward.nope"], 2,
     "unknown stage 'backward.nope'; available stages: traced, "),
    (["prog.py:loss", "--arg", "f32[2]", "--grad", "1"], 2,
     "--grad 1: there are 1 --arg (positions 0 to 0)"),
    (["prog.py:loss", "--arg", "i64[2]", "--grad", "0"], 2,
     "--grad 0: argument 0 is i64[2]; only floating-point tensors (f32, f64) have gradients"),
    (["prog.py:loss", "--arg", "i64[2]", "--stage", "backward"], 1,
     "no backward graph: no output of loss requires grad (arguments requiring grad: none;"),
])
def test_errors_are_one_line(program, monkeypatch, capsys, argv, rc, message):
    monkeypatch.chdir(program)
    got, out, err = kiln_ir(capsys, *argv)
    assert (got, out) == (rc, "")
    assert err.startswith("kiln ir: error: ") and err.count("\n") == 1, err
    assert message in err, err


def test_bad_grad_spelling_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["ir", DEMO, "--arg", "f32[4]", "--grad", "x"])
    assert e.value.code == 2
    assert "bad --grad 'x': expected argument positions" in capsys.readouterr().err


def test_traceback_flag_adds_the_traceback(program, monkeypatch, capsys):
    monkeypatch.chdir(program)
    rc, _, err = kiln_ir(capsys, "prog.py:raises", "--arg", "f32[4]", "--traceback")
    assert rc == 1 and "Traceback (most recent call last)" in err
    assert err.rstrip().split("\n")[-1].startswith("kiln ir: error: ValueError")


def test_a_user_error_inside_a_kiln_call_names_the_users_line(tmp_path, capsys):
    (tmp_path / "m.py").write_text("import kiln\ndef f(x):\n    return kiln.tanh(x, 3, 4)\n")
    rc, _, err = kiln_ir(capsys, f"{tmp_path / 'm.py'}:f", "--arg", "f32[2]")
    assert rc == 1 and err.count("\n") == 1
    assert "TypeError" in err and "(raised at m.py:3: return kiln.tanh(x, 3, 4))" in err


def test_closed_pipe_exits_quietly():
    """`kiln ir ... | head`: the reader goes away; no BrokenPipeError, no traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)          # NOTE: closed before anything is written: every write fails
    try:
        proc = subprocess.run([sys.executable, "-m", "kiln", "ir", DEMO, "--arg", "f32[64]"],
                              cwd=ROOT, stdout=write_end, stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(write_end)
    assert (proc.returncode, proc.stderr) == (141, b"")
