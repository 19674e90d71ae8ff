"""kiln.optim against torch.optim itself: the same float32 parameters and gradients give the
same trajectories for 20 steps, state dicts have the same layout and load across, and the
schedulers give the same learning rates. Skipped where PyTorch is not installed."""
from __future__ import annotations

import numpy as np
import optim_reference as ref
import pytest

import kiln
import kiln.optim as optim

torch = pytest.importorskip("torch", reason="PyTorch is not installed; kiln.optim is compared "
                                            "with torch.optim where it is (CI installs it)")

STEPS = 20
SHAPES = [(4,), (3, 2), ()]

CASES = [
    ("SGD", {"lr": 0.05, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("Adam", {"lr": 0.01}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}),
    ("Adam", {"lr": 0.01, "betas": (0.3, 0.4), "maximize": True}),
    ("AdamW", {"lr": 0.01}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}),
    ("RMSprop", {"lr": 0.01}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.9, "centered": True, "weight_decay": 0.01}),
    ("RMSprop", {"lr": 0.01, "alpha": 0.3, "centered": True}),
]


def _case_id(case):
    name, options = case
    return name + "-" + "-".join(f"{k}={v}" for k, v in options.items())


def _grad(p: np.ndarray, step: int) -> np.ndarray:
    return np.asarray(ref.grad_at(p.astype(np.float64), step), dtype=np.float32)


class Pair:
    """The same parameters under a Kiln optimizer and a PyTorch one."""

    def __init__(self, name, options, arrays):
        self.kp = [kiln.tensor(a, dtype=kiln.float32, requires_grad=True) for a in arrays]
        self.tp = [torch.tensor(a, dtype=torch.float32, requires_grad=True) for a in arrays]
        self.kopt = getattr(optim, name)(self.kp, **options)
        # NOTE: foreach=False pins PyTorch to its single-tensor implementation, the one Kiln
        # follows (it is also PyTorch's choice for CPU tensors).
        self.topt = getattr(torch.optim, name)(self.tp, foreach=False, **options)

    def run(self, start, steps):
        for k in range(start, start + steps):
            for p in self.kp:
                p.grad = kiln.tensor(_grad(p.detach().numpy(), k))
            for p in self.tp:
                p.grad = torch.from_numpy(_grad(p.detach().numpy(), k))
            self.kopt.step()
            self.topt.step()

    def assert_close(self, rel=1e-6):
        for k, t in zip(self.kp, self.tp):
            a, b = k.detach().numpy(), t.detach().numpy()
            assert a.dtype == b.dtype == np.float32
            scale = max(float(np.max(np.abs(b))), 1e-30)
            assert float(np.max(np.abs(a - b))) <= rel * scale, (a, b)


def _arrays(rng):
    return [rng.standard_normal(s).astype(np.float32) for s in SHAPES]


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_trajectory_matches_torch_for_20_steps(case, rng):
    pair = Pair(*case, _arrays(rng))
    pair.run(0, STEPS)
    pair.assert_close(1e-6)


@pytest.mark.parametrize("case", [CASES[0], CASES[4], CASES[7], CASES[9]], ids=_case_id)
def test_state_dict_layout_matches_torch(case, rng):
    pair = Pair(*case, _arrays(rng))
    pair.run(0, 3)
    ksd, tsd = pair.kopt.state_dict(), pair.topt.state_dict()
    assert sorted(ksd["state"]) == sorted(tsd["state"])
    for i in ksd["state"]:
        assert set(ksd["state"][i]) == set(tsd["state"][i])
        for key, value in ksd["state"][i].items():
            np.testing.assert_allclose(value.numpy(), tsd["state"][i][key].numpy(),
                                       rtol=1e-5, atol=1e-7)
    for kg, tg in zip(ksd["param_groups"], tsd["param_groups"]):
        assert {k: v for k, v in kg.items()} == {k: tg[k] for k in kg}


@pytest.mark.parametrize("case", [CASES[1], CASES[4], CASES[9]], ids=_case_id)
def test_torch_state_dict_loads_into_kiln_and_training_continues_alike(case, rng):
    pair = Pair(*case, _arrays(rng))
    pair.run(0, 5)
    tsd = pair.topt.state_dict()
    converted = {"state": {i: {k: kiln.tensor(v.numpy()) for k, v in s.items()}
                           for i, s in tsd["state"].items()},
                 "param_groups": tsd["param_groups"]}
    pair.kp = [kiln.tensor(p.detach().numpy(), requires_grad=True) for p in pair.tp]
    pair.kopt = getattr(optim, case[0])(pair.kp, lr=123.0)
    pair.kopt.load_state_dict(converted)
    pair.run(5, 10)
    pair.assert_close(1e-6)


@pytest.mark.parametrize("name, kwargs", [("StepLR", {"step_size": 3, "gamma": 0.5}),
                                          ("CosineAnnealingLR", {"T_max": 7}),
                                          ("CosineAnnealingLR", {"T_max": 5, "eta_min": 0.01})])
def test_schedulers_give_torchs_learning_rates(name, kwargs):
    kopt = optim.SGD([kiln.zeros(1, requires_grad=True)], lr=0.1)
    topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    ksched = getattr(optim.lr_scheduler, name)(kopt, **kwargs)
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, **kwargs)
    for _ in range(25):
        assert ksched.get_last_lr() == pytest.approx(tsched.get_last_lr(), rel=1e-12, abs=1e-15)
        kopt.step()
        topt.step()
        ksched.step()
        tsched.step()
