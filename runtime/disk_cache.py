"""A content-addressed store of compiled artifacts on disk (machine code that a later process
can load instead of compiling again).

    >>> import tempfile
    >>> cache = DiskCache(tempfile.mkdtemp())
    >>> key = make_key("kernel text", "cpu name and features", "tool versions")
    >>> cache.get(key) is None
    True
    >>> cache.put(key, b"machine code")
    True
    >>> cache.get(key)
    b'machine code'
    >>> info = cache.info()
    >>> info["entries"], info["path"].endswith("v1")
    (1, True)
    >>> cache.clear()
    1
    >>> cache.get(key) is None
    True

The caller builds the key: everything the bytes depend on (for machine code: the kernel's
text, the target CPU's name and features, and the versions of kiln, llvmlite and the MLIR
wheel; `make_key` joins such parts without ambiguity). A key may be long: the file name is
its sha256, and the entry stores the whole key, so two keys with one hash never mix.

Where (`DiskCache()` and `default_disk_cache()` read the environment):
- `KILN_CACHE_DIR=/some/folder`: the cache lives in `/some/folder/v1` (one folder per entry
  format version; `clear()` also empties folders of older versions).
- unset or empty: `$XDG_CACHE_HOME/kiln/v1`, else `~/.cache/kiln/v1`.
- `KILN_CACHE_DIR=off` (or `0`, `false`, `no`, `none`, `disable`, `disabled`; any case): no
  disk cache: `get` misses, `put` stores nothing, nothing is read or written.
- `KILN_CACHE_MAX_BYTES`: the size cap, in bytes or with a binary suffix (`512M`, `2GiB`);
  1 GiB when unset; 0 turns the cache off. When the entries pass the cap, the least recently
  used ones (oldest modification time; a hit touches its entry) are removed until they take
  at most 90% of it. The total is re-measured every 64 stores and whenever this process's
  count passes the cap, so with several processes writing it may exceed the cap for a while.

Never a crash: a corrupt or truncated entry (every entry has a magic, a format version, its
lengths and a sha256 of all of it) is removed, and `get` returns None with a
`KilnCacheWarning`. A folder that cannot be made, read or written (permissions, a read-only
file system, a file where a folder should be) gives one `KilnCacheWarning`, and from then on
this DiskCache acts disabled (`info()["enabled"]` is False). Writes go to a temporary file in
the same folder and are renamed into place (`os.replace`), so processes that write the same
key at once, or read while another writes, see a whole entry or none.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import struct
import tempfile
import threading
import time
import warnings
from pathlib import Path

__all__ = ["DiskCache", "KilnCacheWarning", "default_disk_cache", "make_key", "cache_root",
           "FORMAT_VERSION", "DEFAULT_MAX_BYTES"]

FORMAT_VERSION = 1
DEFAULT_MAX_BYTES = 1 << 30
OFF_VALUES = frozenset({"off", "0", "false", "no", "none", "disable", "disabled"})
LOW_WATER = 0.9            # eviction stops at this fraction of the cap
_RESCAN_EVERY = 64         # stores between two measurements of the folder
_STALE_TMP_S = 3600        # temporary files older than this are left by dead writers

_MAGIC = b"KILNBLOB"
# magic, format version, key length, payload length; then sha256(these 24 bytes + key +
# payload); then the key (UTF-8) and the payload.
_PREFIX = struct.Struct("<8sIIQ")
_HEADER_SIZE = _PREFIX.size + 32
_ENTRY_RE = re.compile(r"^[0-9a-f]{64}\.kc$")
_TMP_RE = re.compile(r"^\.[0-9a-f]{64}\..*\.tmp$")
_VERSION_DIR_RE = re.compile(r"^v\d+$")
_SIZE_RE = re.compile(r"^(\d+)\s*([kmgt]?)(i?b)?$", re.I)


class KilnCacheWarning(UserWarning):
    """The disk cache found a corrupt entry (removed) or cannot use its folder (then it acts
    disabled); compilation goes on without it."""


def make_key(*parts: str) -> str:
    """One key from several strings, each kept apart by its length, so that
    `make_key("ab", "c") != make_key("a", "bc")`.

        >>> make_key("ab", "c") == make_key("a", "bc")
        False
    """
    return "".join(f"{len(p)}:{p}\n" for p in parts)


@functools.cache
def compiler_stamp() -> str:
    """Kiln's version and (path, size, modification time) of every Python module of its IR,
    passes, code generators and runtime: part of the keys of what is derived from them (a
    plan, a rendered kernel), so a changed compiler never reads an old entry."""
    import importlib.util
    parts = []
    for package in ("kiln.ir", "kiln.passes", "kiln.codegen", "kiln.runtime"):
        spec = importlib.util.find_spec(package)
        for root in (spec.submodule_search_locations or []) if spec else []:
            for folder, dirs, files in os.walk(root):
                dirs[:] = sorted(d for d in dirs if d != "__pycache__")
                for name in sorted(f for f in files if f.endswith(".py")):
                    st = os.stat(os.path.join(folder, name))
                    rel = os.path.relpath(os.path.join(folder, name), root)
                    parts.append(f"{package}/{rel} {st.st_size} {st.st_mtime_ns}")
    from kiln import __version__
    return __version__ + "\n" + "\n".join(parts)


def cache_root() -> Path | None:
    """The cache's root folder as the environment says (without the version folder); None
    when `KILN_CACHE_DIR` turns the cache off."""
    value = os.environ.get("KILN_CACHE_DIR", "").strip()
    if value.lower() in OFF_VALUES:
        return None
    if value:
        return Path(value).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # NOTE: the XDG spec says a relative XDG_CACHE_HOME is to be ignored.
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "kiln"


def _max_bytes_from_env() -> int:
    value = os.environ.get("KILN_CACHE_MAX_BYTES", "").strip()
    if not value:
        return DEFAULT_MAX_BYTES
    m = _SIZE_RE.match(value)
    if not m:
        warnings.warn(KilnCacheWarning(
            f"KILN_CACHE_MAX_BYTES={value!r} is not a size (like 1073741824, 512M or 2GiB); "
            f"using {DEFAULT_MAX_BYTES}"), stacklevel=3)
        return DEFAULT_MAX_BYTES
    return int(m[1]) << (10 * " kmgt".index(m[2].lower() or " "))


class DiskCache:
    """Compiled artifacts in one folder: `get(key)`, `put(key, data)`, `info()`, `clear()`.

    `path` is the root folder (entries go in `<path>/v1`); None reads `KILN_CACHE_DIR`
    (which may turn the cache off). `max_bytes` None reads `KILN_CACHE_MAX_BYTES`."""

    def __init__(self, path: str | os.PathLike | None = None, max_bytes: int | None = None):
        self.root = cache_root() if path is None else Path(path).expanduser()
        self.max_bytes = _max_bytes_from_env() if max_bytes is None else int(max_bytes)
        self.path = None if self.root is None else self.root / f"v{FORMAT_VERSION}"
        self.disabled_reason: str | None = None
        if self.root is None:
            self.disabled_reason = "turned off by KILN_CACHE_DIR"
        elif self.max_bytes <= 0:
            self.disabled_reason = f"size cap {self.max_bytes} (KILN_CACHE_MAX_BYTES)"
        self.stats = {"hits": 0, "misses": 0, "stores": 0, "evicted": 0, "corrupt": 0}
        self._lock = threading.Lock()
        self._approx_bytes: int | None = None      # None: not measured yet
        self._stores_since_scan = 0

    @property
    def enabled(self) -> bool:
        return self.disabled_reason is None

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else f"disabled: {self.disabled_reason}"
        return f"DiskCache({str(self.path)!r}, max_bytes={self.max_bytes}, {state})"

    # ---- entries ------------------------------------------------------------------------
    def entry_path(self, key: str) -> Path | None:
        """The file that holds `key`'s entry (None when the cache is off)."""
        if self.path is None:
            return None
        return self.path / (hashlib.sha256(_key_bytes(key)).hexdigest() + ".kc")

    def get(self, key: str) -> bytes | None:
        """The bytes stored under `key`, or None (not stored, corrupt, or cache disabled)."""
        key_bytes = _key_bytes(key)
        if not self.enabled:
            return self._miss()
        path = self.entry_path(key)
        try:
            with open(path, "rb") as f:
                blob = f.read()
                inode = os.fstat(f.fileno()).st_ino
        except FileNotFoundError:
            return self._miss()
        except OSError as e:
            self._fail(f"cannot read {path}: {e}")
            return self._miss()
        try:
            payload = _decode(blob, key_bytes)
        except _Corrupt as e:
            self.stats["corrupt"] += 1
            _remove_if_same(path, inode)
            warnings.warn(KilnCacheWarning(f"kiln disk cache: removed a corrupt entry {path} "
                                           f"({e})"), stacklevel=2)
            return self._miss()
        if payload is None:         # another key with the same hash: not ours
            return self._miss()
        try:
            os.utime(path)          # recently used: evicted last
        except OSError:
            pass
        self.stats["hits"] += 1
        return payload

    def put(self, key: str, data: bytes) -> bool:
        """Store `data` under `key` (replacing what was there); True when it was stored.
        False when the cache is disabled, the entry alone is over the size cap, or the folder
        cannot be written (then one KilnCacheWarning, and the cache acts disabled)."""
        key_bytes = _key_bytes(key)
        data = memoryview(data).cast("B")
        if not self.enabled:
            return False
        size = _HEADER_SIZE + len(key_bytes) + len(data)
        if size > self.max_bytes:
            return False
        path = self.entry_path(key)
        prefix = _PREFIX.pack(_MAGIC, FORMAT_VERSION, len(key_bytes), len(data))
        digest = hashlib.sha256(prefix)
        digest.update(key_bytes)
        digest.update(data)
        tmp = None
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=self.path)
            with os.fdopen(fd, "wb") as f:
                f.write(prefix + digest.digest() + key_bytes)
                f.write(data)
            os.replace(tmp, path)
            tmp = None
        except OSError as e:
            self._fail(f"cannot write to {self.path}: {e}")
            return False
        finally:
            if tmp is not None:
                _unlink(tmp)
        self.stats["stores"] += 1
        self._after_store(size, path)
        return True

    # ---- the whole folder ---------------------------------------------------------------
    def info(self) -> dict:
        """`{"path", "entries", "bytes", "max_bytes", "enabled", "disabled_reason"}`: the
        folder (None when off), how many entries it holds and their total size."""
        entries = self._scan() if self.path is not None else []
        return {"path": None if self.path is None else str(self.path),
                "entries": len(entries), "bytes": sum(e[1] for e in entries),
                "max_bytes": self.max_bytes, "enabled": self.enabled,
                "disabled_reason": self.disabled_reason}

    def clear(self) -> int:
        """Remove every entry (and leftover temporary files), also in folders of older entry
        formats next to this one; returns how many entries of this format were removed. Files
        that are not the cache's own are left alone."""
        if self.root is None:
            return 0
        removed = 0
        try:
            folders = [d for d in self.root.iterdir()
                       if d.is_dir() and _VERSION_DIR_RE.match(d.name)]
        except FileNotFoundError:
            return 0
        except OSError as e:
            self._fail(f"cannot list {self.root}: {e}")
            return 0
        for folder in folders:
            try:
                names = [n for n in os.listdir(folder) if _ENTRY_RE.match(n) or _TMP_RE.match(n)]
                for name in names:
                    if _unlink(folder / name, strict=True) and folder == self.path \
                            and name.endswith(".kc"):
                        removed += 1
                if folder != self.path and not os.listdir(folder):
                    folder.rmdir()
            except OSError as e:
                self._fail(f"cannot clear {folder}: {e}")
        with self._lock:
            self._approx_bytes, self._stores_since_scan = None, 0
        return removed

    # ---- internals ----------------------------------------------------------------------
    def _miss(self) -> None:
        self.stats["misses"] += 1
        return None

    def _fail(self, reason: str) -> None:
        """Warn once, then act disabled."""
        if self.disabled_reason is None:
            self.disabled_reason = reason
            warnings.warn(KilnCacheWarning(
                f"kiln disk cache disabled for this process: {reason}"), stacklevel=3)

    def _scan(self) -> list[tuple[int, int, str]]:
        """(mtime_ns, size, name) of every entry; removes temporary files of dead writers."""
        entries = []
        now = time.time()
        try:
            with os.scandir(self.path) as it:
                for e in it:
                    try:
                        if _ENTRY_RE.match(e.name):
                            st = e.stat()
                            entries.append((st.st_mtime_ns, st.st_size, e.name))
                        elif _TMP_RE.match(e.name) and now - e.stat().st_mtime > _STALE_TMP_S:
                            _unlink(e.path)
                    except FileNotFoundError:    # removed by another process meanwhile
                        pass
        except FileNotFoundError:
            pass
        except OSError as e:
            self._fail(f"cannot list {self.path}: {e}")
        return entries

    def _after_store(self, size: int, keep: Path) -> None:
        with self._lock:
            self._stores_since_scan += 1
            if self._approx_bytes is None or self._stores_since_scan >= _RESCAN_EVERY:
                self._approx_bytes = sum(e[1] for e in self._scan())
                self._stores_since_scan = 0
            else:
                self._approx_bytes += size
            if self._approx_bytes > self.max_bytes:
                self._evict(keep.name)

    def _evict(self, keep: str) -> None:
        entries = sorted(self._scan())
        total = sum(e[1] for e in entries)
        limit = int(self.max_bytes * LOW_WATER)
        for _, size, name in entries:
            if total <= limit:
                break
            if name == keep:
                continue
            try:
                os.unlink(self.path / name)
                self.stats["evicted"] += 1
            except FileNotFoundError:    # another process evicted it first
                pass
            except OSError as e:
                self._fail(f"cannot remove {self.path / name}: {e}")
                break
            total -= size
        self._approx_bytes = total
        self._stores_since_scan = 0


class _Corrupt(Exception):
    pass


def _key_bytes(key: str) -> bytes:
    if not isinstance(key, str):
        raise TypeError(f"a disk-cache key is a str, not {type(key).__name__}")
    return key.encode("utf-8", "surrogatepass")


def _decode(blob: bytes, key_bytes: bytes) -> bytes | None:
    """The payload of an entry for `key_bytes`; None when the entry is another key's; raises
    _Corrupt (with the reason) when the entry is damaged."""
    if len(blob) < _HEADER_SIZE:
        raise _Corrupt(f"truncated: {len(blob)} bytes, shorter than a header")
    magic, version, key_len, payload_len = _PREFIX.unpack_from(blob)
    if magic != _MAGIC:
        raise _Corrupt("not a kiln cache entry")
    if version != FORMAT_VERSION:
        raise _Corrupt(f"entry format {version}, expected {FORMAT_VERSION}")
    want = _HEADER_SIZE + key_len + payload_len
    if len(blob) != want:
        raise _Corrupt(f"{len(blob)} bytes, the header says {want} (truncated?)")
    view = memoryview(blob)
    digest = hashlib.sha256(view[:_PREFIX.size])
    digest.update(view[_HEADER_SIZE:])
    if digest.digest() != blob[_PREFIX.size:_HEADER_SIZE]:
        raise _Corrupt("checksum mismatch")
    if view[_HEADER_SIZE:_HEADER_SIZE + key_len] != key_bytes:
        return None
    return blob[_HEADER_SIZE + key_len:]


def _unlink(path, strict: bool = False) -> bool:
    """Remove a file; True when this call removed it. Errors other than 'already gone' are
    raised when `strict`, else ignored."""
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False
    except OSError:
        if strict:
            raise
        return False


def _remove_if_same(path: Path, inode: int) -> None:
    """Remove the corrupt file just read, unless another process has meanwhile replaced it."""
    try:
        if os.stat(path).st_ino == inode:
            os.unlink(path)
    except OSError:
        pass


_DEFAULT: tuple[tuple, DiskCache] | None = None
_DEFAULT_LOCK = threading.Lock()


def default_disk_cache() -> DiskCache:
    """The process's DiskCache for the current environment: the same object while
    `KILN_CACHE_DIR`, `KILN_CACHE_MAX_BYTES`, `XDG_CACHE_HOME` and `HOME` are unchanged (so a
    cache that disabled itself stays disabled), a new one when they change."""
    global _DEFAULT
    env = tuple(os.environ.get(v) for v in ("KILN_CACHE_DIR", "KILN_CACHE_MAX_BYTES",
                                            "XDG_CACHE_HOME", "HOME"))
    with _DEFAULT_LOCK:
        if _DEFAULT is None or _DEFAULT[0] != env:
            _DEFAULT = (env, DiskCache())
        return _DEFAULT[1]
