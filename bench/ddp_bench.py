"""Data-parallel training over MPI (kiln.distributed), on 2 processes of this machine, in ONE
MPI job so that every peer runs under the same conditions, timed in turns:

1. all_reduce of 64 MiB float32: kiln.distributed.all_reduce of a Kiln tensor against
   mpi4py's own Allreduce of a NumPy array (same job, same communicator size), alternating.
   Acceptance: Kiln reaches at least 90% of mpi4py's rate.
2. One DDP training step of the W5 MLP (bench/w5_mlp_train.py: 784->128->64->10, SGD lr
   0.01, its weights and batches), batch 64 per rank: Kiln's DistributedDataParallel eager
   (`kiln`) and inside one @kiln.jit step (`kiln-jit`) against PyTorch's DDP over gloo
   (`torch`), in the same processes. Before timing, each peer's local losses over the first
   CHECK_STEPS steps must match a NumPy float64 run of data-parallel SGD on the global batch.
   Acceptance: a Kiln DDP step is at least as fast as PyTorch's.
3. Overlap: eager backward of an MLP (4 x 1024x1024 + 1024x10, batch 32) through DDP with
   4 MiB buckets (all-reduced while the backward runs) against the same backward without
   DDP followed by the same buckets all-reduced one after another (and put back into
   `.grad`, as DDP does). Acceptance: the first is faster. ("local" is the backward alone;
   "comm" the bucket all-reduces alone.)

    python bench/ddp_bench.py                 # the parent: starts the MPI job, prints tables
    python bench/ddp_bench.py --reps 40 --rounds 10 --sections overlap

Each rank runs with one thread (two ranks on two cores); times are rank 0's, medians. Not run
by `make bench` (bench/run_all.py runs the w*.py scripts): it starts an MPI job of its own.
On a shared 2-core machine the overlap section moves with the load: compare its rows only
within one run.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "KILN_NUM_THREADS"):
    os.environ.setdefault(_var, "1")       # NOTE: before NumPy: one thread per rank

import argparse  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

BENCH = Path(__file__).resolve().parent
ALLREDUCE_BYTES = 64 * 2**20
W5_BATCH = 64
CHECK_STEPS = 5
TOLERANCE = 1e-4
OVERLAP = dict(width=1024, depth=4, batch=32, bucket_cap_mb=4)


def _w5():
    """bench/w5_mlp_train.py (its weights, batches and float64 step); it imports the
    harness, which sets thread variables for later processes: NumPy is loaded already."""
    sys.path.insert(0, str(BENCH))
    import w5_mlp_train
    return w5_mlp_train


# ---- the oracle: data-parallel SGD in float64 --------------------------------------------
def reference_local_losses(rank: int, world: int, steps: int) -> list[float]:
    """Rank `rank`'s loss on its shard at each step of SGD on the global batch (what
    averaging the ranks' gradients computes), in float64."""
    w5 = _w5()
    ws = [w.astype(np.float64) for w in w5.weights()]
    x, y = w5.batch(W5_BATCH * world)
    x = x.astype(np.float64)
    mine = slice(rank * W5_BATCH, (rank + 1) * W5_BATCH)
    losses = []
    for _ in range(steps):
        losses.append(w5._loss_and_grads(ws, x[mine], y[mine])[0])
        _, grads = w5._loss_and_grads(ws, x, y)
        for w, g in zip(ws, grads):
            w -= w5.LR * g
    return losses


# ---- the peers (inside the MPI job) --------------------------------------------------------
def kiln_step(jitted: bool, rank: int, world: int):
    import kiln
    from kiln.nn.parallel import DistributedDataParallel as DDP
    w5 = _w5()
    model, _ = w5._model_and_optimizer(kiln, "sgd")
    ddp = DDP(model)
    opt = kiln.optim.SGD(ddp.parameters(), lr=w5.LR)
    x, y = _shard(kiln, rank, world)

    def step(x, y):
        opt.zero_grad()
        loss = kiln.nn.functional.cross_entropy(ddp(x), y)
        loss.backward()
        opt.step()
        return loss
    run = kiln.jit(step) if jitted else step
    return lambda: float(run(x, y))


def torch_step(rank: int, world: int, port: int):
    import torch
    import torch.distributed as tdist
    torch.set_num_threads(1)
    if not tdist.is_initialized():
        tdist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                 world_size=world)
    w5 = _w5()
    model, opt = w5._model_and_optimizer(torch, "sgd")
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    x, y = _shard(torch, rank, world)

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(ddp(x), y)
        loss.backward()
        opt.step()
        return float(loss)
    return step


def _shard(lib, rank: int, world: int):
    xs, ys = _w5().batch(W5_BATCH * world)
    mine = slice(rank * W5_BATCH, (rank + 1) * W5_BATCH)
    return lib.from_numpy(np.ascontiguousarray(xs[mine])), lib.from_numpy(ys[mine].copy())


# ---- timing in turns (every rank runs the same sequence) ------------------------------------
def in_turns(peers: dict, reps: int, rounds: int) -> dict:
    """{name: [seconds per call]}: each round gives every peer `reps // rounds` timed calls
    after one untimed one, the peers' order alternating between rounds."""
    from kiln import distributed as dist
    times = {name: [] for name in peers}
    names = list(peers)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            dist.barrier()
            f = peers[name]
            f()
            for _ in range(max(1, reps // rounds)):
                t0 = time.perf_counter()
                f()
                times[name].append(time.perf_counter() - t0)
    return times


def allreduce_peers(world: int) -> dict:
    import kiln
    import kiln.distributed as dist
    from mpi4py import MPI
    n = ALLREDUCE_BYTES // 4
    tensor = kiln.from_numpy(np.ones(n, np.float32))
    array = np.ones(n, np.float32)
    comm = MPI.COMM_WORLD

    def check():
        tensor._data[:] = 1
        array[:] = 1
        dist.all_reduce(tensor)
        comm.Allreduce(MPI.IN_PLACE, array)
        return bool((tensor._data == world).all() and (array == world).all())
    if not check():
        raise RuntimeError("all_reduce results are wrong")
    return {"kiln.distributed": lambda: dist.all_reduce(tensor),
            "mpi4py": lambda: comm.Allreduce(MPI.IN_PLACE, array)}


def check_losses(step, rank: int, world: int, want: list[float]) -> float:
    got = [step() for _ in range(CHECK_STEPS)]
    return max(abs(a - b) / abs(b) for a, b in zip(got, want))


class Overlap:
    """Section 3's model twice (through DDP and plain) and the plain model's buckets."""

    NAMES = ("ddp (overlapped)", "backward then comm", "local backward", "comm")

    def __init__(self):
        import kiln
        import kiln.distributed as dist
        from kiln.nn.parallel import DistributedDataParallel as DDP
        from kiln.nn.parallel import buckets
        o = OVERLAP
        self.kiln = kiln
        self.ddp, self.plain = DDP(self._mlp(), bucket_cap_mb=o["bucket_cap_mb"]), self._mlp()
        self.params = list(self.plain.parameters())
        self.buckets = buckets.assign(self.params, int(o["bucket_cap_mb"] * 2**20))
        self.engine = dist.process_group.current().engine
        self.x = kiln.randn(o["batch"], o["width"])
        self.y = kiln.randint(0, 10, (o["batch"],))

    def _mlp(self):
        nn = self.kiln.nn
        self.kiln.manual_seed(0)
        layers = []
        for _ in range(OVERLAP["depth"]):
            layers += [nn.Linear(OVERLAP["width"], OVERLAP["width"]), nn.ReLU()]
        return nn.Sequential(*layers, nn.Linear(OVERLAP["width"], 10))

    def reduce(self) -> None:
        """The plain model's gradients, all-reduced bucket by bucket after its backward and
        put back into `.grad` (what DDP does, but during the backward)."""
        from kiln.nn.parallel.reducer import bucket_job
        scale = 1.0 / self.engine.group.size
        works = []
        for b in self.buckets:
            for k, i in enumerate(b.members):
                grad = self.params[i].grad._data
                np.multiply(grad, scale, out=b.slot(k).reshape(grad.shape))
            works.append(self.engine.submit(bucket_job(b)))
        for b, w in zip(self.buckets, works):
            w.wait()
            for k, i in enumerate(b.members):     # NOTE: the averages into .grad, as DDP
                grad = self.params[i].grad._data
                np.copyto(grad, b.slot(k).reshape(grad.shape))

    def run(self, name: str) -> float:
        """Seconds of one timed part; the forward before it is not timed."""
        from kiln import distributed as dist
        model = self.ddp if name == "ddp (overlapped)" else self.plain
        loss = None
        if name != "comm":
            for p in model.parameters():
                p.grad = None
            loss = self.kiln.nn.functional.cross_entropy(model(self.x), self.y)
        dist.barrier()
        t0 = time.perf_counter()
        if loss is not None:
            loss.backward()
        if name in ("backward then comm", "comm"):
            self.reduce()
        return time.perf_counter() - t0


def time_overlap(reps: int, rounds: int) -> dict:
    overlap = Overlap()
    for name in Overlap.NAMES:         # NOTE: a warm-up; "comm" needs gradients to exist
        overlap.run(name)
    peers = {name: (lambda name=name: overlap.run(name)) for name in Overlap.NAMES}
    times = {name: [] for name in Overlap.NAMES}
    for r in range(rounds):
        for name in (Overlap.NAMES if r % 2 == 0 else Overlap.NAMES[::-1]):
            times[name] += [peers[name]() for _ in range(max(1, reps // rounds))]
    return {"times": times, "buckets": len(overlap.buckets)}


# ---- the child: one rank of the MPI job ----------------------------------------------------
def child(ns) -> int:
    import kiln
    import kiln.distributed as dist
    warnings.simplefilter("error", kiln.KilnJitWarning)
    dist.init_process_group("mpi")
    rank, world = dist.get_rank(), dist.get_world_size()
    out = {"world": world}
    if "allreduce" in ns.sections:
        times = in_turns(allreduce_peers(world), ns.reps, ns.rounds)
        out["allreduce"] = {k: statistics.median(v) for k, v in times.items()}
    if "overlap" in ns.sections:        # NOTE: before torch (and gloo's threads) load
        overlap = time_overlap(ns.reps, ns.rounds)
        out["overlap"] = {k: statistics.median(v) for k, v in overlap["times"].items()}
        out["overlap_buckets"] = overlap["buckets"]
    if "step" in ns.sections:
        out["step"] = ddp_steps(ns, rank, world)
    if rank == 0:
        print("RESULT " + json.dumps(out), flush=True)
    return 0


def ddp_steps(ns, rank: int, world: int) -> dict:
    """{peer: {"err": ..., "median_s": ...} or {"error": ...}} for the W5 DDP step."""
    want = reference_local_losses(rank, world, CHECK_STEPS)
    makers = {"kiln": lambda: kiln_step(False, rank, world),
              "kiln-jit": lambda: kiln_step(True, rank, world),
              "torch": lambda: torch_step(rank, world, ns.port)}
    steps, result = {}, {}
    for name, make in makers.items():
        try:
            steps[name] = make()
            err = check_losses(steps[name], rank, world, want)
        except ImportError as e:
            result[name] = {"error": f"not installed ({e.name})"}
            continue
        result[name] = {"err": err}
        if not err <= TOLERANCE:
            result[name]["error"] = f"loss rel err {err:.1e} > {TOLERANCE:.0e}: timing void"
            del steps[name]
    for name, t in in_turns(steps, ns.reps, ns.rounds).items():
        result[name]["median_s"] = statistics.median(t)
    return result


# ---- the parent: start the job, print the tables -------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(ns) -> dict:
    cmd = [sys.executable, "-m", "kiln.distributed.launch", "-n", str(ns.ranks),
           "--threads", "1", "--timeout", "600", __file__, "--child", "--reps",
           str(ns.reps), "--rounds", str(ns.rounds), "--port", str(free_port()),
           "--sections", ",".join(ns.sections)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=ns.timeout)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    sys.exit(f"the MPI job gave no result (exit {done.returncode}):\n{done.stdout[-3000:]}"
             f"\n{done.stderr[-3000:]}")


def tables(r: dict) -> str:
    lines = []
    if "allreduce" in r:
        lines += _allreduce_table(r["allreduce"], r["world"]) + [""]
    if "step" in r:
        lines += _step_table(r["step"], r["world"]) + [""]
    if "overlap" in r:
        lines += _overlap_table(r)
    return "\n".join(lines)


def _allreduce_table(ar: dict, world: int) -> list[str]:
    mb = ALLREDUCE_BYTES / 2**20
    ratio = (mb / ar["kiln.distributed"]) / (mb / ar["mpi4py"])
    lines = [f"## all_reduce of {mb:.0f} MiB float32, {world} ranks", "",
             "| peer | ms | MiB/s |", "| --- | ---: | ---: |"]
    lines += [f"| {k} | {v * 1e3:.2f} | {mb / v:.0f} |" for k, v in ar.items()]
    return lines + ["", f"kiln.distributed / mpi4py rate: {ratio:.3f} (acceptance >= 0.9: "
                    f"{'yes' if ratio >= 0.9 else 'no'})"]


def _overlap_table(r: dict) -> list[str]:
    ov = r["overlap"]
    o = OVERLAP
    lines = [f"## overlap: eager backward, MLP {o['depth']} x {o['width']}^2 + "
              f"{o['width']}x10, batch {o['batch']}, {r['overlap_buckets']} buckets of "
              f"<= {o['bucket_cap_mb']} MiB", "", "| part | ms |", "| --- | ---: |"]
    lines += [f"| {k} | {v * 1e3:.2f} |" for k, v in ov.items()]
    saved = ov["backward then comm"] - ov["ddp (overlapped)"]
    return lines + ["", f"overlap saves {saved * 1e3:.2f} ms of {ov['comm'] * 1e3:.2f} ms "
                    f"of communication (acceptance, overlapped < sequential: "
                    f"{'yes' if saved > 0 else 'no'})"]


def _step_table(step: dict, world: int) -> list[str]:
    lines = [f"## one DDP training step, W5 MLP, batch {W5_BATCH} per rank, {world} ranks, "
             "SGD", "", "| peer | µs/step | time / torch's | loss error |",
             "| --- | ---: | ---: | ---: |"]
    base = step.get("torch", {}).get("median_s")
    for name, s in step.items():
        if "median_s" not in s:
            lines.append(f"| {name} | {s.get('error', '?')} | | |")
            continue
        ratio = f"{s['median_s'] / base:.2f}" if base else "n/a"
        lines.append(f"| {name} | {s['median_s'] * 1e6:.0f} | {ratio} | {s['err']:.1e} |")
    best = min((s["median_s"] for n, s in step.items() if n.startswith("kiln")
                and "median_s" in s), default=None)
    if base and best:
        lines += ["", f"fastest Kiln DDP step / torch DDP (gloo): {best / base:.2f} "
                  f"(acceptance <= 1: {'yes' if best <= base else 'no'})"]
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=40, help="timed calls per peer (40)")
    p.add_argument("--rounds", type=int, default=10, help="turns per peer (10)")
    p.add_argument("--ranks", type=int, default=2, help="processes (2)")
    p.add_argument("--timeout", type=int, default=900, help="seconds for the whole job")
    p.add_argument("--sections", type=lambda t: t.split(","),
                   default=["allreduce", "step", "overlap"],
                   help="subset of allreduce,step,overlap (all)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ns = p.parse_args(sys.argv[1:] if argv is None else argv)
    if ns.child:
        return child(ns)
    print(f"# bench/ddp_bench.py: {ns.ranks} ranks on {os.cpu_count()} CPUs, one thread each,"
          f" {time.strftime('%Y-%m-%d %H:%M')}\n", flush=True)
    print(tables(launch(ns)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
