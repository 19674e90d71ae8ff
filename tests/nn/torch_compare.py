"""Shared by the layer tests against PyTorch: run a kiln module (or function) and its PyTorch
twin on the same inputs, after copying PyTorch's weights into kiln through load_state_dict,
and compare every output, the gradient of every float input and of every parameter."""
from __future__ import annotations

import numpy as np
from nn_helpers import torch_or_skip

import kiln

TOLERANCES = {np.dtype(np.float64): (1e-10, 1e-12), np.dtype(np.float32): (1e-5, 1e-6)}


def copy_torch_weights(ours, theirs) -> None:
    """kiln module <- PyTorch module's state dict; the keys and shapes must be the same."""
    state = theirs.state_dict()
    assert list(ours.state_dict()) == list(state), "state-dict keys differ from PyTorch's"
    for key, value in ours.state_dict().items():
        assert tuple(value.shape) == tuple(state[key].shape), f"shape of {key}"
    ours.load_state_dict({k: kiln.tensor(v.detach().numpy()) for k, v in state.items()})


def _convert(x, make):
    if isinstance(x, np.ndarray):
        t = make(x)
        return t.requires_grad_() if x.dtype.kind == "f" else t
    if isinstance(x, (tuple, list)):
        return type(x)(_convert(i, make) for i in x)
    return x


def _convert_kwargs(kwargs: dict, make) -> dict:
    """Keyword tensors (masks, targets) never require grad."""
    return {k: make(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}


def _flat(x) -> list:
    if isinstance(x, (tuple, list)):
        return [t for item in x for t in _flat(item)]
    return [] if x is None else [x]


def _close(ours, theirs, what: str, tol):
    ours = ours.detach().numpy() if hasattr(ours, "detach") else ours
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else theirs
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} != {theirs.shape}"
    np.testing.assert_allclose(ours, theirs, rtol=tol[0], atol=tol[1], err_msg=what)


def _tolerance(args) -> tuple[float, float]:
    floats = [a for a in _flat(args) if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
    return TOLERANCES[floats[0].dtype] if floats else TOLERANCES[np.dtype(np.float64)]


def compare_with_torch(ours, theirs, args, rng, kwargs=None, tol=None, grads: bool = True):
    """Outputs, input gradients and parameter gradients of ours(*args, **kwargs) vs
    theirs(...), for one random cotangent per output. NumPy arrays in `args` become tensors
    (float ones require grad); modules get PyTorch's weights first."""
    torch = torch_or_skip()
    kwargs = kwargs or {}
    tol = tol or _tolerance(args)
    if isinstance(ours, kiln.nn.Module):
        copy_torch_weights(ours, theirs)
    k_args, t_args = _convert(list(args), kiln.tensor), _convert(list(args), torch.tensor)
    k_out = _flat(ours(*k_args, **_convert_kwargs(kwargs, kiln.tensor)))
    t_out = _flat(theirs(*t_args, **_convert_kwargs(kwargs, torch.tensor)))
    assert len(k_out) == len(t_out), "a different number of outputs"
    for i, (a, b) in enumerate(zip(k_out, t_out)):
        _close(a, b, f"output {i}", tol)
    if not grads:
        return
    cots = [rng.standard_normal(tuple(t.shape)).astype(t.detach().numpy().dtype)
            for t in t_out]
    sum((t * torch.tensor(c)).sum() for t, c in zip(t_out, cots)).backward()
    sum((k * kiln.tensor(c)).sum() for k, c in zip(k_out, cots)).backward()
    leaves = [(k, t) for k, t in zip(_flat(k_args), _flat(t_args))
              if getattr(t, "requires_grad", False)]
    for i, (k, t) in enumerate(leaves):
        _close(k.grad, t.grad, f"gradient of input {i}", tol)
    if isinstance(ours, kiln.nn.Module):
        theirs_params = dict(theirs.named_parameters())
        assert [n for n, _ in ours.named_parameters()] == list(theirs_params)
        for name, p in ours.named_parameters():
            _close(p.grad, theirs_params[name].grad, f"gradient of {name}", tol)
