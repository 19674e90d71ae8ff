"""The runnable examples in kiln.viz's docstrings stay true."""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["kiln.viz", "kiln.viz.collect", "kiln.viz.diagram", "kiln.viz.layout"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0
    assert result.attempted > 0
