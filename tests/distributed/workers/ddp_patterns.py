"""DistributedDataParallel where the ranks do different things: every rank checks that each
parameter's `.grad` is the mean over ranks of the plain model's gradients on each rank's
own work (it computes every rank's itself), None where no rank gave one; then prints `OK`.

    python -m kiln.distributed.launch -n 2 ddp_patterns.py
"""
from __future__ import annotations

import dataclasses
import sys
import warnings

import numpy as np

import kiln
import kiln.distributed as dist
from kiln import nn
from kiln.nn.parallel import DistributedDataParallel as DDP

D = 520     # NOTE: a D x D float32 weight (1.08 MB) is a bucket of its own


def data(q: int, s: int = 0, shape=(4, D)):
    rng = np.random.default_rng(100 * q + s)
    return kiln.tensor(rng.standard_normal(shape).astype(np.float32))


def plain(net):
    return getattr(net, "module", net)


def mean_of_ranks(make, run, world: int) -> dict:
    """name -> the mean over ranks q of the plain model's gradient after run(model, q)
    (None where no rank has one)."""
    total: dict = {}
    for q in range(world):
        model = make()
        run(model, q)
        for name, p in model.named_parameters():
            if p.grad is not None:
                before = total.get(name)
                total[name] = p.grad.numpy() + (0 if before is None else before)
            total.setdefault(name, None)
    return {n: None if g is None else g / world for n, g in total.items()}


def check_grads(model, want: dict, what: str, unreached_zero=()) -> None:
    for name, p in model.named_parameters():
        w = want[name]
        if w is None and name in unreached_zero:
            w = np.zeros(tuple(p.shape), np.float32)
        if w is None:
            assert p.grad is None, f"{what}: {name}.grad should stay None"
            continue
        assert p.grad is not None, f"{what}: {name}.grad is None"
        np.testing.assert_allclose(p.grad.numpy(), w, rtol=1e-4, atol=1e-5,
                                   err_msg=f"{what}: {name}")


# ---- ranks that use different parameters (multi-task heads), eagerly and jitted -------------
class Heads(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = nn.Linear(D, D)
        self.head1, self.head2, self.never = nn.Linear(D, D), nn.Linear(D, D), nn.Linear(D, 2)

    def forward(self, x, task):
        h = self.trunk(x).tanh()
        return self.head1(h) if task == 1 else self.head2(h)


def make_heads():
    kiln.manual_seed(0)
    return Heads()


def task_of(q: int) -> int:
    return 1 if q == 0 else 2      # NOTE: rank 0 trains head1, the others head2


def heads(r: int, n: int) -> None:
    """Each rank sends every bucket, in order, whatever its backward reached (a bucket it
    did not reach holds zeros); `never` (no rank uses it) keeps .grad None eagerly, and gets
    zeros under jit (DDPJitWarning)."""
    want = mean_of_ranks(make_heads, lambda m, q: m(data(q), task_of(q)).square().sum()
                         .backward(), n)
    for jit in (False, True):
        model = make_heads()
        ddp = DDP(model, bucket_cap_mb=1)      # NOTE: each head's weight in a bucket of its own
        assert len(ddp._buckets) >= 4, [b.members for b in ddp._buckets]

        def step(x):
            ddp(x, task_of(r)).square().sum().backward()
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            (kiln.jit(step) if jit else step)(data(r))
        warned = [str(w.message) for w in seen if "DDPJitWarning" in type(w.message).__name__]
        assert bool(warned) == jit, warned
        if jit:
            assert "never.weight, never.bias" in warned[0], warned
        check_grads(model, want, f"heads (jit={jit})",
                    unreached_zero=("never.weight", "never.bias") if jit else ())


# ---- PyTorch DDP patterns, with different data (and loss terms) per rank -------------------
@dataclasses.dataclass
class Out:
    logits: object


class Net(nn.Module):
    """A dataclass output, and a loss term it keeps (`aux`, through `extra.reg` alone)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 150_000), nn.Tanh(), nn.Linear(150_000, 2))
        self.extra = nn.Module()
        self.extra.reg = nn.Parameter(kiln.ones(3))

    def forward(self, x):
        self.aux = self.extra.reg.square().sum()
        return Out(self.body(x))


def make_net():
    kiln.manual_seed(1)
    return Net()


def two_forwards(net, q):           # GAN discriminator, siamese: one backward over both
    (net(data(q, 0, (4, 3))).logits.square().mean() + net(data(q, 1, (4, 3))).logits.mean()
     ).backward()


def input_gradient(net, q):         # FGSM: a gradient for the input, then a normal step
    x = data(q, 0, (4, 3)).requires_grad_()
    (gx,) = kiln.autograd.grad(net(x).logits.square().sum(), [x])
    net((x + 0.1 * gx.sign()).detach()).logits.square().sum().backward()


def gradient_penalty(net, q):       # WGAN-GP
    x = data(q, 0, (4, 3)).requires_grad_()
    out = net(x).logits
    (gx,) = kiln.autograd.grad(out.sum(), [x], create_graph=True)
    (out.square().mean() + gx.square().sum()).backward()


def aux_on_rank_0(net, q):          # only rank 0's loss has the kept term
    loss = net(data(q, 0, (4, 3))).logits.square().sum()
    (loss + plain(net).aux if q == 0 else loss).backward()


def patterns(r: int, n: int) -> None:
    from kiln.nn.parallel.reducer import Step
    corrections = []
    original = Step._correct
    Step._correct = lambda self, b: (corrections.append(b.index), original(self, b))[1]
    try:
        for pattern in (two_forwards, input_gradient, gradient_penalty, aux_on_rank_0):
            want = mean_of_ranks(make_net, pattern, n)
            model = make_net()
            pattern(DDP(model), r)
            check_grads(model, want, pattern.__name__)
    finally:
        Step._correct = original
    # NOTE: rank 0's reg gradient came after its bucket had gone: every rank corrected it
    assert corrections == [0], corrections


def local_gradients(r: int, n: int) -> None:
    """kiln.autograd.grad through DDP gives this rank's own gradients, as in PyTorch."""
    model = make_net()
    ddp = DDP(model)
    got = kiln.autograd.grad(ddp(data(r, 0, (4, 3))).logits.square().sum(),
                             list(ddp.module.body.parameters()))
    mine = make_net()
    mine(data(r, 0, (4, 3))).logits.square().sum().backward()
    for g, p in zip(got, mine.body.parameters()):
        np.testing.assert_allclose(g.numpy(), p.grad.numpy(), rtol=1e-5, atol=1e-6)
    assert all(p.grad is None for p in model.parameters())


# ---- what DDP copies from rank 0, and parameters frozen after wrapping ---------------------
def from_rank_0(r: int, n: int) -> None:
    kiln.manual_seed(100 + r)                  # NOTE: every rank starts different
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)
    with kiln.no_grad():
        model[1].running_mean.fill_(float(r))
    ddp = DDP(model)
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        every = [kiln.zeros_like(t) for _ in range(n)]
        dist.all_gather(every, t.detach())
        for other in every[1:]:
            assert np.array_equal(other.numpy(), every[0].numpy()), f"{name} differs"
    model[2].weight.requires_grad_(False)
    before = model[2].weight.detach().numpy().copy()
    opt = kiln.optim.SGD(ddp.parameters(), lr=0.5)
    ddp(data(r, 0, (4, 3))).square().sum().backward()
    opt.step()
    assert model[2].weight.grad is None and model[0].weight.grad is None
    assert model[2].bias.grad is not None
    assert np.array_equal(model[2].weight.detach().numpy(), before)


def main() -> int:
    dist.init_process_group("mpi")
    r, n = dist.get_rank(), dist.get_world_size()
    for part in (heads, patterns, local_gradients, from_rank_0):
        part(r, n)
    print("OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
