"""CUDA tensors, on the simulated GPU (KILN_FAKE_CUDA=1: device memory in host memory, each
kernel computed by its NumPy reference, every kernel still compiled to PTX): placement and
transfers, PyTorch's errors, eager ops and their gradients equal to the CPU's, views that
alias or refuse, modules and optimizers on the device (tests/frontend/test_cuda_jit.py:
`@kiln.jit` on CUDA). Without the simulation and without a GPU, `.cuda()` says why it cannot."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import kiln
import kiln.nn.functional as F
from kiln.ir.errors import KilnError, NotSupportedError


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


# ---- found by review: each gives the CPU's result on the device, or a clear error --------
def _base(device):
    return kiln.arange(6.0).reshape(2, 3).to(device)


def _fresh_contiguous(d):
    x = _base(d)
    y = x.t().contiguous()
    y.add_(1)
    x.add_(1)
    return [y, x]


def _grad_through_a_move(d):
    w = kiln.ones(3, requires_grad=True)
    (w.to(d) * 2).sum().backward()
    return [w.grad]


def _writes_into_views_with_history(d):
    a = kiln.ones(3, device=d, requires_grad=True)
    b = a * 2
    b[0] = 0
    b[1].zero_()
    b[2] = kiln.tensor(5.0)
    c = a * 3
    c[0].fill_(7)
    (b.sum() + c.sum()).backward()
    return [b, c, a.grad]


def _optimizer_state_from_the_cpu(d):
    kiln.manual_seed(0)
    model = kiln.nn.Linear(3, 2)
    opt = kiln.optim.Adam(model.parameters(), lr=0.1)
    model(kiln.ones(1, 3)).sum().backward()
    opt.step()
    state = opt.state_dict()
    model.to(d)
    opt2 = kiln.optim.Adam(model.parameters(), lr=0.1)
    opt2.load_state_dict(state)
    model(kiln.ones(1, 3, device=d)).sum().backward()
    opt2.step()
    return [model.weight, model.bias]


SAME_AS_CPU = {
    "contiguous copy of a view is a new tensor": _fresh_contiguous,
    "strides of a view": lambda d: [kiln.tensor(list(_base(d).t().stride())),
                                    kiln.tensor(_base(d).t().is_contiguous())],
    "matmul over an empty k": lambda d: [kiln.zeros(2, 0, device=d) @ kiln.zeros(0, 3,
                                                                                 device=d)],
    "gradient through a move": _grad_through_a_move,
    "to(copy=True) copies": lambda d: [(lambda x: (x.to(d, copy=True).add_(1), x)[1])(
        kiln.ones(2, device=d))],
    "dropout and random fills": lambda d: [kiln.tensor(str(F.dropout(
        kiln.ones(4, device=d), 0.5, training=True).device) == d + (":0" if d == "cuda" else
                                                                     ""))],
    "one_hot": lambda d: [F.one_hot(kiln.tensor([0, 2], device=d), 3)],
    "writes into views with history": _writes_into_views_with_history,
    "optimizer state loaded from the cpu": _optimizer_state_from_the_cpu,
    "tensor() of a tensor": lambda d: [kiln.tensor(kiln.ones(2, device=d)) * 2],
}


@pytest.mark.parametrize("name", sorted(SAME_AS_CPU))
def test_what_review_found_gives_the_cpus_result(fake_gpu, name):
    cpu = SAME_AS_CPU[name]("cpu")
    cuda = SAME_AS_CPU[name]("cuda")
    for g, c in zip(cuda, cpu):
        assert g.device.type == "cuda" or name in ("gradient through a move",
                                                   "strides of a view",
                                                   "dropout and random fills")
        np.testing.assert_allclose(g.detach().cpu().numpy(), c.detach().numpy(), rtol=1e-5,
                                   atol=1e-6)


def _stale(make_copy):
    def run():
        x = _base("cuda")
        y = make_copy(x)
        x.add_(1)
        return y + 0
    return run


CLEAR_ERRORS = {
    "a view of a copied view": _stale(lambda x: x.t().t()),
    "a copied view detached": _stale(lambda x: x.t().detach()),
    "a parameter over a copied view": _stale(lambda x: kiln.nn.Parameter(x.t(), False)),
    "narrow of narrow": _stale(lambda x: x.narrow(1, 0, 2).narrow(0, 1, 1)),
    "a write through a detached copy": lambda: _base("cuda").t().detach().add_(1),
    "a write through .data of a copy": lambda: _base("cuda").t().data.mul_(2),
}


@pytest.mark.parametrize("name", sorted(CLEAR_ERRORS))
def test_what_review_found_raises_instead_of_a_wrong_result(fake_gpu, name):
    with pytest.raises(NotSupportedError, match="view of a CUDA tensor"):
        CLEAR_ERRORS[name]()


def test_a_second_backward_and_a_second_gpu_are_named(fake_gpu):
    a = kiln.ones(3, device="cuda", requires_grad=True)
    y = (a * a).sum()
    y.backward()
    with pytest.raises(KilnError, match="backward through the graph a second time"):
        y.backward()
    with pytest.raises(KilnError, match="invalid device ordinal"):
        kiln.ones(2).to("cuda:1")


def test_copies_and_saves_keep_the_device(fake_gpu, tmp_path):
    import copy
    import pickle
    model = kiln.nn.Linear(2, 2).cuda()
    assert copy.deepcopy(model).weight.device == "cuda:0"
    assert pickle.loads(pickle.dumps(model.weight.detach())).device == "cuda:0"
    kiln.save(model.state_dict(), tmp_path / "m.safetensors")
    back = kiln.load(tmp_path / "m.safetensors", map_location="cuda")
    assert back["weight"].device == "cuda:0"
    np.testing.assert_array_equal(back["weight"].cpu().numpy(),
                                  model.weight.detach().cpu().numpy())


# ---- found by the second review -------------------------------------------------------------
def _copy_across(src_device, dst_device):
    v = kiln.ones(3, device=src_device, requires_grad=True)
    x = kiln.zeros(3, device=dst_device) * kiln.ones(3, device=dst_device, requires_grad=True)
    x.copy_(v * 2)
    x[0:1] = kiln.ones(1, device=src_device, requires_grad=True) * 3
    (x * x).sum().backward()
    return v, x


@pytest.mark.parametrize("src,dst", [("cpu", "cuda"), ("cuda", "cpu")])
def test_copy_across_devices_sends_gradients_back_where_they_came_from(fake_gpu, src, dst):
    v, x = _copy_across(src, dst)
    assert x.device.type == dst and v.grad.device.type == src
    np.testing.assert_allclose(v.grad.cpu().numpy(), [0.0, 8.0, 8.0])
    np.testing.assert_allclose(x.detach().cpu().numpy(), [3.0, 2.0, 2.0])


def test_device_spellings(fake_gpu):
    assert kiln.ones(2).to(0).device == "cuda:0" and kiln.ones(2).cuda(0).device == "cuda:0"
    with pytest.raises(KilnError, match="invalid device ordinal"):
        kiln.ones(2).cuda(1)
    with pytest.raises(KilnError, match="invalid device ordinal"):
        kiln.nn.Linear(2, 2).cuda(1)


def test_a_cpu_scalar_condition_joins_a_cuda_where(fake_gpu):
    g = kiln.ones(2, device="cuda")
    assert kiln.where(kiln.tensor(True), g, 0.0).device == "cuda:0"
    assert g.masked_fill(kiln.tensor(True), 3.0).tolist() == [3.0, 3.0]
    assert kiln.where(kiln.tensor([True, False]).cuda(), 2.0, 3.0).tolist() == [2.0, 3.0]
