"""One rank of `kiln run`: runs the script in a child process and stays with it.

Run as a file (`python .../supervise.py script.py args...`), never as part of the kiln
package, so it starts in milliseconds. Why it exists: MPICH's process manager (hydra)
SIGKILLs every rank of the job as soon as one rank dies of a signal, even with
-disable-auto-cleanup, so the other ranks could never say which rank failed. Between hydra
and the rank, this supervisor turns a death by a signal into an ordinary exit status (and a
line saying so); hydra then only tells the others (SIGUSR1, kept here), whose watchdogs
find the failed rank, and each of them stops with an error naming it.

A rank that fails before it has started MPI would leave the others inside MPI_Init forever:
its supervisor then dies of SIGKILL itself, which makes hydra stop the job. A rank still
running FAILURE_GRACE_S after another rank failed is stopped (SIGTERM, then SIGKILL).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

FAILURE_GRACE_S = float(os.environ.get("KILN_RUN_FAILURE_GRACE", "10"))
READY_FD = "KILN_RUN_READY_FD"
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR2)


def _rank() -> str:
    return os.environ.get("PMI_RANK", "?")


def _say(text: str) -> None:
    print(f"kiln run: rank {_rank()}: {text}", file=sys.stderr, flush=True)


class Supervisor:
    def __init__(self, argv: list[str]):
        pmi_fd = os.environ.get("PMI_FD", "")
        fds = (int(pmi_fd),) if pmi_fd.isdigit() else ()
        os.environ.update(_torch_style_env())
        # NOTE: the rank writes a byte here once MPI has started (kiln/distributed/mpi.py)
        self.ready_r, ready_w = os.pipe()
        os.set_blocking(self.ready_r, False)
        os.environ[READY_FD] = str(ready_w)
        fds += (ready_w,)
        self.started = False
        # NOTE: a session of its own: hydra signals its children's process groups, and a
        # rank must not die of the SIGUSR1 hydra sends when another rank exits; it still
        # dies with this supervisor (PR_SET_PDEATHSIG), never left running alone
        self.child = subprocess.Popen([sys.executable] + argv, pass_fds=fds,
                                      start_new_session=True, preexec_fn=_die_with_parent)
        for fd in fds:      # NOTE: the child's copies (its link to hydra, the ready pipe)
            os.close(fd)
        self.failed_at: float | None = None
        for sig in _FORWARDED:
            signal.signal(sig, self._forward)
        signal.signal(signal.SIGUSR1, self._another_failed)

    def _forward(self, signum, frame) -> None:
        if self.child.poll() is None:
            self.child.send_signal(signum)

    def _another_failed(self, signum, frame) -> None:
        # NOTE: not forwarded: the rank's watchdog finds the failed rank by itself within a
        # second, and a rank already exiting (its handlers reset) would die of the signal
        self.failed_at = self.failed_at or time.monotonic()

    def _read_ready(self) -> None:
        try:
            self.started = self.started or bool(os.read(self.ready_r, 1))
        except BlockingIOError:
            pass

    def wait(self) -> int:
        stage = 0
        while True:
            try:
                code = self.child.wait(timeout=0.1)
                self._read_ready()
                return code
            except subprocess.TimeoutExpired:
                self._read_ready()
            if self.failed_at is None:
                continue
            late = time.monotonic() - self.failed_at - FAILURE_GRACE_S
            if late >= 0 and stage == 0:
                _say(f"another rank failed {FAILURE_GRACE_S:g} s ago and this one is still "
                     "running (stuck starting MPI, or not calling collectives): stopping it")
                self.child.terminate()
                stage = 1
            elif late >= 5 and stage == 1:
                self.child.kill()
                stage = 2


def _torch_style_env() -> dict:
    """RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, as PyTorch's launchers set them (a
    script may read them before init_process_group), from what hydra tells every rank."""
    pairs = {"RANK": "PMI_RANK", "WORLD_SIZE": "PMI_SIZE", "LOCAL_RANK": "MPI_LOCALRANKID",
             "LOCAL_WORLD_SIZE": "MPI_LOCALNRANKS"}
    return {ours: os.environ[theirs] for ours, theirs in pairs.items() if theirs in os.environ}


def _die_with_parent() -> None:
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))      # NOTE: PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: supervise.py SCRIPT.py [ARGS...] | -m MODULE [ARGS...]",
              file=sys.stderr)
        return 2
    supervisor = Supervisor(argv)
    code = supervisor.wait()
    what = f"exited with status {code}" if code >= 0 else \
        f"was killed by {signal.Signals(-code).name}"
    if code != 0 and not supervisor.started:
        # NOTE: the other ranks wait inside MPI_Init for this one forever; dying of a signal
        # makes hydra stop the whole job
        _say(f"process {supervisor.child.pid} {what} before it started MPI: stopping the "
             "job (the other ranks would wait for it forever)")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    if code < 0:
        _say(f"process {supervisor.child.pid} {what}")
        return 128 - code
    return code


if __name__ == "__main__":
    status = main(sys.argv[1:])
    # NOTE: hydra signals the ranks still running whenever one leaves, even at a normal end;
    # ignored from here on, and no interpreter shutdown (which would restore the default,
    # deadly, action)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
