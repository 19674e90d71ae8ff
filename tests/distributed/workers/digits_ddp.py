"""The digits MLP trained data-parallel for 20 steps: the worker for the DDP tests, and the
single-process reference the tests compare it with (`train(...)` without a process group).

    python -m kiln.distributed.launch -n 2 digits_ddp.py OUT_DIR eager jit accumulate

Every rank sees 1/N of each global batch (the same batches whatever N is) and saves its final
parameters to OUT_DIR/<mode>_rank<r>.npy.
"""
from __future__ import annotations

import contextlib
import sys
import warnings

import numpy as np

STEPS = 20
GLOBAL_BATCH = 64
LR = 0.1


def digits():
    from sklearn.datasets import load_digits
    d = load_digits()
    order = np.random.default_rng(0).permutation(len(d.target))
    return (d.images[order].reshape(-1, 64) / 16.0).astype(np.float32), d.target[order]


def model(kiln):
    nn = kiln.nn
    kiln.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                         nn.Linear(64, 10))


def shard(step: int, part: int, parts: int, rank: int, world: int, images, labels):
    """Rank `rank`'s share of part `part` (of `parts` micro-batches) of global batch `step`."""
    micro = GLOBAL_BATCH // parts
    start = (step * GLOBAL_BATCH + part * micro) % (len(labels) - GLOBAL_BATCH)
    per = micro // world
    lo = start + rank * per
    return images[lo:lo + per], labels[lo:lo + per]


def train(mode: str, rank: int = 0, world: int = 1, wrap=None):
    """The final parameters (one flat float32 array) after STEPS steps. `wrap` makes the
    DDP model (None: the plain model, the reference). Modes: eager, jit (the whole step
    under @kiln.jit), accumulate (two micro-batches per step, the first under no_sync)."""
    import kiln
    images, labels = digits()
    net = model(kiln)
    ddp = net if wrap is None else wrap(net)
    opt = kiln.optim.SGD(ddp.parameters(), lr=LR, momentum=0.9)
    parts = 2 if mode == "accumulate" else 1

    def step(xs, ys):
        opt.zero_grad()
        for k, (x, y) in enumerate(zip(xs, ys)):
            local = wrap is not None and k < len(xs) - 1
            with ddp.no_sync() if local else contextlib.nullcontext():
                loss = kiln.nn.functional.cross_entropy(ddp(x), y)
                loss.backward()
        opt.step()
        return loss
    run = kiln.jit(step) if mode == "jit" else step
    for s in range(STEPS):
        batches = [shard(s, k, parts, rank, world, images, labels) for k in range(parts)]
        run([kiln.from_numpy(x) for x, _ in batches], [kiln.from_numpy(y) for _, y in batches])
    out = np.concatenate([p.detach().numpy().ravel() for p in net.parameters()])
    return out, getattr(run, "traces", None)


def main(argv) -> int:
    import kiln
    import kiln.distributed as dist
    from kiln.nn.parallel import DistributedDataParallel as DDP
    warnings.simplefilter("error", kiln.KilnJitWarning)
    out_dir, modes = argv[0], argv[1:]
    dist.init_process_group("mpi")
    rank, world = dist.get_rank(), dist.get_world_size()
    for mode in modes:
        params, traces = train(mode, rank, world, wrap=DDP)
        np.save(f"{out_dir}/{mode}_rank{rank}.npy", params)
        print(f"{mode}: done, traces={traces}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
