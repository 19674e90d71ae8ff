"""DistributedDataParallel in one process (a world of one): the gradients it averages are
the plain model's, reported during the backward as each module's part finishes; state dicts,
no_sync, unused and shared parameters, and its errors."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import kiln
import kiln.distributed as dist
from kiln import nn
from kiln.ir.errors import NotSupportedError
from kiln.nn.parallel import DistributedDataParallel as DDP
from kiln.nn.parallel import buckets, consume_prefix_in_state_dict_if_present
from kiln.nn.parallel.proxies import ParametersChanged
from kiln.nn.parallel.reducer import ReductionError, Step
from kiln.nn.parallel.traced import DDPJitWarning


def mlp(seed: int = 0):
    kiln.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 5), nn.ReLU(),
                         nn.Linear(5, 3))


def grads_of(model, x, y, wrap=None, steps=1) -> list[np.ndarray]:
    net = model if wrap is None else wrap(model)
    for _ in range(steps):
        nn.functional.cross_entropy(net(x), y).backward()
    return [p.grad.numpy().copy() for p in model.parameters()]


def batch():
    rng = np.random.default_rng(3)
    return (kiln.from_numpy(rng.standard_normal((7, 6)).astype(np.float32)),
            kiln.from_numpy(rng.integers(0, 3, 7)))


def assert_same(got, want):
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)


def test_gradients_are_the_plain_models(world):
    x, y = batch()
    assert_same(grads_of(mlp(), x, y, DDP), grads_of(mlp(), x, y))


def test_gradients_accumulate_over_no_sync_steps(world):
    x, y = batch()
    model = mlp()
    ddp = DDP(model)
    with ddp.no_sync():
        nn.functional.cross_entropy(ddp(x), y).backward()
    nn.functional.cross_entropy(ddp(x), y).backward()
    assert_same([p.grad.numpy() for p in model.parameters()], grads_of(mlp(), x, y, steps=2))


def test_a_module_reports_its_gradients_as_soon_as_its_backward_is_done(world, monkeypatch):
    """The first layer's backward runs after the last layers' gradients were handed over
    (the tape alone would run every parameter's last node at the very end)."""
    events = []

    class Mark(kiln.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            return t * 1

        @staticmethod
        def backward(ctx, g):
            events.append("backward reaches the first layer's output")
            return g

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.fc3 = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2)

        def forward(self, x):
            h = Mark.apply(self.fc1(x).relu())
            return self.fc3(self.fc2(h).relu())
    original = Step.contribute
    monkeypatch.setattr(Step, "contribute", lambda self, members, gs, expected: (
        events.extend(members), original(self, members, gs, expected))[1])
    ddp = DDP(Net(), bucket_cap_mb=1e-5)        # NOTE: a bucket per parameter
    ddp(kiln.randn(3, 4)).sum().backward()
    mark = events.index("backward reaches the first layer's output")
    assert sorted(events[:mark]) == [2, 3, 4, 5] and sorted(events[mark + 1:]) == [0, 1]


def test_buckets_follow_the_parameters_backwards():
    params = [nn.Parameter(kiln.zeros(n)) for n in (300_000, 100, 200, 70_000, 70_000, 10)]
    got = [b.members for b in buckets.assign(params, cap_bytes=4 * 100_000)]
    # NOTE: reversed; the first bucket may hold 1 MiB (it starts the communication early),
    # the others the cap; a parameter larger than the cap gets a bucket of its own
    assert got == [[5, 4, 3, 2, 1], [0]]
    assert [b.grads.size for b in buckets.assign(params, 4 * 100_000)] == [140_310, 300_000]


def test_a_bucket_holds_one_dtype():
    params = [nn.Parameter(kiln.zeros(100_000)), nn.Parameter(kiln.zeros(10, dtype=kiln.float64)),
              nn.Parameter(kiln.zeros(100_000))]
    got = buckets.assign(params, cap_bytes=500_000)
    assert [b.members for b in got] == [[2, 0], [1]]
    assert [b.buffer.dtype for b in got] == [np.float32, np.float64]


def test_state_dicts_have_pytorchs_prefix_and_load_either_way(world):
    ddp = DDP(mlp())
    keys = list(ddp.state_dict())
    assert keys[0] == "module.0.weight" and all(k.startswith("module.") for k in keys)
    plain = mlp(seed=1).state_dict()
    ddp.load_state_dict(plain)                  # NOTE: no prefix: accepted
    assert np.array_equal(ddp.module[0].weight.detach().numpy(), plain["0.weight"].numpy())
    ddp.load_state_dict(mlp(seed=2).state_dict(prefix="module."))
    saved = ddp.state_dict()
    consume_prefix_in_state_dict_if_present(saved, "module.")
    mlp().load_state_dict(saved)


def test_a_parameter_no_rank_uses_keeps_its_grad(world):
    """PyTorch's rule: a parameter no rank gave a gradient keeps `.grad` (None stays None),
    so weight decay and momentum leave it alone; one with a `.grad` is averaged."""
    class Partly(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(3, 2), nn.Linear(3, 2)

        def forward(self, x):
            return self.used(x)
    model = Partly()
    ddp = DDP(model)
    opt = kiln.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    before = model.unused.weight.detach().numpy().copy()
    x = kiln.randn(4, 3)
    ddp(x).sum().backward()
    opt.step()
    assert model.unused.weight.grad is None and model.unused.bias.grad is None
    assert np.array_equal(model.unused.weight.detach().numpy(), before)
    want = x.sum(0).numpy()
    np.testing.assert_allclose(model.used.weight.grad.numpy(), np.stack([want, want]),
                               rtol=1e-6)
    model.unused.weight.grad = kiln.ones(2, 3)  # NOTE: a .grad counts as a gradient
    ddp(x).sum().backward()
    assert np.array_equal(model.unused.weight.grad.numpy(), np.ones((2, 3), np.float32))
    assert model.unused.bias.grad is None


def test_shared_and_reused_layers(world):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)
            self.b.weight = self.a.weight       # NOTE: one Parameter in two modules

        def forward(self, x):
            return self.b(self.a(self.a(x)).relu())
    x = kiln.randn(3, 4)

    def grads(wrap):
        kiln.manual_seed(5)
        model = Tied()
        net = model if wrap is None else wrap(model)
        net(x).square().sum().backward()
        return [p.grad.numpy().copy() for p in model.parameters()]
    assert_same(grads(DDP), grads(None))


def test_gradients_as_bucket_views(world):
    x, y = batch()
    model = mlp()
    got = grads_of(model, x, y, lambda m: DDP(m, gradient_as_bucket_view=True))
    assert_same(got, grads_of(mlp(), x, y))


def test_gradients_for_chosen_tensors_are_this_ranks_own(world):
    """autograd.grad and backward(inputs=...) through DDP give the local gradients, as
    PyTorch's autograd.grad does (no averaging); the next step works as usual."""
    x, y = batch()
    model = mlp()
    ddp = DDP(model)
    params = list(ddp.parameters())
    got = kiln.autograd.grad(nn.functional.cross_entropy(ddp(x), y), params)
    assert all(p.grad is None for p in params)
    assert_same([g.numpy() for g in got], grads_of(mlp(), x, y))
    nn.functional.cross_entropy(ddp(x), y).backward(inputs=[model[4].bias])
    assert [p.grad is not None for p in params] == [False] * 5 + [True]
    model.zero_grad()
    assert_same(grads_of(model, x, y, lambda m: ddp), grads_of(mlp(), x, y))


def test_a_backward_stopped_midway_is_reported_at_the_next_forward(world):
    class Boom(kiln.autograd.Function):
        fail = True

        @staticmethod
        def forward(ctx, t):
            return t * 1

        @staticmethod
        def backward(ctx, g):
            if Boom.fail:
                raise ValueError("boom")
            return g
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(6, 8), nn.Linear(8, 3)

        def forward(self, x):
            return self.fc2(Boom.apply(self.fc1(x)))
    model = Net()
    ddp = DDP(model, bucket_cap_mb=1e-5)        # NOTE: fc2's buckets go before Boom fails
    x = kiln.randn(2, 6)
    with pytest.raises(ValueError, match="boom"):
        ddp(x).sum().backward()
    with pytest.raises(ReductionError, match="stopped before the end"):
        ddp(x)
    Boom.fail = False
    model.zero_grad()
    ddp(x).sum().backward()                     # NOTE: the next step works
    assert all(p.grad is not None for p in model.parameters())


def test_eval_and_no_grad_forwards_need_no_backward(world):
    x, y = batch()
    ddp = DDP(mlp())
    with kiln.no_grad():
        ddp(x)
    ddp(x)                                       # NOTE: a forward without backward is fine
    nn.functional.cross_entropy(ddp(x), y).backward()


def test_jitted_step_with_ddp_compiles_once(world):
    x, y = batch()
    model = mlp()
    ddp = DDP(model)
    opt = kiln.optim.SGD(ddp.parameters(), lr=0.1)

    @kiln.jit
    def step(x, y):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(ddp(x), y)
        loss.backward()
        opt.step()
        return loss
    reference = mlp()
    ref_opt = kiln.optim.SGD(reference.parameters(), lr=0.1)
    for _ in range(3):
        step(x, y)
        ref_opt.zero_grad()
        nn.functional.cross_entropy(reference(x), y).backward()
        ref_opt.step()
    assert step.traces == 1
    for p, q in zip(model.parameters(), reference.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-5,
                                   atol=1e-6)


def test_no_sync_inside_a_jitted_step_does_not_retrace(world):
    x, y = batch()
    ddp = DDP(mlp())

    @kiln.jit
    def accumulate(x, y):
        with ddp.no_sync():
            nn.functional.cross_entropy(ddp(x), y).backward()
        nn.functional.cross_entropy(ddp(x), y).backward()
    for _ in range(3):
        for p in ddp.parameters():
            p.grad = None
        accumulate(x, y)
    assert accumulate.traces == 1
    assert_same([p.grad.numpy() for p in ddp.parameters()], grads_of(mlp(), x, y, steps=2))


def test_backward_outside_a_jitted_forward_is_refused(world):
    x, y = batch()
    ddp = DDP(mlp())
    loss = kiln.jit(lambda x, y: nn.functional.cross_entropy(ddp(x), y))(x, y)
    with pytest.raises(NotSupportedError, match="jit the whole training step"):
        loss.backward()


def test_wrong_arguments(world):
    with pytest.raises(TypeError, match="wraps a kiln.nn.Module"):
        DDP(lambda x: x)
    with pytest.raises(NotSupportedError, match="devices"):
        DDP(mlp(), device_ids=[0])
    with pytest.raises(ValueError, match="bucket_cap_mb must be positive"):
        DDP(mlp(), bucket_cap_mb=0)


def test_ddp_needs_a_process_group():
    with pytest.raises(dist.DistError, match="init_process_group"):
        DDP(mlp())


# ---- PyTorch DDP patterns: the gradients are the plain model's ------------------------------
@dataclasses.dataclass
class Out:
    logits: object


class WithAux(nn.Module):
    """A loss term the module keeps (MoE balance, KL): `reg` is reached only through it.
    The wide layer fills a bucket of its own: `reg` shares the first one with the rest."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 50_000), nn.ReLU(), nn.Linear(50_000, 3))
        self.extra = nn.Module()
        self.extra.reg = nn.Parameter(kiln.ones(3))

    def forward(self, x):
        self.aux = self.extra.reg.square().sum()
        return Out(self.body(x))


def two_forwards(net, x, y):        # GAN discriminator, siamese: one backward over both
    (nn.functional.cross_entropy(net(x).logits, y)
     + net(x * 2).logits.square().mean()).backward()


def input_gradient(net, x, y):      # FGSM: a gradient for the input, then a normal step
    xi = x.clone().requires_grad_()
    (gx,) = kiln.autograd.grad(nn.functional.cross_entropy(net(xi).logits, y), [xi])
    nn.functional.cross_entropy(net((xi + 0.1 * gx.sign()).detach()).logits, y).backward()


def gradient_penalty(net, x, y):    # WGAN-GP: create_graph, then one backward
    xi = x.clone().requires_grad_()
    out = net(xi).logits
    (gx,) = kiln.autograd.grad(out.sum(), [xi], create_graph=True)
    (nn.functional.cross_entropy(out, y) + gx.square().sum()).backward()


def aux_loss(net, x, y):
    out = net(x).logits
    (nn.functional.cross_entropy(out, y) + net.module.aux if isinstance(net, DDP)
     else nn.functional.cross_entropy(out, y) + net.aux).backward()


@pytest.mark.parametrize("pattern", [two_forwards, input_gradient, gradient_penalty,
                                     aux_loss])
def test_pytorch_ddp_patterns(world, pattern, monkeypatch):
    corrections = []
    original = Step._correct
    monkeypatch.setattr(Step, "_correct", lambda self, b: (corrections.append(b.index),
                                                           original(self, b))[1])
    x, y = batch()

    def grads(wrap):
        kiln.manual_seed(0)
        model = WithAux()
        pattern(model if wrap is None else wrap(model), x, y)
        return [None if p.grad is None else p.grad.numpy().copy() for p in model.parameters()]
    want = grads(None)
    got = grads(lambda m: DDP(m))
    assert [g is None for g in got] == [w is None for w in want]
    assert_same([g for g in got if g is not None], [w for w in want if w is not None])
    # NOTE: reg's gradient came after its bucket was sent: a correction all-reduce
    assert corrections == ([0] if pattern is aux_loss else [])


def test_a_second_backward_through_the_same_forward_is_refused(world):
    x, y = batch()
    ddp = DDP(mlp())
    loss = nn.functional.cross_entropy(ddp(x), y)
    loss.backward(retain_graph=True)
    with pytest.raises(ReductionError, match="not supported yet: a second backward"):
        loss.backward()
    nn.functional.cross_entropy(ddp(x), y).backward()   # NOTE: the next step works


def test_a_parameter_frozen_after_wrapping_is_not_trained(world):
    x, y = batch()
    model = mlp()
    ddp = DDP(model)
    opt = kiln.optim.SGD(ddp.parameters(), lr=0.5)
    model[0].weight.requires_grad_(False)
    before = model[0].weight.detach().numpy().copy()
    nn.functional.cross_entropy(ddp(x), y).backward()
    opt.step()
    assert model[0].weight.grad is None and model[0].bias.grad is not None
    assert np.array_equal(model[0].weight.detach().numpy(), before)


def test_the_parameter_set_must_stay_the_one_wrapped(world):
    ddp = DDP(nn.Linear(3, 2))
    ddp.module.weight = nn.Parameter(kiln.zeros(2, 3))
    with pytest.raises(ParametersChanged, match="'module.weight' is no longer the Parameter"):
        ddp(kiln.ones(1, 3))
    assert float(ddp.module.weight.detach().abs().max()) == 0     # NOTE: kept, not undone
    frozen = nn.Linear(3, 2)
    frozen.bias.requires_grad_(False)
    ddp = DDP(frozen)
    frozen.bias.requires_grad_(True)
    with pytest.raises(ParametersChanged, match="'module.bias' did not require grad"):
        ddp(kiln.ones(1, 3))


def test_under_jit_a_parameter_the_step_does_not_reach_is_warned_about(world):
    class Partly(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(3, 2), nn.Linear(3, 2)

        def forward(self, x):
            return self.used(x)
    model = Partly()
    ddp = DDP(model)
    step = kiln.jit(lambda x: ddp(x).sum().backward())
    with pytest.warns(DDPJitWarning, match="no gradient to unused.weight, unused.bias"):
        step(kiln.ones(2, 3))
    # NOTE: not as eagerly (None): a compiled step cannot tell whether another rank used it
    assert np.array_equal(model.unused.weight.grad.numpy(), np.zeros((2, 3), np.float32))
    np.testing.assert_allclose(model.used.weight.grad.numpy(), np.full((2, 3), 2.0))
