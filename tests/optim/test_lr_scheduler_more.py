"""The schedulers beyond StepLR/CosineAnnealingLR: learning-rate (and momentum) sequences
against PyTorch's over many steps, resuming from state dicts, and option errors."""
from __future__ import annotations

import pytest

import kiln
from kiln.optim import lr_scheduler as ks

torch = pytest.importorskip("torch")

LRS = (0.1, 0.5)


def _pair(optim_name="SGD", **options):
    """A Kiln optimizer and a torch one with two groups of the same learning rates."""
    kopt = getattr(kiln.optim, optim_name)(
        [{"params": [kiln.zeros(1, requires_grad=True)], "lr": lr} for lr in LRS], **options)
    topt = getattr(torch.optim, optim_name)(
        [{"params": [torch.zeros(1, requires_grad=True)], "lr": lr} for lr in LRS], **options)
    return kopt, topt


def _momenta(opt):
    return [g["betas"][0] if "betas" in g else g.get("momentum") for g in opt.param_groups]


def _run(sched, steps, metrics=None):
    """(last lr, group lr, momentum) after every step; `metrics` feed ReduceLROnPlateau."""
    out = []
    for i in range(steps):
        out.append((sched.get_last_lr(), [g["lr"] for g in sched.optimizer.param_groups],
                    _momenta(sched.optimizer)))
        sched.optimizer.step()
        sched.step() if metrics is None else sched.step(metrics[i])
    return out


CASES = [
    ("LambdaLR", {"lr_lambda": lambda e: 0.95 ** e + 0.01 * (e % 3)}),
    ("LambdaLR", {"lr_lambda": [lambda e: 1 / (e + 1), lambda e: 0.9 ** e]}),
    ("MultiplicativeLR", {"lr_lambda": lambda e: 0.9 if e % 2 else 0.97}),
    ("MultiStepLR", {"milestones": [3, 7, 7, 20], "gamma": 0.3}),
    ("ExponentialLR", {"gamma": 0.93}),
    ("LinearLR", {"start_factor": 0.1, "end_factor": 0.8, "total_iters": 9}),
    ("LinearLR", {}),
]


@pytest.mark.parametrize("name,kwargs", CASES, ids=[c[0] + str(i) for i, c in enumerate(CASES)])
def test_scheduler_sequence_matches_torch(name, kwargs):
    kopt, topt = _pair(momentum=0.9)
    got = _run(getattr(ks, name)(kopt, **kwargs), 40)
    want = _run(getattr(torch.optim.lr_scheduler, name)(topt, **kwargs), 40)
    assert got == want


ONE_CYCLE = [
    ({"anneal_strategy": "cos"}),
    ({"anneal_strategy": "linear", "pct_start": 0.25}),
    ({"three_phase": True, "anneal_strategy": "linear"}),
    ({"three_phase": True, "div_factor": 10.0, "final_div_factor": 100.0}),
    ({"cycle_momentum": False}),
    ({"base_momentum": [0.8, 0.7], "max_momentum": 0.99, "max_lr": [1.0, 2.0]}),
]


@pytest.mark.parametrize("optim_name", ["SGD", "Adam"])
@pytest.mark.parametrize("kwargs", ONE_CYCLE)
def test_one_cycle_lr_and_momentum_match_torch(optim_name, kwargs):
    options = {"momentum": 0.9} if optim_name == "SGD" else {}
    kopt, topt = _pair(optim_name, **options)
    kwargs = {"max_lr": 1.0, "total_steps": 50, **kwargs}
    got = _run(ks.OneCycleLR(kopt, **kwargs), 50)
    want = _run(torch.optim.lr_scheduler.OneCycleLR(topt, **kwargs), 50)
    assert got == want
    for k in ("initial_lr", "max_lr", "min_lr"):
        assert [g[k] for g in kopt.param_groups] == [g[k] for g in topt.param_groups]


def test_one_cycle_from_epochs_and_its_errors():
    kopt, topt = _pair(momentum=0.9)
    got = _run(ks.OneCycleLR(kopt, 0.3, epochs=4, steps_per_epoch=5), 20)
    assert got == _run(torch.optim.lr_scheduler.OneCycleLR(topt, 0.3, epochs=4,
                                                           steps_per_epoch=5), 20)
    with pytest.raises(ValueError, match="Tried to step 21 times"):
        _run(ks.OneCycleLR(_pair(momentum=0.9)[0], 0.3, total_steps=20), 21)
    with pytest.raises(ValueError, match="total_steps OR"):
        ks.OneCycleLR(kopt, 0.3)
    with pytest.raises(ValueError, match="pct_start"):
        ks.OneCycleLR(kopt, 0.3, total_steps=10, pct_start=1.5)
    with pytest.raises(ValueError, match="anneal_strategy"):
        ks.OneCycleLR(kopt, 0.3, total_steps=10, anneal_strategy="step")
    with pytest.raises(ValueError, match="must support momentum"):
        ks.OneCycleLR(_no_momentum_optimizer(), 0.3, total_steps=10)
    with pytest.raises(ValueError, match="max_lr must have the same length"):
        ks.OneCycleLR(kopt, [0.1, 0.2, 0.3], total_steps=10)


def _no_momentum_optimizer():
    class Plain(kiln.optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, {"lr": 0.1})
    return Plain([kiln.zeros(1, requires_grad=True)])


PLATEAU = [
    {},
    {"mode": "max", "factor": 0.5, "patience": 2},
    {"threshold_mode": "abs", "threshold": 0.05, "patience": 1, "cooldown": 2},
    {"mode": "max", "threshold_mode": "abs", "patience": 0, "min_lr": [0.02, 0.05]},
    {"patience": 1, "factor": 0.5, "min_lr": 0.01, "eps": 1e-3},
]


@pytest.mark.parametrize("kwargs", PLATEAU)
def test_reduce_lr_on_plateau_matches_torch(kwargs):
    metrics = [1.0, 0.9, 0.95, 0.9, 0.9, 0.91, 0.5, 0.52, 0.51, 0.5, 0.5, 0.49995, 0.7, 0.3,
               0.3, 0.3, 0.31, 0.2, 0.2, 0.25] * 3
    kopt, topt = _pair(momentum=0.9)
    ksched = ks.ReduceLROnPlateau(kopt, **kwargs)
    got = _run(ksched, len(metrics), metrics)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kwargs)
    assert got == _run(tsched, len(metrics), metrics)
    assert (ksched.best, ksched.num_bad_epochs, ksched.cooldown_counter) == \
        (tsched.best, tsched.num_bad_epochs, tsched.cooldown_counter)


def test_reduce_lr_on_plateau_takes_a_tensor_metric_and_validates_options():
    opt, _ = _pair()
    sched = ks.ReduceLROnPlateau(opt, patience=0)
    sched.step(kiln.tensor(1.0))
    sched.step(kiln.tensor(2.0))
    assert sched.get_last_lr() == pytest.approx([0.01, 0.05])
    with pytest.raises(ValueError, match="Factor should be < 1.0"):
        ks.ReduceLROnPlateau(opt, factor=1.0)
    with pytest.raises(ValueError, match="mode avg is unknown"):
        ks.ReduceLROnPlateau(opt, mode="avg")
    with pytest.raises(ValueError, match="threshold mode"):
        ks.ReduceLROnPlateau(opt, threshold_mode="pct")
    with pytest.raises(ValueError, match="min_lr must have the same length"):
        ks.ReduceLROnPlateau(opt, min_lr=[0.1])


def test_plateau_state_dict_round_trip_resumes_like_torch():
    metrics = [1.0, 1.0, 0.8, 0.8, 0.8, 0.8, 0.6, 0.6, 0.6, 0.6, 0.6]
    opt, _ = _pair()
    sched = ks.ReduceLROnPlateau(opt, patience=1, cooldown=1)
    _run(sched, 4, metrics)
    state = sched.state_dict()
    rest = _run(sched, 7, metrics[4:])
    opt2, _ = _pair()
    for g, lr in zip(opt2.param_groups, state["_last_lr"]):
        g["lr"] = lr
    resumed = ks.ReduceLROnPlateau(opt2)
    resumed.load_state_dict(state)
    assert _run(resumed, 7, metrics[4:]) == rest


class _Warmup:
    """A callable object: its attributes travel in LambdaLR's state dict."""

    def __init__(self, steps):
        self.steps = steps

    def __call__(self, epoch):
        return min(1.0, (epoch + 1) / self.steps)


@pytest.mark.parametrize("name,kwargs", [
    ("LambdaLR", {"lr_lambda": _Warmup(6)}),
    ("MultiplicativeLR", {"lr_lambda": lambda e: 0.9}),
    ("MultiStepLR", {"milestones": [2, 5], "gamma": 0.5}),
    ("ExponentialLR", {"gamma": 0.8}),
    ("LinearLR", {"start_factor": 0.2, "total_iters": 6}),
    ("OneCycleLR", {"max_lr": 1.0, "total_steps": 12}),
])
def test_state_dict_round_trip_resumes_the_sequence(name, kwargs):
    kopt, _ = _pair(momentum=0.9)
    sched = getattr(ks, name)(kopt, **kwargs)
    _run(sched, 4)
    state = sched.state_dict()
    assert "optimizer" not in state and state["last_epoch"] == 4
    rest = _run(sched, 7)

    kopt2, _ = _pair(momentum=0.9)
    fresh = dict(kwargs, lr_lambda=_Warmup(1)) if name == "LambdaLR" else kwargs
    resumed = getattr(ks, name)(kopt2, **fresh)
    kopt2.load_state_dict(_groups_at(kopt2, rest[0]))
    resumed.load_state_dict(state)
    assert _run(resumed, 7) == rest


def _groups_at(opt, first):
    """opt's state dict with the groups' lr and momentum set to a recorded step's values."""
    state = opt.state_dict()
    for g, lr, m in zip(state["param_groups"], first[1], first[2]):
        g["lr"] = lr
        g["momentum"] = m
    return state


def test_resumed_with_last_epoch_keeps_the_groups_rates():
    # NOTE: PyTorch's "initial mode": a scheduler built with last_epoch >= 0 does not advance
    kopt, topt = _pair()
    for opt in (kopt, topt):
        for g in opt.param_groups:
            g["initial_lr"] = g["lr"]
    k = ks.ExponentialLR(kopt, gamma=0.5, last_epoch=3)
    t = torch.optim.lr_scheduler.ExponentialLR(topt, gamma=0.5, last_epoch=3)
    assert _run(k, 5) == _run(t, 5)


def test_lambda_lr_needs_one_function_per_group():
    opt, _ = _pair()
    with pytest.raises(ValueError, match="Expected 2 lr_lambdas, but got 3"):
        ks.LambdaLR(opt, [lambda e: 1.0] * 3)
    with pytest.raises(TypeError, match="lr_lambda should be a function"):
        ks.MultiplicativeLR(opt, 0.5)
    with pytest.raises(ValueError, match="Starting multiplicative factor"):
        ks.LinearLR(opt, start_factor=0.0)
    with pytest.raises(TypeError, match="is not an Optimizer"):
        ks.ExponentialLR(object(), gamma=0.5)


def test_closed_form_epochs_match_torch():
    kopt, topt = _pair()
    for name, kwargs in [("MultiStepLR", {"milestones": [2, 4, 4]}),
                         ("ExponentialLR", {"gamma": 0.7}),
                         ("LinearLR", {"start_factor": 0.5, "total_iters": 4})]:
        k = getattr(ks, name)(kopt, **kwargs)
        t = getattr(torch.optim.lr_scheduler, name)(topt, **kwargs)
        for epoch in [3, 5, 1, 9]:
            with pytest.warns(UserWarning):
                k.step(epoch)
            with pytest.warns(UserWarning):
                t.step(epoch)
            assert k.get_last_lr() == pytest.approx(t.get_last_lr(), rel=1e-15)
