"""Starting and ending the default process group; rank and world size; env:// variables."""
from __future__ import annotations

import os

from kiln.ir.errors import NotSupportedError

from . import process_group as _group
from .errors import DistError

def init_process_group(backend: str | None = None, init_method: str | None = None,
                       timeout=None, world_size: int = -1, rank: int = -1, store=None,
                       group_name: str = "", pg_options=None, device_id=None) -> None:
    """Join the default process group: every process of the MPI job (`kiln run -n 4
    train.py`, or `mpiexec -n 4 python train.py`); a process started alone is a world of
    one. Rank and world size come from MPI; `rank=`, `world_size=` and the env:// variables
    RANK and WORLD_SIZE are accepted when they agree with it. `timeout` (seconds or a
    timedelta; default KILN_DIST_TIMEOUT, else 30 minutes) bounds every collective: a
    collective a rank never joins fails with an error naming that rank, and a rank that
    dies or raises makes the others fail at once.

    >>> import kiln.distributed as dist
    >>> dist.init_process_group(backend="mpi")
    >>> dist.get_rank(), dist.get_world_size(), dist.is_initialized()
    (0, 1, True)
    >>> dist.destroy_process_group()
    """
    if _group.current() is not None:
        raise DistError("trying to initialize the default process group twice!")
    _check_backend(backend, init_method, store)
    seconds = _timeout_seconds(timeout)
    from .mpi import load
    MPI = load()
    world = MPI.COMM_WORLD
    _check_agrees(world.Get_rank(), world.Get_size(), rank, world_size)
    _group.start(MPI, seconds)


def _check_backend(backend, init_method, store) -> None:
    if backend is not None and str(backend).lower() != "mpi":
        raise NotSupportedError(f"not supported yet: backend {backend!r}; Kiln's processes "
                                "talk through MPI (backend='mpi', the default)")
    if init_method not in (None, "env://"):
        raise NotSupportedError(f"not supported yet: init_method={init_method!r}; the ranks "
                                "find each other through MPI (None or 'env://')")
    if store is not None:
        raise NotSupportedError("not supported yet: a store; the ranks find each other "
                                "through MPI")


def _timeout_seconds(timeout) -> float:
    from .work import _seconds
    if timeout is not None:
        return _seconds(timeout)
    text = os.environ.get("KILN_DIST_TIMEOUT")
    if text:
        try:
            return _seconds(float(text))
        except ValueError:
            raise ValueError(f"KILN_DIST_TIMEOUT={text!r} is not a positive number of "
                             "seconds") from None
    return _group.DEFAULT_TIMEOUT_S


def _check_agrees(mpi_rank: int, mpi_size: int, rank: int, world_size: int) -> None:
    """The rank and world size given (as arguments or env:// variables) must be MPI's."""
    given = [("rank=", rank, mpi_rank), ("world_size=", world_size, mpi_size)]
    for var, actual in (("RANK", mpi_rank), ("WORLD_SIZE", mpi_size)):
        text = os.environ.get(var, "").strip()
        if text:
            given.append((f"{var}=", int(text) if text.lstrip("-").isdigit() else text,
                          actual))
    for name, value, actual in given:
        if value not in (-1, None) and value != actual:
            raise DistError(f"init_process_group: {name}{value!r} but MPI says this process "
                            f"is rank {mpi_rank} of {mpi_size}",
                            hint="start the processes with `kiln run -n N script.py` (or "
                            "mpiexec -n N python script.py): rank and world size come "
                            "from MPI")


def destroy_process_group(group=None) -> None:
    """Leave the default group: the ranks meet in a last barrier, then its threads stop.
    A later `init_process_group` starts a new one."""
    if group is not None and group is not _group.WORLD:
        raise NotSupportedError("not supported yet: process groups other than the default")
    _group.require("destroy_process_group")
    _group.stop()


def is_initialized() -> bool:
    return _group.current() is not None


def is_available() -> bool:
    """Whether kiln.distributed can run here (mpi4py is installed)."""
    import importlib.util
    return importlib.util.find_spec("mpi4py") is not None


def is_mpi_available() -> bool:
    return is_available()


def is_nccl_available() -> bool:
    return False


def is_gloo_available() -> bool:
    return False


def get_rank(group=None) -> int:
    """This process's rank in the default group (0 .. world size - 1)."""
    return _group.require("get_rank").rank


def get_world_size(group=None) -> int:
    """How many processes the default group has."""
    return _group.require("get_world_size").size


def get_backend(group=None) -> str:
    _group.require("get_backend")
    return "mpi"
