"""Run every benchmark script (bench/w*.py), each in its own process, one after another.

    python bench/run_all.py              (or `make bench`)
    python bench/run_all.py w1           # only scripts whose name starts with w1
    python bench/run_all.py -- --reps 5  # pass the rest to every script

Scripts run one at a time so they do not compete for the cores; each prints its own table.
They run without the variables that force an OpenBLAS kernel (harness.FORCED_BLAS_VARIABLES):
removed for these processes only, not for the shell or the tests that started this one.
The exit status is non-zero when any script failed (a wrong result voids a timing).
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import harness  # NOTE: sets this process's thread variables and drops forced BLAS ones

BENCH = Path(__file__).resolve().parent


def scripts(prefixes: list[str]) -> list[Path]:
    found = sorted(BENCH.glob("w*.py"))
    if prefixes:
        found = [p for p in found if any(p.stem.startswith(x) for x in prefixes)]
    return found


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    prefixes = argv[:argv.index("--")] if "--" in argv else argv
    chosen = scripts(prefixes)
    if not chosen:
        print(f"no benchmark scripts in {BENCH} match {prefixes}", file=sys.stderr)
        return 2
    for variable, value in harness.FORCED_AT_START.items():
        print(f"running the benchmarks without {variable}={value} (set where this started)")
    failed = []
    for path in chosen:
        print(f"##### {path.name}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run([sys.executable, str(path), *extra],
                            env=harness.benchmark_environment()).returncode
        print(f"##### {path.name}: exit {rc} after {time.perf_counter() - t0:.0f} s\n",
              flush=True)
        if rc != 0:
            failed.append(path.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
