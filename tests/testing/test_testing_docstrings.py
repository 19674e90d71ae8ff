"""The runnable examples in kiln.testing's docstrings run."""
import doctest
import importlib

import pytest

MODULES = ["kiln.testing", "kiln.testing.close", "kiln.testing.gradcheck",
           "kiln.testing.eager", "kiln.testing.compiles", "kiln.testing.recompiles",
           "kiln.testing.golden", "kiln.testing.filecheck"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
