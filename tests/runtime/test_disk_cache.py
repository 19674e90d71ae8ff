"""The disk cache of compiled artifacts (kiln.runtime.disk_cache): round trips, damaged
entries, hash collisions, unusable folders, concurrent writers, the size cap and the off
switch. Every test points KILN_CACHE_DIR (and HOME, XDG_CACHE_HOME) into tmp_path."""
from __future__ import annotations

import doctest
import hashlib
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from kiln.runtime import disk_cache
from kiln.runtime.disk_cache import DiskCache, KilnCacheWarning, default_disk_cache, make_key

ROOT = Path(__file__).resolve().parents[2]
HEADER = 56      # magic 8 + version 4 + key length 4 + payload length 8 + sha256 32


@pytest.fixture(autouse=True)
def cache_env(tmp_path, monkeypatch):
    """KILN_CACHE_DIR in tmp_path, and HOME/XDG_CACHE_HOME there too, so no test can reach
    the user's real cache."""
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("KILN_CACHE_MAX_BYTES", raising=False)
    return tmp_path / "cache"


@pytest.fixture
def no_warnings():
    """Any warning raised inside the block is an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_docstring_examples():
    result = doctest.testmod(disk_cache)
    assert result.attempted > 0 and result.failed == 0


def test_round_trip_and_replace(cache_env, no_warnings):
    cache = DiskCache()
    key = make_key("kernel text", "znver4 +avx512f", "llvmlite 0.50.0")
    assert cache.path == cache_env / "v1"
    assert cache.get(key) is None
    assert cache.put(key, b"\x7fELF object bytes")
    assert cache.get(key) == b"\x7fELF object bytes"
    assert cache.get(key + " ") is None
    assert cache.put(key, bytearray(b"replaced")) and cache.get(key) == b"replaced"
    assert cache.put("empty", b"") and cache.get("empty") == b""
    big = os.urandom(3 << 20)
    assert cache.put("big", memoryview(big)) and cache.get("big") == big
    # NOTE: the file name is the key's sha256, and the entry holds the whole key.
    path = cache.entry_path(key)
    assert path.name == hashlib.sha256(key.encode()).hexdigest() + ".kc"
    assert key.encode() in path.read_bytes()
    assert cache.stats["hits"] == 4 and cache.stats["misses"] == 2
    info = cache.info()
    assert info["path"] == str(cache_env / "v1") and info["entries"] == 3
    assert info["bytes"] == sum(p.stat().st_size for p in (cache_env / "v1").iterdir())
    # a new DiskCache (as in another process) reads what this one wrote
    assert DiskCache().get(key) == b"replaced"


def test_keys_are_strings_and_make_key_is_unambiguous():
    cache = DiskCache()
    with pytest.raises(TypeError, match="str"):
        cache.get(b"bytes key")
    with pytest.raises(TypeError, match="str"):
        cache.put(b"bytes key", b"x")
    assert make_key("ab", "c") != make_key("a", "bc")
    assert make_key("a\n", "b") != make_key("a", "\nb")


def _stored(cache, key=make_key("k"), data=b"payload bytes " * 10):
    assert cache.put(key, data)
    return key, data, cache.entry_path(key)


def _expect_corrupt(cache, key, path):
    with pytest.warns(KilnCacheWarning, match="corrupt entry") as record:
        assert cache.get(key) is None
    assert len(record) == 1 and str(path) in str(record[0].message)
    assert not path.exists(), "a corrupt entry must be removed"
    assert cache.enabled, "a corrupt entry does not turn the cache off"


@pytest.mark.parametrize("keep", [0, 10, HEADER - 1, HEADER, HEADER + 5, -1])
def test_truncated_entry_is_detected_and_removed(keep):
    cache = DiskCache()
    key, data, path = _stored(cache)
    blob = path.read_bytes()
    path.write_bytes(blob[:keep] if keep >= 0 else blob[:len(blob) + keep])
    _expect_corrupt(cache, key, path)
    assert cache.put(key, data) and cache.get(key) == data


def test_entry_with_extra_bytes_is_corrupt():
    cache = DiskCache()
    key, _, path = _stored(cache)
    path.write_bytes(path.read_bytes() + b"\0")
    _expect_corrupt(cache, key, path)


@pytest.mark.parametrize("where", ["magic", "version", "key length", "payload length",
                                   "checksum", "key", "payload start", "payload end"])
def test_flipped_byte_is_detected_and_removed(where):
    cache = DiskCache()
    key, data, path = _stored(cache)
    offset = {"magic": 3, "version": 8, "key length": 12, "payload length": 16,
              "checksum": 40, "key": HEADER + 1, "payload start": HEADER + len(key.encode()),
              "payload end": path.stat().st_size - 1}[where]
    blob = bytearray(path.read_bytes())
    blob[offset] ^= 0x10
    path.write_bytes(bytes(blob))
    _expect_corrupt(cache, key, path)


def test_other_key_under_the_same_hash_is_a_miss(no_warnings):
    cache = DiskCache()
    key_a, data_a, path_a = _stored(cache, "key A", b"data of A")
    path_b = cache.entry_path("key B")
    path_b.write_bytes(path_a.read_bytes())        # as if sha256("key B") == sha256("key A")
    assert cache.get("key B") is None
    assert path_b.exists(), "a valid entry of another key is not corrupt"
    assert cache.get(key_a) == data_a
    assert cache.put("key B", b"data of B") and cache.get("key B") == b"data of B"


def _unwritable_layouts():
    def under_a_file(tmp):
        (tmp / "afile").write_text("not a folder")
        return tmp / "afile" / "cache"

    def root_is_a_file(tmp):
        (tmp / "afile").write_text("not a folder")
        return tmp / "afile"

    def version_folder_is_a_file(tmp):
        (tmp / "cache").mkdir()
        (tmp / "cache" / "v1").write_text("not a folder")
        return tmp / "cache"

    def read_only_folder(tmp):
        if os.geteuid() == 0:
            pytest.skip("root ignores folder permissions (the other layouts cover this)")
        (tmp / "cache" / "v1").mkdir(parents=True)
        (tmp / "cache" / "v1").chmod(0o500)
        return tmp / "cache"

    return [under_a_file, root_is_a_file, version_folder_is_a_file, read_only_folder]


@pytest.mark.parametrize("layout", _unwritable_layouts(), ids=lambda f: f.__name__)
def test_unwritable_folder_warns_once_then_acts_disabled(layout, tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", str(layout(tmp_path)))
    try:
        cache = default_disk_cache()
        with pytest.warns(KilnCacheWarning, match="disabled for this process") as record:
            assert cache.put("k", b"data") is False
        assert len(record) == 1
        assert not cache.enabled and cache.disabled_reason
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert default_disk_cache() is cache
            assert cache.put("k2", b"data") is False
            assert default_disk_cache().get("k") is None
            assert cache.info()["enabled"] is False
    finally:
        for p in tmp_path.rglob("*"):
            if p.is_dir():
                p.chmod(0o700)


_WRITER = r"""
import sys, warnings
from kiln.runtime.disk_cache import DiskCache, KilnCacheWarning
warnings.simplefilter("error", KilnCacheWarning)
root, me, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
payloads = [bytes([i]) * 300_000 + bytes(range(256)) * 4 for i in range(2)]
cache = DiskCache(root)
print("ready", flush=True)
sys.stdin.readline()                        # both writers start together
seen = set()
for _ in range(rounds):
    assert cache.put("one shared key", payloads[me])
    got = cache.get("one shared key")
    assert got in payloads, "a mix of the two writes"
    seen.add(got[0])
print("ok", sorted(seen), flush=True)
"""


def test_two_processes_writing_one_key(cache_env):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(cache_env), str(me), "150"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
             for me in (0, 1)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        results = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0 and out.startswith("ok"), err
    final = DiskCache(cache_env).get("one shared key")
    assert final[0] in (0, 1) and len(final) == 300_000 + 1024
    names = os.listdir(cache_env / "v1")
    assert len(names) == 1 and names[0].endswith(".kc"), names   # no temporary files left


def test_least_recently_used_entries_are_evicted_at_the_cap(cache_env, no_warnings):
    size = HEADER + 2 + 1000                   # keys "k0".."k4", 1000-byte payloads
    cache = DiskCache(max_bytes=4 * size)
    for i in range(4):
        assert cache.put(f"k{i}", bytes([i]) * 1000)
    now = time.time_ns()
    for i in range(4):                         # k0 oldest ... k3 newest
        os.utime(cache.entry_path(f"k{i}"), ns=(now - (100 - i) * 10**9,) * 2)
    assert cache.info()["bytes"] == 4 * size and cache.stats["evicted"] == 0
    assert cache.get("k0") == bytes([0]) * 1000          # a hit: k0 is now the newest
    # NOTE: another DiskCache, as another process would be: it measures the folder first.
    other = DiskCache(max_bytes=4 * size)
    assert other.put("k4", bytes([4]) * 1000)
    # 5 entries > cap: the oldest go until at most 90% of the cap is used (3 entries)
    assert other.stats["evicted"] == 2
    assert [k for k in ("k0", "k1", "k2", "k3", "k4") if other.get(k) is not None] == \
        ["k0", "k3", "k4"]
    assert other.info()["bytes"] == 3 * size <= 4 * size


def test_entry_larger_than_the_cap_is_not_stored(no_warnings):
    cache = DiskCache(max_bytes=1000)
    assert cache.put("small", b"x" * 100)
    assert cache.put("large", b"x" * 1000) is False
    assert cache.get("large") is None and cache.get("small") == b"x" * 100


@pytest.mark.parametrize("value, expected", [
    ("1000", 1000), ("512M", 512 << 20), ("2GiB", 2 << 30), ("64k", 64 << 10),
    (" 3 gb ", 3 << 30)])
def test_max_bytes_from_environment(monkeypatch, value, expected):
    monkeypatch.setenv("KILN_CACHE_MAX_BYTES", value)
    assert DiskCache().max_bytes == expected


def test_bad_max_bytes_warns_and_uses_the_default(monkeypatch):
    monkeypatch.setenv("KILN_CACHE_MAX_BYTES", "lots")
    with pytest.warns(KilnCacheWarning, match="KILN_CACHE_MAX_BYTES"):
        cache = DiskCache()
    assert cache.max_bytes == disk_cache.DEFAULT_MAX_BYTES == 1 << 30


@pytest.mark.parametrize("value", ["off", "OFF", " off ", "0", "false", "no", "none",
                                   "disabled"])
def test_off_switch(value, tmp_path, monkeypatch, no_warnings):
    monkeypatch.setenv("KILN_CACHE_DIR", value)
    monkeypatch.chdir(tmp_path)
    cache = default_disk_cache()
    assert not cache.enabled and cache.path is None
    assert cache.put("k", b"data") is False and cache.get("k") is None
    assert cache.info() == {"path": None, "entries": 0, "bytes": 0,
                            "max_bytes": 1 << 30, "enabled": False,
                            "disabled_reason": "turned off by KILN_CACHE_DIR"}
    assert cache.clear() == 0
    assert list(tmp_path.iterdir()) == [], "the off cache wrote something"


def test_zero_cap_turns_the_cache_off(cache_env, monkeypatch, no_warnings):
    monkeypatch.setenv("KILN_CACHE_MAX_BYTES", "0")
    cache = DiskCache()
    assert not cache.enabled and cache.put("k", b"data") is False
    assert not cache_env.exists()


def test_default_location(tmp_path, monkeypatch):
    monkeypatch.delenv("KILN_CACHE_DIR")
    assert DiskCache().path == tmp_path / "xdg" / "kiln" / "v1"
    monkeypatch.setenv("KILN_CACHE_DIR", "")
    assert DiskCache().path == tmp_path / "xdg" / "kiln" / "v1"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert DiskCache().path == tmp_path / "home" / ".cache" / "kiln" / "v1"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert DiskCache().path == tmp_path / "home" / ".cache" / "kiln" / "v1"


def test_default_disk_cache_follows_the_environment(tmp_path, monkeypatch):
    first = default_disk_cache()
    assert default_disk_cache() is first and first.root == tmp_path / "cache"
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "elsewhere"))
    second = default_disk_cache()
    assert second is not first and second.root == tmp_path / "elsewhere"


def test_clear_removes_entries_of_every_format_and_nothing_else(cache_env, no_warnings):
    cache = DiskCache()
    for i in range(3):
        cache.put(f"k{i}", b"x" * 10)
    (cache_env / "v1" / "notes.txt").write_text("not the cache's")
    stale_tmp = cache_env / "v1" / ("." + "0" * 64 + ".123.abc.tmp")
    stale_tmp.write_bytes(b"half an entry")
    old = cache_env / "v0"
    old.mkdir()
    (old / ("a" * 64 + ".kc")).write_bytes(b"old format entry")
    other = cache_env / "v7x"
    other.mkdir()
    (other / ("b" * 64 + ".kc")).write_bytes(b"not a version folder")
    assert cache.clear() == 3
    assert sorted(os.listdir(cache_env / "v1")) == ["notes.txt"]
    assert not old.exists()
    assert os.listdir(other) == ["b" * 64 + ".kc"]
    assert cache.info()["entries"] == 0 and cache.get("k0") is None
    assert cache.put("k0", b"again") and cache.get("k0") == b"again"


def test_temporary_files_of_dead_writers_are_removed(cache_env, no_warnings):
    cache = DiskCache()
    cache.path.mkdir(parents=True)
    stale = cache.path / ("." + "1" * 64 + ".99.old.tmp")
    fresh = cache.path / ("." + "2" * 64 + ".99.new.tmp")
    for p in (stale, fresh):
        p.write_bytes(b"partial")
    hours_ago = time.time() - 2 * 3600
    os.utime(stale, (hours_ago, hours_ago))
    assert cache.put("k", b"data")          # the first store measures the folder
    assert not stale.exists() and fresh.exists(), "a live writer's file must stay"
