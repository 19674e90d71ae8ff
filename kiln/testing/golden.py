"""`check_ir`: the IR of one compiler stage compared with a golden file (or FileCheck
patterns), the same text `kiln ir FILE.py:FUNCTION --arg ... --stage NAME` prints.

Source-line comments (`   # model.py:41`) are left out of the comparison unless
`locs=True`, so editing the file above a function does not break its golden IR.
`KILN_UPDATE_GOLDEN=1` writes the actual IR into golden files (not into pattern files).
"""
from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

from .filecheck import filecheck, has_checks

_LOC = re.compile(r"   # [^\n]*:\d+$", re.MULTILINE)


def check_ir(fn, *args, stage: str = "fusion", golden=None, checks: str | None = None,
             locs: bool = False, device: str = "cpu") -> str:
    """Compare the IR of `fn(*args)` at `stage` with the file `golden`, or match it against
    FileCheck patterns (`checks`, or a `golden` file that holds CHECK lines); return the
    stage's text. AssertionError on a mismatch, with a diff (or FileCheck's message).

    Stages are those `kiln ir --list-stages` names: traced, functionalize, canonicalize,
    fusion, schedule, memory, mlir, llvm, asm (ptx for device="cuda"), and `backward...`
    where the `kiln ir` of this build has them. A missing golden file fails, unless
    KILN_UPDATE_GOLDEN=1, which writes it.

    >>> import kiln
    >>> def f(x):
    ...     return kiln.exp(x) + 1
    >>> text = check_ir(f, kiln.ones(4), stage="traced", checks='''
    ...     CHECK: [[E:%[0-9]+]]: f32[4] = exp %x
    ...     CHECK: add [[E]]
    ...     CHECK-NOT: sub''')
    """
    if (golden is None) == (checks is None):
        raise ValueError("check_ir: give either golden=PATH or checks=PATTERNS")
    actual = stage_text(fn, args, stage, device)
    if not locs:
        actual = strip_locs(actual)
    what = f"stage {stage!r} of {getattr(fn, '__name__', 'the function')}"
    if checks is not None:
        _match(actual, checks, "<checks>", what)
        return actual
    path = Path(golden)
    text = path.read_text(encoding="utf-8") if path.is_file() else None
    if text is not None and has_checks(text):
        _match(actual, text, str(path), what)
    elif os.environ.get("KILN_UPDATE_GOLDEN") == "1":
        if text is None or _normal(text, locs) != actual:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(actual + "\n", encoding="utf-8")
    elif text is None:
        raise AssertionError(f"check_ir: golden file {path} does not exist; run with "
                             f"KILN_UPDATE_GOLDEN=1 to write it. The {what}:\n{actual}")
    elif _normal(text, locs) != actual:
        raise AssertionError(_diff_message(path, _normal(text, locs), actual, what, locs))
    return actual


def stage_text(fn, args, stage: str, device: str = "cpu") -> str:
    """The text `kiln ir ... --stage STAGE` prints for `fn(*args)` (no final newline)."""
    from kiln.cli import SpecError, select_stages, unwrap
    stages = _stages(unwrap(fn), list(args), device)
    try:
        chosen = select_stages(stages, stage)
    except SpecError as e:
        raise ValueError(f"check_ir: {e}") from None
    return "\n".join(text.rstrip("\n") for _, text in chosen)


def _stages(fn, args, device) -> list[tuple[str, str]]:
    """(name, text) of every stage, from the code `kiln ir` runs: kiln/cli_stages.py where
    this build has it (forward and backward stages), else kiln.frontend.jit.compile_stages."""
    try:
        from kiln.cli_stages import collect
    except ImportError:
        from kiln.frontend.jit import compile_stages
        return compile_stages(fn, args, device=device)
    return [(s.name, s.text) for s in collect(fn, args, device).stages]


def strip_locs(text: str) -> str:
    """`text` without its source-line comments (`   # model.py:41` at the end of a line).

    >>> strip_locs("%0: f32[4] = exp %x   # model.py:41")
    '%0: f32[4] = exp %x'
    """
    return _LOC.sub("", text)


def _normal(text: str, locs: bool) -> str:
    text = text.rstrip("\n")
    return text if locs else strip_locs(text)


def _match(actual: str, patterns: str, name: str, what: str) -> None:
    problem = filecheck(actual, patterns, name=name, input_name=what)
    if problem is not None:
        raise AssertionError(f"check_ir: {problem}\n\nthe {what}:\n{actual}")


def _diff_message(path: Path, expected: str, actual: str, what: str, locs: bool) -> str:
    diff = difflib.unified_diff(expected.splitlines(), actual.splitlines(),
                                f"golden {path}", f"actual {what}", lineterm="")
    ignored = "" if locs else " (source-line comments ignored)"
    return (f"check_ir: the {what} differs from the golden file {path}{ignored}:\n"
            + "\n".join(diff)
            + "\nrun with KILN_UPDATE_GOLDEN=1 to rewrite the file with the actual IR")
