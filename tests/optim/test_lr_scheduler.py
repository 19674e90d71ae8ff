"""Learning-rate schedulers: lr sequences against the closed forms, groups, state dicts."""
from __future__ import annotations

import math

import pytest

import kiln
from kiln.optim import SGD
from kiln.optim.lr_scheduler import CosineAnnealingLR, StepLR


def _optimizer(*lrs):
    return SGD([{"params": [kiln.zeros(1, requires_grad=True)], "lr": lr} for lr in lrs],
               lr=lrs[0])


def _sequence(scheduler, epochs):
    lrs = []
    for _ in range(epochs):
        lrs.append(scheduler.get_last_lr())
        scheduler.optimizer.step()
        scheduler.step()
    return lrs


def test_step_lr_follows_its_closed_form_for_every_group():
    opt = _optimizer(0.1, 1.0)
    lrs = _sequence(StepLR(opt, step_size=3, gamma=0.5), 12)
    for epoch, got in enumerate(lrs):
        assert got == pytest.approx([b * 0.5 ** (epoch // 3) for b in (0.1, 1.0)], rel=1e-15)
    assert [g["initial_lr"] for g in opt.param_groups] == [0.1, 1.0]
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 4)


@pytest.mark.parametrize("eta_min", [0.0, 0.01])
def test_cosine_annealing_follows_its_closed_form_past_t_max(eta_min):
    opt = _optimizer(0.1, 0.5)
    t_max = 10
    lrs = _sequence(CosineAnnealingLR(opt, T_max=t_max, eta_min=eta_min), 3 * t_max + 1)
    for epoch, got in enumerate(lrs):
        want = [eta_min + (b - eta_min) * (1 + math.cos(math.pi * epoch / t_max)) / 2
                for b in (0.1, 0.5)]
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), epoch
    assert lrs[t_max] == pytest.approx([eta_min, eta_min], abs=1e-12)
    assert lrs[2 * t_max] == pytest.approx([0.1, 0.5], rel=1e-9)


def test_scheduler_changes_the_learning_rate_the_optimizer_uses():
    w = kiln.tensor([1.0], requires_grad=True)
    opt = SGD([w], lr=1.0)
    sched = StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        w.grad = kiln.tensor([1.0])
        opt.step()
        sched.step()
    assert w.tolist() == [1.0 - 1.0 - 0.5 - 0.25]


def test_scheduler_state_dict_round_trip_resumes_the_sequence():
    opt = _optimizer(1.0)
    sched = CosineAnnealingLR(opt, T_max=8, eta_min=0.1)
    _sequence(sched, 3)
    state = sched.state_dict()
    assert "optimizer" not in state and state["last_epoch"] == 3 and state["T_max"] == 8
    rest = _sequence(sched, 5)

    opt2 = _optimizer(1.0)
    opt2.param_groups[0]["lr"] = state["_last_lr"][0]
    resumed = CosineAnnealingLR(opt2, T_max=8, eta_min=0.1)
    resumed.load_state_dict(state)
    assert _sequence(resumed, 5) == rest


def test_resuming_needs_initial_lr_and_epoch_argument_uses_closed_form():
    with pytest.raises(KeyError, match="initial_lr"):
        StepLR(_optimizer(1.0), step_size=2, last_epoch=4)
    opt = _optimizer(1.0)
    sched = StepLR(opt, step_size=2, gamma=0.1)
    with pytest.warns(UserWarning, match="deprecated"):
        sched.step(5)
    assert sched.last_epoch == 5 and sched.get_last_lr() == pytest.approx([0.01])


def test_scheduler_needs_an_optimizer():
    with pytest.raises(TypeError, match="not an Optimizer"):
        StepLR([kiln.zeros(1)], step_size=1)
