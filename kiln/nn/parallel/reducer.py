"""The eager gradient reduction of DDP: buckets filled as the backward makes the gradients,
each all-reduced (averaged) as soon as it is complete, while the backward goes on.

A step is what one `backward()` averages: it opens at DDP's forward and takes in every later
forward until a backward begins (two forwards, then one backward of a loss over both, is one
step, as in PyTorch). Each forward's proxy nodes (proxies.py) hand their parameters'
gradients to the step, and every one of them is also an input of the step's sentinel node,
so the tape runs the sentinel after all of them: there (`finish`) the step ends.

During the backward each gradient is added into the parameter's slot of its bucket (the
first one on top of the `.grad` accumulated so far, as PyTorch reduces `.grad` itself after
`no_sync()` steps). The proxies the forward's outputs reach are "expected": once a
bucket's expected gradients are all in, it starts its all-reduce on the communication
thread, buckets in index order on every rank (a bucket that fills early waits for the ones
before it). The last bucket is sent by the sentinel, with the rest that are still waiting:
so every rank sends every bucket, in order, whatever its backward reached.

A gradient from a proxy the outputs do not reach (a loss term the module stored, say) may
come after its bucket was sent: it is kept, flagged in the last bucket, and every rank
then all-reduces a correction for each bucket any rank flagged. With each bucket travel one
"used" flag per parameter: a parameter no rank gave a gradient keeps its `.grad` (None stays
None, as in PyTorch); the others get the average over all ranks (zeros from the ranks that
did not use it).
"""
from __future__ import annotations

import numpy as np

from kiln.frontend.autograd import TapeNode, save
from kiln.frontend.tensor import Tensor
from kiln.ir.errors import KilnError


class ReductionError(KilnError, RuntimeError):
    """A DDP step whose gradients cannot be reduced (PyTorch raises RuntimeError)."""


_SECOND_BACKWARD = (
    "not supported yet: a second backward through the outputs of a DistributedDataParallel "
    "forward whose gradients were already averaged (backward(retain_graph=True) and then "
    "backward again?); add the losses and call backward() once per forward")


class Reducer:
    def __init__(self, params: list, buckets: list, engine_of, as_views: bool):
        self.params = params
        self.buckets = buckets
        self.engine_of = engine_of      # NOTE: () -> the default group's engine, looked up late
        self.as_views = as_views
        self.where = {}                 # param index -> (bucket, member position)
        for b in buckets:
            for k, i in enumerate(b.members):
                self.where[i] = (b, k)
        self.step: Step | None = None   # the open step

    def open_step(self, live: list[bool]) -> "Step":
        """The step a forward joins: the open one when its backward has not begun, else a
        new one. `live`: which parameters require grad in this forward."""
        step = self.step
        if step is not None and not step.done:
            if step.started:
                self.step = None
                for work in step.works:     # NOTE: the buffers are the next step's too
                    work.wait()
                raise ReductionError(
                    "DistributedDataParallel: expected to have finished reduction in the "
                    "prior iteration before starting a new one: the backward that began "
                    "reducing the gradients stopped before the end (it raised?)")
            step.add_live(live)
            return step
        self.step = Step(self, live)
        return self.step


class Step:
    """One step's reduction (see the module docstring)."""

    def __init__(self, reducer: Reducer, live: list[bool]):
        self.r = reducer
        n, nb = len(reducer.params), len(reducer.buckets)
        self.live = list(live)
        self.expected = [0] * n         # proxies the forwards' outputs reach, per parameter
        self.got = [0] * n
        self.filled = [False] * n
        self.used = [False] * n         # NOTE: this rank gave it a gradient (or had a .grad)
        self.late = [0] * nb
        self.late_grads: dict = {}      # param index -> its late gradients (scaled), summed
        self.late_used: set = set()
        self.started = self.done = False
        self.launched = 0
        self.works: list = []
        self.scale = 1.0 / reducer.engine_of().group.size
        self.sentinel = _sentinel(self.finish)

    def add_live(self, live: list[bool]) -> None:
        self.live = [a or b for a, b in zip(self.live, live)]

    def expect(self, members: list[int]) -> None:
        """A proxy over `members` that the forward's outputs reach."""
        for i in members:
            self.expected[i] += 1

    # ---- during the backward --------------------------------------------------------------
    def contribute(self, members: list[int], gs: list, expected: bool) -> None:
        """One proxy's gradients (a Tensor or None per member)."""
        if self.done:
            raise ReductionError(_SECOND_BACKWARD)
        if not self.started:
            self._start()
        r = self.r
        for i, g in zip(members, gs):
            b, k = r.where[i]
            if b.index < self.launched:
                self._keep_late(i, b, g)
            elif not self.filled[i]:
                self._fill(i, b.slot(k), g)
            elif g is not None:
                slot = b.slot(k).reshape(g._data.shape)
                np.add(slot, g._data * self.scale if self.scale != 1 else g._data, out=slot)
                self.used[i] = True
        if expected:
            for i in members:
                self.got[i] += 1
                if self.got[i] == self.expected[i]:
                    self.pending[r.where[i][0].index] -= 1
            self._launch_ready()

    def _start(self) -> None:
        self.started = True
        self.pending = [sum(1 for i in b.members if self.expected[i]) for b in self.r.buckets]
        self._launch_ready()

    def _fill(self, i: int, slot: np.ndarray, g) -> None:
        """The slot's first value: (`.grad` so far + g) / world size, in one pass when there
        is no `.grad` yet (the sum over ranks is then the average: no pass after it)."""
        self.filled[i] = True
        p = self.r.params[i]
        old = p._grad if self.live[i] else None
        shaped = slot.reshape(p._data.shape)
        self.used[i] = old is not None or g is not None
        if old is None and g is None:
            if p._grad is not None and np.shares_memory(p._grad._data, slot):
                p._grad = Tensor._wrap(p._grad._data.copy())   # NOTE: a frozen bucket view
            slot[...] = 0
        elif old is None:
            np.multiply(g._data, self.scale, out=shaped, casting="unsafe")
        else:
            if g is None:
                np.copyto(shaped, old._data)
            else:
                np.add(old._data, g._data, out=shaped, casting="unsafe")
            if self.scale != 1:
                slot *= self.scale

    def _keep_late(self, i: int, b, g) -> None:
        """A gradient for a bucket already sent: kept for the correction (`finish`)."""
        if g is None:
            return
        add = g._data.reshape(-1) * self.scale
        self.late_grads[i] = add if i not in self.late_grads else self.late_grads[i] + add
        if not self.used[i]:
            self.late_used.add(i)
        self.late[b.index] = 1

    def _launch_ready(self) -> None:
        last = len(self.r.buckets) - 1      # NOTE: sent by finish(), with the late flags
        while self.launched < last and self.pending[self.launched] == 0:
            self._launch(self.r.buckets[self.launched])

    def _launch(self, b) -> None:
        for k, i in enumerate(b.members):
            if not self.filled[i]:
                self._fill(i, b.slot(k), None)
        b.used[:] = [1 if self.used[i] else 0 for i in b.members]
        if b.late_count:
            b.late[:] = self.late
        self.works.append(self.r.engine_of().submit(bucket_job(b)))
        self.launched += 1

    # ---- the sentinel: the end of the step ------------------------------------------------
    def finish(self) -> None:
        """Send the buckets still waiting (all ranks send all, in order), wait for them, run
        the corrections any rank asked for, and write the averages into `.grad`."""
        if self.done:
            raise ReductionError(_SECOND_BACKWARD)
        self.done = True
        if self.r.step is self:
            self.r.step = None
        buckets = self.r.buckets
        while self.launched < len(buckets):
            self._launch(buckets[self.launched])
        for work in self.works:
            work.wait()
        late = buckets[-1].late.copy()
        for b in buckets:
            if late[b.index] > 0:
                self._correct(b)
        for b in buckets:
            self._write(b)

    def _correct(self, b) -> None:
        """Add every rank's late gradients for bucket b (zeros from the ranks without)."""
        extra = np.zeros(b.grad_size + len(b.members), b.buffer.dtype)
        for k, i in enumerate(b.members):
            if i in self.late_grads:
                extra[b.offsets[k]:b.offsets[k] + b.sizes[k]] = self.late_grads[i]
            if i in self.late_used:
                extra[b.grad_size + k] = 1
        from kiln.distributed import jobs
        self.r.engine_of().run(jobs.AllReduce(extra, "sum"))
        b.buffer[:len(extra)] += extra

    def _write(self, b) -> None:
        for k, i in enumerate(b.members):
            if self.live[i] and b.used[k] > 0.5:
                self._write_grad(self.r.params[i], b.slot(k))

    def _write_grad(self, p, slot: np.ndarray) -> None:
        value = slot.reshape(p._data.shape)
        if p._grad is not None and p._grad._data.shape == value.shape:
            np.copyto(p._grad._data, value)
            p._grad._version[0] += 1
        else:
            p.grad = Tensor._wrap(value if self.r.as_views else value.copy())


def _sentinel(finish) -> Tensor:
    """A scalar on the tape whose node calls `finish()` when a backward reaches it: every
    proxy node of the step takes it as an input, so the tape runs it after all of them."""
    s = Tensor._wrap(np.zeros((), np.float32))

    def vjp(ctx, g):
        finish()
        return []
    node = TapeNode("ddp_step_done", vjp, [], [save(s)], None)
    s._requires_grad = True
    s.grad_fn = node
    s._out_index = 0
    s._view_version = s._version[0]
    return s


def bucket_job(bucket):
    """The all-reduce (a sum) of `bucket`, whose slots hold gradients already divided by the
    world size: their sum is the average.

    NOTE: the communication thread needs the GIL after each of its steps, and it gets it
    only between the NumPy calls of the backward running meanwhile: it is given one step (no
    division after the sum), with the signature check for a step's first bucket alone (the
    buckets' layout was compared across ranks when the model was wrapped)."""
    from kiln.distributed import jobs
    job = jobs.AllReduce(bucket.buffer, "sum")
    job.check = bucket.index == 0
    return job
