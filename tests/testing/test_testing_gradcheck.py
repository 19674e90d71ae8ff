"""kiln.testing.gradcheck / gradgradcheck: autograd against float64 finite differences; a
wrong gradient is reported with the input and the element that disagree."""
import re

import numpy as np
import pytest

import kiln
import kiln.autograd
from kiln.testing import GradcheckError, gradcheck, gradgradcheck


class _WrongSquare(kiln.autograd.Function):
    """x * x with the gradient g * x (missing the factor 2)."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return a * a

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g * a


def _inputs():
    x = kiln.tensor([0.5, -1.0, 2.0], dtype=kiln.float64, requires_grad=True)
    w = kiln.tensor([[0.3, -0.2], [0.1, 0.4], [-0.5, 0.2]], dtype=kiln.float64,
                    requires_grad=True)
    return x, w


def test_correct_gradients_pass_eagerly_and_compiled():
    x, w = _inputs()

    def f(a, b):
        return kiln.tanh(a @ b), (a * a).sum()
    assert gradcheck(f, (x, w)) is True
    assert gradcheck(kiln.jit(lambda a, b: kiln.sigmoid(a @ b).sum()), (x, w)) is True
    assert gradgradcheck(lambda a, b: kiln.tanh(a @ b), (x, w)) is True


def test_a_wrong_gradient_names_the_input_and_the_element():
    x, w = _inputs()

    def f(a, b):
        return _WrongSquare.apply(b) * 2.0
    with pytest.raises(GradcheckError) as info:
        gradcheck(f, (x, w))
    text = str(info.value)
    assert "Jacobian mismatch for output with respect to input 1 (b)" in text
    # NOTE: the worst entry: d out[2, 0] / d b[2, 0] = 4 * (-0.5) = -2, autograd says -1
    assert "d output[2, 0] / d b[2, 0]: analytical -1, numerical -2" in text
    assert "6 of 36 entries of this Jacobian disagree" in text
    assert isinstance(info.value, AssertionError) and isinstance(info.value, RuntimeError)
    assert gradcheck(f, (x, w), raise_exception=False) is False


def test_float32_inputs_warn_as_in_pytorch_and_run_in_float32():
    # NOTE: PyTorch checks in the dtype given and warns; a float64 copy would meet the
    # module's float32 weight (a dtype error), so the input keeps its dtype
    lin = kiln.nn.Linear(2, 2)
    seen = []

    def f(s):
        seen.append(s.dtype)
        return lin(s)
    x = kiln.tensor([0.3, 0.7], requires_grad=True)
    with pytest.warns(UserWarning, match="Input #0 requires gradient and is not a double "
                                         "precision floating point"):
        assert gradcheck(f, (x,), eps=1e-2, atol=1e-3, rtol=1e-2)
    assert set(seen) == {kiln.float32}
    assert x.dtype == kiln.float32 and x.grad is None and x.tolist() == pytest.approx([0.3, 0.7])


def test_float64_inputs_give_no_warning(recwarn):
    x = kiln.tensor([0.3, 0.7], dtype=kiln.float64, requires_grad=True)
    assert gradcheck(lambda t: kiln.exp(t) * t, (x,))
    assert not [w for w in recwarn if "double precision" in str(w.message)]


class _WrongExp(kiln.autograd.Function):
    """exp with the gradient 1.5 times too large."""

    @staticmethod
    def forward(ctx, a):
        y = kiln.exp(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * y * 1.5


@pytest.mark.parametrize("shape", ["tuple", "dict", "list in dict"])
def test_outputs_nested_in_tuples_and_dicts_are_checked(shape):
    x = kiln.tensor([0.1, 0.2], dtype=kiln.float64, requires_grad=True)
    nest = {"tuple": lambda y: (y,), "dict": lambda y: {"aux": y},
            "list in dict": lambda y: {"aux": [kiln.ones(1), y]}}[shape]
    path = {"tuple": "[1][0]", "dict": "[1]['aux']", "list in dict": "[1]['aux'][1]"}[shape]
    number = 2 if shape == "list in dict" else 1
    with pytest.raises(GradcheckError, match=rf"output {number} \({re.escape(path)}\) with "
                                             rf"respect to input 0 \(t\)"):
        gradcheck(lambda t: (t * 2, nest(_WrongExp.apply(t))), (x,))
    assert gradcheck(lambda t: (t * 2, nest(kiln.exp(t))), (x,))


def test_outputs_are_numbered_by_their_position_in_the_whole_result():
    x = kiln.tensor([0.1, 0.2], dtype=kiln.float64, requires_grad=True)
    # NOTE: the integer argmax is output 0 and is not checked; the wrong one is output 2
    with pytest.raises(GradcheckError, match=r"(?s)for output 2 with respect to input 0 \(t\)"
                                             r".*d output 2\[1\] / d t\[1\]"):
        gradcheck(lambda t: (kiln.argmax(t), t * 2, _WrongExp.apply(t)), (x,))


def test_a_wrong_second_derivative_fails_gradgradcheck_only():
    # NOTE: a "straight-through" cube: value a**3 and first derivative 3a**2 are right, but
    # the first derivative is built from detached values, so its own derivative is 0, not 6a.
    def cube(a):
        d = a.detach()
        return d ** 3 + (a - d) * 3 * d ** 2
    x = kiln.tensor([0.5, -1.0], dtype=kiln.float64, requires_grad=True)
    assert gradcheck(cube, (x,))
    with pytest.raises(GradcheckError, match=r"(?s)gradgradcheck: Jacobian mismatch for "
                                             r"output 0 with respect to input 0 \(a\).*"
                                             r"d output 0\[1\] / d a\[1\]: analytical 0, "
                                             r"numerical"):
        gradgradcheck(cube, (x,))


def test_inputs_without_requires_grad_are_refused():
    with pytest.raises(ValueError, match="at least one input tensor to require gradient"):
        gradcheck(lambda t: t * 2, (kiln.ones(2, dtype=kiln.float64),))
    with pytest.raises(TypeError, match="Tensor or a tuple"):
        gradcheck(lambda t: t * 2, 3.0)


def test_explicit_grad_outputs_and_their_count():
    x = kiln.tensor(np.array([0.2, 0.4]), requires_grad=True)
    go = kiln.tensor(np.array([1.0, -2.0]))
    assert gradgradcheck(lambda t: kiln.sin(t) * t, (x,), (go,))
    with pytest.raises(ValueError, match="2 grad_outputs given for 1 outputs"):
        gradgradcheck(lambda t: kiln.sin(t), (x,), (go, go))
