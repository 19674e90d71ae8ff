"""The text table of `kiln.profiler.profile.table()`, laid out like torch.profiler's
`key_averages().table()`: one row per op or kernel, the most expensive first, then the
totals that tie the rows to the profiled block's wall time.

    >>> from kiln.profiler import Row
    >>> print(format_rows([Row("@f/fused_0", "kernel", 2, 10.0, 10.0, 4096, 512, "",
    ...                        "demo.py:29")], wall_us=20.0, shapes=False))
    Name        Kind    Calls  Self ms  Self %  Total ms  Avg us  GB/s  GFLOP/s  Location
    ----------  ------  -----  -------  ------  --------  ------  ----  -------  ----------
    @f/fused_0  kernel      2    0.010  50.00%     0.010    5.00  0.41     0.05  demo.py:29
"""
from __future__ import annotations

_SORT_KEYS = {
    "self_time": lambda r: -r.self_us,
    "total_time": lambda r: -r.total_us,
    "calls": lambda r: -r.calls,
    "avg_time": lambda r: -r.avg_us,
    "gbps": lambda r: -r.gbps,
    "gflops": lambda r: -r.gflops,
    "name": lambda r: r.name,
}
# NOTE: torch.profiler's names for the same orders, so a PyTorch script's call works
_TORCH_NAMES = {"self_cpu_time_total": "self_time", "cpu_time_total": "total_time",
                "self_cuda_time_total": "self_time", "cuda_time_total": "total_time",
                "count": "calls"}
_NAME_WIDTH = 48


def format_table(prof, sort_by: str, row_limit: int, group_by_shape: bool) -> str:
    key = _TORCH_NAMES.get(sort_by, sort_by)
    if key not in _SORT_KEYS:
        raise ValueError(f"table(sort_by={sort_by!r}): sort by one of "
                         f"{', '.join(sorted(_SORT_KEYS) + sorted(_TORCH_NAMES))}")
    if type(row_limit) is not int or row_limit < -1:
        raise ValueError(f"table(row_limit={row_limit!r}): a number of rows, or -1 for all")
    rows = sorted(prof.key_averages(group_by_shape), key=_SORT_KEYS[key])
    shown = rows if row_limit == -1 else rows[:row_limit]
    text = format_rows(shown, prof.all_threads_self_us, group_by_shape)
    more = f"\n({len(rows) - len(shown)} more rows)" if len(shown) < len(rows) else ""
    return f"{text}{more}\n{totals(prof)}"


def format_rows(rows, wall_us: float, shapes: bool) -> str:
    """The rows as aligned columns; `Self %` is each row's share of `wall_us` (the summed
    self time of all threads: the block's wall time when only one thread ran)."""
    head = ["Name", "Kind", "Calls", "Self ms", "Self %", "Total ms", "Avg us", "GB/s",
            "GFLOP/s"] + (["Shapes"] if shapes else []) + ["Location"]
    body = []
    for r in rows:
        share = f"{100 * r.self_us / wall_us:.2f}%" if wall_us > 0 else "-"
        cells = [_short(r.name), r.kind, str(r.calls), f"{r.self_us / 1e3:.3f}", share,
                 f"{r.total_us / 1e3:.3f}", f"{r.avg_us:.2f}", f"{r.gbps:.2f}",
                 f"{r.gflops:.2f}"] + ([r.shapes] if shapes else []) + [r.location]
        body.append(cells)
    widths = [max(len(c[i]) for c in [head] + body) for i in range(len(head))]
    # NOTE: text columns align left, numbers right
    left = {0, 1, len(head) - 1} | ({len(head) - 2} if shapes else set())

    def line(cells):
        return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(head), rule] + [line(c) for c in body])


def _short(name: str) -> str:
    return name if len(name) <= _NAME_WIDTH else name[:_NAME_WIDTH - 3] + "..."


def totals(prof) -> str:
    """How much of the wall time the recorded ops cover, the profiling thread's self times by
    kind against the wall time, and each other thread's self times."""
    threads = prof.thread_self_us()
    main = threads.get(0, {})
    total = sum(main.values())
    wall = prof.wall_us
    lines = [f"Recorded ops cover {_share(prof.recorded_us, wall)} of the wall time "
             f"({prof.recorded_us / 1e3:.3f} ms of {wall / 1e3:.3f} ms on the profiling "
             "thread; the rest is (python) between them and (profiler) bookkeeping)"]
    others = sorted(t for t in threads if t != 0)
    for t in others:
        own = sum(threads[t].values())
        lines.append(f"Thread {t} self time: {own / 1e3:.3f} ms ({_kinds(threads[t])})")
    if others:
        lines.append(f"Self % is of {prof.all_threads_self_us / 1e3:.3f} ms: the self time "
                     f"of all {len(others) + 1} threads")
    lines.append(f"Self time total: {total / 1e3:.3f} ms ({_kinds(main)}) = "
                 f"{_share(total, wall, 1)} of the profiled block's {wall / 1e3:.3f} ms "
                 "wall time" + (" (profiling thread)" if others else ""))
    return "\n".join(lines)


def _kinds(by_kind: dict) -> str:
    return ", ".join(f"{k} {v / 1e3:.3f} ms" for k, v in
                     sorted(by_kind.items(), key=lambda kv: -kv[1]))


def _share(part: float, whole: float, digits: int = 0) -> str:
    return f"{100 * part / whole:.{digits}f}%" if whole > 0 else "-"
