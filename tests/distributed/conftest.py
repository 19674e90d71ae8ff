"""The `world` fixture: a default process group of this one process (MPI started alone is a
world of one), left again after the test."""
from __future__ import annotations

import pytest


@pytest.fixture
def world():
    import kiln.distributed as dist
    dist.init_process_group("mpi")
    try:
        yield dist
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
