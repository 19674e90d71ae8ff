"""The error every failed collective raises, naming the rank that caused it."""
from __future__ import annotations

from kiln.ir.errors import KilnError


class DistError(KilnError, RuntimeError):
    """A collective could not complete: a rank died, raised or left, the ranks called
    different collectives (or with different shapes), or it ran past the group's timeout.

    `failed_rank` is the rank that caused it (None when no single rank did, e.g. a shape
    mismatch). After a DistError the process group is broken: every later collective raises
    the same error at once (MPI cannot cancel a collective a dead rank never joined).
    """

    category = "distributed"

    def __init__(self, message: str, *, failed_rank: int | None = None,
                 hint: str | None = None):
        self.failed_rank = failed_rank
        super().__init__(message, hint=hint)
