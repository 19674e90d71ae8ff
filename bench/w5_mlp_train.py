"""W5 (BENCHMARKS.md): one training step of an MLP 784->128->ReLU->64->ReLU->10, cross-entropy on
class indices, SGD lr 0.01 (forward, backward, update), batch 64 and 512.

    python bench/w5_mlp_train.py                       # all peers, both batch sizes
    python bench/w5_mlp_train.py --peers kiln,kiln-jit --reps 10

Peers, each in its own process pinned to 2 cores: Kiln eager, Kiln with the loss (forward
and backward) under @kiln.jit (optimizer.step eager), PyTorch eager where installed. Before any
time counts, each peer's losses over the first steps must match a NumPy float64 run of the same
weights and batches within 1e-4 relative. Floor: 6 * batch * weights flops (forward 2, backward
4) over the BLAS rate measured here (harness.blas_rate, pinned like the peers).
"""
from __future__ import annotations

import harness  # noqa: F401  (sets the thread variables: before NumPy)

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np

SIZES = (784, 128, 64, 10)
PEERS = ("kiln", "kiln-jit", "torch")
CHECK_STEPS = 5
TOLERANCE = 1e-4
LR = 0.01


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


def reference_losses(n: int, steps: int) -> list[float]:
    """NumPy float64 forward, backward and SGD: the oracle every peer is checked against."""
    ws = [w.astype(np.float64) for w in weights()]
    x, y = batch(n)
    x = x.astype(np.float64)
    losses = []
    for _ in range(steps):
        acts, h = [x], x
        for i in range(0, len(ws), 2):
            h = h @ ws[i].T + ws[i + 1]
            if i < len(ws) - 2:
                h = np.maximum(h, 0)
            acts.append(h)
        z = h - h.max(1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        losses.append(float(-np.log(p[np.arange(n), y]).mean()))
        g = p.copy()
        g[np.arange(n), y] -= 1
        g /= n
        for i in range(len(ws) - 2, -1, -2):
            a = acts[i // 2]
            gw, gb, g = g.T @ a, g.sum(0), g @ ws[i]
            if i > 0:
                g = g * (acts[i // 2] > 0)
            ws[i] -= LR * gw
            ws[i + 1] -= LR * gb
    return losses


def _make_step(lib, jitted: bool, n: int):
    nn = lib.nn
    model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                          nn.Linear(64, 10))
    names = [k for k, _ in model.state_dict().items()]
    model.load_state_dict({k: lib.from_numpy(w.copy()) for k, w in zip(names, weights())})
    opt = lib.optim.SGD(model.parameters(), lr=LR)
    xs, ys = batch(n)
    x, y = lib.from_numpy(xs), lib.from_numpy(ys)

    def loss_fn(x, y):
        return nn.functional.cross_entropy(model(x), y)
    loss_of = lib.jit(loss_fn) if jitted else loss_fn

    def step() -> float:
        opt.zero_grad()
        loss = loss_of(x, y)
        loss.backward()
        opt.step()
        return loss
    return step


def run_peer(name: str, n: int, reps: int) -> dict:
    if name == "torch":
        try:
            import torch
        except ImportError:
            return {"peer": name, "status": "skipped", "why": "torch not installed"}
        torch.set_num_threads(harness.THREADS)
        lib = torch
    else:
        import kiln as lib
    step = _make_step(lib, name == "kiln-jit", n)
    got = [step().item() for _ in range(CHECK_STEPS)]
    want = reference_losses(n, CHECK_STEPS)
    err = max(abs(a - b) / abs(b) for a, b in zip(got, want))
    if not err <= TOLERANCE:
        return {"peer": name, "status": "wrong", "why": f"loss rel err {err:.1e}: timing void"}
    for _ in range(3):
        step()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {"peer": name, "status": "ok", "median_s": statistics.median(times), "err": err}


def parent(ns) -> int:
    harness.pin_cpus()          # NOTE: the floor is measured on the cores the peers get
    flops = harness.blas_rate(10)["per_s"]
    n_weights = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))
    print(f"W5 mlp_train, {harness.THREADS} threads, median of {ns.reps} steps; BLAS "
          f"{flops / 1e9:.1f} GFLOP/s\n")
    print("| batch | system | µs/step | steps/s | fraction of floor | time / kiln-jit's |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    failed = False
    for n in ns.batches:
        rows = [json.loads(subprocess.run(
            [sys.executable, __file__, "--peer", p, "--batch", str(n), "--reps",
             str(ns.reps)], capture_output=True, text=True, check=True).stdout.splitlines()[-1])
            for p in ns.peers]
        base = next((r["median_s"] for r in rows if r["peer"] == "kiln-jit"
                     and r["status"] == "ok"), None)
        floor = 6 * n * n_weights / flops
        for r in rows:
            if r["status"] != "ok":
                print(f"| {n} | {r['peer']} | {r['status']}: {r['why']} | | | |")
                failed |= r["status"] == "wrong"
                continue
            t = r["median_s"]
            ratio = f"{t / base:.2f}" if base else ""
            print(f"| {n} | {r['peer']} | {t * 1e6:.0f} | {1 / t:.0f} | {floor / t:.3f} | "
                  f"{ratio} |")
    return 1 if failed else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peers", type=lambda s: s.split(","), default=list(PEERS))
    ap.add_argument("--batches", type=lambda s: [int(v) for v in s.split(",")],
                    default=[64, 512])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--peer")
    ap.add_argument("--batch", type=int)
    ns = ap.parse_args(argv)
    if ns.peer:
        harness.pin_cpus()
        print(json.dumps(run_peer(ns.peer, ns.batch, ns.reps)))
        return 0
    return parent(ns)


if __name__ == "__main__":
    sys.exit(main())
