"""kiln.testing.check_ir: a stage's IR against a golden file (source-line comments ignored
unless asked, a diff on mismatch, KILN_UPDATE_GOLDEN=1 rewrites) or FileCheck patterns."""
import pytest

import kiln
from kiln.testing import check_ir, strip_locs
from kiln.testing.golden import stage_text

def f(x, y):
    z = kiln.exp(x) + y
    return z.sum()


def _args():
    return kiln.ones(4), kiln.ones(4)


@pytest.fixture
def golden():
    """The fusion stage of f without source lines, as a golden file holds it. NOTE: made
    here, not written out, so a change to how the IR prints does not break these tests."""
    text = strip_locs(stage_text(f, _args(), "fusion")) + "\n"
    assert "= kernel" in text and "= exp" in text and "add %" in text
    return text


def test_a_matching_golden_file_passes_and_source_lines_are_ignored(tmp_path, monkeypatch,
                                                                      golden):
    monkeypatch.delenv("KILN_UPDATE_GOLDEN", raising=False)
    path = tmp_path / "f.fusion.txt"
    path.write_text(golden)
    assert check_ir(f, *_args(), stage="fusion", golden=path) == golden.rstrip("\n")
    with_locs = stage_text(f, _args(), "fusion")
    assert "   # test_testing_golden.py:" in with_locs
    path.write_text(with_locs.replace(".py:", ".py:9"))    # NOTE: other line numbers
    check_ir(f, *_args(), stage="fusion", golden=path)
    with pytest.raises(AssertionError, match="differs from the golden file"):
        check_ir(f, *_args(), stage="fusion", golden=path, locs=True)


def test_a_changed_ir_line_fails_with_a_diff(tmp_path, monkeypatch, golden):
    monkeypatch.delenv("KILN_UPDATE_GOLDEN", raising=False)
    path = tmp_path / "f.fusion.txt"
    (line,) = [x for x in golden.splitlines() if "add %" in x]
    path.write_text(golden.replace(line, line.replace("add %", "sub %")))
    with pytest.raises(AssertionError) as info:
        check_ir(f, *_args(), stage="fusion", golden=path)
    text = str(info.value)
    assert f"the stage 'fusion' of f differs from the golden file {path}" in text
    assert f"\n-{line.replace('add %', 'sub %')}\n+{line}\n" in text
    assert "KILN_UPDATE_GOLDEN=1" in text


def test_kiln_update_golden_writes_missing_and_changed_files(tmp_path, monkeypatch, golden):
    path = tmp_path / "golden" / "f.fusion.txt"
    monkeypatch.delenv("KILN_UPDATE_GOLDEN", raising=False)
    with pytest.raises(AssertionError, match="does not exist; run with KILN_UPDATE_GOLDEN=1"):
        check_ir(f, *_args(), stage="fusion", golden=path)
    monkeypatch.setenv("KILN_UPDATE_GOLDEN", "1")
    check_ir(f, *_args(), stage="fusion", golden=path)
    assert path.read_text() == golden
    path.write_text("stale\n")
    check_ir(f, *_args(), stage="fusion", golden=path)
    assert path.read_text() == golden


def test_a_golden_file_of_check_lines_is_matched_as_patterns(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_UPDATE_GOLDEN", "1")     # NOTE: pattern files are not rewritten
    path = tmp_path / "f.checks"
    path.write_text("# CHECK: kernel\n# CHECK-NEXT: body\n# CHECK-NEXT: = exp\n")
    check_ir(f, *_args(), stage="fusion", golden=path)
    path.write_text("# CHECK: kernel\n# CHECK-NEXT: = exp\n")
    with pytest.raises(AssertionError, match=rf"(?s){path}:2: error: CHECK-NEXT: is not on "
                                             r"the line after the previous match"):
        check_ir(f, *_args(), stage="fusion", golden=path)
    assert path.read_text() == "# CHECK: kernel\n# CHECK-NEXT: = exp\n"


def test_inline_checks_and_bad_requests():
    check_ir(f, *_args(), stage="traced", checks="CHECK: [[E:%[0-9]+]]: f32[4] = exp %x\n"
                                                 "CHECK-NEXT: add [[E]], %y\nCHECK-NOT: sub")
    with pytest.raises(AssertionError, match="CHECK-NOT: excluded string found"):
        check_ir(f, *_args(), stage="traced", checks="CHECK: exp\nCHECK-NOT: sum")
    with pytest.raises(ValueError, match="unknown stage 'fusio'; available stages: traced"):
        check_ir(f, *_args(), stage="fusio", checks="CHECK: x")
    with pytest.raises(ValueError, match="either golden=PATH or checks=PATTERNS"):
        check_ir(f, *_args())
