"""@kiln.jit guards are sound: every outside Python value a trace depends on is guarded where
it was read (or refused with an error), so a cached graph never gives a stale result."""
import math
import types
import warnings

import numpy as np
import pytest

import kiln
import kiln.nn as nn
from kiln.frontend.jit import KilnJitWarning
from kiln.frontend.tensor import Tensor
from kiln.frontend.trace import current_trace
from kiln.testing import RecompileError, no_recompiles


def _strict(fn, *args, **kwargs):
    """Call fn with KilnJitWarning as an error: the compiled path must be taken."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", KilnJitWarning)
        return fn(*args, **kwargs)


# ---- 1. names are resolved at call time --------------------------------------------------------
def test_global_first_assigned_after_decoration_is_guarded():
    global LATE
    @kiln.jit
    def f(x):
        return x * LATE
    x = kiln.ones(2)
    LATE = 2.0
    try:
        assert _strict(f, x).tolist() == [2.0, 2.0]
        LATE = 3.0
        with pytest.raises(RecompileError, match=r"the global LATE \(read at "
                                                 r"test_jit_guards.py:\d+\) guard failed: "
                                                 r"2.0 -> 3.0"):
            with no_recompiles():
                assert _strict(f, x).tolist() == [3.0, 3.0]
        assert f.traces == 2
    finally:
        del LATE


# ---- 2. scalars by type and value --------------------------------------------------------------
def test_static_int_and_float_arguments_get_their_own_graphs():
    @kiln.jit
    def scale(x, k):
        return x * k
    x = kiln.tensor([1, 2], dtype=kiln.int32)
    a, b = _strict(scale, x, 2), _strict(scale, x, 2.0)
    assert a.dtype == (x * 2).dtype == kiln.int32 and a.tolist() == [2, 4]
    assert b.dtype == (x * 2.0).dtype and b.dtype.is_float
    assert scale.traces == 2


def test_negative_zero_is_not_zero_and_nan_is_nan():
    @kiln.jit
    def scale(x, k):
        return x * k
    x = kiln.ones(1)
    assert not np.signbit(_strict(scale, x, 0.0).numpy()).any()
    assert np.signbit(_strict(scale, x, -0.0).numpy()).all()
    assert scale.traces == 2
    for _ in range(3):          # NOTE: a fresh NaN object each call; one graph for all
        assert math.isnan(_strict(scale, x, float("nan")).item())
    assert scale.traces == 3


SIGNED = 0.0


def test_global_negative_zero_and_bool_are_guarded_by_type():
    global SIGNED
    f = kiln.jit(lambda x: x * SIGNED)
    x = kiln.ones(1)
    try:
        assert not np.signbit(_strict(f, x).numpy()).any()
        SIGNED = -0.0
        assert np.signbit(_strict(f, x).numpy()).all()
        SIGNED = False
        assert _strict(f, x).tolist() == (x * False).tolist()
        assert f.traces == 3
    finally:
        SIGNED = 0.0


# ---- 3. attribute and item chains, containers, defaults, helpers --------------------------------
CFG = {"lr": 0.5}
NS = types.SimpleNamespace(scale=2.0)


class _Plain:
    scale = 3.0


PLAIN = _Plain()
GMOD = types.ModuleType("guarded_module")
GMOD.SCALE = 4.0


def test_dict_namespace_object_and_module_reads_are_guarded():
    @kiln.jit
    def f(x):
        return x * CFG["lr"] + NS.scale + PLAIN.scale + GMOD.SCALE
    x = kiln.ones(1)
    assert _strict(f, x).tolist() == [0.5 + 2 + 3 + 4]
    try:
        CFG["lr"] = 1.5
        assert _strict(f, x).tolist() == [1.5 + 2 + 3 + 4]
        NS.scale = 20.0
        assert _strict(f, x).tolist() == [1.5 + 20 + 3 + 4]
        PLAIN.scale = 30.0
        assert _strict(f, x).tolist() == [1.5 + 20 + 30 + 4]
        GMOD.SCALE = 40.0
        assert _strict(f, x).tolist() == [1.5 + 20 + 30 + 40]
    finally:
        CFG["lr"], NS.scale, GMOD.SCALE = 0.5, 2.0, 4.0
        del PLAIN.scale


LIST = [1.0, 2.0]


def test_length_and_items_of_a_global_list_are_guarded():
    @kiln.jit
    def f(x):
        return x * len(LIST) + kiln.tensor(LIST).sum()
    x = kiln.ones(1)
    assert _strict(f, x).tolist() == [2 + 3]
    try:
        LIST[0] = 10.0
        assert _strict(f, x).tolist() == [2 + 12]
        LIST.append(5.0)
        assert _strict(f, x).tolist() == [3 + 17]
    finally:
        LIST[:] = [1.0, 2.0]


ARRAY = np.arange(3, dtype=np.float32)


def test_a_global_numpy_array_is_refused_with_its_line():
    @kiln.jit
    def f(x):
        return x + kiln.tensor(ARRAY)  # the array's line
    with pytest.raises(kiln.KilnError, match=r"(?s)global `ARRAY` is a NumPy array.*"
                                             r"the array's line.*as an argument"):
        f(kiln.ones(3))


def test_changed_defaults_and_kwdefaults_are_guarded():
    def f(x, k=2.0, *, b=1.0):
        return x * k + b
    jf = kiln.jit(f)
    x = kiln.ones(1)
    assert _strict(jf, x).tolist() == [3.0]
    f.__defaults__ = (5.0,)
    assert _strict(jf, x).tolist() == [6.0]
    f.__kwdefaults__ = {"b": 10.0}
    assert _strict(jf, x).tolist() == [15.0]


HELPER = {"k": 2.0}
HELPER_ARRAY = np.ones(2, dtype=np.float32)


def _helper(x):
    return x * HELPER["k"]


def _helper_reading_an_array(x):
    return x + kiln.from_numpy(HELPER_ARRAY)  # helper's array line


def test_reads_inside_helper_functions_are_guarded():
    f = kiln.jit(lambda x: _helper(x) + 1.0)
    x = kiln.ones(1)
    assert _strict(f, x).tolist() == [3.0]
    try:
        HELPER["k"] = 7.0
        assert _strict(f, x).tolist() == [8.0]
    finally:
        HELPER["k"] = 2.0
    with pytest.raises(kiln.KilnError, match=r"(?s)HELPER_ARRAY.*helper's array line"):
        kiln.jit(lambda x: _helper_reading_an_array(x))(kiln.ones(2))


def test_closure_helper_reads_are_guarded():
    scale = types.SimpleNamespace(k=2.0)

    def inner(x):
        return x * scale.k
    f = kiln.jit(lambda x: inner(x))
    x = kiln.ones(1)
    assert _strict(f, x).tolist() == [2.0]
    scale.k = 9.0
    assert _strict(f, x).tolist() == [9.0]


# ---- 4. rebound tensors, parameters and modules -------------------------------------------------
W = kiln.ones(3, 2)


def test_manual_sgd_rebinding_a_global_tensor_does_not_retrace():
    global W
    f = kiln.jit(lambda x: (x @ W).sum())
    x, g = kiln.ones(4, 3), kiln.full((3, 2), 0.5)
    try:
        with no_recompiles():
            for _ in range(3):
                assert _strict(f, x).item() == pytest.approx((x @ W).sum().item())
                W = W - 0.1 * g
        # NOTE: the one graph binds the tensor now at `W`, not a copy of an old one
        (entry,) = [e for es in f.cache.values() for e in es]
        key, leaves = f._key((x,), {})
        assert f._lookup(key) is entry
        tensors = entry.input_tensors(leaves)
        assert tensors[0] is x and any(t is W for t in tensors)
    finally:
        W = kiln.ones(3, 2)


def test_replaced_parameter_submodule_and_model_are_seen():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)
            self.seq = nn.Sequential(nn.Linear(2, 2), nn.ReLU())

        def forward(self, x):
            return self.seq(self.fc(x))
    holder = types.SimpleNamespace(model=Net())
    f = kiln.jit(lambda x: holder.model(x))
    x = kiln.randn(4, 3)
    with kiln.no_grad():
        def check():
            np.testing.assert_allclose(_strict(f, x).numpy(), holder.model(x).numpy(),
                                       rtol=1e-6)
        check()
        holder.model.fc.weight = nn.Parameter(kiln.randn(2, 3))
        check()
        holder.model.seq[1] = nn.Tanh()
        check()
        holder.model = Net()
        check()


# ---- 5. dynamic scalar inputs -------------------------------------------------------------------
HYPER = {"lr": 0.1}


def _read_lr():
    return HYPER["lr"]


def _scaled(x, getter):
    trace = current_trace()
    if trace is None:
        return x * getter()
    return x * Tensor._wrap(trace.scalar_input(getter, kiln.float32, "lr"), trace)


def test_dynamic_scalar_input_is_read_at_every_call_without_retracing():
    f = kiln.jit(lambda x: _scaled(x, _read_lr))
    x = kiln.ones(2)
    try:
        with no_recompiles():
            for lr in (0.1, 0.25, 3.0):
                HYPER["lr"] = lr
                assert _strict(f, x).tolist() == pytest.approx([lr, lr])
        (entry,) = [e for es in f.cache.values() for e in es]
        assert [kind for kind, _, _ in entry.sources] == ["arg", "scalar"]
        assert entry.input_tensors([x]) == [x, None]
    finally:
        HYPER["lr"] = 0.1


# ---- 6. methods --------------------------------------------------------------------------------
class _Scaler:
    def __init__(self, scale):
        self.scale = scale
        self.bias = kiln.zeros(2)

    @kiln.jit
    def apply(self, x):
        return x * self.scale + self.bias


def test_jit_on_a_method_guards_the_attributes_it_reads():
    a, b = _Scaler(2.0), _Scaler(3.0)
    x = kiln.ones(2)
    assert _strict(a.apply, x).tolist() == [2.0, 2.0]
    assert _strict(b.apply, x).tolist() == [3.0, 3.0]
    a.scale = 5.0
    assert _strict(a.apply, x).tolist() == [5.0, 5.0]
    a.bias = kiln.full((2,), 1.0)
    assert _strict(a.apply, x).tolist() == [6.0, 6.0]


# ---- 7. integer overflow ------------------------------------------------------------------------
def test_int_that_does_not_fit_the_dtype_raises_in_eager_and_jit():
    x = kiln.tensor([1, 2], dtype=kiln.int32)
    with pytest.raises(kiln.KilnError, match="value cannot be converted to type int32 "
                                             "without overflow"):
        x * 3_000_000_000
    with pytest.raises(kiln.KilnError, match="value cannot be converted to type int32 "
                                             "without overflow"):
        kiln.jit(lambda t: t * 3_000_000_000)(x)
    assert (x * 1_000_000_000).tolist() == [1_000_000_000, 2_000_000_000]


# ---- 8. the recompile limit ---------------------------------------------------------------------
STEP = 0.0


def test_recompile_limit_warns_once_naming_the_guard_and_its_line():
    global STEP
    f = kiln.jit(lambda x: x + STEP, recompile_limit=2)
    x = kiln.zeros(1)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for i in range(6):
                STEP = float(i)
                assert f(x).tolist() == [float(i)]
    finally:
        STEP = 0.0
    messages = [str(w.message) for w in caught if issubclass(w.category, KilnJitWarning)]
    assert len(messages) == 1 and f.traces == 2
    assert "recompile limit (2)" in messages[0]
    assert "global STEP (read at test_jit_guards.py:" in messages[0]
    assert "2.0 -> 3.0" in messages[0] or "1.0 -> 2.0" in messages[0]


def test_recompile_limit_names_a_failing_helper_guard():
    f = kiln.jit(lambda x: _helper(x), recompile_limit=1)
    x = kiln.ones(1)
    try:
        assert f(x).tolist() == [2.0]
        HELPER["k"] = 3.0
        with pytest.warns(KilnJitWarning, match=r"recompile limit.*global HELPER\['k'\] "
                                                r"\(read at test_jit_guards.py:\d+\)"):
            assert f(x).tolist() == [3.0]
    finally:
        HELPER["k"] = 2.0


def test_an_active_profiler_is_reported_not_silently_unguarded():
    import sys

    from kiln.frontend import guards
    guards._warn_unrecorded.cache_clear()

    @kiln.jit
    def f(x):
        return x * 2

    previous = sys.getprofile()
    sys.setprofile(lambda *args: None)
    try:
        with pytest.warns(KilnJitWarning, match="another profiler or tracer is active"):
            f(kiln.ones(2))
    finally:
        sys.setprofile(previous)
        guards._warn_unrecorded.cache_clear()
