"""Gradient buckets: the parameters cut into groups of about `cap` bytes, one flat buffer each.

As in PyTorch, buckets follow the parameters in reverse order (a backward makes the last
layers' gradients first), hold one dtype each, and the first bucket is small (1 MiB) so that
communication starts early in the backward.
"""
from __future__ import annotations

import dataclasses

import numpy as np

FIRST_BUCKET_BYTES = 1 << 20        # NOTE: PyTorch's _DEFAULT_FIRST_BUCKET_BYTES
DEFAULT_CAP_MB = 25


@dataclasses.dataclass
class Bucket:
    """Parameters `members` (indices into the DDP's parameter list), laid out back to back in
    `buffer` at `offsets`."""

    index: int
    members: list[int]
    offsets: list[int]
    sizes: list[int]
    buffer: np.ndarray

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
    return [_bucket(k, g, params) for k, g in enumerate(groups)]


def _bytes(params, group) -> int:
    return sum(params[i]._data.nbytes for i in group)


def _bucket(index: int, members: list[int], params) -> Bucket:
    sizes = [int(params[i]._data.size) for i in members]
    offsets = list(np.cumsum([0] + sizes[:-1]).astype(int))
    buffer = np.zeros(sum(sizes), params[members[0]]._data.dtype)
    return Bucket(index, members, [int(o) for o in offsets], sizes, buffer)
