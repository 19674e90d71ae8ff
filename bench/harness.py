"""What the benchmark scripts share: thread limits, pinning, peer processes, checking, timing,
floors (copy bandwidth, BLAS rate) and the table (BENCHMARKS.md, bench/RESULTS.md).

Import it BEFORE NumPy: importing it sets the thread variables that thread pools read once,
and removes the variables that would force an OpenBLAS kernel (FORCED_BLAS_VARIABLES).
A script's parent process spawns one child per peer (`script ... --peer NAME`) in
benchmark_environment(); the child pins itself to THREADS cores, checks and times, and prints
one `RESULT {json}` line. Run as a script, this file prints the BLAS record of a process set
up like a peer's (`header` prints it: threadpoolctl's view of NumPy's and PyTorch's BLAS).
"""
from __future__ import annotations

import os

THREADS = 2
# NOTE: a forced OpenBLAS kernel or cache size (set for some other program on the machine)
# would make NumPy's and PyTorch's BLAS differ from what the hardware picks: the benchmarks'
# processes (this one and every peer it spawns) run without them.
FORCED_BLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
# NOTE: what this process was started with, so the BLAS record can show that a peer process
# started without them (not merely that it removed them itself).
FORCED_AT_START = {v: os.environ.pop(v) for v in FORCED_BLAS_VARIABLES if v in os.environ}
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = str(THREADS)
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                      f"intra_op_parallelism_threads={THREADS}")

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import turns  # noqa: E402

COPY_BYTES = 256 * 2**20
BLAS_N = 2048
# NOTE: the peers a user would pick instead (BENCHMARKS.md), each where importable.
STANDARD_PEERS = ("kiln", "kiln-jit", "numpy", "torch", "torch.compile", "jax")


def benchmark_environment() -> dict:
    """The environment of every process the benchmarks start: this one's, without the
    variables that force an OpenBLAS kernel (explicit, so no later change to os.environ can
    hand them to a peer), and with Python's bytecode cache on, as a user's Python has it
    (these machines' shells set PYTHONDONTWRITEBYTECODE: every fresh peer process would
    compile each library's modules from source, ~40 ms of W7's warm start). Without the
    turns variable too: only `turns.run_in_turns` gives it, to the children it talks to."""
    return {k: v for k, v in os.environ.items()
            if k not in FORCED_BLAS_VARIABLES
            and k not in ("PYTHONDONTWRITEBYTECODE", turns.TURNS_VARIABLE)}


def pin_cpus() -> None:
    # NOTE: env variables cover OpenMP/BLAS pools; pinning covers every other pool (Kiln's).
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:THREADS])


def kiln_module():
    """kiln, with @kiln.jit's eager fallback an error: timing it would credit the compiler."""
    import warnings

    import kiln
    warnings.simplefilter("error", kiln.KilnJitWarning)
    return kiln


def torch_module():
    import torch
    torch.set_num_threads(THREADS)
    return torch


def jax_jitted(f, inputs):
    """(args, timed call, result -> NumPy) for jax.jit(f) on `inputs`, put on the device once;
    the call waits for its result (JAX dispatches asynchronously)."""
    import jax
    jitted = jax.jit(f)
    args = tuple(jax.numpy.asarray(a) for a in inputs)
    return args, lambda *a: jitted(*a).block_until_ready(), np.asarray


def version_of(peer: str) -> str:
    return getattr(sys.modules.get(peer.split(".")[0].split("-")[0]), "__version__", "?")


def scaled_error(got, want: np.ndarray) -> float:
    """max |got - want| / max |want| (for outputs with entries near 0: softmax, matmul)."""
    got = np.asarray(got, np.float64)
    if got.shape != want.shape:
        return float("inf")
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300))


def import_failure(peer: str, e: ImportError) -> dict:
    """A peer that is not installed is skipped; Kiln failing to import is an error."""
    if peer.startswith("kiln"):
        return {"peer": peer, "status": "error", "why": f"ImportError: {e}"}
    return {"peer": peer, "status": "skipped", "why": f"not installed ({e.name})"}


def time_calls(f, args, reps: int, inner: int = 1) -> list[float]:
    """Seconds per call of f(*args), one entry per repetition of `inner` calls."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            f(*args)
        times.append((time.perf_counter() - t0) / inner)
    return times


def measure(peer: str, maker, inputs, want, ns, error=scaled_error, inner: int = 1) -> dict:
    """maker(inputs) -> (args, f, to_numpy). Check f(*args) against `want` (a wrong result
    voids the timing), warm up, then the median of ns.reps timed repetitions."""
    try:
        args, f, back = maker(inputs)
    except ImportError as e:
        return import_failure(peer, e)
    try:
        t0 = time.perf_counter()
        got = back(f(*args))
        first_s = time.perf_counter() - t0
    except Exception as e:  # NOTE: one broken peer must not hide the others' numbers
        return {"peer": peer, "status": "error", "why": f"{type(e).__name__}: {e}"}
    err = error(got, want)
    if not err <= ns.tol:
        return {"peer": peer, "status": "wrong", "err": err,
                "why": f"error {err:.2e} > {ns.tol:.0e}: timing void"}
    time_calls(f, args, ns.warmup, inner)
    times = turns.timed_reps(time_calls, f, args, ns.reps, inner)
    out = {"peer": peer, "status": "ok", "err": err, "first_s": first_s,
           "median_s": statistics.median(times), "min_s": min(times), "reps": ns.reps,
           "version": version_of(peer)}
    if peer == "kiln-jit":
        out["profile"] = kiln_profile(f, args)
    return out


def kiln_profile(jitted, args, reps: int = 7) -> dict:
    """Median ms of a jitted call, of its executable alone, and of each executable step
    (compiled kernels by their ops, NumPy reference ops and library calls by op name)."""
    # NOTE: reads Kiln's internals (cache entries, executable steps); a change there makes
    # the profile say so, never fails the benchmark.
    try:
        entry = next(e for es in jitted.cache.values() for e in es if hasattr(e, "executable"))
        exe = entry.executable
        arrays = _executable_inputs(entry, args)
        steps = _time_steps(exe, arrays, reps)
        med = [1e3 * statistics.median(t) for t in steps]
        return {"call": 1e3 * statistics.median(time_calls(jitted, args, reps)),
                "executable": 1e3 * statistics.median(time_calls(exe, [arrays], reps)),
                "steps": list(zip([_step_name(s) for s in exe.steps], med))}
    except Exception as e:
        return {"unavailable": f"{type(e).__name__}: {e}"}


def _executable_inputs(entry, args) -> list:
    """The arrays a jit cache entry hands its executable for `args`."""
    arrays = []
    for (kind, ref, extra), t in zip(entry.sources, entry.input_tensors(args)):
        if t is not None:
            arrays.append(t._data)
        elif kind == "scalar":          # NOTE: a learning rate read at every call
            arrays.append(np.asarray(ref(), dtype=extra))
        else:                           # NOTE: random numbers drawn per call
            arrays.append(ref())
    return arrays


def _time_steps(exe, arrays, reps: int) -> list[list[float]]:
    """Seconds of each step of `reps` calls of exe(arrays): each step wrapped in a timer for
    the calls (the executable's step loop, `run_steps`, runs them: its arena and buffers
    stay its own; a call itself runs the generated runner, which a wrapper cannot time)."""
    steps = list(exe.steps)
    times: list[list[float]] = [[] for _ in steps]

    def timed(step, record):
        def run(env):
            t0 = time.perf_counter()
            step(env)
            record.append(time.perf_counter() - t0)
        return run
    exe.steps[:] = [timed(s, t) for s, t in zip(steps, times)]
    try:
        for _ in range(reps):
            exe.run_steps(arrays)
    finally:
        exe.steps[:] = steps
    return times


def _step_name(step) -> str:
    """A compiled kernel as [its ops], any other step as 'op (NumPy)'."""
    planned = getattr(step, "step", None) or step.node    # NOTE: the planned step or node
    kernel = getattr(planned, "kernel", None)
    if kernel is None and planned.op == "kernel":
        kernel = planned.attrs
    if kernel is not None:
        return f"[{' '.join(n.op for n in kernel.body.nodes)}]"
    return f"{planned.op} (NumPy)"


def profile_line(profile: dict) -> str:
    if "unavailable" in profile:
        return f"kiln-jit profile unavailable ({profile['unavailable']})"
    unit, k = ("µs", 1e3) if profile["call"] < 1 else ("ms", 1)
    steps = ", ".join(f"{n} {k * ms:.3g}" for n, ms in profile["steps"])
    return (f"kiln-jit profile (median {unit}): call {k * profile['call']:.3g}, executable "
            f"{k * profile['executable']:.3g}; steps: {steps}")


def parallel_copy(dst: np.ndarray, src: np.ndarray, threads: int) -> None:
    """np.copyto in `threads` equal slices at once (NumPy releases the GIL while copying)."""
    edges = np.linspace(0, src.size, threads + 1).astype(int)
    workers = [threading.Thread(target=np.copyto, args=(dst[a:b], src[a:b]))
               for a, b in zip(edges[:-1], edges[1:])]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def copy_bandwidth(reps: int) -> dict:
    """Bytes read + written per second by np.copyto of 256 MiB: the best of 1 and THREADS."""
    src = np.random.default_rng(1).random(COPY_BYTES // 8)
    dst = np.empty_like(src)
    counts = sorted({1, THREADS})
    calls = [lambda t=t: parallel_copy(dst, src, t) for t in counts]
    times = _floor_times(calls, reps)
    rates = {t: 2 * src.nbytes / statistics.median(ts) for t, ts in zip(counts, times)}
    return {"peer": "copy", "status": "ok", "per_s": max(rates.values()), "by_threads": rates,
            "what": "copy bandwidth, np.copyto of 256 MiB"}


def blas_rate(reps: int) -> dict:
    """Float32 flop/s of a NumPy (BLAS_N)^2 @ (BLAS_N)^2 product, median after one warm-up."""
    a = np.random.default_rng(2).standard_normal((BLAS_N, BLAS_N), dtype=np.float32)
    (times,) = _floor_times([lambda: np.matmul(a, a)], reps)
    return {"peer": "blas", "status": "ok", "per_s": 2 * BLAS_N**3 / statistics.median(times),
            "what": f"BLAS rate, NumPy float32 {BLAS_N}^3 matmul"}


def _floor_times(calls: list, reps: int) -> list[list[float]]:
    """Seconds of each call, `reps` times after two warm-up rounds; in the parent's turns
    when it gives them (the floor then takes turns with the peers, so the host's speed
    changing during a run moves the floor with them: measured first, alone, W4's floor ran
    at 182 GFLOP/s and NumPy's own product, minutes later, at 0.86 of it)."""
    def rounds(_f, _args, n: int, _inner: int = 1) -> list[tuple]:
        return [tuple(time_calls(call, [], 1)[0] for call in calls) for _ in range(n)]
    rounds(None, None, 2)
    per_round = turns.timed_reps(rounds, None, None, reps)
    return [list(ts) for ts in zip(*per_round)]


# ---- the BLAS record: which kernels NumPy and PyTorch run in a peer process ----------------
def thread_pools() -> list[dict] | None:
    """threadpoolctl's view of the BLAS and OpenMP libraries loaded now; None without it."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return threadpool_info()


def _torch_build_blas(torch) -> str:
    """The BLAS torch was built with (its build settings' BLAS_INFO), '?' where unreadable."""
    found = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    return found.group(1) if found else "?"


def _torch_record(numpy_pools) -> dict:
    """PyTorch's pools: those that importing torch added to NumPy's (told apart by file)."""
    try:
        torch = torch_module()
    except ImportError as e:
        return {"missing": f"not installed ({e.name})"}
    pools = thread_pools()
    seen = {p["filepath"] for p in numpy_pools or []}
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:   # NOTE: an older torch: the record says so, never fails
        capability = "?"
    return {"version": torch.__version__, "threads": torch.get_num_threads(),
            "build_blas": _torch_build_blas(torch), "cpu_capability": capability,
            "pools": None if pools is None else [p for p in pools if p["filepath"] not in seen]}


def blas_record() -> dict:
    """In a process set up like a peer's: NumPy's and PyTorch's BLAS (threadpoolctl's
    internal_api, version, architecture = OpenBLAS's core type, num_threads) and whether the
    process started with a forced OpenBLAS kernel."""
    numpy_pools = thread_pools()      # NOTE: before torch loads its own libraries
    return {"peer": "blas-record", "status": "ok", "forced_at_start": FORCED_AT_START,
            "numpy": {"version": np.__version__, "pools": numpy_pools},
            "torch": _torch_record(numpy_pools)}


def pool_text(pool: dict) -> str:
    """One threadpoolctl entry: 'openblas 0.3.31, architecture SkylakeX, 2 threads (...)'."""
    parts = [f"{pool.get('internal_api')} {pool.get('version') or ''}".strip()]
    if pool.get("architecture"):
        parts.append(f"architecture {pool['architecture']}")
    parts.append(f"{pool.get('num_threads')} threads")
    where = [pool.get("threading_layer"), os.path.basename(pool.get("filepath") or "")]
    return ", ".join(parts) + f" ({'; '.join(w for w in where if w)})"


def _numpy_blas_line(numpy: dict) -> str:
    head = f"BLAS numpy {numpy['version']}: "
    if numpy["pools"] is None:
        return head + "threadpoolctl not installed (kernel not recorded)"
    blas = [p for p in numpy["pools"] if p.get("user_api") == "blas"]
    return head + ("; ".join(pool_text(p) for p in blas) or "no BLAS library found")


def _torch_blas_line(torch: dict) -> str:
    if "missing" in torch:
        return f"BLAS torch: {torch['missing']}"
    head = (f"BLAS torch {torch['version']}: built with {torch['build_blas']}, CPU capability "
            f"{torch['cpu_capability']}, {torch['threads']} threads; ")
    if torch["pools"] is None:
        return head + "threadpoolctl not installed (kernel not recorded)"
    blas = [pool_text(p) for p in torch["pools"] if p.get("user_api") == "blas"]
    # NOTE: a BLAS linked into libtorch (MKL in the x86 wheels) is no library of its own
    others = [pool_text(p) for p in torch["pools"] if p.get("user_api") != "blas"]
    return head + "; ".join(blas or [f"{torch['build_blas']} linked into torch, not visible "
                                     "to threadpoolctl"] + others)


def _environment_line(record: dict) -> str:
    names = ", ".join(FORCED_BLAS_VARIABLES)
    if record["forced_at_start"]:
        forced = ", ".join(f"{k}={v}" for k, v in record["forced_at_start"].items())
        return f"BLAS environment: a peer process STARTED WITH {forced}"
    removed = "".join(f"; this script was started with {k}={v}" for k, v in
                      FORCED_AT_START.items())
    return f"BLAS environment: {names} unset in every peer process{removed}"


def blas_lines(record: dict) -> list[str]:
    if record["status"] != "ok":
        return [f"BLAS record unavailable ({record['why']})"]
    return [_numpy_blas_line(record["numpy"]), _torch_blas_line(record["torch"]),
            _environment_line(record)]


# ---- the command line, and the parent process --------------------------------------------
def parser(doc: str, peers, tol: float) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=20, help="timed repetitions, median (20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls after the check (3)")
    p.add_argument("--peers", default=",".join(peers), help=f"subset of {','.join(peers)}")
    p.add_argument("--turns", type=int, default=10,
                   help="rounds the timed repetitions are split into, every peer taking a "
                        "turn in each (bench/turns.py); 1: one peer after the other (10)")
    p.add_argument("--timeout", type=int, default=600, help="seconds per peer process (600)")
    p.add_argument("--tol", type=float, default=tol, help=f"error voiding a timing ({tol:g})")
    # NOTE: the floor must not be noisy: fewer repetitions only for quick looks and tests
    p.add_argument("--floor-reps", type=int, default=20,
                   help="repetitions of the floor's measurement, median (20)")
    p.add_argument("--peer", help=argparse.SUPPRESS)   # NOTE: internal: run one peer
    return p


def child(ns, run) -> int:
    """In a peer process: pin, run `run(peer)` (or a floor), print its RESULT line."""
    pin_cpus()
    floors = {"copy": copy_bandwidth, "blas": blas_rate}
    if ns.peer in floors:
        result = floors[ns.peer](ns.floor_reps)
    else:
        result = run(ns.peer)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def spawn(script: str, peer: str, argv: list, timeout: int) -> dict:
    """Run `script argv --peer peer` in a fresh process; its RESULT dict."""
    return run_child([sys.executable, script, *argv, "--peer", peer], peer, timeout)


def run_child(cmd: list, peer: str, timeout: int) -> dict:
    """Run cmd in benchmark_environment(); the RESULT dict it prints (an error without one)."""
    try:
        # NOTE: no stdin: a child started here never takes turns (see turns.py)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           env=benchmark_environment(), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"peer": peer, "status": "error", "why": f"timed out after {timeout} s"}
    for line in reversed(r.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
    return {"peer": peer, "status": "error", "why": f"exit {r.returncode}: {tail}"}


def chosen_peers(ns, peers) -> list[str]:
    """The peers `--peers` names, in order, each once; exits on one not in `peers`."""
    chosen = list(dict.fromkeys(p.strip() for p in ns.peers.split(",") if p.strip()))
    unknown = set(chosen) - set(peers)
    if unknown:
        sys.exit(f"unknown peers {sorted(unknown)}; choose from {', '.join(peers)}")
    return chosen


def run_peers(script: str, ns, argv: list, peers, extra: tuple = ()) -> list[dict]:
    """The RESULT of each of `extra` (a floor) and then of each chosen peer."""
    chosen = list(extra) + chosen_peers(ns, peers)
    if ns.turns > 1:
        return turns.run_in_turns(
            [(p, [sys.executable, script, *argv, "--peer", p]) for p in chosen], ns.turns,
            ns.timeout, benchmark_environment())
    return [spawn(script, p, argv, ns.timeout) for p in chosen]


def header(title: str, ns) -> None:
    print(f"{title}, {THREADS} threads per peer, median of {ns.reps} after {ns.warmup} warm-up "
          f"calls, tolerance {ns.tol:.0e}", flush=True)
    busy = cpu_busy()
    warn = " (other processes compete for the cores: timings unreliable)" if busy > 0.1 else ""
    print(f"CPUs busy before the run: {busy:.0%}{warn}", flush=True)
    # NOTE: in a child set up like a peer (not here): the kernels the peers really load
    record = run_child([sys.executable, os.path.abspath(__file__)], "blas-record", ns.timeout)
    print("\n".join(blas_lines(record)) + "\n", flush=True)


def cpu_busy(seconds: float = 0.5) -> float:
    """Fraction of all CPUs busy over `seconds` while this process sleeps (/proc/stat)."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]          # NOTE: idle + iowait
    try:
        (t0, i0), _, (t1, i1) = sample(), time.sleep(seconds), sample()
    except OSError:
        return 0.0
    return 1 - (i1 - i0) / max(t1 - t0, 1)


def compare(script: str, ns, argv: list, peers, floor_peer: str | None, amount: float,
            columns, base: str = "kiln-jit") -> int:
    """The parent: the floor's process (`amount` bytes or flops over its rate; none without
    `floor_peer`), one process per peer, the table and notes; the exit status."""
    if not floor_peer:
        return report(run_peers(script, ns, argv, peers), columns, None, base)
    results, floor = peers_and_floor(script, ns, argv, peers, floor_peer, amount)
    return report(results, columns, floor, base)


def peers_and_floor(script: str, ns, argv: list, peers, floor_peer: str, amount: float):
    """(each peer's RESULT, the floor of `amount`). With turns, the floor's process takes its
    turns with the peers' (see _floor_times); else it runs first, alone."""
    if ns.turns <= 1:
        floor = floor_for(measure_floor(script, ns, argv, floor_peer), amount)
        return run_peers(script, ns, argv, peers), floor
    measured, *results = run_peers(script, ns, argv, peers, extra=(floor_peer,))
    if measured["status"] != "ok":
        # NOTE: the peers' results are still printed (without a floor); the run fails
        print(f"could not measure the floor ({floor_peer}): {measured.get('why')}",
              file=sys.stderr, flush=True)
        return results + [{"peer": f"floor ({floor_peer})", "status": "error",
                           "why": str(measured.get("why"))}], None
    return results, floor_for(measured, amount)


def measure_floor(script: str, ns, argv: list, floor_peer: str) -> dict:
    """The rate (bytes/s, flop/s) measured by the floor's own process; exits without one."""
    measured = spawn(script, floor_peer, argv, ns.timeout)
    if measured["status"] != "ok":
        sys.exit(f"could not measure the floor ({floor_peer}): {measured['why']}")
    return measured


def floor_for(measured: dict, amount: float) -> dict:
    """The floor of a workload of `amount` bytes or flops at the measured rate."""
    return {**measured, "seconds": amount / measured["per_s"]}


def report(results, columns, floor: dict | None, base: str = "kiln-jit") -> int:
    """Print the table and notes of one set of peer results; the exit status."""
    print(table(results, columns, floor, base))
    print("\n" + notes(results, floor))
    return exit_status(results)


def time_column(header: str = "median ms", scale: float = 1e3, fmt: str = ".2f"):
    return header, lambda r: f"{scale * r['median_s']:{fmt}}"


def rate_column(header: str, amount: float, unit: float = 1e9, fmt: str = ".1f"):
    """amount (bytes, flops) per second, in `unit`s."""
    return header, lambda r: f"{amount / r['median_s'] / unit:{fmt}}"


def table(results, columns, floor: dict | None = None, base: str = "kiln-jit",
          ratio: str = "time") -> str:
    """columns: [(header, fn(result) -> str)]; then fraction of floor and median / base's."""
    ok = {r["peer"]: r for r in results if r["status"] == "ok"}
    base_s = ok[base]["median_s"] if base in ok else None
    heads = [h for h, _ in columns] + (["fraction of floor"] if floor else [])
    rows = ["| system | " + " | ".join(heads + [f"{ratio} / {base}'s"]) + " |",
            "| --- |" + " ---: |" * (len(heads) + 1)]
    if floor:
        cells = [fn({"median_s": floor["seconds"]}) for _, fn in columns] + ["1.00", ""]
        rows.append(f"| floor ({floor['what']}) | " + " | ".join(cells) + " |")
    for r in results:
        if r["status"] != "ok":
            rows.append(f"| {r['peer']} | {r['status']}: {r['why']} |" + " |" * len(heads))
            continue
        t = r["median_s"]
        cells = [fn(r) for _, fn in columns]
        cells += [f"{floor['seconds'] / t:.2f}"] if floor else []
        cells.append(f"{t / base_s:.2f}" if base_s else "n/a")
        rows.append(f"| {r['peer']} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def notes(results, floor: dict | None = None) -> str:
    lines = []
    if floor and "by_threads" in floor:
        lines.append(f"{floor['what']} (read + write), by threads: " + ", ".join(
            f"{k}: {v / 1e9:.1f} GB/s" for k, v in sorted(floor["by_threads"].items())))
    for r in results:
        if r["status"] == "ok":
            lines.append(f"{r['peer']}: first call {r['first_s']:.3f} s, min "
                         f"{1e3 * r['min_s']:.3f} ms, error {r['err']:.1e}, version "
                         f"{r.get('version', '?')}")
        if "profile" in r:
            lines.append(profile_line(r["profile"]))
    return "\n".join(lines)


def exit_status(results, must=("kiln", "kiln-jit")) -> int:
    """Non-zero when a Kiln peer or the floor gave no valid timing (wrong, error)."""
    failed = [r["peer"] for r in results if (r["peer"] in must or r["peer"].startswith(
        "floor (")) and r["status"] != "ok"]
    if failed:
        print(f"\nFAILED: {', '.join(failed)} gave no valid timing", file=sys.stderr)
    return 1 if failed else 0


def makers(peer_kiln, peer_numpy, peer_torch, peer_jax) -> dict:
    """The STANDARD_PEERS from four builders: `peer_kiln(x, jit=False)`, `peer_numpy(x)`,
    `peer_torch(x, compiled=False)`, `peer_jax(x)`."""
    return {"kiln": peer_kiln, "kiln-jit": lambda x: peer_kiln(x, jit=True),
            "numpy": peer_numpy, "torch": peer_torch,
            "torch.compile": lambda x: peer_torch(x, compiled=True), "jax": peer_jax}


if __name__ == "__main__":
    # NOTE: the BLAS record's process (see `header`), pinned like a peer's
    pin_cpus()
    print("RESULT " + json.dumps(blas_record()), flush=True)
