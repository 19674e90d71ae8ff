"""The communication thread: collectives run one at a time, in the order they were called.

Every rank calls its collectives in program order, so running them in that order on one
thread keeps them matched across ranks, whether a caller waits at once or later
(`async_op=True`). The thread makes blocking MPI calls (mpi4py releases the GIL inside them),
so a collective moves data while the main thread goes on computing: DDP's gradient buckets
are all-reduced during the rest of the backward this way. Waiting happens on the caller's
side (`Work.wait`), which also watches the watchdog's findings and the group's timeout: a
collective that a dead rank never joins cannot be cancelled in MPI, so the waiter raises and
the group is broken from then on.
"""
from __future__ import annotations

import queue
import threading

from .errors import DistError
from .jobs import Job
from .work import Work

_HINT_TIMEOUT = ("a rank may be slower than the limit allows: set it with "
                 "init_process_group(timeout=seconds) or KILN_DIST_TIMEOUT")


class Engine:
    """Queue and thread that run one process group's collectives."""

    def __init__(self, group):
        self.group = group
        self.timeout = group.timeout
        self.submitted = 0          # collectives called so far (their numbers: #1, #2, ...)
        self.completed = 0          # the last one the thread finished
        self.current: Work | None = None
        self.broken: DistError | None = None
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="kiln-dist-comm", daemon=True)
        self._thread.start()

    def submit(self, job: Job, tensors=()) -> Work:
        """Queue `job`; its Work is returned at once."""
        self.refuse_if_broken(self.submitted + 1)
        self.submitted += 1
        work = Work(self, job, self.submitted, tensors)
        self._jobs.put(work)
        return work

    def run(self, job: Job) -> None:
        """Run `job` and wait for it."""
        self.submit(job).wait()

    def refuse_if_broken(self, seq: int) -> None:
        if self.broken is None:
            failure = self.failure_for(seq)
            if failure is not None:
                self.broken = self._error(f"{failure.message}; rank {self.group.rank} cannot "
                                          f"start collective #{seq}", failure.culprit)
        if self.broken is not None:
            b = self.broken
            raise DistError(b.message, failed_rank=b.failed_rank, hint=b.hint)

    def _loop(self) -> None:
        comm, MPI, size = self.group.comm, self.group.MPI, self.group.size
        while True:
            work = self._jobs.get()
            if work is None:
                return
            self.current = work
            error = None
            try:
                if work.job.check:
                    work.job.check_signature(comm, MPI, work.seq)
                work.job.run(comm, MPI, size)
            except DistError as e:
                error = e
            except Exception as e:      # NOTE: an MPI error (ERRORS_RETURN) or a bad buffer
                error = DistError(f"{work.describe()} failed on rank {self.group.rank}: "
                                  f"{type(e).__name__}: {e}")
            self.completed = work.seq
            self.current = None
            work.finish(error)

    def busy(self) -> bool:
        return self.submitted > self.completed

    def state(self) -> tuple:
        """(collectives completed, the one running now or None): what a ping answers."""
        current = self.current
        return self.completed, None if current is None else current.describe()

    def failure_for(self, seq: int):
        return self.group.watchdog.failure_for(seq)

    def broken_by(self, failure, work: Work) -> DistError:
        """The error for `work`, stopped by a failed rank; the group is broken from now."""
        self.broken = self._error(f"{failure.message} while rank {self.group.rank} waited in "
                                  f"{work.describe()}", failure.culprit)
        return self.broken

    def timed_out(self, work: Work, limit: float) -> DistError:
        behind = self.group.watchdog.behind(work.seq)
        states = self.group.watchdog.describe_peers(work.seq)
        self.broken = self._error(f"{work.describe()} did not complete within {limit:g} s on "
                                  f"rank {self.group.rank}; {states}",
                                  behind[0] if len(behind) == 1 else None, _HINT_TIMEOUT)
        return self.broken

    def _error(self, message: str, culprit, hint: str | None = None) -> DistError:
        hint = hint or ("the other ranks stop too: MPI cannot cancel a collective that a "
                        "failed rank never joins")
        return DistError(f"kiln.distributed: {message}", failed_rank=culprit, hint=hint)

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=1.0)
