"""What `kiln ir`, `kiln viz` and `kiln explain` take as a target and its arguments: a module
object is the module (not one of its attributes), its `forward` gives the parameters; a
keyword-only parameter without a default is one clear error, said the same way by every
command; `--list-kernels` and `--list-stages` print JSON under `--json`; and the backward
graph's adds that sum two gradients carry their forward op's line."""
from __future__ import annotations

import json
import textwrap

import pytest

import kiln.viz
from kiln import cli

SOURCE = textwrap.dedent('''
    import kiln
    import kiln.nn as nn


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.fn = kiln.tanh          # an activation kept as an attribute called `fn`

        def forward(self, x):
            return self.fn(self.lin(x)) * 10


    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fn = nn.Linear(4, 2)    # a submodule called `fn`

        def forward(self, x):
            return self.fn(x).sum(-1, keepdim=True) + 100


    net = Net()
    block = Block()


    def kwonly(x, *, scale):
        return x * scale


    def twice(x):
        y = kiln.tanh(x)
        return (y * y + y).sum()
''')


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "mods.py"
    path.write_text(SOURCE)
    return path


def _main(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("target, ops, forbidden", [
    ("net", ["matmul", "tanh", "mul"], "sum"),
    ("block", ["matmul", "sum"], "tanh"),
])
def test_a_module_with_an_attribute_called_fn_is_the_module(capsys, user_file, target, ops,
                                                            forbidden):
    rc, out, err = _main(capsys, "ir", f"{user_file}:{target}", "--arg", "f32[2,4]",
                         "--stage", "traced", "--json")
    assert rc == 0, err
    traced = json.loads(out)["stages"][0]["ir"]
    names = [n["op"] for n in traced["nodes"]]
    for op in ops:
        assert op in names
    assert forbidden not in names


@pytest.mark.parametrize("command", ["ir", "explain"])
def test_a_module_given_too_many_args_is_a_usage_error(capsys, user_file, command):
    rc, out, err = _main(capsys, command, f"{user_file}:net", "--arg", "f32[2,4]",
                         "--arg", "f32[2]")
    assert (rc, out) == (2, "")
    assert err == (f"kiln {command}: error: Net.forward(x) cannot take --arg f32[2,4] --arg "
                   "f32[2]: too many positional arguments; give one --arg per positional "
                   "parameter\n")


def test_kiln_viz_checks_a_modules_arguments_too(capsys, user_file):
    rc = kiln.viz.main([f"{user_file}:net", "--arg", "f32[2,4]", "--arg", "f32[2]"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("kiln viz: error: Net.forward(x) cannot take --arg f32[2,4] --arg "
                          "f32[2]: too many positional arguments")


KWONLY = ("kwonly(x, *, scale) has keyword-only parameters without a default (scale); --arg "
          "gives positional arguments only: give them defaults or wrap the function\n")


def test_a_required_keyword_only_parameter_is_one_clear_error(capsys, user_file):
    rc, _, err = _main(capsys, "ir", f"{user_file}:kwonly", "--arg", "f32[4]")
    assert (rc, err) == (2, "kiln ir: error: " + KWONLY)
    rc = kiln.viz.main([f"{user_file}:kwonly", "--arg", "f32[4]"])
    assert (rc, capsys.readouterr().err) == (2, "kiln viz: error: " + KWONLY)


def test_list_kernels_and_list_stages_print_json(capsys, user_file):
    rc, out, _ = _main(capsys, "ir", f"{user_file}:twice", "--arg", "f32[8]", "--grad", "0",
                       "--list-kernels", "--json")
    kernels = json.loads(out)
    assert rc == 0 and kernels and [k["index"] for k in kernels] == list(range(len(kernels)))
    assert {k["graph"] for k in kernels} == {"forward", "backward"}
    assert all(set(k) == {"index", "graph", "name"} for k in kernels)
    rc, out, _ = _main(capsys, "ir", f"{user_file}:twice", "--arg", "f32[8]",
                       "--list-stages", "--json")
    assert rc == 0 and json.loads(out)[:2] == ["traced", "functionalize"]


def test_gradient_sums_carry_the_forward_ops_line(capsys, user_file):
    """`y` is used three times and `x` once through `tanh`: the adds that sum gradients are on
    the user's lines (`y = kiln.tanh(x)`, the return), never in Kiln's own code."""
    rc, out, err = _main(capsys, "ir", f"{user_file}:twice", "--arg", "f32[8]",
                         "--stage", "backward", "--json")
    assert rc == 0, err
    nodes = json.loads(out)["stages"][0]["ir"]["nodes"]
    adds = [n for n in nodes if n["op"] == "add"]
    assert len(adds) >= 2
    lines = SOURCE.splitlines()
    where = {lines.index("    y = kiln.tanh(x)") + 1,
             lines.index("    return (y * y + y).sum()") + 1}
    for n in adds:
        assert n["loc"]["file"].endswith("mods.py"), n
        assert n["loc"]["line"] in where, n
