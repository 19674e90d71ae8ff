"""`kiln viz` from the command line (kiln.viz.main): writes the page, and every mistake is one
line on stderr with exit status 2 (bad arguments) or 1 (could not draw)."""
from __future__ import annotations

import textwrap

import pytest

import kiln.viz

SOURCE = textwrap.dedent('''
    import kiln

    def step(x):
        return kiln.exp(x).sum()

    def two(a, b):
        return a + b

    def boom(x):
        raise ValueError("no good")

    def branch(x):
        if x.sum() > 0:
            return x
        return -x
''')


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "user.py"
    path.write_text(SOURCE)
    return path


def _run(capsys, *argv):
    rc = kiln.viz.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_writes_the_page(capsys, user_file, tmp_path):
    out_file = tmp_path / "step.html"
    rc, out, err = _run(capsys, f"{user_file}:step", "--arg", "f32[16]", "-o", out_file)
    assert (rc, err) == (0, "")
    assert out == f"kiln viz: wrote {out_file}\n"
    html = out_file.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "kiln viz: step" in html


def test_default_output_is_named_after_the_function(capsys, user_file, tmp_path,
                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, _ = _run(capsys, f"{user_file}:step", "--arg", "f32[4]")
    assert rc == 0 and (tmp_path / "step.html").is_file()


@pytest.mark.parametrize("target, args, status, message", [
    ("two", ["--arg", "f32[3]"], 2,
     "two(a, b) cannot take --arg f32[3]: missing a required argument: 'b'"),
    ("boom", ["--arg", "f32[3]"], 1, "boom raised ValueError: no good (at user.py:11)"),
    ("branch", ["--arg", "f32[3]"], 1, "cannot draw branch: not supported yet: bool()"),
    ("nope", [], 2, "has no attribute 'nope'; callables defined there: boom, branch, step"),
])
def test_mistakes_are_one_line(capsys, user_file, target, args, status, message):
    rc, out, err = _run(capsys, f"{user_file}:{target}", *args)
    assert rc == status and out == ""
    assert err.startswith("kiln viz: error: ") and err.count("\n") == 1
    assert message in err


def test_unwritable_output_is_one_line(capsys, user_file, tmp_path):
    rc, _, err = _run(capsys, f"{user_file}:step", "--arg", "f32[3]", "-o",
                      tmp_path / "no" / "such" / "dir.html")
    assert rc == 1 and err.startswith("kiln viz: error: cannot write ")
    assert err.count("\n") == 1


def test_bad_arg_spec_is_a_usage_error(capsys, user_file):
    with pytest.raises(SystemExit) as e:
        kiln.viz.main([f"{user_file}:step", "--arg", "f33[3]"])
    assert e.value.code == 2
    assert "unknown dtype 'f33'" in capsys.readouterr().err


TRAIN = textwrap.dedent('''
    import kiln
    import kiln.nn as nn

    model = nn.Linear(8, 3)
    opt = kiln.optim.SGD(model.parameters(), lr=0.1)

    def train_step(x, y):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss                 # NOTE: the usual idiom: the loss still requires grad
''')


def test_a_training_step_that_returns_its_loss_is_drawn(capsys, tmp_path):
    """Its gradients are in the forward graph (it calls backward() itself): the page shows
    that graph, and the missing second backward is no error."""
    path = tmp_path / "train.py"
    path.write_text(TRAIN)
    out_file = tmp_path / "step.html"
    rc, out, err = _run(capsys, f"{path}:train_step", "--arg", "f32[4,8]", "--arg", "i64[4]",
                        "-o", out_file)
    assert (rc, err) == (0, "")
    html = out_file.read_text(encoding="utf-8")
    assert "kiln viz: train_step" in html and "backward fusion" not in html
