"""Gradient buckets: the parameters cut into groups of about `cap` bytes, one flat buffer each.

As in PyTorch, buckets follow the parameters in reverse order (a backward makes the last
layers' gradients first), hold one dtype each, and the first bucket is small (1 MiB) so that
communication starts early in the backward.

What one bucket's all-reduce carries (its `buffer`, the same layout eagerly and under jit):
the members' gradients back to back (`grads`), then one "used" flag per member (1 where this
rank's step gave the parameter a gradient: the sum over ranks says whether any rank did, as
PyTorch's `local_used_map`), and in the last bucket of the list one "late" flag per bucket
(reducer.py: gradients that arrived after their bucket was sent).
"""
from __future__ import annotations

import dataclasses

import numpy as np

FIRST_BUCKET_BYTES = 1 << 20        # NOTE: PyTorch's _DEFAULT_FIRST_BUCKET_BYTES
DEFAULT_CAP_MB = 25


@dataclasses.dataclass
class Bucket:
    """Parameters `members` (indices into the DDP's parameter list), laid out back to back in
    `grads` at `offsets`, followed in `buffer` by their used flags (and late flags)."""

    index: int
    members: list[int]
    offsets: list[int]
    sizes: list[int]
    buffer: np.ndarray
    grad_size: int
    late_count: int = 0             # NOTE: the number of late flags (last bucket only)

    @property
    def grads(self) -> np.ndarray:
        return self.buffer[:self.grad_size]

    @property
    def used(self) -> np.ndarray:
        """One flag per member: after the all-reduce, how many ranks gave it a gradient."""
        return self.buffer[self.grad_size:self.grad_size + len(self.members)]

    @property
    def late(self) -> np.ndarray:
        return self.buffer[self.grad_size + len(self.members):]

    def slot(self, k: int) -> np.ndarray:
        """The flat part of the buffer that holds member k's gradient."""
        return self.buffer[self.offsets[k]:self.offsets[k] + self.sizes[k]]


def assign(params: list, cap_bytes: int) -> list[Bucket]:
    """Buckets over `params` (Parameters, in module order): reverse order, one dtype per
    bucket, the first at most FIRST_BUCKET_BYTES and the others at most `cap_bytes` (a
    parameter larger than the cap gets a bucket of its own)."""
    groups: list[list[int]] = []
    open_by_dtype: dict = {}
    for i in reversed(range(len(params))):
        dtype = params[i]._data.dtype
        group = open_by_dtype.get(dtype)
        limit = FIRST_BUCKET_BYTES if group is not None and group is groups[0] else cap_bytes
        if group is None or _bytes(params, group) + params[i]._data.nbytes > limit:
            group = open_by_dtype[dtype] = []
            groups.append(group)
        group.append(i)
    last = len(groups) - 1
    return [_bucket(k, g, params, len(groups) if k == last else 0)
            for k, g in enumerate(groups)]


def _bytes(params, group) -> int:
    return sum(params[i]._data.nbytes for i in group)


def _bucket(index: int, members: list[int], params, late_count: int) -> Bucket:
    sizes = [int(params[i]._data.size) for i in members]
    offsets = list(np.cumsum([0] + sizes[:-1]).astype(int))
    grad_size = sum(sizes)
    buffer = np.zeros(grad_size + len(members) + late_count, params[members[0]]._data.dtype)
    return Bucket(index, members, [int(o) for o in offsets], sizes, buffer, grad_size,
                  late_count)
