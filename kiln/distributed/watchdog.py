"""The watchdog: notices a failed rank while the others wait for it, and says which.

A thread per rank, awake every 0.1 s, on a communicator of its own (small pickled messages):
- a rank that dies with an uncaught exception first sends ("failed", itself, what it raised,
  collectives it completed) to every other rank (process_group.py installs the hook);
- a rank on this machine is checked through /proc every 0.25 s (peers.py): a rank killed by a
  signal sends nothing, but its process is gone;
- while this rank waits for a collective it pings every other rank every 2 s; a rank's own
  watchdog answers (its collectives completed, the one it is in), whatever its main thread
  is doing. A rank on another machine that stays silent for SILENT_S counts as dead, and the
  answers say, when a collective times out, which ranks never called it.
A failure is kept (the first one, made precise by a later notice from the same rank) and
`Work.wait` raises it: at once for collectives the failed rank never reached, and after a
short grace when that is unknown (a killed rank may have finished the collective first).
"""
from __future__ import annotations

import dataclasses
import sys
import threading
import time

from .peers import is_local, is_running

TAG = 7301
POLL_S = 0.1
LOCAL_CHECK_S = 0.25
PING_S = 2.0
SILENT_S = 30.0
GRACE_S = 0.5
ANNOUNCE_S = 2.0


@dataclasses.dataclass(frozen=True)
class Failure:
    culprit: int
    message: str
    completed: int | None       # collectives the culprit completed; None when unknown
    since: float

    def blocks(self, seq: int, now: float) -> bool:
        """Whether collective `seq` can no longer complete because of this failure."""
        if self.completed is not None:
            return seq > self.completed
        return now - self.since >= GRACE_S


class Watchdog:
    """Finds failed ranks for one process group (see the module docstring)."""

    def __init__(self, group):
        self.group = group
        self.failure: Failure | None = None
        self.heard: dict[int, float] = {}
        self.states: dict[int, tuple] = {}      # rank -> (time, completed, current or None)
        others = [p for p in group.peers if p.rank != group.rank]
        self._local = [p for p in others if is_local(p, group.me)]
        self._remote = [p for p in others if not is_local(p, group.me)]
        self._sends: list = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._busy_since: float | None = None
        self._warned = False
        self._poked = False
        self._thread = threading.Thread(target=self._loop, name="kiln-dist-watchdog",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)

    def poke(self) -> None:
        """Check the local ranks at the next wake-up (a rank has died, says MPICH)."""
        self._poked = True

    def failure_for(self, seq: int) -> Failure | None:
        f = self.failure
        return f if f is not None and f.blocks(seq, time.monotonic()) else None

    def note(self, failure: Failure) -> None:
        with self._lock:
            old = self.failure
            if old is None or (old.culprit == failure.culprit and old.completed is None
                               and failure.completed is not None):
                self.failure = failure

    # ---- messages -------------------------------------------------------------------------
    def announce(self, culprit: int, message: str, completed: int) -> None:
        """Tell every other rank that `culprit` failed (from this rank's exit path)."""
        for p in self.group.peers:
            if p.rank != self.group.rank:
                self._send(p.rank, ("failed", culprit, message, completed))
        deadline = time.monotonic() + ANNOUNCE_S
        while self._reap_sends() and time.monotonic() < deadline:
            time.sleep(0.005)

    def _send(self, dest: int, message: tuple) -> None:
        with self._lock:
            try:
                self._sends.append(self.group.ctrl.isend(message, dest=dest, tag=TAG))
            except Exception:   # NOTE: an unreachable rank; its silence is noticed anyway
                pass

    def _reap_sends(self) -> int:
        """Drop completed sends; how many are still in flight."""
        with self._lock:
            self._sends = [r for r in self._sends if not _done(r)]
            return len(self._sends)

    def _drain(self) -> None:
        MPI, ctrl = self.group.MPI, self.group.ctrl
        status = MPI.Status()
        while ctrl.Iprobe(source=MPI.ANY_SOURCE, tag=TAG, status=status):
            source = status.Get_source()
            message = ctrl.recv(source=source, tag=TAG)
            self.heard[source] = time.monotonic()
            self._handle(source, message)

    def _handle(self, source: int, message: tuple) -> None:
        kind = message[0]
        if kind == "ping":
            self._send(source, ("pong",) + self.group.state())
        elif kind == "pong":
            self.states[source] = (time.monotonic(),) + tuple(message[1:])
        elif kind == "failed":
            _, culprit, text, completed = message
            self.note(Failure(culprit, text, completed, time.monotonic()))

    # ---- the loop -------------------------------------------------------------------------
    def _loop(self) -> None:
        last_local = last_ping = 0.0
        while not self._stop.wait(POLL_S):
            try:
                self._drain()
                now = time.monotonic()
                if self._poked or now - last_local >= LOCAL_CHECK_S:
                    self._poked = False
                    self._check_local(now)
                    last_local = now
                if self.group.busy():
                    self._busy_since = self._busy_since or now
                    if now - last_ping >= PING_S:
                        self._ping()
                        last_ping = now
                    self._check_silent(now)
                else:
                    self._busy_since = None
                self._reap_sends()
            except Exception as e:  # NOTE: never die silently; the timeout still holds
                self._warn(e)

    def _ping(self) -> None:
        for p in self.group.peers:
            if p.rank != self.group.rank:
                self._send(p.rank, ("ping",))

    def _check_local(self, now: float) -> None:
        for p in list(self._local):
            if not is_running(p):
                self._local.remove(p)
                self.note(Failure(p.rank, f"{p.describe()} died (killed, or exited while "
                                          "the process group was running)", None, now))

    def _check_silent(self, now: float) -> None:
        for p in list(self._remote):
            last = max(self.heard.get(p.rank, 0.0), self._busy_since or now)
            if now - last > SILENT_S:
                self._remote.remove(p)
                self.note(Failure(p.rank, f"{p.describe()} has not answered for "
                                          f"{now - last:.0f} s (dead, hung or unreachable)",
                                  None, now))

    def _warn(self, e: Exception) -> None:
        if not self._warned:
            self._warned = True
            print(f"kiln.distributed: rank {self.group.rank}'s watchdog: "
                  f"{type(e).__name__}: {e}", file=sys.stderr, flush=True)

    # ---- reports ----------------------------------------------------------------------------
    def behind(self, seq: int) -> list[int]:
        """Ranks that, by their last answer, had not called collective `seq`."""
        out = []
        for p in self.group.peers:
            state = self.states.get(p.rank)
            if p.rank != self.group.rank and (state is None or (state[2] is None
                                                                 and state[1] < seq)):
                out.append(p.rank)
        return out

    def describe_peers(self, seq: int) -> str:
        now = time.monotonic()
        parts = []
        for p in self.group.peers:
            if p.rank == self.group.rank:
                continue
            state = self.states.get(p.rank)
            if state is None:
                parts.append(f"rank {p.rank}: no answer")
            elif state[2] is not None:
                parts.append(f"rank {p.rank}: in {state[2]} (answered {now - state[0]:.0f} "
                             "s ago)")
            else:
                parts.append(f"rank {p.rank}: alive, in no collective, has completed "
                             f"{state[1]} (it has not called #{seq} yet)")
        return "; ".join(parts)


def _done(request) -> bool:
    try:
        return request.Test()
    except Exception:
        return True
