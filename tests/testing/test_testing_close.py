"""kiln.testing.assert_close: PyTorch's tolerances per dtype, and a message that names the
number of mismatches, the worst element, its index and both values."""
import numpy as np
import pytest

import kiln
from kiln.testing import assert_close
from kiln.testing.close import default_tolerances


def test_close_values_pass_within_the_float32_tolerance():
    a = kiln.tensor([1.0, 2.0, 1000.0])
    assert_close(a, kiln.tensor([1.0 + 5e-6, 2.0, 1000.0 * (1 + 1e-6)]))
    assert_close({"w": [a, 3]}, {"w": [a.clone(), 3]})


def test_a_mismatch_names_the_count_the_worst_element_its_index_and_both_values():
    actual = kiln.tensor([[1.0, 2.0], [3.0, 4.0]])
    expected = kiln.tensor([[1.0, 2.1], [3.0, 7.0]])
    with pytest.raises(AssertionError) as info:
        assert_close(actual, expected)
    text = str(info.value)
    assert text.startswith("Tensors are not close!")
    assert "Mismatched elements: 2 / 4 (50.0%)" in text
    assert "Worst element: index (1, 1): actual 4.0, expected 7.0 (|difference| 3.0" in text
    assert "Greatest absolute difference: 3.0 at index (1, 1) (up to 1e-05 allowed)" in text


def test_the_worst_element_is_the_furthest_beyond_its_own_tolerance():
    # NOTE: 0.01 off a value of 1e-3 is worse than 0.02 off 1e4 (allowed 0.013 there)
    with pytest.raises(AssertionError, match=r"Worst element: index \(0,\): actual 0\.011"):
        assert_close(kiln.tensor([0.011, 10000.02], dtype=kiln.float64),
                     kiln.tensor([0.001, 10000.0], dtype=kiln.float64), rtol=1e-6, atol=1e-6)


def test_integers_compare_exactly_and_say_equal():
    with pytest.raises(AssertionError, match=r"(?s)Tensors are not equal!.*index \(2,\): "
                                             r"actual 4, expected 3"):
        assert_close(kiln.tensor([1, 2, 4]), kiln.tensor([1, 2, 3]))
    big = 2 ** 60
    with pytest.raises(AssertionError):     # NOTE: 2**60 and 2**60 + 1 differ as int64
        assert_close(np.array([big], np.int64), np.array([big + 1], np.int64))


def test_dtype_shape_and_type_mismatches_are_reported():
    with pytest.raises(AssertionError, match="'dtype' do not match: float32 != float64"):
        assert_close(kiln.ones(2), kiln.ones(2, dtype=kiln.float64))
    assert_close(kiln.ones(2), kiln.ones(2, dtype=kiln.float64), check_dtype=False)
    with pytest.raises(AssertionError, match=r"'shape' do not match: \(2,\) != \(3,\)"):
        assert_close(kiln.ones(2), kiln.ones(3))
    with pytest.raises(TypeError, match="Tensor and float"):
        assert_close(kiln.ones(1), 1.0)


def test_nan_needs_equal_nan_and_a_nested_failure_names_its_item():
    nan = kiln.tensor([float("nan"), 1.0])
    with pytest.raises(AssertionError, match="actual nan, expected nan"):
        assert_close(nan, nan.clone())
    assert_close(nan, nan.clone(), equal_nan=True)
    with pytest.raises(AssertionError, match=r"(?s)Scalars are not close.*item \['b'\]\[1\]"):
        assert_close({"a": 1.0, "b": [1.0, 2.0]}, {"a": 1.0, "b": [1.0, 2.5]})


def test_rtol_and_atol_go_together_and_msg_comes_first():
    with pytest.raises(ValueError, match="got no value for atol"):
        assert_close(kiln.ones(1), kiln.ones(1), rtol=0.1)
    with pytest.raises(AssertionError, match="^step 3\n\nTensors are not close"):
        assert_close(kiln.ones(1), kiln.zeros(1), msg="step 3")


def test_defaults_and_verdicts_are_pytorchs():
    torch = pytest.importorskip("torch")
    assert default_tolerances(np.float32) == (1.3e-6, 1e-5)
    assert default_tolerances(np.float64) == (1e-7, 1e-7)
    assert default_tolerances(np.float16) == (1e-3, 1e-5)
    assert default_tolerances(np.int64, np.bool_) == (0.0, 0.0)
    rng = np.random.default_rng(0)
    for dtype, scale in ((np.float32, 1e-5), (np.float64, 1e-7)):
        base = rng.standard_normal(200).astype(dtype)
        for k in range(20):
            other = (base + rng.standard_normal(200) * scale * (k / 10)).astype(dtype)
            try:
                torch.testing.assert_close(torch.from_numpy(other), torch.from_numpy(base))
                theirs = True
            except AssertionError:
                theirs = False
            try:
                assert_close(kiln.from_numpy(other), kiln.from_numpy(base))
                ours = True
            except AssertionError:
                ours = False
            assert ours == theirs, (dtype, k)


# ---- review fixes: None, msg callables, NumPy scalars, 0-d tensors, device indices -----------
def test_none_equals_none_and_nothing_else_as_in_pytorch():
    assert_close([kiln.ones(1), None], [kiln.ones(1), None])
    assert_close({"a": None}, {"a": None})
    with pytest.raises(AssertionError, match=r"(?s)None mismatch: None is not 1.*item \[0\]"):
        assert_close([None], [1])


def test_a_callable_msg_is_called_with_the_message_and_its_result_is_raised():
    seen = []

    def rewrite(message):
        seen.append(message)
        return "custom: " + message.splitlines()[0]

    with pytest.raises(AssertionError) as info:
        assert_close(kiln.ones(1), kiln.zeros(1), msg=rewrite)
    assert str(info.value) == "custom: Tensors are not close!"
    assert seen and "Mismatched elements: 1 / 1" in seen[0]


def test_numpy_scalars_compare_as_the_python_numbers_they_hold():
    torch = pytest.importorskip("torch")
    for actual, expected in ((np.float32(1.0), 1.0), (np.float32(1.0), np.float64(1.0)),
                             (np.int64(3), 3), (np.bool_(True), True)):
        torch.testing.assert_close(actual, expected)
        assert_close(actual, expected)
    with pytest.raises(AssertionError, match="Scalars are not close"):
        assert_close(np.float32(1.0), 2.0)
    with pytest.raises(AssertionError, match="'dtype' do not match"):
        assert_close(np.int64(1), 1.0)      # NOTE: int and float differ in PyTorch too


def test_zero_dim_tensors_are_scalars_in_the_message():
    with pytest.raises(AssertionError, match=r"^Scalars are not close!\n\nValues: actual 1.0, "
                                             r"expected 2.0"):
        assert_close(kiln.tensor(1.0), kiln.tensor(2.0))


def test_devices_are_compared_with_their_index(fake_gpu):
    x = kiln.ones(2, device="cuda")
    assert_close(x, kiln.ones(2, device="cuda:0"))
    with pytest.raises(AssertionError, match="'device' do not match: cuda:0 != cpu"):
        assert_close(x, kiln.ones(2))
