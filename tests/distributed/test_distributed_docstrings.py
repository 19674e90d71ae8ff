"""The runnable examples in kiln.distributed's, DDP's and DistributedSampler's docstrings."""
import doctest
import importlib

import pytest

MODULES = ["kiln.distributed", "kiln.distributed.collectives", "kiln.distributed.lifecycle",
           "kiln.distributed.reduce_op", "kiln.distributed.work",
           "kiln.nn.parallel.distributed", "kiln.utils.data.distributed"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    import kiln.distributed as dist
    try:
        result = doctest.testmod(importlib.import_module(name))
    finally:
        if dist.is_initialized():       # NOTE: a failed example must not leave a group behind
            dist.destroy_process_group()
    assert result.attempted > 0 and result.failed == 0
