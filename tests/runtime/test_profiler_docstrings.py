"""The runnable examples in the profiler's, the debug levels' and the timed runner's
docstrings stay true."""
import doctest
import importlib

import pytest

MODULES = ["kiln.profiler", "kiln.profiler_table", "kiln.debug", "kiln.runtime.profiling",
           "kiln.runtime.costs", "kiln.runtime.floors", "kiln.runtime.runner"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0
    assert result.attempted > 0
