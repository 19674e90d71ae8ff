"""Optimizer state dicts: PyTorch's format, load then continue training identically, private
copies on load, dtype casting, and clear errors for state dicts that do not fit."""
from __future__ import annotations

import numpy as np
import pytest
from optim_helpers import CASES, case_id, initial_arrays, make, train, values

import kiln
import kiln.optim as optim


def test_state_dict_has_pytorchs_format():
    p, q = kiln.ones(2, requires_grad=True), kiln.ones(3, requires_grad=True)
    r = kiln.ones(1, requires_grad=True)
    opt = optim.SGD([{"params": [p, q]}, {"params": [r], "lr": 0.5}], lr=0.1, momentum=0.9)
    p.grad, r.grad = kiln.ones(2), kiln.ones(1)
    opt.step()
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert sd["param_groups"][1] == {"lr": 0.5, "momentum": 0.9, "dampening": 0.0,
                                     "weight_decay": 0.0, "nesterov": False, "maximize": False,
                                     "params": [2]}
    assert sorted(sd["state"]) == [0, 2]    # q had no gradient, so no state
    assert sd["state"][0]["momentum_buffer"].tolist() == [1.0, 1.0]
    assert opt.param_groups[0]["params"][0] is p     # packing left the optimizer alone


@pytest.mark.parametrize("case", [CASES[2], CASES[10], CASES[13], CASES[18]], ids=case_id)
def test_loaded_state_continues_exactly_like_the_original(case, rng):
    cls, _, options = case
    params, opt = make(cls, options, initial_arrays(rng))
    train(opt, params, 0, 5)
    copies = [kiln.tensor(p.detach().numpy(), requires_grad=True) for p in params]
    fresh = cls(copies, lr=123.0)
    fresh.load_state_dict(opt.state_dict())
    assert fresh.param_groups[0]["lr"] == options.get("lr", fresh.defaults["lr"]) != 123.0
    assert fresh.param_groups[0]["params"][0] is copies[0]
    train(fresh, copies, 5, 5)
    train(opt, params, 5, 5)
    for a, b in zip(values(params), values(copies)):
        np.testing.assert_array_equal(a, b)


def test_loading_copies_state_so_two_optimizers_do_not_share_it():
    p = kiln.tensor([1.0, 2.0], requires_grad=True)
    opt = optim.Adam([p], lr=0.1)
    p.grad = kiln.ones(2)
    opt.step()
    sd = opt.state_dict()
    saved = sd["state"][0]["exp_avg"].tolist()
    other = optim.Adam([kiln.tensor([1.0, 2.0], requires_grad=True)], lr=0.1)
    other.load_state_dict(sd)
    other.param_groups[0]["params"][0].grad = kiln.ones(2)
    other.step()
    assert sd["state"][0]["exp_avg"].tolist() == saved
    assert opt.state[p]["exp_avg"].tolist() == saved


def test_loaded_state_is_cast_to_the_parameters_dtype_except_step():
    p = kiln.zeros(2, dtype=kiln.float64, requires_grad=True)
    opt = optim.Adam([p])
    state = {0: {"step": kiln.tensor(3.0), "exp_avg": kiln.ones(2),
                 "exp_avg_sq": kiln.ones(2)}}
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})
    assert opt.state[p]["exp_avg"].dtype == kiln.float64
    assert opt.state[p]["step"].dtype == kiln.float32


def test_load_state_dict_rejects_state_that_does_not_fit():
    p, q = kiln.ones(2, requires_grad=True), kiln.ones(2, requires_grad=True)
    one = optim.SGD([p], lr=0.1).state_dict()
    two_groups = optim.SGD([{"params": [p]}, {"params": [q]}], lr=0.1)
    with pytest.raises(ValueError, match=r"different number of parameter groups \(1\)"):
        two_groups.load_state_dict(one)
    with pytest.raises(ValueError, match="group 0 has 1 parameters, but the optimizer's "
                                         "group 0 has 2"):
        optim.SGD([p, q], lr=0.1).load_state_dict(one)
    with pytest.raises(kiln.KilnError, match="exactly the keys"):
        optim.SGD([p], lr=0.1).load_state_dict({"state": {}})
    bad = {"state": {7: {}}, "param_groups": one["param_groups"]}
    with pytest.raises(kiln.KilnError, match="parameter id 7"):
        optim.SGD([p], lr=0.1).load_state_dict(bad)
