"""The runnable examples in the frontend's and the public package's docstrings run."""
import doctest
import importlib

import pytest

MODULES = ["kiln", "kiln.frontend.guards", "kiln.cuda", "kiln.frontend.tensor",
           "kiln.frontend.autograd",
           "kiln.frontend.creation", "kiln.frontend.jit", "kiln.frontend.guard_messages",
           "kiln.frontend.explain",
           "kiln.frontend.bytecode", "kiln.ir.registry", "kiln.ir.interpreter",
           "kiln.runtime.allocator", "kiln.passes.functionalize", "kiln.nn.utils.clip_grad",
           "kiln.frontend.replay", "kiln.frontend.side_effects", "kiln.optim.optimizer"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
