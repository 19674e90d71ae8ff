"""W5 (BENCHMARKS.md): one training step of an MLP 784->128->ReLU->64->ReLU->10, cross-entropy on
class indices (forward, backward, update), SGD lr 0.01 and Adam lr 0.001, batch 64 and 512.

    python bench/w5_mlp_train.py                       # all peers, both batches, both optimizers
    python bench/w5_mlp_train.py --peers kiln,kiln-jit --optimizers sgd --reps 10

The step is the one a PyTorch user writes, and the jitting peers compile it as ONE function:

    def step(x, y):
        opt.zero_grad(); loss = F.cross_entropy(model(x), y); loss.backward(); opt.step()
        return loss

Peers, each in its own process pinned to harness.THREADS cores (skipped where not importable):
  kiln            the step, eager
  kiln-jit        @kiln.jit of the whole step (the headline row). Where Kiln cannot compile it
                  and runs it eagerly (a KilnJitWarning), the row says so in its "how it ran"
                  column, with the warning; it is never passed off as compiled.
  kiln-jit-loss   @kiln.jit of the loss alone (forward + compiled backward), zero_grad and
                  opt.step eager: what Kiln compiles today
  torch           the step, PyTorch eager
  torch.compile   torch.compile of the whole step (default inductor; the "how it ran" column
                  counts its graphs and graph breaks, from torch._dynamo's counters)
  jax             jax.jit of the same step written functionally (params and optimizer state
                  in and out, donated), as a JAX user writes it
No NumPy peer: NumPy has no autograd, so its step would be a hand-derived backward (the
float64 oracle below), another program than the one the other peers run.
Before any time counts, each peer's losses over the first CHECK_STEPS steps must match a
NumPy float64 run of the same weights, batch and optimizer within --tol relative (the first
step's loss checks the forward; the later ones check backward and update). Floor: 6 * batch *
weights flops (forward 2, backward 4) over the BLAS rate measured here (harness.blas_rate,
pinned like the peers); the optimizer's elementwise update is not counted.
"""
from __future__ import annotations

import harness  # noqa: F401  (sets the thread variables: before NumPy)

import argparse
import statistics
import sys
import time
import warnings

import numpy as np
import turns

SIZES = (784, 128, 64, 10)
PEERS = ("kiln", "kiln-jit", "kiln-jit-loss", "torch", "torch.compile", "jax")
KILN_PEERS = ("kiln", "kiln-jit", "kiln-jit-loss")
OPTIMIZERS = ("sgd", "adam")
CHECK_STEPS = 5
TOLERANCE = 1e-4
LR = 0.01                          # SGD
ADAM = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8)    # PyTorch's defaults


def weights(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        bound = 1 / np.sqrt(fan_in)
        out += [rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32),
                rng.uniform(-bound, bound, fan_out).astype(np.float32)]
    return out


def batch(n: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, SIZES[0])).astype(np.float32), rng.integers(0, 10, n)


# ---- the oracle: NumPy float64 -----------------------------------------------------------
def _loss_and_grads(ws: list, x: np.ndarray, y: np.ndarray) -> tuple[float, list]:
    n = len(y)
    acts, h = [x], x
    for i in range(0, len(ws), 2):
        h = h @ ws[i].T + ws[i + 1]
        if i < len(ws) - 2:
            h = np.maximum(h, 0)
        acts.append(h)
    z = h - h.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    loss = float(-np.log(p[np.arange(n), y]).mean())
    g = p.copy()
    g[np.arange(n), y] -= 1
    g /= n
    grads = [None] * len(ws)
    for i in range(len(ws) - 2, -1, -2):
        a = acts[i // 2]
        grads[i], grads[i + 1], g = g.T @ a, g.sum(0), g @ ws[i]
        if i > 0:
            g = g * (a > 0)
    return loss, grads


def _adam_update(ws: list, grads: list, state: dict) -> None:
    """PyTorch's Adam: m, v moving averages; bias-corrected; p -= lr * m_hat / (sqrt(v_hat)
    + eps)."""
    b1, b2 = ADAM["betas"]
    state["t"] = t = state.get("t", 0) + 1
    ms = state.setdefault("m", [np.zeros_like(w) for w in ws])
    vs = state.setdefault("v", [np.zeros_like(w) for w in ws])
    for w, g, m, v in zip(ws, grads, ms, vs):
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        denom = np.sqrt(v) / np.sqrt(1 - b2**t) + ADAM["eps"]
        w -= ADAM["lr"] / (1 - b1**t) * m / denom


def reference_losses(n: int, steps: int, optimizer: str = "sgd") -> list[float]:
    """NumPy float64 forward, backward and update: the oracle every peer is checked against."""
    ws = [w.astype(np.float64) for w in weights()]
    x, y = batch(n)
    x = x.astype(np.float64)
    losses, state = [], {}
    for _ in range(steps):
        loss, grads = _loss_and_grads(ws, x, y)
        losses.append(loss)
        if optimizer == "adam":
            _adam_update(ws, grads, state)
        else:
            for w, g in zip(ws, grads):
                w -= LR * g
    return losses


# ---- the step, as a PyTorch user writes it (Kiln and PyTorch) ------------------------------
def _model_and_optimizer(lib, optimizer: str):
    nn = lib.nn
    model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                          nn.Linear(64, 10))
    names = [k for k, _ in model.state_dict().items()]
    model.load_state_dict({k: lib.from_numpy(w.copy()) for k, w in zip(names, weights())})
    if optimizer == "adam":
        return model, lib.optim.Adam(model.parameters(), **ADAM)
    return model, lib.optim.SGD(model.parameters(), lr=LR)


def ordinary_step(lib, optimizer: str = "sgd"):
    """step(x, y) -> loss: zero_grad, forward, backward, update, in one Python function."""
    model, opt = _model_and_optimizer(lib, optimizer)
    F = lib.nn.functional

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


def _make_step(lib, jitted: bool, n: int, optimizer: str = "sgd"):
    """step() -> loss with the loss function (forward, and so backward) under lib.jit when
    `jitted`, zero_grad and opt.step outside it (kiln-jit-loss; bench/w7_compile.py)."""
    model, opt = _model_and_optimizer(lib, optimizer)
    xs, ys = batch(n)
    x, y = lib.from_numpy(xs), lib.from_numpy(ys)

    def loss_fn(x, y):
        return lib.nn.functional.cross_entropy(model(x), y)
    loss_of = lib.jit(loss_fn) if jitted else loss_fn

    def step():
        opt.zero_grad()
        loss = loss_of(x, y)
        loss.backward()
        opt.step()
        return loss
    return step


def _bound(step, lib, n: int):
    """step(x, y) as a no-argument call on the benchmark's batch."""
    xs, ys = batch(n)
    x, y = lib.from_numpy(xs), lib.from_numpy(ys)
    return lambda: step(x, y)


# ---- jax: the same step, functional ------------------------------------------------------
def _jax_loss(jax, params, x, y):
    h = x
    for i in range(0, len(params), 2):
        h = h @ params[i].T + params[i + 1]
        if i < len(params) - 2:
            h = jax.nn.relu(h)
    logp = jax.nn.log_softmax(h, axis=1)
    return -jax.numpy.take_along_axis(logp, y[:, None], axis=1).mean()


def _jax_update(jax, optimizer: str, params, grads, state):
    jnp = jax.numpy
    if optimizer == "sgd":
        return [p - LR * g for p, g in zip(params, grads)], state
    b1, b2 = ADAM["betas"]
    t, ms, vs = state
    t = t + 1
    ms = [b1 * m + (1 - b1) * g for m, g in zip(ms, grads)]
    vs = [b2 * v + (1 - b2) * g * g for v, g in zip(vs, grads)]
    c1, c2 = 1 - b1**t, jnp.sqrt(1 - b2**t)
    params = [p - ADAM["lr"] / c1 * m / (jnp.sqrt(v) / c2 + ADAM["eps"])
              for p, m, v in zip(params, ms, vs)]
    return params, (t, ms, vs)


def jax_step(optimizer: str, n: int):
    """step() -> loss: one jax.jit call with params and optimizer state donated, kept here."""
    import jax
    jnp = jax.numpy

    def step_fn(params, state, x, y):
        loss, grads = jax.value_and_grad(lambda p: _jax_loss(jax, p, x, y))(params)
        params, state = _jax_update(jax, optimizer, params, grads, state)
        return params, state, loss
    jitted = jax.jit(step_fn, donate_argnums=(0, 1))
    params = [jnp.asarray(w) for w in weights()]
    ms, vs = ([jnp.zeros_like(p) for p in params] for _ in range(2))  # NOTE: no shared buffer
    held = {"params": params, "state": (jnp.zeros((), jnp.float32), ms, vs)}
    xs, ys = batch(n)
    x, y = jnp.asarray(xs), jnp.asarray(ys)

    def step():
        held["params"], held["state"], loss = jitted(held["params"], held["state"], x, y)
        return loss.block_until_ready()   # NOTE: JAX dispatches asynchronously
    return step


# ---- one peer process ----------------------------------------------------------------------
def _kiln_jit_warnings(caught) -> list[str]:
    import kiln
    return [str(w.message) for w in caught
            if issubclass(w.category, kiln.KilnJitWarning) or "@kiln.jit" in str(w.message)]


def _ran_eagerly(caught) -> str | None:
    jit_warnings = _kiln_jit_warnings(caught)
    if not jit_warnings:
        return None
    reason = " ".join(jit_warnings[0].split(": ", 1)[-1].split())
    return f"RAN EAGERLY (KilnJitWarning: {reason})"


def kiln_how_it_ran(jitted, caught) -> str:
    """The truth about a jitted Kiln step: compiled as one graph, or run eagerly (and why)."""
    eager = _ran_eagerly(caught)
    if eager:
        return eager
    try:
        entries = [e for es in jitted.cache.values() for e in es]
    except AttributeError:
        return "no KilnJitWarning (graph count unknown: jit internals changed)"
    compiled = [e for e in entries if hasattr(e, "executable")]
    if len(compiled) == 1 and len(entries) == 1:
        return "compiled as one graph"
    return f"{len(compiled)} compiled graph(s) of {len(entries)} cache entries"


def _torch_how_it_ran(torch) -> str:
    # NOTE: torch._dynamo's counters are internals: unreadable counts say so, never fail.
    try:
        from torch._dynamo.utils import counters
        graphs = counters["stats"]["unique_graphs"]
        breaks = sum(counters["graph_break"].values())
        why = sorted({" ".join(k.splitlines()[0].split())[:60] for k in counters["graph_break"]})
        return f"{graphs} graph(s), {breaks} graph break(s)" + "".join(f"; {w}" for w in why)
    except Exception as e:
        return f"graph count unavailable ({type(e).__name__})"


def _kiln_peer(peer: str, optimizer: str, n: int):
    import kiln
    if peer == "kiln-jit-loss":
        return _make_step(kiln, True, n, optimizer), None, "loss + backward compiled; " \
            "zero_grad, step eager"
    step = ordinary_step(kiln, optimizer)
    if peer == "kiln":
        return _bound(step, kiln, n), None, "eager"
    jitted = kiln.jit(step)
    return _bound(jitted, kiln, n), jitted, None


def _torch_peer(peer: str, optimizer: str, n: int):
    torch = harness.torch_module()
    step = ordinary_step(torch, optimizer)
    if peer == "torch":
        return _bound(step, torch, n), None, "eager"
    return _bound(torch.compile(step), torch, n), None, None


def build(peer: str, optimizer: str, n: int):
    """(step() -> loss, the Kiln JitFunction or None, how it ran or None: found after)."""
    if peer in KILN_PEERS:
        return _kiln_peer(peer, optimizer, n)
    if peer.startswith("torch"):
        return _torch_peer(peer, optimizer, n)
    return jax_step(optimizer, n), None, "jax.jit, functional step, params + state donated"


def _check_and_time(step, ns, want):
    """(losses' max relative error, first step's seconds, timed seconds: None when the
    losses are wrong)."""
    t0 = time.perf_counter()
    losses = [float(step())]
    first_s = time.perf_counter() - t0
    losses += [float(step()) for _ in range(CHECK_STEPS - 1)]
    err = max(abs(a - b) / abs(b) for a, b in zip(losses, want))
    if not err <= ns.tol:
        return err, first_s, None
    harness.time_calls(step, [], ns.warmup)
    return err, first_s, turns.timed_reps(harness.time_calls, step, [], ns.reps)


def run(peer: str, ns) -> dict:
    base = {"peer": peer, "batch": ns.batch, "optimizer": ns.optimizer}
    try:
        step, jitted, how = build(peer, ns.optimizer, ns.batch)
    except ImportError as e:
        return {**base, **harness.import_failure(peer, e)}
    want = reference_losses(ns.batch, CHECK_STEPS, ns.optimizer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            err, first_s, times = _check_and_time(step, ns, want)
        except Exception as e:  # NOTE: one broken peer must not hide the others' numbers
            return {**base, "status": "error", "why": f"{type(e).__name__}: {e}"}
    if jitted is not None:
        how = kiln_how_it_ran(jitted, caught)
    elif peer in KILN_PEERS:     # NOTE: kiln-jit-loss's jit may fall back too: never hide it
        how = _ran_eagerly(caught) or how
    elif how is None:
        how = _torch_how_it_ran(sys.modules["torch"])
    if times is None:
        return {**base, "status": "wrong", "err": err, "how": how,
                "why": f"loss rel err {err:.1e} > {ns.tol:.0e}: timing void"}
    out = {**base, "status": "ok", "how": how, "err": err, "first_s": first_s,
           "median_s": statistics.median(times), "min_s": min(times), "reps": ns.reps,
           "version": harness.version_of(peer)}
    if jitted is not None and how == "compiled as one graph":
        out["profile"] = harness.kiln_profile(jitted, list(_jit_args(ns.batch)))
        out.update(planned_memory(jitted))
    if peer == "kiln":
        out["eager_peak_bytes"] = eager_peak(step)
    return out


def planned_memory(jitted) -> dict:
    """The compiled step's planned peak: its arena plus the buffers made per call (outputs
    and reference results), and the same without reuse (every temporary side by side)."""
    (entry,) = [e for entries in jitted.cache.values() for e in entries]
    s = entry.executable.schedule
    fresh = sum(b.type.nbytes for b in s.buffers if b.kind in ("output", "value"))
    return {"planned_bytes": (s.arena_bytes or 0) + fresh,
            "naive_bytes": (s.naive_bytes or 0) + fresh}


def eager_peak(step) -> int:
    """Peak bytes NumPy allocates during one eager step (tracemalloc sees NumPy's data)."""
    import tracemalloc
    tracemalloc.start()
    try:
        step()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _jit_args(n: int):
    import kiln
    xs, ys = batch(n)
    return kiln.from_numpy(xs), kiln.from_numpy(ys)


# ---- the parent: floor, one process per (batch, optimizer, peer), the table ----------------
def _child_argv(ns, n: int, optimizer: str) -> list[str]:
    return ["--reps", str(ns.reps), "--warmup", str(ns.warmup), "--tol", repr(ns.tol),
            "--floor-reps", str(ns.floor_reps), "--batch", str(n), "--optimizer", optimizer]


def table(results: list[dict], flops: float) -> str:
    n_weights = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))
    rows = ["| batch | optimizer | system | how it ran | µs/step | steps/s | fraction of floor |"
            " time / kiln-jit's |", "| ---: | --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for r in results:
        base = next((b["median_s"] for b in results if b["peer"] == "kiln-jit"
                     and b["status"] == "ok" and b["batch"] == r["batch"]
                     and b["optimizer"] == r["optimizer"]), None)
        key = f"| {r['batch']} | {r['optimizer']} | {r['peer']} | {r.get('how', '')} |"
        if r["status"] != "ok":
            rows.append(f"{key} {r['status']}: {r['why']} | | | |")
            continue
        t = r["median_s"]
        floor = 6 * r["batch"] * n_weights / flops
        ratio = f"{t / base:.2f}" if base else "n/a"
        rows.append(f"{key} {t * 1e6:.0f} | {1 / t:.0f} | {floor / t:.3f} | {ratio} |")
    return "\n".join(rows)


def notes(results: list[dict]) -> str:
    lines = []
    for r in results:
        if r["status"] == "ok":
            lines.append(f"{r['peer']} (batch {r['batch']}, {r['optimizer']}): first step "
                         f"{r['first_s']:.3f} s, min {1e6 * r['min_s']:.0f} µs, loss error "
                         f"{r['err']:.1e}, version {r.get('version', '?')}")
        if "profile" in r:
            lines.append(harness.profile_line(r["profile"]))
        if "planned_bytes" in r:
            lines.append(f"{r['peer']} (batch {r['batch']}, {r['optimizer']}): planned peak "
                         f"memory {r['planned_bytes'] / 1024:.0f} KiB (without reuse "
                         f"{r['naive_bytes'] / 1024:.0f} KiB)")
        if "eager_peak_bytes" in r:
            lines.append(f"{r['peer']} (batch {r['batch']}, {r['optimizer']}): eager peak "
                         f"memory {r['eager_peak_bytes'] / 1024:.0f} KiB (tracemalloc)")
        if r.get("how", "").startswith("RAN EAGERLY"):
            lines.append(f"NOTE: {r['peer']} (batch {r['batch']}, {r['optimizer']}) ran "
                         "eagerly: its time is Kiln eager plus the jit's dispatch, not compiled "
                         "code")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = harness.parser(__doc__, PEERS, TOLERANCE)
    p.add_argument("--batches", type=lambda s: [int(v) for v in s.split(",")],
                   default=[64, 512], help="batch sizes (64,512)")
    p.add_argument("--optimizers", type=lambda s: s.split(","), default=list(OPTIMIZERS),
                   help=f"subset of {','.join(OPTIMIZERS)}")
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--optimizer", choices=OPTIMIZERS, help=argparse.SUPPRESS)
    ns = p.parse_args(sys.argv[1:] if argv is None else argv)
    if ns.peer:
        return harness.child(ns, lambda peer: run(peer, ns))
    unknown = set(ns.optimizers) - set(OPTIMIZERS)
    if unknown:
        sys.exit(f"unknown optimizers {sorted(unknown)}; choose from {', '.join(OPTIMIZERS)}")
    harness.header("W5 mlp_train: one whole training step (zero_grad, forward, backward, "
                   "update)", ns)
    blas = harness.spawn(__file__, "blas", _child_argv(ns, ns.batches[0], "sgd"), ns.timeout)
    if blas["status"] != "ok":
        sys.exit(f"could not measure the floor (blas): {blas['why']}")
    print(f"floor: 6 * batch * weights flops over the {blas['what']}: "
          f"{blas['per_s'] / 1e9:.1f} GFLOP/s\n", flush=True)
    results = []
    for n in ns.batches:
        for optimizer in ns.optimizers:
            results += [{"batch": n, "optimizer": optimizer, **r} for r in harness.run_peers(
                __file__, ns, _child_argv(ns, n, optimizer), PEERS)]
    print(table(results, blas["per_s"]))
    print("\n" + notes(results))
    return harness.exit_status(results, must=KILN_PEERS)


if __name__ == "__main__":
    sys.exit(main())
