"""Compiled code on disk: a second process loads what the first compiled instead of compiling
it; a corrupt or truncated entry is reported and compiled again, never a crash or a wrong
result; an unusable cache folder only turns the cache off."""
import os

import pytest

PROGRAM = """
import json, warnings
import numpy as np
import kiln
from kiln.runtime.disk_cache import default_disk_cache

def step(x, w):
    h = kiln.relu(x @ w.t() + 1.0)
    return kiln.softmax(h, -1).sum(0)

rng = np.random.default_rng(0)
x = kiln.from_numpy(rng.standard_normal((8, 16)).astype(np.float32))
w = kiln.from_numpy(rng.standard_normal((4, 16)).astype(np.float32))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    got = kiln.jit(step)(x, w).numpy()
want = step(x, w).numpy()
print(json.dumps({"stats": default_disk_cache().stats,
                  "warnings": [str(w.message) for w in caught],
                  "error": float(np.max(np.abs(got - want)))}))
"""




def _entries(cache_dir) -> list:
    return [os.path.join(d, f) for d, _, files in os.walk(cache_dir) for f in files]


def test_a_second_process_loads_instead_of_compiling(tmp_path, run_program):
    first = run_program(PROGRAM, tmp_path)
    assert first["stats"]["stores"] >= 1 and first["stats"]["hits"] == 0
    assert first["error"] < 1e-5
    second = run_program(PROGRAM, tmp_path)
    assert second["stats"]["hits"] == first["stats"]["stores"]
    assert second["stats"]["stores"] == 0 and second["error"] < 1e-5


def test_code_compiled_in_threads_is_stored_and_loaded_whole(tmp_path, run_program):
    # NOTE: a segment's modules compiled in 2 threads make one entry (a bundle of objects);
    # a process compiling in 1 thread finds and loads it
    first = run_program(PROGRAM, tmp_path, KILN_COMPILE_THREADS="2")
    assert first["stats"]["stores"] >= 1 and first["error"] < 1e-5
    second = run_program(PROGRAM, tmp_path, KILN_COMPILE_THREADS="1")
    assert second["stats"]["hits"] == first["stats"]["stores"]
    assert second["stats"]["stores"] == 0 and second["error"] < 1e-5


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_entry_is_compiled_again(tmp_path, damage, run_program):
    run_program(PROGRAM, tmp_path)
    for path in _entries(tmp_path):
        data = bytearray(open(path, "rb").read())
        if damage == "truncate":
            data = data[:len(data) // 2]
        else:
            data[len(data) - 100] ^= 0x40
        open(path, "wb").write(bytes(data))
    again = run_program(PROGRAM, tmp_path)
    assert again["stats"]["corrupt"] >= 1 and again["stats"]["stores"] >= 1
    assert again["error"] < 1e-5
    assert any("cache" in w for w in again["warnings"])


def test_an_unusable_cache_folder_only_turns_the_cache_off(tmp_path, run_program):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = run_program(PROGRAM, blocker / "cache")
    assert out["error"] < 1e-5
    assert out["stats"]["hits"] == 0
