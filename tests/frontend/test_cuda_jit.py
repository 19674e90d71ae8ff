"""`@kiln.jit` on CUDA, on the simulated GPU (the `fake_gpu` fixture): a function of CUDA
tensors is traced and compiled as one graph for the GPU (every kernel rendered to PTX) and its
results equal the CPU's jit and eager CUDA. Devices inside a traced function follow the eager
rules: tensors made or captured on the CPU are the CPU's, mixing devices raises PyTorch's
error, and moving a tensor is a copy in the graph."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import kiln
import kiln.nn.functional as F
from kiln.frontend.jit import KilnJitWarning
from kiln.ir.errors import KilnError


@pytest.fixture
def strict(fake_gpu):
    """Any KilnJitWarning (a function run eagerly instead of compiled) fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", KilnJitWarning)
        yield fake_gpu


def _entry(jf):
    """The compiled entry of a function traced once."""
    (entries,) = jf.cache.values()
    (entry,) = entries
    return entry


def _gelu_rows(x, w, b):
    h = F.gelu(x @ w + b)
    return F.softmax(h, dim=-1), F.layer_norm(h, (h.shape[-1],)), h.amax(0), (h * h).mean()


@pytest.mark.parametrize("fn", [_gelu_rows], ids=lambda f: f.__name__)
def test_one_graph_on_the_gpu_gives_the_cpus_results(strict, rng, fn):
    args = [rng.standard_normal(s).astype(np.float32) for s in ((6, 5), (5, 7), (7,))]
    jf = kiln.jit(fn)
    cpu = kiln.jit(fn)(*map(kiln.tensor, args))
    gpu = jf(*[kiln.tensor(a).cuda() for a in args])
    eager = fn(*[kiln.tensor(a).cuda() for a in args])
    assert type(_entry(jf).executable.device).__name__ == "CudaDevice"
    for c, g, e in zip(cpu, gpu, eager):
        assert g.device == "cuda:0"
        np.testing.assert_allclose(g.cpu().numpy(), c.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(g.cpu().numpy(), e.cpu().numpy(), rtol=1e-5, atol=1e-6)
    again = jf(*[kiln.tensor(a).cuda() for a in args])     # NOTE: the fast path
    assert jf.traces == 1
    np.testing.assert_array_equal(again[0].cpu().numpy(), gpu[0].cpu().numpy())


def _train(device: str, jitted: bool, steps: int = 4, opt_name: str = "adam"):
    kiln.manual_seed(0)
    model = kiln.nn.Sequential(kiln.nn.Linear(8, 16), kiln.nn.ReLU(),
                               kiln.nn.Linear(16, 4)).to(device)
    opt = (kiln.optim.Adam(model.parameters(), lr=0.01) if opt_name == "adam"
           else kiln.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    rng = np.random.default_rng(1)
    x = kiln.tensor(rng.standard_normal((32, 8)).astype(np.float32)).to(device)
    y = kiln.tensor(rng.integers(0, 4, 32)).to(device)

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    run = kiln.jit(step) if jitted else step
    losses = [run(x, y) for _ in range(steps)]
    return ([float(v.item()) for v in losses], [p.detach().cpu().numpy()
                                                 for p in model.parameters()], run, losses)


@pytest.mark.parametrize("opt_name", ["adam", "sgd"])
def test_a_whole_training_step_compiles_for_the_gpu(strict, opt_name):
    """Forward, backward and the optimizer's in-place updates: one CUDA graph whose
    parameters and losses equal the CPU's jit and eager CUDA."""
    cpu_losses, cpu_params, cpu_run, _ = _train("cpu", True, opt_name=opt_name)
    losses, params, run, outs = _train("cuda", True, opt_name=opt_name)
    eager_losses, eager_params, _, _ = _train("cuda", False, opt_name=opt_name)
    assert run.traces == cpu_run.traces == 1 and outs[-1].device == "cuda:0"
    np.testing.assert_allclose(losses, cpu_losses, rtol=1e-5)
    np.testing.assert_allclose(losses, eager_losses, rtol=1e-5)
    for g, c, e in zip(params, cpu_params, eager_params):
        np.testing.assert_allclose(g, c, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-6)


def test_gradients_through_a_jitted_cuda_call(strict, rng):
    """A jitted call's backward is a second CUDA graph; gradients land on the inputs'
    devices (a CPU 0-d scale joins the GPU graph and gets a CPU gradient)."""
    xs = rng.standard_normal((4, 6)).astype(np.float32)

    def f(x, s):
        return (kiln.tanh(x) * s).sum(1)
    grads = []
    for device, fn in (("cpu", kiln.jit(f)), ("cuda", kiln.jit(f)), ("cuda", f)):
        x = kiln.tensor(xs).to(device).requires_grad_()
        s = kiln.tensor(1.5, requires_grad=True)
        fn(x, s).pow(2).sum().backward()
        assert x.grad.device.type == device and s.grad.device == "cpu"
        grads.append((x.grad.cpu().numpy(), s.grad.numpy()))
    for g in grads[1:]:
        np.testing.assert_allclose(g[0], grads[0][0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(g[1], grads[0][1], rtol=1e-5)


def test_a_model_on_the_gpu_read_from_outside_compiles_for_it(strict):
    """No tensor argument on the GPU, but the captured model is: traced for CUDA."""
    kiln.manual_seed(0)
    model = kiln.nn.Linear(3, 2).cuda()

    @kiln.jit
    def predict():
        return model(kiln.ones(1, 3, device="cuda"))
    out = predict()
    assert out.device == "cuda:0" and predict.traces == 1
    want = kiln.ones(1, 3) @ model.weight.cpu().T + model.bias.cpu()
    np.testing.assert_allclose(out.detach().cpu().numpy(), want.detach().numpy(), rtol=1e-6)


def test_devices_inside_a_traced_function_follow_the_eager_rules(strict):
    x = kiln.arange(6, dtype=kiln.float32).reshape(2, 3).cuda()

    @kiln.jit
    def made_where_asked(x):
        z = kiln.zeros(3, device=x.device) + kiln.ones_like(x)
        return x * z, x.is_cuda, (x.sum() * 2).cpu()
    y, is_cuda, total = made_where_asked(x)
    assert is_cuda is True and y.device == "cuda:0" and total.device == "cpu"
    assert total.item() == 30.0 and y.cpu().tolist() == [[0, 1, 2], [3, 4, 5]]

    @kiln.jit
    def moved_inside(x, c):
        return x + c.cuda()
    assert moved_inside(x, kiln.ones(3)).device == "cuda:0"

    @kiln.jit
    def forgot_the_device(x):
        return x + kiln.zeros(3)
    for fn in (forgot_the_device, forgot_the_device.fn):
        with pytest.raises(KilnError, match="two devices, cuda:0 and cpu"):
            fn(x)

    @kiln.jit
    def mixed_arguments(x, c):
        return x * c
    with pytest.raises(KilnError, match="two devices, cuda:0 and cpu"):
        mixed_arguments(x, kiln.ones(3))
    assert mixed_arguments(x, kiln.tensor(2.0)).cpu().tolist()[1] == [6.0, 8.0, 10.0]


def test_in_place_writes_and_aliases_on_the_gpu(strict):
    @kiln.jit
    def bump(x, v):
        x.add_(v)
        return x.view(-1), x * 1
    x = kiln.zeros(2, 2, device="cuda")
    flat, copy = bump(x, kiln.ones(2, 2, device="cuda"))
    assert x.cpu().tolist() == [[1.0, 1.0], [1.0, 1.0]]
    flat.mul_(3)        # NOTE: a view of x, as eagerly: the write reaches x, not the copy
    assert x.cpu().tolist() == [[3.0, 3.0], [3.0, 3.0]] and copy.sum().item() == 4.0


def test_cpu_and_gpu_calls_keep_separate_entries(strict):
    @kiln.jit
    def f(x):
        return (x * 2).sum()
    cpu = kiln.ones(3)
    gpu = cpu.cuda()
    for _ in range(3):          # NOTE: later rounds through the fast path
        assert f(cpu).device == "cpu" and f(cpu).item() == 6.0
        assert f(gpu).device == "cuda:0" and f(gpu).item() == 6.0
        assert f._fast is not None
    assert f.traces == 2


def test_a_value_read_on_the_gpu_runs_eagerly_with_the_reason(fake_gpu):
    @kiln.jit
    def f(x):
        return x * 2 if x.sum().item() > 0 else x
    with pytest.warns(KilnJitWarning, match="replay mode is not supported yet on CUDA"):
        out = f(kiln.ones(3, device="cuda"))
    assert out.cpu().tolist() == [2.0, 2.0, 2.0]


def test_a_captured_tensor_moved_to_the_gpu_after_compiling(strict):
    captured = {"g": kiln.ones(3)}

    @kiln.jit
    def times(x):
        return x * captured["g"]
    assert times(kiln.ones(3)).tolist() == [1.0, 1.0, 1.0]
    assert times(kiln.ones(3)).tolist() == [1.0, 1.0, 1.0]     # NOTE: the fast path
    captured["g"] = kiln.ones(3).cuda() * 2
    assert times(kiln.ones(3).cuda()).cpu().tolist() == [2.0, 2.0, 2.0]
    with pytest.raises(KilnError, match="two devices"):
        times(kiln.ones(3))
