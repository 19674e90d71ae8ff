"""kiln.nn under @kiln.jit: layers trace into graphs that match eager mode, parameters are
graph inputs (not constants), and the indexing ops check their indices in compiled code too.

Train/eval switches are guards, Modules can be jitted directly, and copies of modules are
independent of the original."""
import copy
import pickle
import warnings

import numpy as np
import pytest

import kiln
from kiln import nn
from kiln.frontend.jit import KilnJitWarning


def _no_fallback(fn, *args):
    with kiln.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error", KilnJitWarning)
        return fn(*args)


def _eval_net():
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.GELU(), nn.Dropout(0.5),
                         nn.Linear(8, 8), nn.LayerNorm(8), nn.SiLU(), nn.Linear(8, 3),
                         nn.LogSoftmax(dim=1)).eval()


def test_eval_mode_model_compiles_and_matches_eager():
    net, x = _eval_net(), kiln.randn(5, 4)
    net.train()(kiln.randn(6, 4))          # non-trivial running statistics
    net.eval()
    jf = kiln.jit(net)
    got = _no_fallback(jf, x)
    np.testing.assert_allclose(got.numpy(), _no_fallback(net, x).numpy(), rtol=1e-5, atol=1e-6)
    with kiln.no_grad():
        net[0].weight.mul_(2.0)             # a parameter update must not need a retrace
    np.testing.assert_allclose(_no_fallback(jf, x).numpy(), _no_fallback(net, x).numpy(),
                               rtol=1e-5, atol=1e-6)


def test_embedding_and_losses_compile():
    emb = nn.Embedding(10, 4, padding_idx=0)
    ids = kiln.tensor([[1, 0], [3, 9]])
    np.testing.assert_array_equal(_no_fallback(kiln.jit(emb), ids).numpy(),
                                  emb(ids).detach().numpy())

    def loss(x, t):
        return nn.functional.cross_entropy(x, t, weight=kiln.tensor([1.0, 2.0, 0.5]),
                                           ignore_index=0, label_smoothing=0.1)
    x, t = kiln.randn(5, 3), kiln.tensor([0, 1, 2, 1, 2])
    jl = kiln.jit(loss)
    np.testing.assert_allclose(_no_fallback(jl, x, t).item(), loss(x, t).item(), rtol=1e-6)
    with pytest.raises(kiln.KilnError, match="index 7 is out of bounds for dimension 1"):
        _no_fallback(jl, x, kiln.tensor([0, 1, 2, 1, 7]))


def test_switching_to_train_mode_retraces():
    net, x = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5)).eval(), kiln.randn(5, 4)
    jf = kiln.jit(net)
    with kiln.no_grad():
        before = jf(x).numpy()
        net.train()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", KilnJitWarning)
            after = jf(x).numpy()
    assert not np.array_equal(before, after)


def test_training_batch_norm_compiles_with_its_running_statistics():
    kiln.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    twin = copy.deepcopy(net)
    jf = kiln.jit(net)
    with kiln.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error", KilnJitWarning)
        for _ in range(2):
            x = kiln.randn(5, 4)
            np.testing.assert_allclose(jf(x).numpy(), twin(x).numpy(), rtol=1e-5, atol=1e-6)
    assert net[1].num_batches_tracked.item() == 2
    np.testing.assert_allclose(net[1].running_var.numpy(), twin[1].running_var.numpy(),
                               rtol=1e-6)


def test_copies_after_state_dict_are_independent():
    bn = nn.BatchNorm1d(2)
    saved = bn.state_dict()
    clone = copy.deepcopy(bn)
    clone(kiln.randn(4, 2))
    assert saved["running_mean"].tolist() == [0.0, 0.0]
    pickle.loads(pickle.dumps(bn))


def test_global_module_train_eval_switch_is_guarded():
    """A plain jitted function calling a global model: the model's mode is still a guard
    (Module calls are recorded during the trace), and both graphs stay cached."""
    net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5))
    jf = kiln.jit(lambda x: net(x))
    x = kiln.randn(64, 4)
    with kiln.no_grad():
        net.eval()
        evaluated = jf(x).numpy()
        np.testing.assert_allclose(evaluated, net(x).numpy(), rtol=1e-6)
        net.train()
        trained = jf(x).numpy()
        assert (trained == 0).mean() > 0.3          # dropout is active again
        net.eval()
        np.testing.assert_allclose(jf(x).numpy(), evaluated, rtol=1e-6)
    assert jf.traces == 2
