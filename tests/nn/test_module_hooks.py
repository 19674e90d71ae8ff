"""Module hooks: forward pre-hooks, forward hooks (with kwargs, always_call), full backward
hooks and backward pre-hooks, against PyTorch's calls and values; handles remove them."""
from __future__ import annotations

import numpy as np
import pytest

import kiln
from kiln import nn

torch = pytest.importorskip("torch")


def _np(t):
    return None if t is None else t.detach().numpy()


def _same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if w is None:
            assert g is None
        else:
            np.testing.assert_allclose(_np(g), _np(w), rtol=1e-6, atol=1e-6)


class _Mixed:
    """The same module in both libraries: two outputs, a float and a tensor that needs no
    gradient among its positional inputs."""

    @staticmethod
    def build(lib):
        class Mixed(lib.nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = lib.nn.Linear(3, 2)

            def forward(self, a, k, b):
                h = self.lin(a)
                return h * b.sum(), h.sum() * k
        return Mixed()


def _pair():
    kmod, tmod = _Mixed.build(kiln), _Mixed.build(torch)
    with torch.no_grad():
        tmod.lin.weight.copy_(torch.tensor(kmod.lin.weight.detach().numpy()))
        tmod.lin.bias.copy_(torch.tensor(kmod.lin.bias.detach().numpy()))
    return kmod, tmod


def _inputs(lib, a_grad=True):
    a = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    make = kiln.tensor if lib is kiln else torch.tensor
    return make(a, requires_grad=a_grad), 2.0, make(np.full(2, 0.5, np.float32))


def _recorder(calls):
    def hook(module, grad_input, grad_output):
        calls.append((grad_input, grad_output))
    return hook


def test_full_backward_hook_sees_pytorchs_grad_input_and_grad_output():
    kmod, tmod = _pair()
    kcalls, tcalls = [], []
    kmod.register_full_backward_hook(_recorder(kcalls))
    tmod.register_full_backward_hook(_recorder(tcalls))
    ka, tk = _inputs(kiln), _inputs(torch)
    ko, to = kmod(*ka), tmod(*tk)
    (ko[0].sum() + ko[1]).backward()
    (to[0].sum() + to[1]).backward()
    assert len(kcalls) == len(tcalls) == 1
    _same(kcalls[0][0], tcalls[0][0])     # NOTE: (grad a, None for 2.0, zeros for b)
    _same(kcalls[0][1], tcalls[0][1])
    _same([ka[0].grad, kmod.lin.weight.grad], [tk[0].grad, tmod.lin.weight.grad])


def test_full_backward_hook_can_replace_grad_input():
    kmod, tmod = _pair()
    for mod in (kmod, tmod):
        mod.register_full_backward_hook(lambda m, gi, go: (gi[0] * 3, None, None))
    ka, tk = _inputs(kiln), _inputs(torch)
    kmod(*ka)[1].backward()
    tmod(*tk)[1].backward()
    _same([ka[0].grad, kmod.lin.bias.grad], [tk[0].grad, tmod.lin.bias.grad])


def test_backward_pre_hook_replaces_grad_output_before_the_hook_sees_it():
    kmod, tmod = _pair()
    kcalls, tcalls = [], []
    for mod, calls in ((kmod, kcalls), (tmod, tcalls)):
        mod.register_full_backward_pre_hook(lambda m, go: (go[0] * 2, go[1]))
        mod.register_full_backward_hook(_recorder(calls))
    ka, tk = _inputs(kiln), _inputs(torch)
    ko, to = kmod(*ka), tmod(*tk)
    (ko[0] ** 2).sum().backward()
    (to[0] ** 2).sum().backward()
    _same(kcalls[0][1], tcalls[0][1])
    _same([ka[0].grad, kmod.lin.weight.grad], [tk[0].grad, tmod.lin.weight.grad])


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_backward_hook_without_inputs_that_need_grad_gets_nones():
    kmod, tmod = _pair()
    kcalls, tcalls = [], []
    kmod.register_full_backward_hook(_recorder(kcalls))
    tmod.register_full_backward_hook(_recorder(tcalls))
    kmod(*_inputs(kiln, a_grad=False))[1].backward()
    tmod(*_inputs(torch, a_grad=False))[1].backward()
    assert kcalls[0][0] == tcalls[0][0] == (None, None, None)
    _same(kcalls[0][1], tcalls[0][1])
    kmod.register_full_backward_hook(lambda m, gi, go: (kiln.ones(1), None, None))
    with pytest.raises(RuntimeError, match="no input requires gradient"):
        kmod(*_inputs(kiln, a_grad=False))[1].backward()


def test_backward_hook_with_a_wrong_number_of_grads_raises():
    lin = nn.Linear(2, 2)
    lin.register_full_backward_hook(lambda m, gi, go: (gi[0], gi[0]))
    with pytest.raises(RuntimeError, match="invalid number of grad_input, got 2, but "
                                           "expected 1"):
        lin(kiln.ones(1, 2, requires_grad=True)).sum().backward()


def test_forward_pre_hook_and_forward_hook_order_and_replacement():
    order = []
    lin = nn.Linear(2, 2)
    lin.register_forward_pre_hook(lambda m, args: order.append("pre") or (args[0] * 0,))
    lin.register_forward_pre_hook(lambda m, args: order.append("first"), prepend=True)
    h = lin.register_forward_hook(lambda m, args, out: order.append("post") or out + 1)
    out = lin(kiln.ones(1, 2))
    assert order == ["first", "pre", "post"]
    np.testing.assert_allclose(out.detach().numpy(), lin.bias.detach().numpy()[None] + 1)
    h.remove()
    order.clear()
    lin(kiln.ones(1, 2))
    assert order == ["first", "pre"]


def test_hooks_with_kwargs_and_a_single_value_from_a_pre_hook():
    class Scale(nn.Module):
        def forward(self, x, *, factor=1.0):
            return x * factor

    seen = []
    mod = Scale()
    mod.register_forward_pre_hook(lambda m, args, kwargs: (args, {"factor": 3.0}),
                                  with_kwargs=True)
    mod.register_forward_hook(lambda m, args, kwargs, out: seen.append(kwargs),
                              with_kwargs=True)
    mod.register_forward_pre_hook(lambda m, args: args[0] + 1)   # NOTE: a bare value
    assert mod(kiln.tensor([1.0]), factor=2.0).tolist() == [6.0]
    assert seen == [{"factor": 3.0}]
    bad = Scale()
    bad.register_forward_pre_hook(lambda m, args, kwargs: args, with_kwargs=True)
    with pytest.raises(RuntimeError, match="must return None or a tuple"):
        bad(kiln.tensor([1.0, 2.0]))


def test_always_call_hook_runs_when_forward_raises_and_handles_are_context_managers():
    class Boom(nn.Module):
        def forward(self, x):
            raise ValueError("boom")

    calls = []
    mod = Boom()
    mod.register_forward_hook(lambda m, a, out: calls.append(out), always_call=True)
    mod.register_forward_hook(lambda m, a, out: calls.append("never"))
    with pytest.raises(ValueError, match="boom"):
        mod(kiln.ones(1))
    assert calls == [None]
    lin = nn.Linear(1, 1)
    with lin.register_forward_hook(lambda m, a, out: calls.append("in")):
        lin(kiln.ones(1, 1))
    lin(kiln.ones(1, 1))
    assert calls == [None, "in"]


def test_forward_hook_values_match_torch_for_a_captured_activation():
    kmod, tmod = _pair()
    kact, tact = [], []
    kmod.lin.register_forward_hook(lambda m, a, out: kact.append(out))
    tmod.lin.register_forward_hook(lambda m, a, out: tact.append(out))
    kmod(*_inputs(kiln))
    tmod(*_inputs(torch))
    _same(kact, tact)


def test_hooks_inside_jit_run_the_function_eagerly():
    lin = nn.Linear(2, 2)
    calls = []
    lin.register_forward_hook(lambda m, a, out: calls.append(1))

    @kiln.jit
    def f(x):
        return lin(x).sum()

    with pytest.warns(kiln.KilnJitWarning, match="hooks of module Linear"):
        for _ in range(2):
            f(kiln.ones(1, 2))
    assert calls == [1, 1]       # NOTE: the hook runs once at every call


def test_deprecated_backward_hook_is_not_supported_yet():
    with pytest.raises(kiln.NotSupportedError, match="register_full_backward_hook"):
        nn.Linear(1, 1).register_backward_hook(lambda *a: None)
