"""`kiln.explain(...).to_json()` and `kiln explain --json`: the report as data, with the
graph count and per-graph kernel counts, graph breaks, side effects and recompile reasons."""
from __future__ import annotations

import json

import kiln
from kiln import cli

LOG = []


def branchy(x):
    y = kiln.tanh(x).sum()
    if y > 0:  # branchy's break
        return x * 2
    return x - 1


def chatty(x):
    LOG.append(1)
    print("calling chatty")
    return kiln.exp(x) + 1


def test_json_of_a_graph_break_counts_kernels_per_graph():
    report = kiln.explain(branchy, kiln.ones(3))
    data = json.loads(report.to_json())
    assert data["function"] == "branchy" and data["graphs"] == 2
    assert [g["graph"] for g in data["per_graph"]] == [1, 2]
    for g in data["per_graph"]:     # NOTE: as many as the kernels listed for that graph
        listed = [k for k in data["kernels"] if k.startswith(f"graph {g['graph']}: ")]
        assert g["kernels"] == len(listed) >= 1
    assert data["kernel_count"] == len(data["kernels"]) == sum(
        g["kernels"] for g in data["per_graph"])
    assert sum(g["traced_ops"] for g in data["per_graph"]) == data["traced_ops"]
    [brk] = data["breaks"]
    assert brk["after_graph"] == 1 and brk["read"] == "bool()" and brk["value"] == "True"
    assert brk["loc"].startswith("test_explain_json.py:") and "branchy's break" in \
        brk["source"]
    assert brk["text"] == report.breaks[0]
    assert data["graph_break"] is None and data["compile_error"] is None
    first = data["per_graph"][0]
    assert (f"per graph: graph 1: {first['traced_ops']} traced op(s), {first['kernels']} "
            "kernel(s); graph 2: ") in str(report)


def test_json_lists_side_effects_and_recompile_reasons():
    data = json.loads(kiln.explain(chatty, kiln.ones(2)).to_json(indent=None))
    assert [e.split(" at ")[0] for e in data["side_effects"]] == ["LOG.append()", "print()"]
    f = kiln.jit(lambda x: x * 2)
    f(kiln.ones(2)), f(kiln.ones(3))
    data = json.loads(kiln.explain(f, kiln.ones(3)).to_json())
    assert len(data["recompile_reasons"]) == 1
    assert "tensor (dtype, shape, requires_grad) guard failed" in data["recompile_reasons"][0]
    assert data["side_effects"] == [] and data["breaks"] == []


def test_report_text_says_nothing_is_missing():
    text = str(kiln.explain(branchy, kiln.ones(3))) + kiln.explain(chatty, kiln.ones(2)).to_json()
    assert "not built" not in text and "not analysed" not in text


def test_explain_command_json(tmp_path, capsys):
    path = tmp_path / "prog.py"
    path.write_text("import kiln\ndef f(x):\n    if x.sum().item() > 0:\n        return x + 1\n"
                    "    return x - 1\n")
    assert cli.main(["explain", f"{path}:f", "--arg", "f32[4]", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["graphs"] == 2 and [b["loc"] for b in data["breaks"]] == ["prog.py:3"]


def test_explain_command_errors_are_one_line(tmp_path, capsys):
    path = tmp_path / "prog.py"
    path.write_text("def f(x):\n    raise KeyError('k')\n")
    assert cli.main(["explain", f"{path}:f", "--arg", "f32[4]"]) == 1
    err = capsys.readouterr().err
    assert err == "kiln explain: error: KeyError: 'k' (raised at prog.py:2: raise KeyError('k'))\n"
    assert cli.main(["explain", f"{path}:f", "--arg", "f32[4]", "--arg", "f32[4]"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kiln explain: error: f(x) cannot take --arg f32[4] --arg f32[4]")
    assert err.count("\n") == 1
