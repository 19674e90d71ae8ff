"""Programs written for PyTorch run on Kiln with only the imports changed and print PyTorch's
numbers (issues 3 and 9).

Each file in programs/ is a plain PyTorch program that prints the numbers that matter (losses
at a few steps, outputs, a checksum of the parameters after training). The test rewrites its
import lines to Kiln's (`import torch` -> `import kiln as torch`, `torch.nn` -> `kiln.nn`, ...),
runs both versions in fresh processes and compares what they print, line by line: the text
must be the same and every number must agree within RTOL (plus ATOL for values near 0).
"""
import importlib.util
import math
import os
import re
import subprocess
import sys

import pytest

HERE = os.path.dirname(__file__)
PROGRAMS = os.path.join(HERE, "programs")
ROOT = os.path.dirname(os.path.dirname(HERE))
NAMES = sorted(name for name in os.listdir(PROGRAMS) if name.endswith(".py"))

RTOL = 1e-5
ATOL = 1e-7
NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?\b(?:nan|inf)\b")

# NOTE: programs that cannot give PyTorch's numbers yet, and why. Every other program starts
# from the same seed as PyTorch's run, without copying weights, and must match. strict=True
# turns a listed program into a failure as soon as it matches, so its entry is removed then.
NOT_YET: dict[str, str] = {}


class OutputMismatch(AssertionError):
    """The Kiln run printed something other than the PyTorch run."""


def to_kiln(source: str) -> str:
    """Change only the import lines."""
    lines = []
    for line in source.splitlines():
        if line == "import torch":
            line = "import kiln as torch"
        elif re.match(r"(import|from) torch[. ]", line):
            line = re.sub(r"\btorch\b", "kiln", line, count=1)
        lines.append(line)
    return "\n".join(lines) + "\n"


def run(source: str, workdir, name: str) -> str:
    """Run `source` as a script in its own process and directory; return what it printed."""
    workdir.mkdir()
    path = workdir / name
    path.write_text(source)
    # NOTE: one thread per process: the programs are tiny, and pytest -n 2 already keeps the
    # cores busy; PyTorch's thread pool would only oversubscribe them.
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                          timeout=600, env=env, cwd=str(workdir))
    assert proc.returncode == 0, f"{name} failed:\n{proc.stderr[-3000:]}"
    return proc.stdout


def split_numbers(line: str):
    """The line's text with each number replaced by '#', and the numbers as floats."""
    # NOTE: `torch.Size([2])` prints as `kiln.Size([2])`: the module's name is not a difference;
    # nor is the name of the autograd node (PyTorch's `ViewBackward0` for Linear on a vector).
    line = re.sub(r"grad_fn=<\w+>", "grad_fn=<...>", re.sub(r"\bkiln\b", "torch", line))
    numbers = [float(text) for text in NUMBER.findall(line)]
    return NUMBER.sub("#", line), numbers


def close(expected: float, actual: float) -> bool:
    if math.isnan(expected) or math.isnan(actual):
        return math.isnan(expected) and math.isnan(actual)
    if math.isinf(expected) or math.isinf(actual):
        return expected == actual
    return abs(actual - expected) <= ATOL + RTOL * abs(expected)


def compare_line(number: int, expected: str, actual: str):
    """None when the lines agree, else a message naming the line and the first difference."""
    expected_text, expected_numbers = split_numbers(expected)
    actual_text, actual_numbers = split_numbers(actual)
    where = f"line {number}:\n  PyTorch: {expected}\n  Kiln:    {actual}"
    if expected_text != actual_text or len(expected_numbers) != len(actual_numbers):
        return f"{where}\n  the text differs"
    for position, (want, got) in enumerate(zip(expected_numbers, actual_numbers)):
        if not close(want, got):
            return f"{where}\n  number {position + 1}: {got!r} vs PyTorch's {want!r}"
    return None


def compare_outputs(expected: str, actual: str) -> list:
    """Every difference between PyTorch's output and Kiln's, one message per line."""
    expected_lines = expected.splitlines()
    actual_lines = actual.splitlines()
    problems = []
    for number, (want, got) in enumerate(zip(expected_lines, actual_lines), start=1):
        problem = compare_line(number, want, got)
        if problem:
            problems.append(problem)
    if len(expected_lines) != len(actual_lines):
        problems.append(f"PyTorch printed {len(expected_lines)} lines, Kiln "
                        f"{len(actual_lines)}")
    return problems


def program_case(name: str):
    if name in NOT_YET:
        return pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=NOT_YET[name]))
    return name


def test_only_import_lines_change():
    for name in NAMES:
        src = open(os.path.join(PROGRAMS, name)).read()
        changed = [(a, b) for a, b in zip(src.splitlines(), to_kiln(src).splitlines()) if a != b]
        assert changed and all(a.startswith(("import", "from")) for a, _ in changed), name


def test_corpus_is_large_enough():
    assert len(NAMES) >= 15, NAMES


@pytest.mark.parametrize("name", [program_case(name) for name in NAMES])
def test_program_matches_pytorch(name, tmp_path):
    src = open(os.path.join(PROGRAMS, name)).read()
    kiln_out = run(to_kiln(src), tmp_path / "kiln", name)
    if importlib.util.find_spec("torch") is None:
        assert "RESULT False" not in kiln_out, kiln_out
        pytest.skip("PyTorch is not installed (CI installs torch==2.13.0): ran on Kiln only")
    torch_out = run(src, tmp_path / "torch", name)
    problems = compare_outputs(torch_out, kiln_out)
    if problems:
        raise OutputMismatch(f"{name} differs from PyTorch in {len(problems)} line(s):\n"
                             + "\n".join(problems[:5]))


@pytest.mark.parametrize("expected, actual, problem", [
    ("loss 0.5 at step 3", "loss 0.5000001 at step 3", None),
    ("loss 0.5", "loss 0.5001", "number 1"),
    ("torch.Size([2, 3])", "kiln.Size([2, 3])", None),
    ("tensor([1., 2.])", "tensor([1., 2.], grad_fn=<AddBackward0>)", "text differs"),
    ("tensor([1.], grad_fn=<ViewBackward0>)", "tensor([1.], grad_fn=<AddBackward0>)", None),
    ("grad 1e-12", "grad -3e-12", None),
    ("x nan inf", "x nan inf", None),
    ("x nan", "x 1.0", "number 1"),
])
def test_compare_line(expected, actual, problem):
    message = compare_line(7, expected, actual)
    if problem is None:
        assert message is None
    else:
        assert "line 7" in message and problem in message


def test_compare_outputs_names_each_differing_line_and_missing_lines():
    problems = compare_outputs("a 1\nb 2\nc 3\n", "a 1\nb 2.5\n")
    assert len(problems) == 2
    assert "line 2" in problems[0] and "2.5" in problems[0]
    assert "PyTorch printed 3 lines, Kiln 2" in problems[1]
