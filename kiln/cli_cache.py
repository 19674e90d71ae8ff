"""`kiln cache info` and `kiln cache clear`: the disk cache of compiled machine code
(runtime/disk_cache.py), from the command line (wired in kiln/cli.py)."""
from __future__ import annotations

import sys


def _size(n: int) -> str:
    """`1536` -> `'1.5 KiB (1536 bytes)'`; `12` -> `'12 bytes'`."""
    if n < 1024:
        return f"{n} bytes"
    scaled, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB"):
        if scaled < 1024:
            break
        scaled, unit = scaled / 1024, bigger
    return f"{scaled:.1f} {unit} ({n} bytes)"


def _cache_off_line(info: dict) -> str:
    import os

    return (f"disk cache: off ({info['disabled_reason']}; "
            f"KILN_CACHE_DIR={os.environ.get('KILN_CACHE_DIR', '')!r})")


def _cache_command(action):
    """Run `action(cache)` on the default disk cache, printing its warnings as one line each
    (not Python's two-line format); exit status 1 when the cache cannot use its folder."""
    import warnings

    from kiln.runtime.disk_cache import KilnCacheWarning, default_disk_cache

    def run(ns) -> int:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", KilnCacheWarning)
            cache = default_disk_cache()
            rc = action(cache)
        for w in caught:
            print(f"kiln cache: warning: {w.message}", file=sys.stderr)
        return 1 if rc == 0 and cache.path is not None and not cache.enabled else rc
    return run


def _cache_info(cache) -> int:
    info = cache.info()
    if info["path"] is None:
        print(_cache_off_line(info))
        return 0
    print(f"path:    {info['path']}")
    print(f"entries: {info['entries']}")
    print(f"size:    {_size(info['bytes'])}; at most {_size(info['max_bytes'])}")
    print("status:  " + ("enabled" if info["enabled"] else
                         f"disabled ({info['disabled_reason']})"))
    return 0


def _cache_clear(cache) -> int:
    before = cache.info()
    if before["path"] is None:
        print(_cache_off_line(before) + "; nothing to clear")
        return 0
    removed = cache.clear()
    after = cache.info()
    print(f"removed {removed} entries, {_size(before['bytes'] - after['bytes'])}, "
          f"from {before['path']}")
    if after["entries"]:
        print(f"kiln cache: {after['entries']} entries could not be removed", file=sys.stderr)
        return 1
    return 0


info = _cache_command(_cache_info)
clear = _cache_command(_cache_clear)


CACHE_HELP = """\
Kiln keeps the machine code it compiles in a disk cache, so a later process loads it instead
of compiling again. `kiln cache info` prints the cache's folder, how many entries it holds and
their size; `kiln cache clear` removes them all. Exit status 1 when the folder cannot be
used (a warning says why).

environment:
  KILN_CACHE_DIR        the cache's folder (entries go in a subfolder per format version);
                        default $XDG_CACHE_HOME/kiln, else ~/.cache/kiln; `off` turns it off
  KILN_CACHE_MAX_BYTES  size cap, e.g. 1073741824, 512M or 2GiB (default 1 GiB); the least
                        recently used entries are removed past it

examples:
  kiln cache info
  KILN_CACHE_DIR=/tmp/kc kiln cache clear
"""
