"""A DDP training loop in which rank 1 fails mid-step (after its forward, while the other
ranks run their backward and wait in its gradient all-reduce):

    python -m kiln.distributed.launch -n 3 faults.py kill|raise TIMEOUT_S

`kill`: rank 1 dies of SIGKILL (it can say nothing); `raise`: rank 1 raises ValueError. The
other ranks must stop with a DistError naming rank 1, well within the group's timeout.
"""
from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

import kiln
import kiln.distributed as dist
from kiln.nn.parallel import DistributedDataParallel as DDP

from digits_ddp import model


def main(mode: str, timeout: float) -> int:
    dist.init_process_group("mpi", timeout=timeout)
    rank = dist.get_rank()
    ddp = DDP(model(kiln))
    opt = kiln.optim.SGD(ddp.parameters(), lr=0.1)
    rng = np.random.default_rng(rank)
    for step in range(6):
        x = kiln.from_numpy(rng.standard_normal((8, 64)).astype(np.float32))
        y = kiln.from_numpy(rng.integers(0, 10, 8))
        opt.zero_grad()
        loss = kiln.nn.functional.cross_entropy(ddp(x), y)
        if rank == 1 and step == 3:
            print(f"rank 1 fails now ({mode}) at {time.time():.3f}", flush=True)
            if mode == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise ValueError("boom in rank 1's step 3")
        loss.backward()
        opt.step()
    print("finished all steps", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], float(sys.argv[2])))
