"""W7 (BENCHMARKS.md): compile time of the jitted W5 training step, in a fresh process.

    python bench/w7_compile.py                                  # all peers, the table
    python bench/w7_compile.py --batch 8 --reps 3 --peers kiln-jit   # a quick look

Each peer runs in its own fresh process pinned to harness.THREADS cores and builds the W5 step
of bench/w5_mlp_train.py (the loss function, forward + backward, under the peer's compiler;
SGD eager; jax: W5's jax.jit of the whole functional SGD step, as a JAX user writes it).
First step = import done, nothing compiled: the modules a first jitted call imports, trace,
compile, run. Right before its measured process, each cold peer runs once on caches that are
then thrown away, so its libraries are in the OS page cache (`run_primed`); that run's first
step is printed as "unprimed". Compile time = first step - median steady step. The losses of the first steps
must match W5's NumPy float64 run (1e-4 relative) or the timing is void. Warm cache: Kiln, torch.compile and jax each run a second
fresh process on the cache directory their cold peer filled (Kiln's KILN_CACHE_DIR of machine
code; inductor's; JAX's persistent compilation cache, every entry kept); each invocation
starts from empty cache directories, so the cold rows really are cold. NumPy and the eager
peers compile nothing: they have no row here.
"""
from __future__ import annotations

import importlib
import importlib.abc
import os
import statistics
import sys
import tempfile
import time
import types

import harness
import w5_mlp_train as w5

PEERS = ("kiln-jit", "kiln-jit-warm", "torch.compile", "torch.compile-warm", "jax", "jax-warm")
# NOTE: the variable naming each compiler's disk cache, for its "-warm" peer
CACHE_VARIABLES = {"kiln-jit-warm": "KILN_CACHE_DIR",
                   "torch.compile-warm": "TORCHINDUCTOR_CACHE_DIR",
                   "jax-warm": "JAX_COMPILATION_CACHE_DIR"}
# NOTE: Kiln's compile stages, wrapped (in the module where their caller looks them up at
# call time) to add up their seconds (internals; bench only). compile_graph imports
# build_schedule and plan_memory from their modules at each call; the renderer calls
# render_kernel, mlir_to_llvm_ir, emit_object_modules and load_object through its own module's
# names. The disk cache skips MLIR to LLVM IR and LLVM (a hit is only a load).
STAGES = (("trace", "kiln.frontend.jit", "trace_function"),
          ("graph passes", "kiln.passes.manager", "run_passes"),
          ("backward graph (within trace)", "kiln.frontend.jit", "TapeBackward"),
          ("schedule", "kiln.passes.schedule", "build_schedule"),
          ("memory plan", "kiln.passes.plan_memory", "plan_memory"),
          ("render MLIR", "kiln.codegen.cpu.renderer", "render_kernel"),
          ("MLIR to LLVM IR", "kiln.codegen.cpu.renderer", "mlir_to_llvm_ir"),
          ("LLVM optimize + object", "kiln.codegen.cpu.renderer", "emit_object_modules"),
          ("load", "kiln.codegen.cpu.renderer", "load_object"))


def time_stages() -> dict:
    """Wrap each stage to add up its seconds into the returned dict (filled by `totals()`).
    A stage's module that is not imported yet is wrapped when it is (`_WrapOnImport`): the
    timing must not import what the first step would not (a warm start skips the passes)."""
    # NOTE: the wrappers run while a trace is recorded, so @kiln.jit guards what they read:
    # only `log`, a list's bound `append` (the same list at every call), not a changing dict.
    records: list = []
    log = records.append
    pending: dict = {}
    for label, module_name, name in STAGES:
        def wrap(module, _label=label, _name=name):
            def timed(*a, _fn=getattr(module, _name), **kw):
                t0 = time.perf_counter()
                try:
                    return _fn(*a, **kw)
                finally:
                    log((_label, time.perf_counter() - t0))
            setattr(module, _name, timed)
        if module_name in sys.modules:
            wrap(sys.modules[module_name])
        else:
            pending.setdefault(module_name, []).append(wrap)
    if pending:
        sys.meta_path.insert(0, _WrapOnImport(pending))
    return _Totals(records)


class _WrapOnImport(importlib.abc.MetaPathFinder):
    """Runs the given wrappers on a module right after it is first imported."""

    def __init__(self, pending: dict):
        self.pending = pending

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.pending:
            return None
        for finder in sys.meta_path:
            spec = None if finder is self else getattr(finder, "find_spec", lambda *a: None)(
                fullname, path, target)
            if spec is not None and spec.loader is not None:
                break
        else:
            return None
        wraps, run = self.pending.pop(fullname), spec.loader.exec_module

        def exec_module(module):
            run(module)
            for wrap in wraps:
                wrap(module)
        spec.loader.exec_module = exec_module
        return spec


class _Totals(dict):
    """Seconds per stage, summed from the wrappers' records when read."""

    def __init__(self, records: list):
        super().__init__()
        self.records = records

    def __bool__(self):
        return True

    def totals(self) -> dict:
        out: dict = {}
        for label, seconds in self.records:
            out[label] = out.get(label, 0.0) + seconds
        return out


def library(peer: str):
    """The library namespace w5's step maker uses, its `jit` being the peer's compiler (jax:
    the jax module itself)."""
    if peer.startswith("kiln"):
        return harness.kiln_module()
    if peer.startswith("jax"):
        import jax
        return jax
    torch = harness.torch_module()
    return types.SimpleNamespace(nn=torch.nn, optim=torch.optim, from_numpy=torch.from_numpy,
                                 jit=torch.compile)


def make_step(peer: str, lib, batch: int):
    """step() -> loss, compiled on its first call."""
    if peer.startswith("jax"):
        return w5.jax_step("sgd", batch)
    return w5._make_step(lib, True, batch)


def empty_cache(peer: str) -> dict | None:
    """The row of a warm-cache peer whose cache its cold peer did not fill; None otherwise."""
    cache = os.environ.get(CACHE_VARIABLES.get(peer, ""), "")
    # NOTE: a file anywhere below: Kiln's and inductor's entries lie in subfolders, which a
    # cache may make before it stores anything
    if peer in CACHE_VARIABLES and not any(files for _, _, files in os.walk(cache)):
        cold = peer[:-len("-warm")]
        return {"peer": peer, "status": "error", "why": f"its cache is empty: run {cold} "
                "first, in the same invocation"}
    return None


def run(peer: str, ns) -> dict:
    t0 = time.perf_counter()
    try:
        lib = library(peer)
    except ImportError as e:   # NOTE: before the cache check: a missing compiler is skipped
        return {"peer": peer, "status": "skipped", "why": f"not installed ({e.name})"}
    import_s = time.perf_counter() - t0
    if (empty := empty_cache(peer)) is not None:
        return empty
    step = make_step(peer, lib, ns.batch)
    try:
        t0 = time.perf_counter()
        # NOTE: inside the first step's time: wrapping the stages imports the modules Kiln
        # imports on its first jitted call (the passes, the renderer), which a user pays
        stages = time_stages() if peer.startswith("kiln") else {}
        losses = [float(step())]
        first_s = time.perf_counter() - t0
        losses += [float(step()) for _ in range(w5.CHECK_STEPS - 1)]
    except Exception as e:  # NOTE: a compiler failure (or Kiln's eager fallback) voids it
        return {"peer": peer, "status": "error", "why": f"{type(e).__name__}: {e}"}
    want = w5.reference_losses(ns.batch, w5.CHECK_STEPS)
    err = max(abs(a - b) / abs(b) for a, b in zip(losses, want))
    if not err <= ns.tol:
        return {"peer": peer, "status": "wrong", "why": f"loss rel err {err:.1e}: timing void"}
    harness.time_calls(step, [], ns.warmup)
    steady_s = statistics.median(harness.time_calls(step, [], ns.reps))
    return {"peer": peer, "status": "ok", "import_s": import_s, "first_s": first_s,
            "steady_s": steady_s, "median_s": first_s - steady_s, "err": err,
            "stages": stages.totals() if stages else {}, "version": harness.version_of(peer),
            **(kiln_counts(stages.records) if stages else {})}


def kiln_counts(records: list) -> dict:
    """Modules the renderer built in this process (`stats["compiled"]`: compiled by LLVM or
    loaded from the disk cache) and how many of them LLVM compiled."""
    renderer = sys.modules.get("kiln.codegen.cpu.renderer")
    default = getattr(renderer, "_DEFAULT", None)
    return {"kernels": default.stats["compiled"] if default is not None else None,
            "llvm_runs": sum(label == "LLVM optimize + object" for label, _ in records)}


def stage_line(r: dict) -> str:
    spent = r["stages"]
    # NOTE: a stage "within" another is already in that one's seconds
    rest = r["median_s"] - sum(v for k, v in spent.items() if "(within" not in k)
    parts = [f"{k} {v:.3f}" for k, v in spent.items()] + [f"rest {rest:.3f}"]
    return (f"{r['peer']} compile ({r['kernels']} modules built, {r.get('llvm_runs')} by LLVM), "
            "by stage (s): " + ", ".join(parts))


def use_fresh_caches(root: str, make: bool = True) -> None:
    """Point each compiler's disk cache at a folder under root (made empty when `make`), for
    every peer process started after: cold for the first peer of a compiler, warm for its
    "-warm" peer."""
    for peer, variable in CACHE_VARIABLES.items():
        os.environ[variable] = os.path.join(root, peer)
        if make:
            os.makedirs(os.environ[variable])
    # NOTE: JAX keeps only compilations slower than 1 s by default; the step's may not be
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"


def run_primed(ns, argv: list, root: str) -> list[dict]:
    """Each chosen peer's RESULT, in order; a cold peer's process is run twice, right after
    each other: first untimed on compile caches of its own (thrown away; its first step is
    kept as `unprimed_s`), then measured on the caches its "-warm" peer reads after it.
    NOTE: these machines page out file pages left unused for 10-20 s; measured alone, a cold
    row also timed reading its compiler's libraries back from disk: Kiln's first step took
    1.2-8 s against 0.5, importing MLIR's 215 MB library 1.2 s instead of 0.1 s, and so on
    for every peer. Primed, the libraries are in the page cache, as they are for a user who
    ran the program a little before; the unprimed time is printed too."""
    chosen = harness.chosen_peers(ns, PEERS)
    measured = os.path.join(root, "measured")
    use_fresh_caches(measured)
    results = []
    for peer in chosen:
        unprimed = None
        if not peer.endswith("-warm"):
            use_fresh_caches(os.path.join(root, "primed-" + peer))
            unprimed = harness.spawn(__file__, peer, argv, ns.timeout)
            use_fresh_caches(measured, make=False)
        r = harness.spawn(__file__, peer, argv, ns.timeout)
        if unprimed is not None and unprimed.get("status") == "ok":
            r["unprimed_s"] = unprimed["first_s"]
        elif unprimed is not None and unprimed.get("status") != "skipped":
            print(f"{peer}: its priming run failed: {unprimed.get('why')}", flush=True)
        results.append(r)
    return results


def main(argv=None) -> int:
    p = harness.parser(__doc__, PEERS, w5.TOLERANCE)
    p.add_argument("--batch", type=int, default=64, help="batch size of the W5 step (64)")
    argv = list(sys.argv[1:] if argv is None else argv)
    ns = p.parse_args(argv)
    if ns.peer:
        return harness.child(ns, lambda peer: run(peer, ns))
    harness.header(f"W7 compile: the W5 step (batch {ns.batch}), first call in a fresh "
                   "process; steady = median step", ns)
    with tempfile.TemporaryDirectory(prefix="w7_caches_") as caches:
        results = run_primed(ns, argv, caches)
    print(harness.table(results, [
        ("import s", lambda r: f"{r['import_s']:.2f}"),
        ("first step s", lambda r: f"{r['first_s']:.2f}"),
        ("unprimed first step s", lambda r: f"{r['unprimed_s']:.2f}" if "unprimed_s" in r
         else ""),
        ("steady step ms", lambda r: f"{1e3 * r['steady_s']:.2f}"),
        ("compile s (first - steady)", lambda r: f"{r['median_s']:.2f}")], ratio="compile"))
    print()
    for r in results:
        if r["status"] == "ok":
            print(f"{r['peer']}: loss rel err {r['err']:.1e}, version {r['version']}")
        if r.get("stages"):
            print(stage_line(r))
    return harness.exit_status(results, must=("kiln-jit",))


if __name__ == "__main__":
    sys.exit(main())
