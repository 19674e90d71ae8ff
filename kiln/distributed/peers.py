"""Who the other ranks are (host, process id) and whether a rank on this machine still runs.

Each rank publishes a `Peer` when the group starts. A rank whose process shares this one's
process-id namespace (same host, same boot, same PID namespace) is checked through /proc:
gone, a zombie, or a new process reusing the id (another start time) means it died. Ranks on
other machines are watched by ping instead (watchdog.py).
"""
from __future__ import annotations

import dataclasses
import os
import socket


@dataclasses.dataclass(frozen=True)
class Peer:
    rank: int
    host: str
    pid: int
    start: str          # /proc/<pid>/stat field 22: tells a reused process id apart
    namespace: str      # host + boot id + PID namespace: where `pid` means this process

    def describe(self) -> str:
        return f"rank {self.rank} (pid {self.pid} on {self.host})"


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _stat_fields(pid: int) -> list[str] | None:
    text = _read(f"/proc/{pid}/stat")
    if not text:
        return None
    # NOTE: field 2 (the command) is in parentheses and may hold spaces
    return [text.split(" ", 1)[0]] + text.rsplit(")", 1)[-1].split()


def _namespace() -> str:
    try:
        pid_ns = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        pid_ns = "?"
    return f"{socket.gethostname()}/{_read('/proc/sys/kernel/random/boot_id')}/{pid_ns}"


def this_process(rank: int) -> Peer:
    pid = os.getpid()
    fields = _stat_fields(pid)
    start = fields[20] if fields and len(fields) > 20 else ""
    return Peer(rank, socket.gethostname(), pid, start, _namespace())


def is_local(peer: Peer, me: Peer) -> bool:
    """Whether `peer.pid` can be checked from here (and /proc works here at all)."""
    return peer.namespace == me.namespace and bool(me.start)


def is_running(peer: Peer) -> bool:
    """A local peer's process still runs (not gone, not a zombie, not a reused id)."""
    fields = _stat_fields(peer.pid)
    if fields is None or len(fields) <= 20:
        return False
    return fields[1] not in ("Z", "X") and fields[20] == peer.start
