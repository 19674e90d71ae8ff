"""mpi4py, imported on first use, with the settings Kiln's process group relies on.

MPI starts when `mpi4py.MPI` is first imported. Kiln asks for MPI_THREAD_MULTIPLE (a
communication thread runs the collectives while the main thread computes, and a watchdog
thread exchanges small control messages) and turns off mpi4py's finalize-at-exit: Kiln
finalizes MPI itself, and only when every collective completed (MPI_Finalize can hang when a
rank died; see process_group.py).

MPICH's own defaults are kept: a waiting rank busy-polls but yields the core every 1000
polls, which keeps 4 ranks on 2 cores going at a fair pace (tests/distributed runs them).
"""
from __future__ import annotations

import os
import sys

from .errors import DistError

INSTALL_HINT = "pip install mpi4py mpich  (MPICH's wheel brings mpiexec)"


def load():
    """The `mpi4py.MPI` module, MPI started with MPI_THREAD_MULTIPLE; DistError if it cannot
    be (mpi4py or the MPI library missing, or MPI already started with a lower level)."""
    try:
        import mpi4py
    except ImportError as e:
        raise DistError(f"kiln.distributed needs mpi4py and an MPI library ({e}); "
                        f"install them: {INSTALL_HINT}") from None
    if "mpi4py.MPI" not in sys.modules:
        mpi4py.rc.thread_level = "multiple"
        mpi4py.rc.finalize = False
    try:
        from mpi4py import MPI
    except (ImportError, RuntimeError) as e:
        raise DistError(f"MPI could not start ({type(e).__name__}: {e}); is an MPI library "
                        f"installed? {INSTALL_HINT}") from None
    _tell_supervisor()
    if MPI.Query_thread() < MPI.THREAD_MULTIPLE:
        raise DistError("MPI was started without MPI_THREAD_MULTIPLE, which kiln.distributed "
                        "needs (its communication and watchdog threads call MPI)",
                        hint="import kiln.distributed (or call init_process_group) before "
                        "`from mpi4py import MPI`, or set mpi4py.rc.thread_level = "
                        "'multiple' first")
    return MPI


def finalize_at_exit_is_ours() -> bool:
    """Whether mpi4py leaves MPI_Finalize to Kiln (it was first imported by `load`)."""
    import mpi4py
    return not mpi4py.rc.finalize


def reduce_op(MPI, name: str, is_bool: bool):
    """The MPI.Op for a ReduceOp name ('avg' sums; the caller divides)."""
    if is_bool:
        return {"sum": MPI.LOR, "max": MPI.LOR, "min": MPI.LAND, "product": MPI.LAND}[name]
    return {"sum": MPI.SUM, "avg": MPI.SUM, "product": MPI.PROD, "min": MPI.MIN,
            "max": MPI.MAX}[name]


def _tell_supervisor() -> None:
    """Under `kiln run`, tell this rank's supervisor that MPI has started (supervise.py)."""
    fd = os.environ.pop("KILN_RUN_READY_FD", "")
    if fd.isdigit():
        try:
            os.write(int(fd), b"1")
            os.close(int(fd))
        except OSError:
            pass
