"""kiln.testing.assert_matches_eager (review fixes): the eager run is plain Python all the way
down; state reached through module and class attributes, default values, partials and
`__slots__` objects is compared and restored; gradients with respect to non-leaf arguments;
the cached graph of a cold function; NaN equal to NaN.

A miscompile is simulated by code that behaves differently while it is traced
(`current_trace() is not None`): the graph records one thing, plain Python does another."""
import functools
import types

import pytest

import kiln
import kiln.nn as nn
from kiln.frontend.jit import JitFunction
from kiln.frontend.trace import current_trace
from kiln.testing import assert_matches_eager


def _traced():
    return current_trace() is not None


# ---- 1: nested jitted helpers and compiled submodules run their Python in the eager run ----
@kiln.jit
def _helper(x):
    return x * (3 if _traced() else 2)      # NOTE: "miscompiled": the graph gives x * 3


class _Sub(nn.Module):
    def forward(self, x):
        return x * (3 if _traced() else 2)


def test_a_nested_jitted_helper_is_compared_with_its_python():
    with pytest.raises(AssertionError, match=r"(?s)output differs.*actual 4\.0, expected 3\.0"):
        assert_matches_eager(lambda x: _helper(x) + 1, kiln.ones(2))


def test_a_compiled_submodule_is_compared_with_its_python():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.sub = kiln.compile(_Sub())

        def forward(self, x):
            return self.sub(x) + 1
    with pytest.raises(AssertionError, match=r"(?s)output differs.*actual 4\.0, expected 3\.0"):
        assert_matches_eager(Model(), kiln.ones(2))
    assert_matches_eager(lambda x: kiln.jit(lambda y: y * 2)(x) + 1, kiln.ones(2))


# ---- 2: state the walker did not reach -------------------------------------------------------
NS = types.ModuleType("ns")


class _Cfg:
    buf = None


class _Slots:
    __slots__ = ("buf",)

    def __init__(self):
        self.buf = kiln.zeros(3)


class _Holder:
    buf = None      # NOTE: a class attribute read through an instance (`self.buf`)

    def step(self, x):
        if not _traced():
            self.buf.add_(1)
        return x * 2


def _eager_writes_module_attr(x):
    if not _traced():
        NS.buf.add_(1)      # NOTE: the "miscompiled" graph leaves this write out
    return x * 2


def _eager_writes_class_attr(x):
    if not _traced():
        _Cfg.buf.add_(1)
    return x * 2


def _eager_writes_default(x, buf=kiln.zeros(3)):
    if not _traced():
        buf.add_(1)
    return x * 2


def _eager_writes(x, buf):
    if not _traced():
        buf.add_(1)
    return x * 2


def _eager_writes_slot(x, st):
    if not _traced():
        st.buf.add_(1)
    return x * 2


@pytest.mark.parametrize("case", ["module", "class", "default", "partial", "slots", "instance"])
def test_writes_through_modules_classes_defaults_partials_and_slots_are_compared(case):
    NS.buf, _Cfg.buf, _Holder.buf = kiln.zeros(3), kiln.zeros(3), kiln.zeros(3)
    fn, args, name = {
        "module": (_eager_writes_module_attr, (), "NS.buf"),
        "class": (_eager_writes_class_attr, (), "_Cfg.buf"),
        "default": (_eager_writes_default, (), "default of argument 'buf'"),
        "partial": (functools.partial(_eager_writes, buf=kiln.zeros(3)), (),
                    "partial argument 'buf'"),
        "slots": (_eager_writes_slot, (_Slots(),), "argument 1.buf"),
        "instance": (_Holder().step, (), "self.buf"),
    }[case]
    with pytest.raises(AssertionError, match=rf"state {_escape(name)} differs"):
        assert_matches_eager(fn, kiln.ones(3), *args)


def _escape(text):
    import re
    return re.escape(text)


def test_state_through_a_module_attribute_is_restored_between_the_runs():
    NS.buf = kiln.zeros(3)

    def f(x):
        NS.buf.add_(1)
        return NS.buf * x
    assert_matches_eager(f, kiln.ones(3))
    assert NS.buf.tolist() == [1.0, 1.0, 1.0]       # NOTE: as after one call
    slots = _Slots()

    def g(x, st):
        st.buf = st.buf + x                         # NOTE: a slot rebound, then restored
        return st.buf * 2
    assert_matches_eager(g, kiln.ones(3), slots)
    assert slots.buf.tolist() == [1.0, 1.0, 1.0]


# ---- 6: gradients with respect to non-leaf arguments ------------------------------------------
def _doubled_grad(x, w):
    if not _traced():
        return (w * x).sum()
    d = w.detach()
    return (d * x).sum() + ((w - d) * x * 2).sum()      # NOTE: same value, twice the gradient


def test_a_wrong_gradient_with_respect_to_a_non_leaf_argument_is_reported():
    base = kiln.ones(3, requires_grad=True)
    with pytest.raises(AssertionError, match="gradient of the outputs with respect to argument "
                                             "1 differs"):
        assert_matches_eager(_doubled_grad, kiln.ones(3), base * 1.5)
    assert_matches_eager(lambda x, w: (w * x).sum(), kiln.ones(3), base * 1.5)
    assert base.grad is None


# ---- 7a: the cached graph of a cold function ------------------------------------------------
class _WrongWhenCached(JitFunction):
    """A jitted function whose calls after the tracing one are wrong: a stand-in for a value
    baked in at trace time, which only a later call shows."""

    def __call__(self, *args, **kwargs):
        out = super().__call__(*args, **kwargs)
        self.calls = getattr(self, "calls", 0) + 1
        return out if self.calls == 1 else out * 3


def test_a_cold_function_is_compared_on_its_cached_graph_too():
    with pytest.raises(AssertionError, match=r"(?s)on the second call \(the cached graph; the "
                                             r"first call, which traced, matched\): output "
                                             r"differs"):
        assert_matches_eager(_WrongWhenCached(lambda x: x * 2), kiln.ones(2))


class _Counted(JitFunction):
    def __call__(self, *args, **kwargs):
        self.calls = getattr(self, "calls", 0) + 1
        return super().__call__(*args, **kwargs)


def test_a_cold_function_is_called_twice_a_warm_one_once_and_the_state_is_one_calls():
    def f(x, w):
        w.add_(x)
        return w * 2
    w = kiln.zeros(2)
    cold = _Counted(f)
    assert_matches_eager(cold, kiln.ones(2), w)
    assert cold.calls == 2 and w.tolist() == [1.0, 1.0]
    assert_matches_eager(cold, kiln.ones(2), w)
    assert cold.calls == 3 and w.tolist() == [2.0, 2.0]


# ---- 9: NaN equals NaN in the same place ------------------------------------------------------
def test_nan_in_the_same_place_is_equal_by_default():
    assert_matches_eager(lambda x: kiln.log(x), kiln.tensor([-1.0, 1.0]))
    assert_matches_eager(lambda x, buf: buf.mul_(x).sum(), kiln.tensor([1.0, 2.0]),
                         kiln.tensor([float("nan"), 1.0]))
    assert_matches_eager(lambda w: kiln.sqrt(w).sum(), kiln.tensor([-1.0, 4.0],
                                                                   requires_grad=True))
    with pytest.raises(AssertionError, match="actual nan, expected nan"):
        assert_matches_eager(lambda x: kiln.log(x), kiln.tensor([-1.0, 1.0]), equal_nan=False)
