"""`kiln.compile_stages` (examples/demo.py, `make demo`) shows what `kiln ir` shows: both are
built by kiln/cli_stages.py (MLIR with `loc(...)` and float values as comments, each
assembly module once)."""
from __future__ import annotations

import kiln
from kiln.cli_stages import _ASM_COMMENT, collect


def _f(x):
    return (kiln.exp(x) * 0.5 + kiln.tanh(x).sum()).sum()


def test_compile_stages_are_kiln_irs_forward_stages():
    x = kiln.ones(8)
    stages = kiln.compile_stages(_f, [x])
    listing = collect(_f, [x])
    assert stages == [(s.name, s.text) for s in listing.stages]
    text = dict(stages)
    assert "loc(" in text["mlir"]
    assert "arith.constant 0x3F000000 : f32  // 0.5" in text["mlir"]
    names = [k.name for k in listing.kernels]
    assert len(names) == 2 and [ln for ln in text["mlir"].splitlines()
                                if ln.startswith("// kernel ")] == [f"// kernel {n}" for n in names]
    # NOTE: the kernels compiled together are one module, printed once (not once per kernel)
    assert [ln for ln in text["asm"].splitlines() if "kernel" in ln] == \
        [f"{_ASM_COMMENT} kernels {', '.join(names)} (one module)"]


def test_backward_stages_only_when_asked():
    x = kiln.ones(8).requires_grad_()
    forward = [name for name, _ in kiln.compile_stages(_f, [x])]
    both = [name for name, _ in kiln.compile_stages(_f, [x], backward=True)]
    assert not any(n.startswith("backward") for n in forward)
    assert both[:len(forward)] == forward and "backward" in both and "backward.fusion" in both
