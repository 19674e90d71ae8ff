"""The memory plan as a picture: time (schedule steps, in launch order) across, arena offset
up, each planned temp a rectangle over the steps it is live in (`ir.schedule.live_ranges`) at
the bytes memory planning gave it (`Buffer.offset`, `Buffer.nbytes`). The bytes live at each
step are drawn as a line, the planned arena and the naive size (every temp in bytes of its
own) as two bars, so reuse shows as the gap between them.
"""
from __future__ import annotations

from html import escape

from kiln.ir.schedule import Launch, Schedule, live_ranges, step_kind

from .diagram import count
from .svg import num

STEP_W = 30.0          # one schedule step across
PLOT_H = 380.0         # the arena's height
AXIS_W = 90.0          # room for the offset labels
LABELS_H = 110.0       # room for the step names under the plot
BARS_W = 150.0         # the planned / naive bars on the right
TOP = 30.0


def memory_svg(s: Schedule, prefix: str, mlir_key) -> tuple[str, dict, str]:
    """(`<svg>` markup, box id -> details, one-line summary) of a planned schedule; ids
    start with `prefix` (`s4-b0`: buffer 0, `s4-t3`: step 3)."""
    live = live_ranges(s)
    temps = [b for b in s.buffers if b.kind == "temp" and b.planned]
    arena = s.arena_bytes or 0
    naive = s.naive_bytes or 0
    scale = PLOT_H / max(arena, 1)
    steps = len(s.steps)
    plot_w = max(steps, 1) * STEP_W
    width, height = AXIS_W + plot_w + BARS_W, TOP + PLOT_H + LABELS_H
    out = [f'<svg class="graph memory" id="{prefix}-svg" data-w="{num(width)}" '
           f'data-h="{num(height)}" viewBox="0 0 {num(width)} {num(height)}">',
           f'<g transform="translate({num(AXIS_W)},{num(TOP)})">']
    out += _axes(arena, plot_w, scale)
    details: dict = {}
    out += _buffers(s, temps, live, scale, prefix, details)
    out.append(_live_line(s, temps, live, scale))
    for i, step in enumerate(s.steps):
        box_id = f"{prefix}-t{i}"
        details[box_id] = _step_details(i, step, mlir_key)
        out.append(_step_label(box_id, i, step))
    out.append("</g>")
    out += _bars(arena, naive, AXIS_W + plot_w + 30)
    out.append("</svg>")
    saved = f", {100 * (naive - arena) / naive:.0f}% less" if naive else ""
    summary = (f"{count(len(s.steps), 'step')}, {count(len(temps), 'temp')} in one arena: "
               f"planned peak {_bytes(arena)}, naive peak {_bytes(naive)}{saved}")
    return "\n".join(out), details, summary


def _buffers(s: Schedule, temps: list, live: dict, scale: float, prefix: str,
             details: dict) -> list:
    """A rectangle per temp: across the steps it lives in, up from its arena offset."""
    out = []
    readers = _readers(s)
    for k, b in enumerate(temps):
        box_id = f"{prefix}-b{k}"
        first, last = live[id(b)]
        details[box_id] = _buffer_details(s, b, first, last, readers)
        last = min(last, len(s.steps) - 1)     # NOTE: live to the end: drawn to the last step
        y = PLOT_H - (b.offset + b.nbytes) * scale
        tip = (f"%{b.name}: {b.type}, bytes [{b.offset}, {b.offset + b.nbytes}), "
               f"live over steps {first}-{last}")
        out.append(f'<g class="box buffer" id="{box_id}" data-box="" style="--hue:'
                   f'{(k * 47) % 360}"><title>{escape(tip)}</title>'
                   f'<rect class="frame" x="{num(first * STEP_W)}" y="{num(y)}" '
                   f'width="{num((last - first + 1) * STEP_W)}" '
                   f'height="{num(max(b.nbytes * scale, 1.0))}"/>')
        if b.nbytes * scale >= 13:
            out.append(f'<text x="{num(first * STEP_W + 4)}" y="{num(y + 12)}">'
                       f'%{escape(b.name)}</text>')
        out.append("</g>")
    return out


def _axes(arena: int, plot_w: float, scale: float) -> list:
    out = [f'<rect class="plot" width="{num(plot_w)}" height="{num(PLOT_H)}"/>']
    for frac in (0, 0.25, 0.5, 0.75, 1):
        offset = round(arena * frac)
        y = PLOT_H - offset * scale
        out.append(f'<line class="grid" x1="0" x2="{num(plot_w)}" y1="{num(y)}" y2="{num(y)}"/>'
                   f'<text class="axis" x="-6" y="{num(y + 4)}" text-anchor="end">'
                   f"{escape(_bytes(offset))}</text>")
    out.append('<text class="axis" x="0" y="-12">arena offset (bytes) ↑ · schedule step '
               '(time) →</text>')
    return out


def _live_line(s: Schedule, temps: list, live: dict, scale: float) -> str:
    """The bytes of temps live at each step: the least any plan could use."""
    points = []
    for i in range(len(s.steps)):
        used = sum(b.nbytes for b in temps if live[id(b)][0] <= i <= live[id(b)][1])
        y = PLOT_H - used * scale
        points += [f"{num(i * STEP_W)},{num(y)}", f"{num((i + 1) * STEP_W)},{num(y)}"]
    if not points:
        return ""
    return (f'<polyline class="live" points="{" ".join(points)}"><title>bytes of temps live '
            "at this step</title></polyline>")


def _step_label(box_id: str, i: int, step) -> str:
    name = _step_name(step)
    x = i * STEP_W
    return (f'<g class="box step" id="{box_id}" data-box=""><title>step {i}: '
            f'{escape(step_kind(step))} {escape(name)}</title>'
            f'<rect class="frame" x="{num(x)}" y="{num(PLOT_H)}" width="{num(STEP_W)}" '
            f'height="{num(LABELS_H - 10)}"/>'
            f'<text transform="translate({num(x + STEP_W / 2 + 4)},{num(PLOT_H + 8)}) '
            f'rotate(60)">{i} {escape(name)}</text></g>')


def _bars(arena: int, naive: int, x: float) -> list:
    """Planned and naive peaks as two bars on one scale (the larger fills the plot)."""
    scale = PLOT_H / max(arena, naive, 1)
    out = []
    for k, (label, value) in enumerate((("planned", arena), ("naive", naive))):
        h = value * scale
        bx = x + k * 55
        out.append(f'<g class="peak {label}"><title>{label} peak: {value} bytes</title>'
                   f'<rect x="{num(bx)}" y="{num(TOP + PLOT_H - h)}" width="40" '
                   f'height="{num(h)}"/><text class="axis" x="{num(bx + 20)}" '
                   f'y="{num(TOP + PLOT_H + 16)}" text-anchor="middle">{label}</text>'
                   f'<text class="axis" x="{num(bx + 20)}" y="{num(TOP + PLOT_H - h - 6)}" '
                   f'text-anchor="middle">{escape(_bytes(value))}</text></g>')
    return out


def _readers(s: Schedule) -> dict:
    out: dict = {}
    for i, step in enumerate(s.steps):
        for b in step.ins:
            out.setdefault(id(b), []).append(i)
    return out


def _buffer_details(s: Schedule, b, first: int, last: int, readers: dict) -> dict:
    writer = s.steps[first]
    reads = readers.get(id(b), [])
    return {"title": f"buffer %{b.name}", "rows": [
        ["type", str(b.type)],
        ["bytes", f"[{b.offset}, {b.offset + b.nbytes}) in arena {b.arena}: {b.nbytes} "
                  f"planned for {b.type.nbytes}"],
        ["live", f"steps {first} to {last}" + (" (to the end: an output)"
                                               if last == len(s.steps) else "")],
        ["written by", f"step {first}: {step_kind(writer)} {_step_name(writer)}"],
        ["read by", ", ".join(f"step {i}" for i in reads) or "(no step)"]]}


def _step_details(i: int, step, mlir_key) -> dict:
    ins = ", ".join(f"%{b.name}: {b.type}" for b in step.ins)
    outs = ", ".join(f"%{b.name}: {b.type}" for b in step.outs)
    out = {"title": f"step {i}: {step_kind(step)} {_step_name(step)}",
           "rows": [["reads", ins or "(none)"], ["writes", outs or "(none)"]]}
    if step.loc is not None:
        out["rows"].append(["location", str(step.loc)])
        source = getattr(step.loc, "source", None)
        if source:
            out["source"] = source
    if isinstance(step, Launch):
        out["kernel"] = step.kernel.name
        out["mlir"] = mlir_key(step.kernel.name)
    return out


def _step_name(step) -> str:
    return f"@{step.kernel.name}" if isinstance(step, Launch) else step.op


def _bytes(n: int) -> str:
    """`1536` -> `'1.5 KiB'`, `12` -> `'12 B'`."""
    size, unit = float(n), "B"
    for bigger in ("KiB", "MiB", "GiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
