"""Kernels' MLIR shows each op's location (`loc(...)`) and compiles to the same code without
it: locations are for people, and kernels equal but for names share compiled code."""
import dataclasses
import re

import pytest

from kiln.codegen.cpu.render_kernel import (CPU_OPTIONS, located_mlir, render_kernel,
                                            strip_locations)
from kiln.codegen.cuda.renderer import GPU_OPTIONS
from kiln.codegen.mlir_pipeline import mlir_to_llvm_ir
from kiln.ir.errors import KilnError
from kiln.ir.names import mlir_loc
from kiln.ir.parser import parse
from kiln.passes.manager import run_passes
from kiln.passes.schedule import build_schedule

PROGRAM = """
graph @step(%x: f32[64,32], %w: f32[32], %opt.state.w.exp_avg: f32[64,32]) {
  %0: f32[64,32] = expand %w {shape=[64,32]}   # model.fc (Linear) at train.py:10
  %1: f32[64,32] = add %x, %0   # model.fc (Linear) at train.py:10
  %2: f32[64,32] = tanh %1   # model.act (Tanh) at train.py:11
  %3: f32[64,1] = max %2 {axes=[1], keepdim=true}   # train.py:12
  %4: f32[64,32] = expand %3 {shape=[64,32]}   # train.py:12
  %5: f32[64,32] = sub %2, %4   # train.py:12
  %6: f32[64,32] = exp %5   # train.py:12
  %7: f32[1,32] = sum %6 {axes=[0], keepdim=true}   # opt (Adam) at train.py:13
  %8: f32[64,32] = mul %opt.state.w.exp_avg, %6   # opt (Adam) at train.py:14
  return %7, %8
}
"""


@pytest.fixture(scope="module")
def kernels():
    optimized, _ = run_passes(parse(PROGRAM))
    return build_schedule(optimized).kernels


def _ops_with_locations(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.rstrip().endswith(")") and " loc(" in line]


@pytest.mark.parametrize("options", [CPU_OPTIONS, GPU_OPTIONS,
                                     dataclasses.replace(GPU_OPTIONS, warp_lanes=32)],
                         ids=["cpu", "gpu", "gpu-warp"])
def test_located_mlir_is_the_compiled_text_plus_each_ops_location(kernels, options):
    assert len(kernels) >= 2
    for k in kernels:
        plain = render_kernel(k, "kiln_k", options).mlir
        located = located_mlir(k, plain, options)
        assert "loc(" not in plain and strip_locations(located) == plain
        lines = _ops_with_locations(located)
        # NOTE: a reduction down columns (render_columns.py) shows no location on its adds
        reduces_only = all(n.op in ("sum", "max") for n in k.body.nodes)
        assert lines or (reduces_only and options.columns), k.name
        body_locs = {mlir_loc(n.loc) for n in k.body.nodes}
        for line in lines:
            assert re.search(r"loc\(.*\)$", line).group() in body_locs, line


def test_locations_do_not_change_the_compiled_code(kernels):
    for k in kernels:
        plain = render_kernel(k, "kiln_k").mlir
        located = located_mlir(k, plain)
        assert 'loc("model.act (Tanh)"("train.py":11:0))' in located or "tanh" not in located
        assert mlir_to_llvm_ir(located) == mlir_to_llvm_ir(plain), k.name


def test_a_text_the_kernel_does_not_render_to_is_refused(kernels):
    plain = render_kernel(kernels[0], "kiln_k").mlir
    with pytest.raises(KilnError, match="does not render to the MLIR given"):
        located_mlir(kernels[1], plain)
    with pytest.raises(KilnError, match="no `func.func @symbol"):
        located_mlir(kernels[0], "module {}")
