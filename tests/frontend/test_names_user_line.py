"""The user's line (ir/types.user_loc) skips Kiln's own folders, and also the standard
library and installed packages: a batch a DataLoader makes while tqdm iterates it is on the
user's `for` line, not on a line of tqdm."""
import sys

import kiln
import kiln.profiler
from kiln.ir import types
from kiln.utils.data import DataLoader, TensorDataset


def test_the_installed_packages_and_the_standard_library_are_not_the_users():
    assert types._in_library(types.__file__) is False
    assert types._in_library(__file__) is False
    assert types._in_library(sys.modules["json"].__file__)
    tqdm = __import__("tqdm")
    assert types._in_library(tqdm.__file__)


def test_a_batch_made_while_tqdm_iterates_is_on_the_users_line():
    from tqdm import tqdm

    data = TensorDataset(kiln.ones(8, 3), kiln.ones(8))
    loader = DataLoader(data, batch_size=4)
    with kiln.profiler.profile() as prof:
        for x, y in tqdm(loader, disable=True):     # NOTE: the batches' line
            pass
    line = _line_of("for x, y in tqdm(loader, disable=True)")
    made = [e for e in prof.events if e.kind == "eager"]
    assert made
    assert {e.location for e in made} == {f"test_names_user_line.py:{line}"}


def _line_of(text: str) -> int:
    with open(__file__) as f:
        return next(i for i, line in enumerate(f, 1) if text in line and "_line_of" not in line)
