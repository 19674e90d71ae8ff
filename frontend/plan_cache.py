"""Compiled plans on disk: a traced graph's optimized graph and memory-planned schedule.

A warm process (KILN_CACHE_DIR filled by an earlier one) loads the machine code of its
kernels from the disk cache, but would still run the graph passes, build the schedule and
plan memory, and import what they need (networkx alone takes ~0.1 s). The plan is stored next
to the code, keyed by the traced graph's text without its names and source lines
(frontend/plan_names.py: a renamed copy of a program shares its plan, read back with the
copy's names and lines) and by a
stamp of the compiler's own source files (path, size, modification time of every module of
the IR, the passes, the code generator and the runtime), so any change to the compiler gives
new keys. An entry that does not load is reported and the graph is compiled again.

    >>> from kiln.ir.parser import parse
    >>> g = parse('''
    ... graph @f(%x: f32[4]) {
    ...   %0: f32[4] = exp %x
    ...   return %0
    ... }''')
    >>> plan_key(g, "cpu") == plan_key(parse(str(g)), "cpu")
    True
"""
from __future__ import annotations

import pickle
import warnings

PLAN_VERSION = "2"


def plan_key(traced, device_key: str) -> str:
    from kiln.runtime.disk_cache import compiler_stamp, make_key
    from .plan_names import plan_key_text
    return make_key("kiln-plan", PLAN_VERSION, compiler_stamp(), device_key,
                    plan_key_text(traced))


def load_plan(traced, device_key: str):
    """(optimized graph, planned schedule, schedule text before planning) or None."""
    from kiln.runtime.disk_cache import KilnCacheWarning, default_disk_cache
    disk = default_disk_cache()
    if not disk.enabled:
        return None
    data = disk.get(plan_key(traced, device_key))
    if data is None:
        return None
    try:
        from .plan_names import rebind
        return rebind(pickle.loads(data), traced)
    except Exception as e:  # NOTE: a damaged entry costs a compile, never a wrong result
        warnings.warn(f"kiln: a cached plan could not be loaded ({type(e).__name__}: {e}); "
                      "compiling again", KilnCacheWarning, stacklevel=3)
        return None


def store_plan(traced, device_key: str, optimized, schedule, schedule_text: str) -> None:
    from kiln.runtime.disk_cache import default_disk_cache
    disk = default_disk_cache()
    if not disk.enabled:
        return
    try:
        from .plan_names import plan_payload
        data = pickle.dumps(plan_payload(traced, optimized, schedule, schedule_text),
                            protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:       # NOTE: a graph holding something unpicklable is just not cached
        return
    disk.put(plan_key(traced, device_key), data)
