"""kiln.distributed in one process (a world of one): set-up, argument checks, collectives'
semantics on one rank, Work handles and in-place bookkeeping."""
from __future__ import annotations

import numpy as np
import pytest

import kiln
import kiln.distributed as dist
from kiln.ir.errors import NotSupportedError


def test_rank_world_size_and_backend(world):
    assert (dist.get_rank(), dist.get_world_size(), dist.get_backend()) == (0, 1, "mpi")
    assert dist.is_initialized() and dist.is_available() and dist.is_mpi_available()
    assert not dist.is_nccl_available()


def test_everything_needs_an_initialized_group():
    assert not dist.is_initialized()
    for call in (dist.get_rank, dist.get_world_size, dist.barrier,
                 lambda: dist.all_reduce(kiln.ones(2)), dist.destroy_process_group):
        with pytest.raises(dist.DistError, match="init_process_group"):
            call()


def test_initializing_twice_is_refused(world):
    with pytest.raises(dist.DistError, match="twice"):
        dist.init_process_group("mpi")


def test_after_destroy_a_new_group_starts(world):
    dist.destroy_process_group()
    dist.init_process_group()
    t = kiln.ones(2)
    dist.all_reduce(t)
    assert t.tolist() == [1.0, 1.0]


@pytest.mark.parametrize("kwargs, error, match", [
    ({"backend": "nccl"}, NotSupportedError, "backend 'nccl'"),
    ({"init_method": "tcp://10.0.0.1:23456"}, NotSupportedError, "init_method"),
    ({"store": object()}, NotSupportedError, "store"),
    ({"rank": 3}, dist.DistError, "rank=3 but MPI says this process is rank 0 of 1"),
    ({"world_size": 2}, dist.DistError, "world_size=2 but MPI says"),
    ({"timeout": -1}, ValueError, "positive number of seconds"),
])
def test_init_arguments_are_checked(kwargs, error, match):
    with pytest.raises(error, match=match):
        dist.init_process_group(**kwargs)
    assert not dist.is_initialized()


def test_env_variables_must_agree_with_mpi(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(dist.DistError, match="WORLD_SIZE=2 but MPI says .* rank 0 of 1") as e:
        dist.init_process_group(init_method="env://")
    assert "kiln run -n N" in str(e.value)


def test_env_variables_that_agree_are_accepted(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    dist.init_process_group(init_method="env://", rank=0, world_size=1)
    dist.destroy_process_group()


def test_bad_timeout_variable(monkeypatch):
    monkeypatch.setenv("KILN_DIST_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="KILN_DIST_TIMEOUT='soon'"):
        dist.init_process_group()


@pytest.mark.parametrize("op", ["SUM", "AVG", "PRODUCT", "MIN", "MAX"])
def test_one_rank_reduces_to_its_own_values(world, op):
    t = kiln.tensor([1.5, -2.0, 4.0])
    assert dist.all_reduce(t, op=getattr(dist.ReduceOp, op)) is None
    assert t.tolist() == [1.5, -2.0, 4.0]


def test_reduce_ops_by_name_and_errors(world):
    t = kiln.tensor([1, 2])
    dist.all_reduce(t, op="max")
    assert t.tolist() == [1, 2]
    with pytest.raises(ValueError, match="unknown reduce op 'mean'"):
        dist.all_reduce(t, op="mean")
    with pytest.raises(dist.DistError, match="AVG needs a floating-point tensor"):
        dist.all_reduce(t, op=dist.ReduceOp.AVG)
    with pytest.raises(TypeError, match="Expected parameter `tensor` of type kiln.Tensor"):
        dist.all_reduce(np.ones(2))
    assert repr(dist.ReduceOp.AVG) == "<ReduceOp.AVG: 'avg'>"


def test_broadcast_and_gathers_on_one_rank(world):
    t = kiln.tensor([3.0, 4.0])
    dist.broadcast(t, src=0)
    with pytest.raises(ValueError, match=r"src must be a rank in \[0, 1\)"):
        dist.broadcast(t, src=1)
    out = [kiln.zeros(2)]
    dist.all_gather(out, t)
    assert out[0].tolist() == [3.0, 4.0]
    with pytest.raises(dist.DistError, match="needs one per rank"):
        dist.all_gather([kiln.zeros(2), kiln.zeros(2)], t)
    with pytest.raises(dist.DistError, match=r"tensor_list\[0\] is f32\[3\]"):
        dist.all_gather([kiln.zeros(3)], t)
    whole = kiln.zeros(2)
    dist.all_gather_into_tensor(whole, t)
    assert whole.tolist() == [3.0, 4.0]
    with pytest.raises(dist.DistError, match=r"must hold 1 \(the world size\) parts"):
        dist.all_gather_into_tensor(kiln.zeros(3), t)
    mine = kiln.zeros(2)
    dist.reduce_scatter(mine, [t], op=dist.ReduceOp.AVG)
    assert mine.tolist() == [3.0, 4.0]
    dist.reduce_scatter_tensor(mine, t * 2)
    assert mine.tolist() == [6.0, 8.0]


def test_async_work_handles(world):
    t = kiln.ones(3)
    work = dist.all_reduce(t, async_op=True)
    assert isinstance(work, dist.Work)
    assert work.wait() is True and work.is_completed() and work.is_success()
    assert work.result() == [t] and work.exception() is None
    assert "all_reduce(f32[3], sum)" in repr(work)
    assert dist.barrier(async_op=True).wait()
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        work.wait(timeout=0)


def test_collectives_write_in_place_and_count_versions(world):
    base = kiln.arange(6.0).reshape(2, 3)
    column = base[:, 1]                 # NOTE: a strided view: written back into base
    version = base._version[0]
    dist.all_reduce(column, op=dist.ReduceOp.MAX)
    assert base._version[0] == version + 1
    assert base.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]


def test_a_saved_tensor_overwritten_by_a_collective_stops_backward(world):
    x = kiln.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    z = y.exp()                          # NOTE: saves its output y.exp() ... and y below
    w = (y * y).sum()
    dist.all_reduce(y)
    with pytest.raises(kiln.autograd.AutogradError, match="modified by an inplace"):
        w.backward()
    z.sum().backward()                   # NOTE: exp saved only its output: still fine


def test_an_expanded_view_cannot_be_reduced_in_place(world):
    t = kiln.ones(1).expand(3)
    with pytest.raises(kiln.KilnError, match="expanded view"):
        dist.all_reduce(t)


def test_only_the_default_group(world):
    t = kiln.ones(2)
    dist.all_reduce(t, group=dist.group.WORLD)
    with pytest.raises(NotSupportedError, match="other than the default"):
        dist.all_reduce(t, group=object())
