"""CUDA tensors, on the simulated GPU (KILN_FAKE_CUDA=1: device memory in host memory, each
kernel computed by its NumPy reference, every kernel still compiled to PTX): placement and
transfers, PyTorch's errors, eager ops and their gradients equal to the CPU's, views that
alias or refuse, modules and optimizers on the device, and jit running CUDA calls eagerly.
Without the simulation and without a GPU, `.cuda()` says why it cannot."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import kiln
import kiln.nn.functional as F
from kiln.ir.errors import KilnError, NotSupportedError


@pytest.fixture
def fake_gpu(monkeypatch):
    monkeypatch.setenv("KILN_FAKE_CUDA", "1")
    assert kiln.cuda.is_available()
    return kiln.cuda


def test_without_a_gpu_cuda_is_refused_with_the_reason(monkeypatch):
    monkeypatch.delenv("KILN_FAKE_CUDA", raising=False)
    if kiln.cuda.driver_available():
        pytest.skip("this machine has a GPU")
    assert not kiln.cuda.is_available() and kiln.cuda.device_count() == 0
    with pytest.raises(KilnError, match="no CUDA device here"):
        kiln.ones(2).cuda()
    with pytest.raises(KilnError, match="no CUDA device here"):
        kiln.zeros(3, device="cuda")


def test_placement_and_transfers(fake_gpu):
    x = kiln.tensor([1.0, 2.0, 3.0])
    g = x.to("cuda")
    assert g.device == kiln.device("cuda:0") and str(g.device) == "cuda:0" and g.is_cuda
    assert repr(g.device) == "device(type='cuda', index=0)"
    assert x.device == "cpu" and not x.is_cuda
    assert repr(g) == "tensor([1., 2., 3.], device='cuda:0')"
    back = g.cpu()
    assert back.device == "cpu" and back.tolist() == [1.0, 2.0, 3.0]
    assert g.cuda() is g and x.cpu() is x
    assert g.to(x).device == "cpu" and x.to(g).device == "cuda:0"
    assert kiln.zeros(2, 3, device="cuda").device == "cuda:0"
    assert kiln.randn(4, device="cuda", dtype=kiln.float64).dtype == kiln.float64
    w = kiln.ones(3, device="cuda", requires_grad=True)
    assert w.is_leaf and w.requires_grad and w.is_cuda
    assert kiln.zeros_like(g).is_cuda and kiln.ones_like(g).device == "cuda:0"
    assert g.sum().item() == 6.0 and float(g[2]) == 3.0


def test_pytorchs_errors(fake_gpu):
    g = kiln.ones(3).cuda()
    with pytest.raises(TypeError, match="can't convert cuda:0 device type tensor to numpy"):
        g.numpy()
    with pytest.raises(TypeError, match="Use Tensor.cpu"):
        np.asarray(g)
    with pytest.raises(KilnError, match="found at least two devices, cuda:0 and cpu"):
        g + kiln.ones(3)
    with pytest.raises(KilnError, match="two devices"):
        kiln.matmul(kiln.ones(3, 3), kiln.ones(3, 3).cuda())
    # NOTE: a 0-d CPU tensor joins a CUDA op, as in PyTorch
    assert (g * kiln.tensor(2.0)).tolist() == [2.0, 2.0, 2.0]


_CASES = {
    "elementwise": lambda x, w: (kiln.tanh(x) * kiln.sigmoid(x) + x.exp() / 3).pow(2),
    "broadcast": lambda x, w: x * w[0] - w[1:2],
    "reductions": lambda x, w: x.sum(1) + x.mean(0).sum() + x.max(1)[0],
    "matmul": lambda x, w: kiln.relu(x @ w.T + 1),
    "softmax": lambda x, w: F.softmax(x, dim=1) * F.log_softmax(x, dim=0),
    "layer_norm": lambda x, w: F.layer_norm(x, (7,), w[0], w[1]),
    "transpose": lambda x, w: x.t() @ x,
    "slices": lambda x, w: x[1:3] * x[:2, 2:3],
}


@pytest.mark.parametrize("name", sorted(_CASES))
def test_ops_and_gradients_equal_the_cpus(fake_gpu, rng, name):
    fn = _CASES[name]
    xs = rng.standard_normal((5, 7)).astype(np.float32)
    ws = rng.standard_normal((7, 7)).astype(np.float32)
    outs, grads = [], []
    for device in ("cpu", "cuda"):
        x = kiln.tensor(xs, device=device, requires_grad=True)
        w = kiln.tensor(ws, device=device, requires_grad=True)
        y = fn(x, w)
        assert y.device.type == device
        (y * y).sum().backward()
        assert all(t.grad is None or t.grad.device.type == device for t in (x, w))
        outs.append(y.detach().cpu().numpy())
        grads.append([None if t.grad is None else t.grad.cpu().numpy() for t in (x, w)])
    np.testing.assert_allclose(outs[1], outs[0], rtol=2e-5, atol=2e-5)
    assert grads[0][0] is not None
    for g, c in zip(grads[1], grads[0]):
        assert (g is None) == (c is None)
        if c is not None:
            np.testing.assert_allclose(g, c, rtol=2e-4, atol=2e-4)


def test_contiguous_views_alias_and_other_views_refuse_stale_use(fake_gpu):
    g = kiln.arange(6.0).cuda()
    rows = g.reshape(2, 3)
    rows.add_(1)                                  # NOTE: a view: the base sees the write
    assert g.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    tail = g[3:]
    tail.mul_(10)
    assert g.tolist() == [1.0, 2.0, 3.0, 40.0, 50.0, 60.0]
    cols = rows.t()                               # NOTE: not contiguous: a copy for now
    assert cols.tolist() == [[1.0, 40.0], [2.0, 50.0], [3.0, 60.0]]
    with pytest.raises(NotSupportedError, match="writing in place into a view of a CUDA"):
        cols.add_(1)
    g.add_(1)
    with pytest.raises(NotSupportedError, match="used after its base was written in place"):
        cols + 1
    assert (rows.t() + 1).tolist()[0] == [3.0, 42.0]


def test_a_model_trains_on_the_device_like_on_the_cpu(fake_gpu, rng):
    """A digits-style MLP, cross-entropy and Adam: ten steps give the CPU's parameters."""
    x = rng.standard_normal((16, 8)).astype(np.float32)
    y = rng.integers(0, 4, 16)
    final = []
    for device in ("cpu", "cuda"):
        kiln.manual_seed(0)
        model = kiln.nn.Sequential(kiln.nn.Linear(8, 12), kiln.nn.ReLU(),
                                   kiln.nn.Linear(12, 4)).to(device)
        opt = kiln.optim.Adam(model.parameters(), lr=0.01)
        xb, yb = kiln.tensor(x).to(device), kiln.tensor(y).to(device)
        for _ in range(10):
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
        assert all(p.device.type == device for p in model.parameters())
        final.append([p.detach().cpu().numpy() for p in model.parameters()])
        assert model.cpu()[0].weight.device == "cpu"
    for g, c in zip(final[1], final[0]):
        np.testing.assert_allclose(g, c, rtol=1e-4, atol=1e-5)


def test_jit_runs_cuda_calls_eagerly_with_one_warning(fake_gpu):
    @kiln.jit
    def f(x):
        return (x * 2).sum()

    cpu = kiln.ones(3)
    assert f(cpu).item() == 6.0 and f(cpu).item() == 6.0      # NOTE: compiled, fast path
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a, b = f(cpu.cuda()), f(cpu.cuda())
    assert a.device == "cuda:0" and a.item() == b.item() == 6.0
    assert len([w for w in caught if "CUDA" in str(w.message)]) == 1
    assert f(cpu).item() == 6.0


def test_memory_counters(fake_gpu):
    before = kiln.cuda.memory_allocated()
    g = kiln.zeros(1000, device="cuda")
    assert kiln.cuda.memory_allocated() >= before + 4000
    assert kiln.cuda.max_memory_allocated() >= kiln.cuda.memory_allocated()
    del g
    kiln.cuda.synchronize()
    kiln.cuda.empty_cache()
    assert kiln.cuda.memory_reserved() >= kiln.cuda.memory_allocated()
    assert "simulated" in kiln.cuda.get_device_name() or kiln.cuda.driver_available()
