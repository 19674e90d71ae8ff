"""The runnable examples in codegen's, the schedule's and runtime's docstrings stay true."""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["kiln.codegen.scalar_builder", "kiln.codegen.mlir_pipeline",
           "kiln.codegen.llvm_cpu", "kiln.codegen.cpu.renderer", "kiln.codegen.cpu.render_kernel",
           "kiln.runtime.reference", "kiln.runtime.null", "kiln.runtime.executable",
           "kiln.frontend.compile", "kiln.ir.schedule_text", "kiln.passes.schedule",
           "kiln.passes.plan_memory", "kiln.ir.schedule", "kiln.ir.ops.kernel",
           "kiln.codegen.cpu.segment", "kiln.codegen.cpu.blas", "kiln.runtime.device",
           "kiln.runtime.cpu.device", "kiln.codegen.object_code", "kiln.runtime.disk_cache",
           "kiln.codegen.cuda.ptx", "kiln.codegen.cuda.renderer"]
# NOTE: modules with no examples yet (their docstrings are prose): they must still import
# and any example they gain must pass.
WITHOUT_EXAMPLES: set = set()


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0
    assert result.attempted > 0 or name in WITHOUT_EXAMPLES
