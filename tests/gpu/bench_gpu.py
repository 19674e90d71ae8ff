"""W1-W5 of the benchmarks on one NVIDIA GPU: Kiln against PyTorch eager and torch.compile
on the same GPU, each timed with its own CUDA events, in one table with the floors (a
measured device-to-device copy for W1-W3, a measured large matmul for W4 and W5).

    python tests/gpu/bench_gpu.py            # on a GPU machine (run by device_check.sh)
    python tests/gpu/bench_gpu.py --small    # tiny sizes: checks the script runs

Kiln has two rows: eager (each op a cached one-op kernel, with the Python time between
launches, as PyTorch eager's) and `@kiln.jit` (the workload compiled as one CUDA graph: fused
kernels launched from one call). The fraction of the floor and the ratio to PyTorch eager are
the jitted row's. Timings only compare within one run.

    KILN_FAKE_CUDA=1 python tests/gpu/bench_gpu.py --small --no-compile
        # no GPU: the simulated one (checks the script, times nothing real)
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

SIZES = {"full": {"n": 1 << 24, "rows": 8192, "cols": 1024, "mm": 1024, "batch": 512},
         "small": {"n": 4096, "rows": 64, "cols": 128, "mm": 64, "batch": 32}}


def workloads(lib, nn_f, s: dict, device: str):
    """name -> (step(), bytes moved or flops, "GB/s" or "GFLOP/s"); `lib` is kiln or torch."""
    rng = np.random.default_rng(0)

    def t(*shape):
        return lib.tensor(rng.standard_normal(shape).astype(np.float32), device=device)
    x1 = t(s["n"])
    x2 = t(s["rows"], s["cols"])
    g, b = t(s["cols"]), t(s["cols"])
    a, w = t(s["mm"], s["mm"]), t(s["mm"], s["mm"])
    bias = t(s["mm"])
    mlp = [t(128, 784), t(128), t(64, 128), t(64), t(10, 64), t(10)]
    for p in mlp:
        p.requires_grad_(True)
    xb, yb = t(s["batch"], 784), lib.tensor(rng.integers(0, 10, s["batch"]), device=device)

    def w5():
        h = nn_f.relu(xb @ mlp[0].T + mlp[1])
        h = nn_f.relu(h @ mlp[2].T + mlp[3])
        loss = nn_f.cross_entropy(h @ mlp[4].T + mlp[5], yb)
        for p in mlp:
            p.grad = None
        loss.backward()
        with lib.no_grad():
            for p in mlp:
                p.sub_(0.01 * p.grad)
    elems = s["rows"] * s["cols"]
    mlp_flops = 6 * s["batch"] * (784 * 128 + 128 * 64 + 64 * 10)
    return {
        "W1 ew": (lambda: x1 * nn_f.sigmoid(x1) * 0.5 + lib.tanh(x1), 8 * s["n"], "GB/s"),
        "W2 softmax": (lambda: nn_f.softmax(x2, dim=1), 8 * elems, "GB/s"),
        "W3 layernorm": (lambda: nn_f.layer_norm(x2, (s["cols"],), g, b), 8 * elems, "GB/s"),
        "W4 matmul": (lambda: a @ w, 2 * s["mm"] ** 3, "GFLOP/s"),
        "W4 relu(x@w.T+b)": (lambda: nn_f.relu(a @ w.T + bias), 2 * s["mm"] ** 3, "GFLOP/s"),
        "W5 step": (w5, mlp_flops, "GFLOP/s"),
    }


def kiln_times(s: dict, repeat: int, jitted: bool) -> dict:
    """ms per step; `jitted`: each workload under @kiln.jit, where any fallback to eager
    (a KilnJitWarning) is an error, so the row is what it says."""
    import warnings

    import kiln
    import kiln.nn.functional as F
    dev = kiln.cuda._device()
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error", kiln.KilnJitWarning)
        for name, (step, _, _) in workloads(kiln, F, s, "cuda").items():
            fn = kiln.jit(step) if jitted else step
            for _ in range(3):                  # NOTE: compiles, then the fast path
                fn()
            out[name] = dev.time_ms(fn, repeat)
    return out


def torch_times(s: dict, repeat: int, compiled: bool) -> dict:
    import torch
    import torch.nn.functional as F
    out = {}
    for name, (step, _, _) in workloads(torch, F, s, "cuda").items():
        fn = torch.compile(step) if compiled else step
        for _ in range(3):
            fn()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeat):
            fn()
        end.record()
        end.synchronize()
        out[name] = start.elapsed_time(end) / repeat
    return out


def floors(s: dict) -> dict:
    """(copy GB/s, matmul GFLOP/s): a device-to-device copy with Kiln's device, and torch's
    large float32 matmul where torch has CUDA (else None)."""
    import kiln
    dev = kiln.cuda._device()
    n = 64 << 20 if s is SIZES["full"] else 1 << 16
    src, dst = dev.empty((n,), np.float32), dev.empty((n,), np.float32)
    copy_ms = dev.time_ms(lambda: dev.copy(dst, src), 10)
    gflops = None
    try:
        import torch
        if torch.cuda.is_available():
            m = 8192 if s is SIZES["full"] else 256
            a = torch.randn(m, m, device="cuda")
            a @ a
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(5):
                a @ a
            end.record()
            end.synchronize()
            gflops = 2 * m ** 3 / (start.elapsed_time(end) / 5) / 1e6
    except ImportError:
        pass
    return {"GB/s": 8 * n / copy_ms / 1e6, "GFLOP/s": gflops}


def table(s: dict, rows: dict, floor: dict) -> str:
    import kiln
    import kiln.nn.functional as F
    units = {k: (amount, unit) for k, (_, amount, unit) in
             workloads(kiln, F, s, "cuda").items()}
    peers = [p for p in ("kiln", "kiln.jit", "torch", "torch.compile") if p in rows]
    lines = ["| workload | " + " | ".join(f"{p} ms" for p in peers) +
             " | floor ms | kiln.jit fraction of floor | kiln.jit / torch |",
             "| --- |" + " ---: |" * (len(peers) + 3)]
    for name, (amount, unit) in units.items():
        rate = floor.get(unit)
        floor_ms = amount / rate / 1e6 if rate else None
        k = rows["kiln.jit"][name]
        cells = [f"{rows[p][name]:.3f}" for p in peers]
        frac = f"{floor_ms / k:.2f}" if floor_ms else "—"
        ratio = f"{k / rows['torch'][name]:.2f}" if "torch" in rows else "—"
        lines.append(f"| {name} | " + " | ".join(cells) +
                     f" | {floor_ms:.3f} | {frac} | {ratio} |" if floor_ms else
                     f"| {name} | " + " | ".join(cells) + f" | — | {frac} | {ratio} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    ns = ap.parse_args(argv)
    s = SIZES["small" if ns.small else "full"]
    began = time.perf_counter()
    rows = {"kiln": kiln_times(s, ns.repeat, False), "kiln.jit": kiln_times(s, ns.repeat, True)}
    try:
        import torch
        if torch.cuda.is_available():
            rows["torch"] = torch_times(s, ns.repeat, False)
            if not ns.no_compile:
                rows["torch.compile"] = torch_times(s, ns.repeat, True)
        else:
            print("torch has no CUDA here: Kiln's rows only")
    except ImportError:
        print("no torch here: Kiln's rows only")
    print(table(s, rows, floors(s)))
    print(f"({time.perf_counter() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
