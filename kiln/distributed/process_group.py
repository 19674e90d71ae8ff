"""The default process group: every process of the MPI job, its threads and its exit path.

`init_process_group` starts MPI (mpi.py), learns rank and world size from it, duplicates the
world communicator twice (collectives; the watchdog's control messages) with errors returned
rather than aborting, and starts the communication thread (engine.py) and the watchdog
(watchdog.py). It also installs an exit path:
- an uncaught exception first tells the other ranks which rank failed and why, so they stop
  with an error naming it instead of waiting for it forever;
- at a normal exit the ranks meet in a last barrier (so no rank leaves while another still
  needs it), then MPI is finalized; after a failure MPI is not finalized (MPI_Finalize can
  hang on a dead rank) and the process exits with its error;
- SIGUSR1, which MPICH's process manager sends when a rank dies, no longer kills the rank.
"""
from __future__ import annotations

import atexit
import os
import sys
import time

import numpy as np

from .errors import DistError
from .peers import Peer, this_process

DEFAULT_TIMEOUT_S = 1800.0      # NOTE: PyTorch's default for its CPU backend: 30 minutes
_PEER_BYTES = 1024


class Transport:
    """What the ranks share for the life of the process: MPI, two duplicated world
    communicators (collectives; control messages), every rank's Peer and the watchdog.
    Made by the first `init_process_group`; a group destroyed and started again reuses it
    (and a rank that failed in between is still known as failed)."""

    def __init__(self, MPI, timeout: float):
        from .watchdog import Watchdog
        self.MPI = MPI
        world = MPI.COMM_WORLD
        self.rank, self.size = world.Get_rank(), world.Get_size()
        self.comm, self.ctrl = world.Dup(), world.Dup()
        # NOTE: errors returned, not fatal: MPICH otherwise aborts the survivors silently
        # when it learns that a rank died, before Kiln can say which one
        for c in (world, MPI.COMM_SELF, self.comm, self.ctrl):
            c.Set_errhandler(MPI.ERRORS_RETURN)
        self.me = this_process(self.rank)
        self.peers = _exchange_peers(MPI, self.ctrl, self.me, timeout)
        self.failed = False         # NOTE: an uncaught exception is on its way out
        self.engine = None          # NOTE: the process group's, while there is one
        self.watchdog = Watchdog(self)
        self.watchdog.start()

    def on_uncaught(self, exc: BaseException) -> None:
        """Tell the other ranks that this rank fails (or which rank made it fail)."""
        self.failed = True
        if isinstance(exc, DistError) and exc.failed_rank not in (None, self.rank):
            culprit, text = exc.failed_rank, exc.message.removeprefix("kiln.distributed: ")
        else:
            culprit, text = self.rank, f"rank {self.rank} raised {_summary(exc)}"
        completed = self.engine.completed if self.engine is not None else 0
        self.watchdog.announce(culprit, text, completed)

    def state(self) -> tuple:
        """(collectives completed, the one running or None): what a ping answers."""
        return self.engine.state() if self.engine is not None else (0, None)

    def busy(self) -> bool:
        return self.engine is not None and self.engine.busy()


class ProcessGroup:
    """The default group: every rank of the MPI job, with its communication thread."""

    def __init__(self, transport: Transport, timeout: float):
        from .engine import Engine
        self.transport = transport
        self.MPI, self.comm, self.ctrl = transport.MPI, transport.comm, transport.ctrl
        self.rank, self.size = transport.rank, transport.size
        self.me, self.peers, self.watchdog = transport.me, transport.peers, transport.watchdog
        self.timeout = timeout
        self.engine = Engine(self)
        transport.engine = self.engine

    def describe(self) -> str:
        return f"rank {self.rank} of {self.size}"

    def close(self, what: str) -> None:
        """Meet the other ranks in a last barrier, then stop the communication thread."""
        from .jobs import Barrier
        try:
            self.engine.run(Barrier(what))
        finally:
            if self.engine.broken is None:
                self.engine.stop()
                self.transport.engine = None


def _summary(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    where = ""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None:
        where = f" at {os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"
    return f"{type(exc).__name__}{': ' + first[:200] if first else ''}{where}"


def _exchange_peers(MPI, comm, me: Peer, timeout: float) -> list[Peer]:
    """Every rank's Peer, by a nonblocking all-gather that gives up after `timeout` (a rank
    that never calls init_process_group must not hang the others)."""
    import pickle
    mine = np.zeros(_PEER_BYTES, np.uint8)
    data = pickle.dumps(me)
    mine[:len(data)] = np.frombuffer(data, np.uint8)
    every = np.zeros((comm.Get_size(), _PEER_BYTES), np.uint8)
    request = comm.Iallgather(mine, every)
    deadline = time.monotonic() + timeout
    while not request.Test():
        if time.monotonic() > deadline:
            raise DistError(f"kiln.distributed: rank {me.rank}: not every rank called "
                            f"init_process_group within {timeout:g} s")
        time.sleep(0.001)
    return [pickle.loads(row.tobytes()) for row in every]


# ---- the default group and the exit path ------------------------------------------------------
class _DefaultGroup:
    """`kiln.distributed.group.WORLD`: the default group, every rank (the only group yet)."""

    def __repr__(self):
        return "<kiln.distributed.group.WORLD>"


WORLD = _DefaultGroup()
_WORLD: ProcessGroup | None = None
_TRANSPORT: Transport | None = None
_HOOKED = False


def current() -> ProcessGroup | None:
    return _WORLD


def require(what: str = "") -> ProcessGroup:
    if _WORLD is None:
        raise DistError("Default process group has not been initialized, please make sure "
                        "to call init_process_group." + (f" ({what})" if what else ""))
    return _WORLD


def prepare(MPI, timeout: float) -> Transport:
    """The transport (made now if there is none yet), with the exit path installed."""
    global _TRANSPORT
    if _TRANSPORT is None:
        _TRANSPORT = Transport(MPI, timeout)
        _install_exit_path()
    return _TRANSPORT


def start(MPI, timeout: float) -> ProcessGroup:
    global _WORLD
    transport = prepare(MPI, timeout)
    transport.engine = None
    _WORLD = ProcessGroup(transport, timeout)
    return _WORLD


def stop() -> None:
    global _WORLD
    group, _WORLD = _WORLD, None
    if group is not None:
        group.close("destroy_process_group")


def _install_exit_path() -> None:
    global _HOOKED
    if _HOOKED:
        return
    _HOOKED = True
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        transport = _TRANSPORT
        if transport is not None:
            try:
                transport.on_uncaught(exc)
            except Exception:   # NOTE: the user's traceback must still print
                pass
        previous(exc_type, exc, tb)

    sys.excepthook = hook
    atexit.register(_at_exit)
    _survive_failure_signal()


def _survive_failure_signal() -> None:
    """MPICH's process manager (run with -disable-auto-cleanup, as `kiln run` does) tells
    the other ranks that one died by sending them SIGUSR1, whose default action would kill
    them before they could say which rank died: the watchdog is asked to look at once."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        return      # NOTE: only the main thread may set handlers; the default stays
    if signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL:
        signal.signal(signal.SIGUSR1, _on_failure_signal)


def _on_failure_signal(signum, frame) -> None:
    transport = _TRANSPORT
    if transport is not None:
        transport.watchdog.poke()


def _at_exit() -> None:
    from .mpi import finalize_at_exit_is_ours
    group, transport = _WORLD, _TRANSPORT
    ours = finalize_at_exit_is_ours()
    broken = group is not None and group.engine.broken is not None
    if transport is not None and (transport.failed or broken):
        if not ours:        # NOTE: mpi4py would call MPI_Finalize next, which can hang
            _leave(1)
        return
    if group is not None:
        try:
            group.close("at exit")
        except DistError as e:
            print(e, file=sys.stderr, flush=True)
            _leave(1)
    if transport is not None:
        transport.watchdog.stop()
    if ours:
        import mpi4py.MPI as MPI
        if not MPI.Is_finalized():
            MPI.Finalize()


def _leave(code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
