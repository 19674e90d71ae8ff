"""Indexing in Kiln's own terms: IndexError with the user's line, writes that are in-place
ops (aliases see them, version counters go up, autograd refuses stale saved values), which
index kinds break a @kiln.jit graph and which compile, the `index`/`index_put` ops' shape
rules, and CUDA tensors on the simulated GPU. tests/frontend/test_indexing_torch.py compares
values, gradients and errors with PyTorch."""
from __future__ import annotations

import doctest
import warnings

import numpy as np
import pytest

import kiln
from kiln.frontend import indexing as I
from kiln.frontend.jit import KilnJitWarning
from kiln.ir.errors import DTypeError, KilnError, NotSupportedError, ShapeError
from kiln.ir.ops import indexing as index_ops


@pytest.mark.parametrize("module", [I, index_ops])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_out_of_range_is_an_index_error_naming_the_users_line():
    x = kiln.zeros(3, 4)
    with pytest.raises(IndexError, match="index 5 is out of bounds for dimension 0 with size "
                       "3") as e:
        x[5]
    assert "test_indexing.py" in str(e.value) and "x[5]" in str(e.value)
    assert isinstance(e.value, ShapeError)     # NOTE: what basic indexing raised before
    with pytest.raises(IndexError, match="index -9 is out of bounds") as e:
        x[kiln.tensor([0, -9])]
    assert "x[kiln.tensor([0, -9])]" in str(e.value)
    with pytest.raises(IndexError, match="single ellipsis"):
        x[..., ...]


def test_python_bools_lists_as_tuples_and_zero_d_indices():
    x = kiln.arange(60).reshape(3, 4, 5)
    assert tuple(x[True].shape) == (1, 3, 4, 5) and tuple(x[False].shape) == (0, 3, 4, 5)
    assert tuple(x[None, True].shape) == (1, 1, 3, 4, 5)
    # NOTE: PyTorch 2.13's rule: a list holding a sequence is a tuple of indices
    assert x[[[0, 1], [2, 3]]].tolist() == x[[0, 1], [2, 3]].tolist()
    assert x[[0, slice(1, 3)]].tolist() == x[0, 1:3].tolist()
    # NOTE: a 0-d index tensor removes its dim like an int, with no value read
    assert tuple(x[kiln.tensor(0), :, [0, 1]].shape) == (4, 2)
    assert x[kiln.tensor(-1)].tolist() == x[2].tolist()


def test_advanced_writes_are_in_place_ops():
    x = kiln.arange(12.0).reshape(3, 4)
    row = x[1]                          # a view: sees writes into x
    version = x._version[0]
    x[[1, 2], [0, 0]] = -1.0
    assert row.tolist() == [-1.0, 5.0, 6.0, 7.0] and x._version[0] > version
    row[[1, 3]] = 0.0                   # a write through the view reaches x
    assert x[1].tolist() == [-1.0, 0.0, 6.0, 0.0]
    x[x < 0] = 100.0
    assert x[:, 0].tolist() == [0.0, 100.0, 100.0]


def test_a_saved_value_written_by_an_index_write_refuses_backward():
    w = kiln.ones(3, requires_grad=True)
    y = w * 2.0
    z = y * y                            # saves y's value
    y[[0]] = 5.0
    with pytest.raises(KilnError, match="modified by an inplace operation"):
        z.sum().backward()


def test_writes_into_a_leaf_that_requires_grad_are_refused():
    w = kiln.ones(3, requires_grad=True)
    with pytest.raises(KilnError, match="leaf Variable that requires grad"):
        w[[0]] = 2.0
    with kiln.no_grad():
        w[kiln.tensor([True, False, True])] = 2.0
    assert w.tolist() == [2.0, 1.0, 2.0]


def test_index_put_and_scatter_are_out_of_place():
    x = kiln.zeros(2, 3)
    y = x.index_put((kiln.tensor([1]),), kiln.tensor(1.0))
    z = x.scatter(1, kiln.tensor([[2], [0]]), 4.0)
    assert x.tolist() == [[0.0] * 3] * 2
    assert y.tolist() == [[0.0] * 3, [1.0] * 3] and z.tolist() == [[0, 0, 4], [4, 0, 0]]
    with pytest.raises(NotSupportedError, match="reduce='multiply'"):
        x.scatter(1, kiln.tensor([[0]]), 2.0, reduce="multiply")


def _compiled(fn, *args):
    """fn under @kiln.jit, refusing an eager fallback, and kiln.explain's text."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", KilnJitWarning)
        out = kiln.jit(fn)(*args)
    return out, str(kiln.explain(fn, *args))


def test_index_tensors_and_mask_fills_compile_without_breaks():
    def f(x, idx):
        y = x * 1.0
        y[y > 4] = 0.0
        y[idx, 1:] = x[idx, :3] + x[:, idx].sum()
        return y.gather(1, idx[:, None].expand(3, 2)) + y.index_select(0, idx)[:, :2]
    x, idx = kiln.arange(12.0).reshape(3, 4), kiln.tensor([2, 0, 2])
    out, text = _compiled(f, x, idx)
    np.testing.assert_array_equal(out.numpy(), f(x, idx).numpy())
    assert "1 graph(s)" in text and "graph breaks" not in text


def test_value_dependent_shapes_break_the_graph_and_stay_right():
    def f(x):
        nz = x.nonzero()
        values, counts = x.unique(return_counts=True)
        return nz.sum() + (values * counts).sum() + x[x > 1].sum()
    for data in ([0, 2, 2, 1], [3, 3, 0, 5, 5]):
        x = kiln.tensor(data)
        out, text = _compiled(f, x)
        assert out.item() == f(x).item()
    assert "graph breaks" in text and "nonzero()" in text and "unique()" in text


def test_out_of_range_in_compiled_code_is_an_index_error():
    def f(x, idx):
        return x[idx] * 2.0
    jf = kiln.jit(f)
    x = kiln.ones(3, 2)
    assert jf(x, kiln.tensor([2, -3])).tolist() == [[2.0, 2.0]] * 2
    with pytest.raises(IndexError, match="index 3 is out of bounds for dimension 0 with size 3"):
        jf(x, kiln.tensor([3]))


def test_gradient_through_a_jitted_training_step():
    emb = kiln.randn(5, 3, requires_grad=True, dtype=kiln.float64)

    def step(ids):
        loss = (emb[ids] ** 2).sum()
        loss.backward()
        return loss
    jf = kiln.jit(step)
    jf(kiln.tensor([[0, 4], [4, 4]]))
    want = np.zeros((5, 3))
    want[0], want[4] = 2 * emb.detach().numpy()[0], 6 * emb.detach().numpy()[4]
    np.testing.assert_allclose(emb.grad.numpy(), want, rtol=1e-12)


def test_index_ops_shape_rules():
    from kiln.ir.builder import GraphBuilder
    from kiln.ir.types import TensorType
    b = GraphBuilder("f")
    x = b.add_input(TensorType(kiln.float32, (3, 4)), "x")
    i = b.add_input(TensorType(kiln.int64, (2,)), "i")
    j = b.add_input(TensorType(kiln.int64, (3,)), "j")
    f = b.add_input(TensorType(kiln.float32, (2,)), "f")
    assert b.emit("index", [x, i], {"axis": 1})[0].type.shape == (3, 2)
    with pytest.raises(ShapeError, match="differ in shape"):
        b.emit("index", [x, i, j], {"axis": 0})
    with pytest.raises(ShapeError, match="do not fit"):
        b.emit("index", [x, i, i], {"axis": 1})
    with pytest.raises(DTypeError, match="must be i32 or i64"):
        b.emit("index", [x, f], {"axis": 0})
    with pytest.raises(ShapeError, match=r"must be f32\[2,4\]"):
        b.emit("index_put", [x, x, i], {"axis": 0, "accumulate": False})


# ---- CUDA tensors on the simulated GPU --------------------------------------------------------
def test_cuda_indexing_matches_the_cpu(fake_gpu):
    a = np.arange(12.0).reshape(3, 4)
    for dev in ("cpu", "cuda"):
        x = kiln.tensor(a, device=dev, requires_grad=True)
        y = x * 1.0
        y[y > 8] = 0.0
        y[[0, 0], 1:3] = kiln.tensor([5.0, 6.0], device=dev)
        out = y[kiln.tensor([2, 0], device=dev)] + y.gather(1, kiln.tensor([[0], [3]],
                                                                           device=dev))
        out.sum().backward()
        assert out.device.type == dev and y.nonzero().device.type == dev
        results = (out.cpu().detach().numpy(), x.grad.cpu().numpy())
        if dev == "cpu":
            want = results
    for r, w in zip(results, want):
        np.testing.assert_array_equal(r, w)


def test_cuda_writes_through_strided_indices_and_refusals(fake_gpu):
    x = kiln.zeros(3, 4, device="cuda")
    # NOTE: x[:, 1] is a copy on the GPU: the write is x's new value, written into x
    x[:, 1] = 7.0
    x[1:, [2]] += 1.0
    assert x.tolist() == [[0, 7, 0, 0], [0, 7, 1, 0], [0, 7, 1, 0]]
    with pytest.raises(NotSupportedError, match="not supported yet"):
        x[:, 1][[0, 2]] = 1.0
