"""Peers timed in turns: every peer process is started and set up first, then the parent
gives each one a turn of its timed repetitions in a round, round after round, so a change in
what else runs on the shared machine falls on every peer alike instead of on whichever peer
was running at the time (runs one after the other moved one peer by up to 2x).

Protocol (lines on the child's stdin and stdout): the child prints `READY` when its timed
repetitions are about to start; each `GO` runs one untimed call and then one turn of them,
and answers `DONE`; `END`
lets it finish, print its `RESULT {json}` line and exit. A child that never prints `READY`
(a failure, or a script that times nothing) is simply waited for. Only one child runs at a
time: the others wait on their stdin.
"""
from __future__ import annotations

import os
import queue
import subprocess
import sys
import tempfile
import threading
import time

TURNS_VARIABLE = "KILN_BENCH_TURNS"


# ---- the child's side ---------------------------------------------------------------------
def timed_reps(time_calls, f, args, reps: int, inner: int = 1) -> list[float]:
    """`time_calls(f, args, reps, inner)`, split into the turns the parent gives when it
    runs the peers in turns (KILN_BENCH_TURNS), else all at once."""
    turns = int(os.environ.get(TURNS_VARIABLE) or 0)
    if turns <= 1:
        return time_calls(f, args, reps, inner)
    print("READY", flush=True)
    times: list[float] = []
    for line in sys.stdin:
        command = line.strip()
        if command == "GO":
            # NOTE: one untimed call first: a peer that waited (its thread pool asleep, its
            # caches cold) gets back to the state the timed calls should see
            time_calls(f, args, 1, inner)
            left = reps - len(times)
            times += time_calls(f, args, max(1, -(-left // turns)) if left > 0 else 1, inner)
            turns = max(1, turns - 1)
            print("DONE", flush=True)
        elif command == "END":
            break
    return times


# ---- the parent's side --------------------------------------------------------------------
class _Child:
    """A peer process whose stdout lines arrive on a queue (read by a thread)."""

    def __init__(self, peer: str, cmd: list, env: dict):
        self.peer = peer
        self.err = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, text=True, env=env)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.result: dict | None = None

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def send(self, command: str) -> None:
        try:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def expect(self, words: tuple, deadline: float) -> str | None:
        """The next line starting with one of `words` (a RESULT line is kept as the result);
        None when the child ended or the deadline passed (it is then killed)."""
        import json
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.proc.kill()
                self.result = {"peer": self.peer, "status": "error",
                               "why": "timed out waiting for its turn to end"}
                return None
            if line is None:
                return None
            if line.startswith("RESULT "):
                self.result = json.loads(line[len("RESULT "):])
                if "RESULT" in words:
                    return "RESULT"
            elif line.split(" ")[0] in words:
                return line.split(" ")[0]

    def finish(self, deadline: float) -> dict:
        if self.result is None:
            self.send("END")
            self.expect(("RESULT",), deadline)
        try:
            self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
        if self.result is None:
            self.err.seek(0)
            tail = (self.err.read().strip().splitlines() or ["(no output)"])[-1]
            self.result = {"peer": self.peer, "status": "error",
                           "why": f"exit {self.proc.returncode}: {tail}"}
        self.err.close()
        return self.result


def run_in_turns(commands: list, turns: int, timeout: float, env: dict) -> list[dict]:
    """Each (peer, cmd) started and set up one after the other, then timed in `turns` rounds
    of turns (the order alternating each round); their RESULT dicts, in order."""
    env = {**env, TURNS_VARIABLE: str(turns)}
    deadline = time.monotonic() + timeout * max(1, len(commands))
    children = []
    for peer, cmd in commands:
        child = _Child(peer, cmd, env)
        if child.expect(("READY", "RESULT"), deadline) != "READY":
            child.finish(deadline)      # NOTE: failed, or timed nothing: its result as is
        children.append(child)
    timing = [c for c in children if c.result is None]
    for r in range(turns):
        for child in (timing if r % 2 == 0 else reversed(timing)):
            settle()
            child.send("GO")
            child.expect(("DONE",), deadline)
    return [c.finish(deadline) for c in children]


def settle(quiet: float = 0.15, window: float = 0.03, limit: float = 1.0) -> None:
    """Wait until the CPUs are nearly idle (at most `limit` seconds). NOTE: a peer's thread
    pools spin for a while after its turn (OpenBLAS's workers ~0.1 s, OpenMP's): without
    this the next peer's turn shares its cores with them (kiln-jit's W4 GEMM ran 2x slower
    right after the eager peer's)."""
    end = time.monotonic() + limit
    while time.monotonic() < end and _busy(window) > quiet:
        pass


def _busy(seconds: float) -> float:
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]
    try:
        (t0, i0), _, (t1, i1) = sample(), time.sleep(seconds), sample()
    except OSError:
        return 0.0
    return 1 - (i1 - i0) / max(t1 - t0, 1)
