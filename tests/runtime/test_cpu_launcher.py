"""The CPU launcher: how a launch is split into pieces, which threads run them, and that a
split launch survives errors and fork."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from kiln.runtime.cpu import CpuLauncher
from kiln.runtime.cpu.launcher import MAX_PIECES_PER_THREAD, MIN_PIECE_WORK


def _covered(pieces):
    out = []
    for lo, hi in sorted(pieces):
        assert lo < hi
        out.extend(range(lo, hi))
    return out


@pytest.mark.parametrize("threads, outer, work", [
    (2, 10, 10**12), (2, 1000, 10**12), (3, 7, 10**12), (2, 1000, 3 * MIN_PIECE_WORK),
    (4, 5, 10**9), (2, 2, 10**12)])
def test_pieces_cover_the_outer_loop_once(threads, outer, work):
    pieces = CpuLauncher(threads, min_parallel_work=0).chunks(outer, work)
    assert _covered(pieces) == list(range(outer))
    assert min(threads, outer) <= len(pieces) <= threads * MAX_PIECES_PER_THREAD


def test_big_launches_get_more_pieces_than_threads():
    """Pieces are taken in turn, so a core busy with something else runs fewer of them."""
    launcher = CpuLauncher(2, min_parallel_work=0)
    assert len(launcher.chunks(1 << 20, 10**12)) == 2 * MAX_PIECES_PER_THREAD
    assert len(launcher.chunks(1 << 20, 2 * MIN_PIECE_WORK)) == 2


def test_one_thread_or_small_work_is_one_piece():
    assert CpuLauncher(1, min_parallel_work=0).chunks(100, 10**12) == [(0, 100)]
    assert CpuLauncher(2, min_parallel_work=100).chunks(100, 99) == [(0, 100)]


def test_every_piece_runs_exactly_once():
    launcher = CpuLauncher(threads=2, min_parallel_work=0)
    seen, lock = [], threading.Lock()

    def fn(tag, lo, hi):
        with lock:
            seen.append((tag, lo, hi, threading.current_thread().name))
    launcher.launch(fn, ["a"], 1000, 10**12)
    launcher.close()
    assert _covered([(lo, hi) for _, lo, hi, _ in seen]) == list(range(1000))
    assert {tag for tag, *_ in seen} == {"a"}
    assert all(name.startswith("kiln-cpu-") for *_, name in seen)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_one_thread_per_core_pins_each_worker_to_its_core():
    cores = os.sched_getaffinity(0)
    launcher = CpuLauncher(threads=len(cores), min_parallel_work=0)
    where, lock = {}, threading.Lock()

    deadline = time.monotonic() + 10

    def fn(lo, hi):
        with lock:
            where[threading.current_thread().name] = os.sched_getaffinity(0)
        # NOTE: a piece waits for a second worker to take one (however late it wakes)
        while len(where) < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
    launcher.launch(fn, [], 4 * len(cores), 10**12)
    launcher.close()
    masks = list(where.values())
    assert len(masks) >= 2 and all(len(m) == 1 and m <= cores for m in masks)
    assert len(set(map(frozenset, masks))) == len(masks), "two workers share a core"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_fewer_threads_than_cores_run_unpinned():
    """Pinned to the lowest cores, every such process would crowd onto the same ones."""
    allowed = os.sched_getaffinity(0)
    launcher = CpuLauncher(threads=len(allowed) - 1, min_parallel_work=0) \
        if len(allowed) > 2 else None
    if launcher is None:
        pytest.skip("needs three cores")
    masks = []
    launcher.launch(lambda lo, hi: masks.append(os.sched_getaffinity(0)), [], 64, 10**12)
    launcher.close()
    assert masks and all(m == allowed for m in masks)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_workers_follow_a_narrowed_affinity():
    allowed = os.sched_getaffinity(0)
    launcher = CpuLauncher(threads=2, min_parallel_work=0)
    launcher.launch(lambda lo, hi: None, [], 8, 10**12)
    one = {min(allowed)}
    os.sched_setaffinity(0, one)
    try:
        masks = []

        def record(lo, hi):
            masks.append(os.sched_getaffinity(0))
            time.sleep(0.005)       # NOTE: so that every worker takes a piece
        launcher.launch(record, [], 8, 10**12)
    finally:
        os.sched_setaffinity(0, allowed)
        launcher.close()
    assert masks and all(m <= one for m in masks), masks


def test_an_interrupted_wait_returns_only_after_the_running_pieces():
    """Ctrl-C while a launch runs: the caller raises KeyboardInterrupt once no piece runs any
    more (they write into buffers it frees), no piece starts after, and the next launch runs
    all of its own pieces before it returns."""
    import _thread
    launcher = CpuLauncher(threads=2, min_parallel_work=0)
    running, started, lock = [0], [], threading.Lock()

    def slow(lo, hi):
        with lock:
            running[0] += 1
            started.append(time.monotonic())
            if lo == 0:     # NOTE: Ctrl-C while the first piece runs, however slow the host
                _thread.interrupt_main()
        time.sleep(0.05)
        with lock:
            running[0] -= 1
    with pytest.raises(KeyboardInterrupt):
        launcher.launch(slow, [], 40, 10**12)
    raised = time.monotonic()
    assert running[0] == 0
    time.sleep(0.12)
    assert running[0] == 0 and all(t < raised for t in started)
    assert len(started) < 40
    seen = []
    launcher.launch(lambda lo, hi: (time.sleep(0.01), seen.append((lo, hi))), [], 40, 10**12)
    assert _covered(seen) == list(range(40))
    launcher.close()


def test_more_threads_than_cores_run_unpinned():
    allowed = os.sched_getaffinity(0)
    launcher = CpuLauncher(threads=len(allowed) + 1, min_parallel_work=0)
    masks = []
    launcher.launch(lambda lo, hi: masks.append(os.sched_getaffinity(0)), [], 64, 10**12)
    launcher.close()
    assert masks and all(m == allowed for m in masks)


def test_a_failing_piece_stops_the_launch_and_the_launcher_stays_usable():
    launcher = CpuLauncher(threads=2, min_parallel_work=0)
    ran = []

    def fn(lo, hi):
        ran.append(lo)
        if lo == 0:
            raise ValueError("piece failed")
    with pytest.raises(ValueError, match="piece failed"):
        launcher.launch(fn, [], 100, 10**12)
    seen = []
    launcher.launch(lambda lo, hi: seen.append((lo, hi)), [], 100, 10**12)
    launcher.close()
    assert _covered(seen) == list(range(100))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_can_launch_in_parallel():
    """The parent's worker threads do not exist in a forked child (a DataLoader worker):
    the child starts its own instead of waiting for them forever."""
    launcher = CpuLauncher(threads=2, min_parallel_work=0)
    launcher.launch(lambda lo, hi: None, [], 10, 10**12)    # the parent's threads exist
    pid = os.fork()
    if pid == 0:
        try:
            seen = []
            launcher.launch(lambda lo, hi: seen.append((lo, hi)), [], 10, 10**12)
            os._exit(0 if _covered(seen) == list(range(10)) else 1)
        finally:
            os._exit(2)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.01)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child's parallel launch never finished")
    launcher.close()
    assert os.waitstatus_to_exitcode(status) == 0
