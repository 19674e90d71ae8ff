"""The runnable examples in codegen's and runtime's docstrings stay true."""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["kiln.codegen.scalar_builder", "kiln.codegen.lower_kernel",
           "kiln.codegen.mlir_pipeline", "kiln.codegen.llvm_cpu", "kiln.codegen.cpu_kernel",
           "kiln.runtime.executable"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
