"""FileCheck-style patterns (kiln/testing/filecheck.py) and `kiln filecheck`'s main()."""
import io
import os
import subprocess

import pytest

from kiln.testing import FileCheckError, filecheck
from kiln.testing.filecheck import main

IR = """\
graph @f(%x: f32[4]) {
  %0: f32[4] = exp %x
  %1: f32[4] = add %0, %x
  %2: f32[] = sum %1 {axes=[0], keepdim=false}
  return %2
}
"""


@pytest.mark.parametrize("patterns", [
    "CHECK: exp\nCHECK: sum",
    "CHECK: exp\nCHECK-NEXT: add\nCHECK-NEXT: sum",
    "CHECK: %0: f32[4] =\nCHECK-SAME: exp %x",
    "CHECK: [[A:%[0-9]+]]: f32[4] = exp\nCHECK: add [[A]], %x",
    "CHECK: exp\nCHECK-NOT: mul\nCHECK: sum\nCHECK-NOT: exp",
    "CHECK: {{%[0-9]}}:    f32[4]   =  exp",          # NOTE: spaces match any spaces
    "CHECK: return %2\nCHECK-NEXT: }",
    "; CHECK: graph @f\n// a comment\n# CHECK: return",
])
def test_matching_patterns(patterns):
    assert filecheck(IR, patterns) is None


@pytest.mark.parametrize("patterns, message", [
    ("CHECK: mul", "<patterns>:1: error: CHECK: expected string not found in input"),
    ("CHECK: exp\nCHECK-NEXT: sum", "<patterns>:2: error: CHECK-NEXT: is not on the line "
                                    "after the previous match"),
    ("CHECK: add\nCHECK: exp", "CHECK: expected string not found in input"),
    ("CHECK: exp\nCHECK-SAME: add", "CHECK-SAME: is not on the same line as the previous "
                                    "match"),
    ("CHECK: exp\nCHECK-SAME: mul", "CHECK-SAME: expected string not found in input"),
    ("CHECK: exp\nCHECK-NOT: add\nCHECK: sum", "<patterns>:2: error: CHECK-NOT: excluded "
                                               "string found in input\nCHECK-NOT: add\n"
                                               "<input>:3:   %1: f32[4] = add %0, %x"),
    ("CHECK: [[A:%[0-9]+]]: f32[4] = exp\nCHECK: sum [[A]]", "CHECK: expected string not"),
    ("CHECK: exp\nCHECK-EMPTY:", "the line after the previous match is not empty"),
])
def test_failing_patterns_name_their_line(patterns, message):
    problem = filecheck(IR, patterns)
    assert problem is not None and message in problem


def test_empty_lines_and_the_end_of_the_input():
    text = "a\n\nb\n"
    assert filecheck(text, "CHECK: a\nCHECK-EMPTY:\nCHECK-NEXT: b") is None
    assert "the line after the previous match is not empty" in \
        filecheck("a\nb\n", "CHECK: a\nCHECK-EMPTY:")
    assert "(the input ended)" in filecheck(text, "CHECK: b\nCHECK-EMPTY:")
    assert filecheck("", "CHECK-NOT: a") is None


def test_a_near_miss_shows_the_closest_line():
    problem = filecheck(IR, "CHECK: %1: f32[4] = add %0, %y")
    assert "<input>:3: closest line:   %1: f32[4] = add %0, %x" in problem


@pytest.mark.parametrize("patterns, message", [
    ("no directives here", "no check strings found with prefix 'CHECK:'"),
    ("CHECK-NEXT: exp", "found 'CHECK-NEXT' without previous 'CHECK:' line"),
    ("CHECK:", "found empty check string"),
    ("CHECK-DAG: exp", "not supported yet: CHECK-DAG"),
    ("CHECK-NXT: exp", "unknown directive CHECK-NXT"),
    ("CHECK: [[B]]", "undefined variable: B"),
])
def test_malformed_patterns_raise(patterns, message):
    with pytest.raises(FileCheckError, match=message):
        filecheck(IR, patterns)


def test_the_command_reads_stdin_and_sets_its_exit_status(tmp_path, monkeypatch, capsys):
    good, bad = tmp_path / "good.checks", tmp_path / "bad.checks"
    good.write_text("CHECK: exp\nCHECK-NEXT: add\n")
    bad.write_text("CHECK: exp\nCHECK-NOT: add\n")
    monkeypatch.setattr("sys.stdin", io.StringIO(IR))
    assert main([str(good)]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(IR))
    assert main([str(bad)]) == 1
    assert f"{bad}:2: error: CHECK-NOT: excluded string found" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.checks")]) == 2
    assert "kiln filecheck: error:" in capsys.readouterr().err
    ir_file = tmp_path / "ir.txt"
    ir_file.write_text(IR.replace("exp", "EXP"))
    prefixed = tmp_path / "prefixed.checks"
    prefixed.write_text("MY: EXP\n")
    assert main([str(prefixed), "--check-prefix", "MY", "--input-file", str(ir_file)]) == 0
    assert main([]) == 2


# ---- LLVM FileCheck's semantics (compared with /usr/lib/llvm-14/bin/FileCheck) -------------
@pytest.mark.parametrize("text, patterns", [
    ("foo\nbar\n", "CHECK-NOT: foo{{$}}"),              # NOTE: $ ends a line, not the text
    ("x\nfoo\n", "CHECK-NOT: {{^}}foo"),                # NOTE: ^ starts a line
    ("add3\n", "CHECK-NOT: add{{[[:digit:]]+}}"),       # NOTE: POSIX classes
    ("a b\nb\n", "CHECK: a\nCHECK-NEXT: b"),           # NOTE: the first b is on line 1
    ("a\nb\n", "CHECK: a{{[^x]}}b"),                    # NOTE: [^x] never matches a newline
    ("a\nb\n", "CHECK: a{{.}}b"),
])
def test_patterns_llvm_rejects_are_rejected(text, patterns):
    assert filecheck(text, patterns) is not None


@pytest.mark.parametrize("text, patterns", [
    ("x\nfoo\n", "CHECK: {{^}}foo"),
    ("x\n  foo\nfoo\n", "CHECK: {{^}}foo{{$}}"),
    ("xfoo\n", "CHECK: x\nCHECK: {{^}}foo"),            # NOTE: ^ where the last match ended
    ("foo bar\nbaz\n", "CHECK: bar{{$}}"),
    ("%5 = exp\n", "CHECK: %[[N:[0-9]]] = exp"),         # NOTE: ]]] closes at bracket depth 0
    ("%1 a\n%2 b\n%2 c\n", "CHECK: [[V:%[0-9]]] a\nCHECK: [[V:%[0-9]]] b\nCHECK: [[V]] c"),
    ("a\nb\n", "CHECK: a{{[[:space:]]}}b"),            # NOTE: [[:space:]] matches a newline
    ("a\nb\nc\n", "CHECK: a{{[[:space:]]}}b\nCHECK-NEXT: c"),
    ("x = 1, 2\nx = 1\n", "CHECK: x = [[V:[^,]+]]\nCHECK: x = [[V]]"),
    ("a;b\n", "CHECK: a{{[[:punct:]]}}b"),
    ("a[b]\n", "CHECK: a{{[[]}}b{{[]]}}"),
    ("a b c d\n", "CHECK: a\nCHECK-SAME: c\nCHECK-SAME: d"),
])
def test_patterns_llvm_accepts_are_accepted(text, patterns):
    assert filecheck(text, patterns) is None


def test_check_next_takes_the_first_match_and_names_where_it_was_found():
    problem = filecheck("a b\nb\n", "CHECK: a\nCHECK-NEXT: b")
    assert problem.splitlines()[:3] == [
        "<patterns>:2: error: CHECK-NEXT: is on the same line as previous match",
        "CHECK-NEXT: b", "<input>:1: found here: a b"]
    assert "is not on the line after the previous match" in \
        filecheck("a\nx\nb\n", "CHECK: a\nCHECK-NEXT: b")


@pytest.mark.parametrize("patterns, message", [
    ("CHECK: a [[#N:]]", "not supported yet: numeric substitution blocks"),
    ("CHECK: [[#N+1]]", "not supported yet: numeric substitution blocks"),
    ("CHECK: [[@LINE-1]]", r"not supported yet: pseudo variables \(\[\[@LINE-1\]\]\)"),
    ("CHECK: a[[b", "invalid substitution block, no ]] found"),
    ("CHECK: [[1x:a]]", "invalid variable name '1x'"),
    ("CHECK: {{[[:digits:]]}}", r"unknown character class \[:digits:\]"),
    ("CHECK: {{a", "regex string with no end"),
])
def test_unsupported_substitutions_are_refused(patterns, message):
    with pytest.raises(FileCheckError, match=message):
        filecheck("a 3\n", patterns)


_LLVM_FILECHECK = "/usr/lib/llvm-14/bin/FileCheck"


@pytest.mark.skipif(not os.path.exists(_LLVM_FILECHECK), reason="LLVM 14's FileCheck not here")
def test_verdicts_agree_with_llvm_filecheck(tmp_path):
    cases = [("foo\nbar\n", "CHECK-NOT: foo{{$}}"), ("x\nfoo\n", "CHECK: {{^}}foo"),
             ("xfoo\n", "CHECK: x\nCHECK: {{^}}foo"), ("a b\nb\n", "CHECK: a\nCHECK-NEXT: b"),
             ("a\nb\n", "CHECK: a{{[^x]}}b"), ("a\nb\n", "CHECK: a{{[[:space:]]}}b"),
             ("%5 = exp\n", "CHECK: %[[N:[0-9]]] = exp"), ("a\nx\nb\n", "CHECK: a\nCHECK-NEXT: b"),
             ("a\nb c\n", "CHECK: a\nCHECK-SAME: c"), ("a\n\nb\n", "CHECK: a\nCHECK-EMPTY:\n"
                                                                   "CHECK-NEXT: b")]
    for n, (text, patterns) in enumerate(cases):
        path = tmp_path / f"{n}.chk"
        path.write_text(patterns + "\n")
        theirs = subprocess.run([_LLVM_FILECHECK, str(path), "--allow-empty"], input=text,
                                capture_output=True, text=True).returncode == 0
        assert (filecheck(text, patterns) is None) == theirs, (text, patterns)
