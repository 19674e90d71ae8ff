"""The digits classifier (examples/digits_classifier.py) trained data-parallel on 2 processes,
written as a PyTorch user writes DDP training; only the imports say `kiln`. Run:

    kiln run -n 2 examples/ddp_digits.py [--epochs 20] [--jit]
    mpiexec -n 2 python examples/ddp_digits.py          # MPICH's launcher works too

Each process reads its own shard of every epoch (DistributedSampler), and
DistributedDataParallel averages the gradients over the processes during `backward()`, so
the model trains on the same global batches of 64 as the single-process example and every
process holds the same model. Alone (`python examples/ddp_digits.py`) it is a world of one.
"""
import argparse
import os
import sys

import kiln as torch
import kiln.distributed as dist
import kiln.nn as nn
import kiln.optim as optim
from kiln.nn.parallel import DistributedDataParallel as DDP
from kiln.utils.data import DataLoader
from kiln.utils.data.distributed import DistributedSampler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from digits_classifier import Net, evaluate, load_data  # noqa: E402

GLOBAL_BATCH = 64


def main(epochs: int = 20, jit: bool = False) -> float:
    dist.init_process_group(backend="mpi")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    train_loader, test_loader = load_data(batch_size=GLOBAL_BATCH)
    sampler = DistributedSampler(train_loader.dataset, shuffle=True, seed=0)
    loader = DataLoader(train_loader.dataset, batch_size=GLOBAL_BATCH // world,
                        sampler=sampler)
    model = DDP(Net())          # NOTE: every rank starts from rank 0's weights
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def train_step(inputs, targets):
        optimizer.zero_grad()
        loss = criterion(model(inputs), targets)
        loss.backward()          # NOTE: gradients averaged over the ranks, bucket by bucket
        optimizer.step()
        return loss
    step = torch.jit(train_step) if jit else train_step
    if rank == 0:
        print(f"{world} process(es), {len(loader)} steps of {GLOBAL_BATCH} digits per epoch")
    for epoch in range(epochs):
        sampler.set_epoch(epoch)            # NOTE: a new shuffle, the same on every rank
        model.train()
        total = torch.zeros(2)
        for inputs, targets in loader:
            loss = step(inputs, targets)
            total += torch.stack([loss.detach() * len(targets), torch.tensor(len(targets))])
        dist.all_reduce(total)              # NOTE: the epoch's loss over every rank's share
        if rank == 0:
            print(f"epoch {epoch + 1}/{epochs}: mean loss {(total[0] / total[1]).item():.4f}")
    accuracy = evaluate(model.module, test_loader, "cpu")
    if rank == 0:
        print(f"test accuracy: {100 * accuracy:.2f}% on {len(test_loader.dataset)} held-out "
              "digits")
    dist.destroy_process_group()
    return accuracy


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--jit", action="store_true",
                        help="compile the training step (the all-reduces with it)")
    args = parser.parse_args()
    main(args.epochs, args.jit)
