"""The runnable examples in kiln.nn's docstrings (and the indexing ops') stay true."""
import doctest
import importlib

import pytest

MODULES = ["kiln.nn", "kiln.nn.module", "kiln.nn.parameter", "kiln.nn.init", "kiln.nn.linear",
           "kiln.nn.activation", "kiln.nn.dropout", "kiln.nn.normalization", "kiln.nn.sparse",
           "kiln.nn.container", "kiln.nn.loss", "kiln.nn.functional", "kiln.ir.ops.indexing"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
