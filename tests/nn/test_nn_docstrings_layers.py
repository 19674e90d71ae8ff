"""The runnable examples in the docstrings of the recurrent, attention, transformer,
upsampling and distance layers stay true."""
import doctest
import importlib

import pytest

MODULES = ["kiln.nn.rnn", "kiln.nn.attention", "kiln.nn.transformer", "kiln.nn.upsampling",
           "kiln.nn.distance"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
