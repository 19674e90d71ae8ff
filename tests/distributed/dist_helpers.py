"""Running a worker script on N ranks with `kiln run`, with a timeout, and reading it back."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

WORKERS = Path(__file__).resolve().parent / "workers"
SPAWN_TIMEOUT_S = 90


def run_ranks(n: int, worker: str, *args, out_dir, timeout: float = SPAWN_TIMEOUT_S,
              extra_env: dict | None = None) -> subprocess.CompletedProcess:
    """`kiln run -n N --output-dir OUT_DIR workers/<worker> args...`: each rank's stdout and
    stderr go to OUT_DIR/rank<r>.out and .err (`rank_output`). Past `timeout` seconds the
    whole job is killed and the test fails, so a hang can never stop the test run."""
    cmd = [sys.executable, "-m", "kiln.distributed.launch", "-n", str(n), "--threads", "1",
           "--output-dir", str(out_dir), str(WORKERS / worker), *map(str, args)]
    env = dict(os.environ, **(extra_env or {}))
    env.pop("KILN_DIST_TIMEOUT", None)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)     # NOTE: mpiexec, its proxies and the ranks
        out, err = proc.communicate()
        raise AssertionError(f"{worker} on {n} ranks did not finish within {timeout} s\n"
                             f"{out[-2000:]}\n{err[-2000:]}\n{everything(out_dir)}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def rank_output(out_dir, rank: int) -> tuple[str, str]:
    """(stdout, stderr) of one rank."""
    def read(suffix):
        path = Path(out_dir) / f"rank{rank}.{suffix}"
        return path.read_text() if path.exists() else ""
    return read("out"), read("err")


def everything(out_dir) -> str:
    """Every rank's output, for an assertion message."""
    parts = []
    for path in sorted(Path(out_dir).glob("rank*.*")):
        parts.append(f"--- {path.name}\n{path.read_text()[-3000:]}")
    return "\n".join(parts)
