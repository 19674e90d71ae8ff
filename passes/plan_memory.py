"""Memory planning: place every `temp` buffer of a schedule in one arena, reusing bytes.

Liveness is over launch order (`ir.schedule.live_ranges`): a temp lives from the step that
writes it to the last step that reads it. Temps are placed first-fit, largest first, at the
lowest 64-byte-aligned offset no buffer live at the same time occupies (the classic greedy
for offline storage allocation; TFLite and XLA's heap simulators do the same). The plan
records the arena's size and the naive size (every temp side by side).

    >>> from kiln.ir.schedule_text import parse_schedule
    >>> s = plan_memory(parse_schedule('''
    ... schedule @f(%x: f32[8,8]) {
    ...   buffer %a: f32[8,8] temp
    ...   buffer %b: f32[8,8] temp
    ...   buffer %d: f32[8,8] temp
    ...   buffer %c: f32[8,8] output
    ...   call matmul (%x, %x) -> (%a)
    ...   call matmul (%a, %a) -> (%b)
    ...   call matmul (%b, %b) -> (%d)
    ...   call matmul (%d, %d) -> (%c)
    ...   return %c
    ... }'''))
    >>> [b.offset for b in s.buffers[:3]], s.arena_bytes, s.naive_bytes
    ([0, 256, 0], 512, 768)
"""
from __future__ import annotations

from kiln.ir.schedule import Schedule, live_ranges, verify_schedule

ALIGN = 64


def _aligned(n: int) -> int:
    return max(ALIGN, -(-n // ALIGN) * ALIGN)


def plan_memory(s: Schedule) -> Schedule:
    """Give each temp of `s` (in place) an arena offset; returns `s`, verified."""
    live = live_ranges(s)
    temps = [b for b in s.buffers if b.kind == "temp"]
    order = sorted(temps, key=lambda b: (-b.type.nbytes, live.get(id(b), (0, 0))[0]))
    placed: list = []
    for b in order:
        size = _aligned(b.type.nbytes)
        span = live.get(id(b), (0, 0))
        busy = sorted((p.offset, p.offset + p.nbytes) for p in placed
                      if _overlap(span, live.get(id(p), (0, 0))))
        offset = 0
        for lo, hi in busy:
            if offset + size <= lo:
                break
            offset = max(offset, hi)
        b.arena, b.offset, b.nbytes = 0, offset, size
        placed.append(b)
    s.arena_bytes = max((b.offset + b.nbytes for b in temps), default=0)
    s.naive_bytes = sum(_aligned(b.type.nbytes) for b in temps)
    return verify_schedule(s)


def _overlap(a, b) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]
