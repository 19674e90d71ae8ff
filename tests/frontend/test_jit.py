"""@kiln.jit: tracing, guards, caching, captured tensors, fallbacks, errors."""
import warnings

import numpy as np
import pytest

import kiln
from kiln.frontend.jit import KilnJitWarning


def w1(x):
    return x * kiln.sigmoid(x) * 0.5 + kiln.tanh(x)


def _kernels(jf, *args):
    return jf.graph_for(*args).count("kernel")


def test_w1_is_one_kernel_and_matches_numpy():
    f = kiln.jit(w1)
    x = kiln.randn(2**24)
    got = f(x).numpy()
    a = x.numpy().astype(np.float64)
    want = a / (1 + np.exp(-a)) * 0.5 + np.tanh(a)
    rel = np.abs(got - want) / np.maximum(np.abs(want), 1e-30)
    assert rel.max() < 1e-6, f"max relative error {rel.max():.3g}"
    g = f.graph_for(x)
    assert g.count("kernel") == 1 and len(g.nodes) == 1


def test_cache_hit_and_shape_guard_retraces():
    f = kiln.jit(w1)
    f(kiln.randn(8))
    f(kiln.randn(8))
    assert f.traces == 1
    f(kiln.randn(9))
    assert f.traces == 2
    f(kiln.randn(8, dtype=kiln.float64))
    assert f.traces == 3


def test_static_arguments_are_guarded():
    @kiln.jit
    def scale(x, k):
        return x * k
    x = kiln.ones(3)
    assert scale(x, 2.0).tolist() == [2.0, 2.0, 2.0]
    assert scale(x, 3.0).tolist() == [3.0, 3.0, 3.0]
    assert scale.traces == 2


def test_captured_tensors_are_inputs_not_constants():
    w = kiln.ones(3)

    @kiln.jit
    def f(x):
        return x * w
    x = kiln.full((3,), 2.0)
    assert f(x).tolist() == [2.0, 2.0, 2.0]
    w.data = kiln.full((3,), 5.0)
    assert f(x).tolist() == [10.0, 10.0, 10.0]
    assert f.traces == 1
    w.data = kiln.ones(4)       # captured shape changed: guard fails, retrace
    with pytest.raises(kiln.ShapeError):
        f(x)


def test_random_inside_jit_draws_fresh_numbers_each_call():
    @kiln.jit
    def noise(x):
        return x + kiln.randn(4)
    x = kiln.zeros(4)
    kiln.manual_seed(3)
    a, b = noise(x).numpy(), noise(x).numpy()
    assert not np.array_equal(a, b)
    kiln.manual_seed(3)
    np.testing.assert_array_equal(noise(x).numpy(), a)


def test_graph_break_splits_the_graph_without_running_eagerly():
    @kiln.jit
    def f(x):
        if x.sum() > 0:
            return x * 2
        return x * 3
    with warnings.catch_warnings():
        warnings.simplefilter("error", KilnJitWarning)
        assert f(kiln.ones(2)).tolist() == [2.0, 2.0]
        assert f(-kiln.ones(2)).tolist() == [-3.0, -3.0]


def test_compile_failure_falls_back_to_eager(monkeypatch):
    import kiln.runtime.executable as ex

    def broken(*args, **kwargs):
        raise RuntimeError("codegen exploded")
    monkeypatch.setattr(ex, "build_executable", broken)
    f = kiln.jit(w1)
    x = kiln.randn(5)
    with pytest.warns(KilnJitWarning, match="compilation failed.*codegen exploded"):
        got = f(x)
    np.testing.assert_allclose(got.numpy(), w1(x).numpy())


def test_shape_error_under_jit_points_at_user_line():
    @kiln.jit
    def f(x, y):
        return x + y  # jit user line
    with pytest.raises(kiln.ShapeError) as err:
        f(kiln.ones(3), kiln.ones(4))
    msg = str(err.value)
    assert "[3]" in msg and "[4]" in msg and "jit user line" in msg


def test_recompile_limit_warns_and_names_the_guard():
    f = kiln.jit(w1, recompile_limit=2)
    f(kiln.ones(1))
    f(kiln.ones(2))
    with pytest.warns(KilnJitWarning, match="recompile limit.*tensor .dtype, shape"):
        f(kiln.ones(3))


def test_structured_outputs_and_static_values():
    @kiln.jit
    def f(x):
        return {"sum": x.sum(), "both": (x * 2, x + 1)}, x.shape[0]
    out, n = f(kiln.ones(3))
    assert n == 3 and out["sum"].item() == 3.0
    assert out["both"][0].tolist() == [2.0, 2.0, 2.0]


def test_reductions_and_matmul_between_kernels():
    @kiln.jit
    def f(x, w):
        h = kiln.relu(x @ w + 1.0)
        return kiln.softmax(h, -1)
    rng = np.random.default_rng(0)
    x = kiln.from_numpy(rng.standard_normal((8, 16)).astype(np.float32))
    w = kiln.from_numpy(rng.standard_normal((16, 4)).astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error", KilnJitWarning)
        got = f(x, w).numpy()
    np.testing.assert_allclose(got, kiln.softmax(kiln.relu(x @ w + 1.0), -1).numpy(),
                               rtol=1e-5, atol=1e-6)
    # NOTE: the matmul is a library call; the +1, relu and the whole softmax one kernel
    assert _kernels(f, x, w) == 1


def test_outputs_are_freed_without_garbage_collection():
    """No reference cycle may hold outputs: the caching allocator reuses a block only once
    nothing references it, and a cycle would make every call allocate fresh memory."""
    import gc
    import weakref
    f = kiln.jit(w1)
    x = kiln.randn(64)
    f(x)
    gc.disable()
    try:
        y = f(x)
        ref = weakref.ref(y._data)
        del y
        assert ref() is None
    finally:
        gc.enable()


def test_explain_reports_guards_kernels_captures_and_breaks():
    import kiln.nn as nn
    model = nn.Linear(8, 4)

    def loss(x, k):
        return (kiln.tanh(model(x)) * k).sum()
    report = kiln.explain(loss, kiln.randn(2, 8), 3.0)
    text = str(report)
    assert report.graphs == 1 and len(report.kernels) == 1
    assert "tensor argument 0: f32[2, 8]" in text and "static argument: 3.0" in text
    assert "Linear called during the trace: training=True, in_features=8" in text
    assert "%weight: f32[4,8], first used by permute at model (Linear) at test_jit.py" in text
    assert any(r.startswith("matmul") for r in report.reference_ops)

    def branchy(x):
        if x.sum() > 0:  # the break's line
            return x
        return -x
    report = kiln.explain(branchy, kiln.ones(3))
    # NOTE: the branch taken returns x unchanged, so nothing is compiled after the break
    assert report.graphs == 1 and "the break's line" in report.breaks[0]


SCALE = 2.0


def test_global_and_closure_scalars_are_guarded():
    """Plain values the function reads are baked into the graph, so they are guards."""
    global SCALE
    offset = 1.0

    @kiln.jit
    def f(x):
        return x * SCALE + offset
    x = kiln.ones(2)
    assert f(x).tolist() == [3.0, 3.0]
    SCALE = 5.0
    try:
        assert f(x).tolist() == [6.0, 6.0]
    finally:
        SCALE = 2.0
    offset = 10.0  # noqa: F841  (read through the closure)
    assert f(x).tolist() == [12.0, 12.0]
    assert f.traces == 3
    assert f(x).tolist() == [12.0, 12.0] and f.traces == 3


def test_module_attributes_are_guarded():
    import kiln.nn as nn
    drop = nn.Dropout(0.0)
    f = kiln.jit(lambda x: drop(x))
    x = kiln.ones(1000)
    with kiln.no_grad():
        assert (f(x).numpy() == 1.0).all()
        drop.p = 0.5
        out = f(x).numpy()
    assert 300 < (out == 0).sum() < 700 and f.traces == 2
