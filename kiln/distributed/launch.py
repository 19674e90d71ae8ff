"""`kiln run -n 4 train.py [args...]`: start a script on N processes, with MPICH's mpiexec.

A thin wrapper: it finds mpiexec (next to this Python, where `pip install mpich` puts it),
runs every rank under a small supervisor (supervise.py: a rank killed by a signal makes the
others stop with an error naming it, instead of hydra killing them all silently), passes
-disable-auto-cleanup (for the same reason), and gives each rank a fair share of this
machine's cores (OMP/OpenBLAS/MKL/Kiln thread counts) unless the environment sets them.
`mpiexec -n 4 python train.py` runs the same script too; see the README for what
`kiln run` adds and for hosts files (several machines).

    kiln run -n 4 train.py --epochs 3
    kiln run -n 8 --hostfile hosts --ppn 4 train.py      # two machines, four ranks each
    kiln run -n 2 --timeout 60 -m mypackage.train
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "KILN_NUM_THREADS")

_EPILOG = """\
every rank gets this shell's environment, plus KILN_DIST_TIMEOUT (--timeout), the thread
counts (--threads), KILN_RUN_FAILURE_GRACE (--failure-grace), and RANK, WORLD_SIZE,
LOCAL_RANK, LOCAL_WORLD_SIZE (as PyTorch's launchers set them).

examples:
  kiln run -n 2 examples/ddp_digits.py
  kiln run -n 8 --hostfile hosts --ppn 4 train.py
  kiln run -n 4 --dry-run train.py          # print the mpiexec command only
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kiln run", description=__doc__.split("\n\n")[0],
                                epilog=_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--nproc", type=_positive, required=True, metavar="N",
                   help="number of processes (ranks)")
    p.add_argument("--hosts", metavar="H1,H2", help="comma-separated hosts (mpiexec -hosts)")
    p.add_argument("--hostfile", metavar="FILE",
                   help="MPICH host file: one `host[:ranks]` per line (mpiexec -f)")
    p.add_argument("--ppn", type=_positive, metavar="K", help="ranks per host (mpiexec -ppn)")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="bound on every collective (KILN_DIST_TIMEOUT; default 30 minutes)")
    p.add_argument("--threads", type=_positive, metavar="T",
                   help="threads per rank (default: this machine's cores / its ranks)")
    p.add_argument("--failure-grace", type=float, default=10.0, metavar="SECONDS",
                   help="stop a rank still running this long after another failed (10)")
    p.add_argument("--tag-output", action="store_true", help="prefix output lines with rank")
    p.add_argument("--output-dir", metavar="DIR",
                   help="write each rank's output to DIR/rank<r>.out and DIR/rank<r>.err")
    p.add_argument("--mpiexec", metavar="PATH", help="the mpiexec to use (default: found)")
    p.add_argument("--mpiexec-args", default="", metavar="'ARGS'",
                   help="more mpiexec options in one string: --mpiexec-args='-iface eth0'")
    p.add_argument("--dry-run", action="store_true", help="print the command, run nothing")
    p.add_argument("-m", dest="module", metavar="MODULE",
                   help="run a module, as python -m (the rest are its arguments)")
    p.add_argument("script", nargs="?", help="the training script")
    p.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    return p


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def find_mpiexec(given: str | None = None) -> str:
    """mpiexec: `given`, else the one beside this Python (MPICH's wheel), else on PATH."""
    if given:
        return given
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.exists():
        return str(beside)
    found = shutil.which("mpiexec")
    if found:
        return found
    raise FileNotFoundError("kiln run: no mpiexec found; install MPICH's wheel into this "
                            "Python: pip install mpi4py mpich")


def command(ns) -> list[str]:
    """The mpiexec command line for parsed arguments `ns`."""
    cmd = [find_mpiexec(ns.mpiexec), "-disable-auto-cleanup", "-n", str(ns.nproc)]
    if ns.hosts:
        cmd += ["-hosts", ns.hosts]
    if ns.hostfile:
        cmd += ["-f", ns.hostfile]
    if ns.ppn:
        cmd += ["-ppn", str(ns.ppn)]
    if ns.tag_output:
        cmd.append("-prepend-rank")
    cmd += shlex.split(ns.mpiexec_args)
    if ns.output_dir:
        out = Path(ns.output_dir)
        cmd += ["-outfile-pattern", str(out / "rank%r.out"),
                "-errfile-pattern", str(out / "rank%r.err")]
    target = ["-m", ns.module] if ns.module else [ns.script]
    supervisor = str(Path(__file__).with_name("supervise.py"))
    return cmd + [sys.executable, supervisor] + target + list(ns.args)


def environment(ns, base=None) -> dict:
    """This shell's environment plus what every rank should get."""
    env = dict(os.environ if base is None else base)
    if ns.timeout is not None:
        env["KILN_DIST_TIMEOUT"] = repr(ns.timeout)
    env["KILN_RUN_FAILURE_GRACE"] = repr(ns.failure_grace)
    local = ns.ppn or (ns.nproc if not (ns.hosts or ns.hostfile) else 1)
    threads = ns.threads or max(1, len(os.sched_getaffinity(0)) // local)
    for var in _THREAD_VARS:
        if ns.threads is not None or var not in env:
            env[var] = str(threads)
    return env


def parse_args(argv) -> argparse.Namespace:
    """Parsed `kiln run` arguments. Everything after the script (or after `-m MODULE`) is
    the program's own, passed through verbatim (a `--` among them too); a `--` before the
    script only ends the launcher's options."""
    parser = build_parser()
    argv = list(argv)
    options, target, rest = argv, None, []
    for i, arg in enumerate(argv):
        if arg == "-m" and i + 1 < len(argv):
            options, target, rest = argv[:i], ("module", argv[i + 1]), argv[i + 2:]
            break
        if arg == "--" and (i == 0 or not _takes_value(argv[i - 1])):
            if i + 1 < len(argv):
                options, target, rest = argv[:i], ("script", argv[i + 1]), argv[i + 2:]
            else:
                options = argv[:i]
            break
        if not arg.startswith("-") and (i == 0 or not _takes_value(argv[i - 1])):
            options, target, rest = argv[:i], ("script", arg), argv[i + 1:]
            break       # NOTE: the script: what follows is its own
    # NOTE: argparse never sees the program's arguments: it would drop a `--` among them
    ns = parser.parse_args(options)
    if target is None:
        parser.error("give a script to run (or -m MODULE)")
    ns.module = target[1] if target[0] == "module" else None
    ns.script = target[1] if target[0] == "script" else None
    ns.args = rest
    return ns


_VALUED = ("-n", "--nproc", "--hosts", "--hostfile", "--ppn", "--timeout", "--threads",
           "--failure-grace", "--output-dir", "--mpiexec", "--mpiexec-args")


def _takes_value(arg: str) -> bool:
    return arg in _VALUED


def main(argv=None) -> int:
    """`kiln run ...`; returns mpiexec's exit status (2 for a usage error)."""
    ns = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        cmd = command(ns)
    except FileNotFoundError as e:
        print(e, file=sys.stderr)
        return 1
    if ns.dry_run:
        print(" ".join(cmd))
        return 0
    if ns.output_dir:
        os.makedirs(ns.output_dir, exist_ok=True)
    return subprocess.call(cmd, env=environment(ns))


if __name__ == "__main__":
    sys.exit(main())
