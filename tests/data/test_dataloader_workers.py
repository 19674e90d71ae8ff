"""DataLoader worker processes (order, seeding, worker_init_fn, errors, timeouts, persistent
workers, start methods, a Dataset in __main__) and WeightedRandomSampler's distribution."""
from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import kiln
from kiln.utils.data import (DataLoader, Dataset, Generator, WeightedRandomSampler,
                             get_worker_info)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Squares(Dataset):
    """Item i: (tensor [i, i*i], i, worker id, pid); some items are slow, so batches finish
    out of order and the loader must put them back in order."""

    def __init__(self, n=23, fail_at=None, sleep=0.0):
        self.n, self.fail_at, self.sleep = n, fail_at, sleep

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.fail_at:
            raise KeyError(f"no item {i}")
        time.sleep(self.sleep * (i % 3 == 0))
        info = get_worker_info()
        return (kiln.tensor([float(i), float(i * i)]), i,
                -1 if info is None else info.id, os.getpid())


def _epoch(loader):
    return [(x.tolist(), y.tolist(), w.tolist()) for x, y, w, _ in loader]


def test_workers_give_the_batches_of_the_main_process_in_order():
    def loader(n):
        return DataLoader(Squares(sleep=0.01), batch_size=4, shuffle=True, num_workers=n,
                          generator=Generator().manual_seed(3))
    plain = _epoch(loader(0))
    with_workers = _epoch(loader(3))
    assert [b[:2] for b in with_workers] == [b[:2] for b in plain]
    assert [b[2][0] for b in with_workers] == [i % 3 for i in range(len(plain))]
    assert get_worker_info() is None


def test_worker_seeds_info_and_init_fn():
    class Seeds(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            info = get_worker_info()
            return info.id, info.num_workers, info.seed, int(os.environ["KILN_TEST_WORKER"])

    def init(worker_id):
        os.environ["KILN_TEST_WORKER"] = str(100 + worker_id)

    loader = DataLoader(Seeds(), batch_size=1, num_workers=2, worker_init_fn=init,
                        generator=Generator().manual_seed(0))
    rows = [[int(v) for v in batch] for batch in loader]
    ids, counts, seeds, tags = zip(*rows)
    assert ids == (0, 1, 0, 1) and set(counts) == {2} and tags == (100, 101, 100, 101)
    assert seeds[1] == seeds[0] + 1      # NOTE: base seed + worker id, as in PyTorch
    again = [[int(v) for v in b] for b in DataLoader(
        Seeds(), batch_size=1, num_workers=2, worker_init_fn=init,
        generator=Generator().manual_seed(0))]
    assert again == rows


def test_a_worker_error_is_raised_in_the_main_process_with_its_traceback():
    loader = DataLoader(Squares(fail_at=9), batch_size=4, num_workers=2)
    with pytest.raises(KeyError, match="Caught KeyError in DataLoader worker process 0"):
        _epoch(loader)
    with pytest.raises(ZeroDivisionError, match="in worker_init_fn"):
        _epoch(DataLoader(Squares(), batch_size=4, num_workers=2,
                          worker_init_fn=lambda wid: 1 / 0))


def test_timeout_and_a_dead_worker_raise_clearly():
    slow = DataLoader(Squares(n=4, sleep=3.0), batch_size=1, num_workers=1, timeout=0.3)
    with pytest.raises(RuntimeError, match="DataLoader timed out after 0.3 seconds"):
        _epoch(slow)

    class Dies(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            os._exit(3)

    with pytest.raises(RuntimeError, match=r"DataLoader worker \(pid\(s\) \d+\) exited "
                                           r"unexpectedly with exit code\(s\) 3"):
        list(DataLoader(Dies(), num_workers=1))


def test_persistent_workers_are_reused_across_epochs_and_others_stop():
    loader = DataLoader(Squares(n=8), batch_size=2, num_workers=2, persistent_workers=True)
    pids = [{int(p) for *_, pid in loader for p in pid.tolist()} for _ in range(2)]
    assert pids[0] == pids[1] and len(pids[0]) == 2 and os.getpid() not in pids[0]
    pool = loader._pool
    loader._pool = None
    pool.shutdown()
    assert not any(p.is_alive() for p in pool.workers)

    it = iter(DataLoader(Squares(n=40), batch_size=2, num_workers=2))
    pids = {int(next(it)[3][0]) for _ in range(2)}
    assert len(pids) == 2
    del it              # NOTE: an abandoned epoch stops its workers
    gc.collect()
    assert not any(_running(pid) for pid in pids)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("kwargs, match", [
    ({"num_workers": -1}, "non-negative"),
    ({"prefetch_factor": 2}, "prefetch_factor option could only be specified"),
    ({"persistent_workers": True}, "persistent_workers option needs num_workers > 0"),
    ({"num_workers": 1, "timeout": -1}, "timeout option should be non-negative"),
])
def test_worker_options_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DataLoader(Squares(), **kwargs)


SCRIPT = """
import kiln
from kiln.utils.data import DataLoader, Dataset

class Local(Dataset):          # NOTE: defined in __main__
    def __len__(self):
        return 10
    def __getitem__(self, i):
        return kiln.tensor([float(i)])

if __name__ == "__main__":
    loader = DataLoader(Local(), batch_size=3, num_workers=2, multiprocessing_context={ctx!r})
    print([b.flatten().tolist() for b in loader])
"""


@pytest.mark.parametrize("ctx", ["fork", "spawn"])
def test_a_dataset_defined_in_the_main_script_works(tmp_path, ctx):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT.format(ctx=ctx)))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0],
                                      [9.0]])


def test_spawn_with_an_unloadable_dataset_gives_a_clear_error():
    code = SCRIPT.format(ctx="spawn").replace('if __name__ == "__main__":\n', "if True:\n")
    out = subprocess.run([sys.executable, "-"], input=code, capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode != 0
    assert "exited unexpectedly" in out.stderr and "'spawn' start method" in out.stderr


def test_spawn_refuses_a_dataset_that_cannot_be_pickled():
    ds = Squares()
    ds.fn = lambda: None
    with pytest.raises(kiln.NotSupportedError, match="'spawn' start method needs a "
                                                     "picklable dataset"):
        list(DataLoader(ds, num_workers=1, multiprocessing_context="spawn"))


# ---- WeightedRandomSampler ---------------------------------------------------------------------
# NOTE: the chi-square statistic above which p < 0.001, by degrees of freedom
CHI2_CRITICAL = {1: 10.83, 2: 13.82, 3: 16.27}


def _fits(counts, probs) -> bool:
    """A chi-square goodness-of-fit test at the 0.1% level."""
    expected = np.asarray(probs) * np.sum(counts)
    statistic = float(np.sum((np.asarray(counts) - expected) ** 2 / expected))
    return statistic < CHI2_CRITICAL[len(counts) - 1]


@pytest.mark.parametrize("weights", [[1.0, 2.0, 3.0, 4.0], np.array([0.5, 0.0, 0.25, 0.25]),
                                     kiln.tensor([10.0, 1.0, 1.0])])
def test_weighted_sampler_with_replacement_follows_the_weights(weights):
    w = np.asarray(weights.tolist() if isinstance(weights, kiln.Tensor) else weights, float)
    draws = list(WeightedRandomSampler(weights, 20000, generator=Generator().manual_seed(0)))
    counts = np.bincount(draws, minlength=len(w))
    assert len(draws) == 20000
    assert all(counts[w == 0] == 0)
    nonzero = w > 0
    assert _fits(counts[nonzero], w[nonzero] / w.sum())
    assert not _fits(counts[nonzero], np.full(nonzero.sum(), 1 / nonzero.sum()))


def test_weighted_sampler_without_replacement_draws_distinct_indices_with_torchs_odds():
    weights = [1.0, 1.0, 8.0]
    gen = Generator().manual_seed(1)
    samples = [list(WeightedRandomSampler(weights, 2, replacement=False, generator=gen))
               for _ in range(4000)]
    assert all(len(set(s)) == 2 for s in samples)
    # NOTE: index 2 is left out only if 0 and 1 are drawn first: 2 * 0.1 * (1 / 9)
    missing = sum(2 not in s for s in samples) / len(samples)
    assert abs(missing - 2 * 0.1 / 9) < 0.01
    first = np.bincount([s[0] for s in samples], minlength=3)
    assert _fits(first, [0.1, 0.1, 0.8])


def test_weighted_sampler_is_reproducible_and_checks_its_arguments():
    def draw(seed):
        return list(WeightedRandomSampler([1, 2, 3], 50, generator=Generator().manual_seed(seed)))
    assert draw(4) == draw(4) != draw(5)
    assert len(WeightedRandomSampler([1, 2], 7)) == 7
    with pytest.raises(ValueError, match="weights should be a 1d sequence"):
        WeightedRandomSampler([[1.0, 2.0]], 3)
    with pytest.raises(ValueError, match="num_samples should be a positive integer"):
        WeightedRandomSampler([1.0], 0)
    with pytest.raises(ValueError, match="replacement should be a boolean"):
        WeightedRandomSampler([1.0], 1, replacement=1)
    with pytest.raises(RuntimeError, match="not enough non-negative category"):
        list(WeightedRandomSampler([1.0, 0.0, 2.0], 3, replacement=False))
    with pytest.raises(RuntimeError, match="probability entry < 0"):
        list(WeightedRandomSampler([1.0, -1.0], 3))


def test_weighted_sampler_in_a_loader_balances_classes():
    labels = np.array([0] * 90 + [1] * 10)
    weights = 1.0 / np.bincount(labels)[labels]
    ds = kiln.utils.data.TensorDataset(kiln.tensor(labels))
    sampler = WeightedRandomSampler(weights, 2000, generator=Generator().manual_seed(2))
    seen = np.concatenate([b.numpy() for (b,) in DataLoader(ds, batch_size=100,
                                                            sampler=sampler)])
    assert abs(seen.mean() - 0.5) < 0.04       # NOTE: 3.5 standard deviations


def test_persistent_workers_draw_their_base_seed_once_like_pytorch():
    """Shuffled epochs with persistent workers, then the next random number: PyTorch's."""
    torch = pytest.importorskip("torch")
    import torch.utils.data as tdata

    import kiln.utils.data as kdata

    def run(lib, data):
        lib.manual_seed(0)
        loader = data.DataLoader(data.TensorDataset(lib.arange(12)), batch_size=4,
                                 shuffle=True, num_workers=2, persistent_workers=True)
        epochs = [[b[0].tolist() for b in loader] for _ in range(3)]
        return epochs, lib.rand(1).item()
    assert run(kiln, kdata) == run(torch, tdata)
