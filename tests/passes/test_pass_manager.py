"""The pass pipeline: stages with names, graphs, times and fired rules; KILN_PRINT_AFTER;
the verifier after every pass; and the docstring examples of every pass module."""
import doctest
import importlib

import pytest
from pass_helpers import graph, ir

from kiln.ir.attrs import Attrs
from kiln.ir.errors import VerifyError
from kiln.ir.graph import Graph, Node
from kiln.passes.manager import DEFAULT_PIPELINE, Pass, autograd, run_passes

W1 = """
    graph @w1(%x: f32[8]) {
      %0: f32[] = full {value=0.5, shape=[], dtype=f32}
      %1: f32[8] = expand %0 {shape=[8]}
      %2: f32[8] = sigmoid %x
      %3: f32[8] = mul %x, %2
      %4: f32[8] = mul %3, %1
      %5: f32[8] = tanh %x
      %6: f32[8] = add %4, %5
      return %6
    }
    """


def test_stages_record_every_pass():
    g = graph(W1)
    out, stages = run_passes(g, verify=True)
    assert [s.name for s in stages] == ["input"] + [p.name for p in DEFAULT_PIPELINE]
    assert stages[0].graph is g and stages[-1].graph is out
    assert stages[1].fired == {} and stages[1].graph is g    # nothing written in place
    assert stages[2].fired == {"movement_of_full": 1, "dce": 1}
    assert stages[3].fired == {"kernel": 1, "fused_op": 5, "copied_full": 1}
    assert all(s.ms >= 0 for s in stages)
    assert [n.op for n in out.nodes] == ["kernel"]
    assert str(stages[2]).startswith("# after canonicalize (")


def test_autograd_as_a_pipeline_pass():
    g = graph("""
        graph @f(%x: f32[8]) {
          %0: f32[8] = tanh %x
          %1: f32[8] = mul %0, %x
          %2: f32[] = sum %1 {axes=[0], keepdim=false}
          return %2
        }
        """)
    out, stages = run_passes(g, [autograd([0]), *DEFAULT_PIPELINE], verify=True)
    assert stages[1].name == "autograd"
    assert stages[1].fired == {"vjp_sum": 1, "vjp_mul": 1, "vjp_tanh": 1}
    # one kernel computes the product, its sum and the gradient (which needs no sum)
    assert [n.op for n in out.nodes] == ["kernel"]
    assert len(out.outputs) == 2 and set(out.outputs) <= set(out.nodes[0].outputs)


def test_print_after_one_pass(monkeypatch, capsys):
    monkeypatch.setenv("KILN_PRINT_AFTER", "canonicalize")
    run_passes(graph(W1))
    err = capsys.readouterr().err
    assert err.startswith("# after canonicalize (") and "fired: dce=1, movement_of_full=1)" in err
    assert ir("""
        graph @w1(%x: f32[8]) {
          %0: f32[8] = full {value=0.5, shape=[8], dtype=f32}
        """) in err
    assert "# after fusion" not in err


def test_print_after_all_and_a_list(monkeypatch, capsys):
    monkeypatch.setenv("KILN_PRINT_AFTER", "all")
    run_passes(graph(W1))
    err = capsys.readouterr().err
    assert err.count("# after ") == len(DEFAULT_PIPELINE) + 1
    assert "kernel %x" in err
    monkeypatch.setenv("KILN_PRINT_AFTER", "input, fusion")
    run_passes(graph(W1))
    err = capsys.readouterr().err
    assert err.startswith("# after input (0.00 ms; fired: none)\n" + ir(W1))
    assert "# after fusion" in err and "# after canonicalize" not in err


def _broken(g: Graph, fired) -> Graph:
    """A wrong pass: reads a value the graph never defines."""
    stray = graph("graph @s(%y: f32[8]) {\n  return %y\n}\n").inputs[0]
    return Graph(g.name, g.inputs, [*g.nodes, Node("neg", Attrs(), [stray], [stray.type])],
                 g.outputs)


def test_verifier_runs_after_each_pass_and_names_it(monkeypatch):
    passes = [Pass("canonicalize", DEFAULT_PIPELINE[0].run), Pass("broken", _broken)]
    with pytest.raises(VerifyError, match="after pass 'broken'"):
        run_passes(graph(W1), passes, verify=True)
    monkeypatch.setenv("KILN_VERIFY", "1")
    with pytest.raises(VerifyError):
        run_passes(graph(W1), passes)
    monkeypatch.setenv("KILN_VERIFY", "0")
    run_passes(graph(W1), passes)
    with pytest.raises(VerifyError, match="after the input graph"):
        run_passes(_broken(graph(W1), None), [], verify=True)


@pytest.mark.parametrize("name", ["manager", "canonicalize", "fusion", "autograd",
                                  "functionalize"])
def test_docstring_examples(name):
    module = importlib.import_module(f"kiln.passes.{name}")
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_autograd_after_canonicalize_is_refused():
    from kiln.ir.errors import KilnError
    from kiln.passes.manager import autograd, run_passes
    g = graph("graph @f(%x: f32[]) {\n  %0: f32[] = exp %x\n  return %0\n}\n")
    with pytest.raises(KilnError, match="autograd must run before canonicalize"):
        run_passes(g, [*DEFAULT_PIPELINE[:2], autograd([0])])


def test_functionalize_after_canonicalize_is_refused():
    from kiln.ir.errors import KilnError
    g = graph("graph @f(%x: f32[]) {\n  %0: f32[] = exp %x\n  return %0\n}\n")
    with pytest.raises(KilnError, match="functionalize must run before canonicalize"):
        run_passes(g, [DEFAULT_PIPELINE[1], DEFAULT_PIPELINE[0]])
