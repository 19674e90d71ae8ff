"""`CosineSimilarity`: `kiln.nn.functional.cosine_similarity` as a module.

    >>> import kiln
    >>> from kiln import nn
    >>> nn.CosineSimilarity(dim=0)(kiln.tensor([3.0, 4.0]), kiln.tensor([3.0, 4.0])).item()
    1.0
"""
from __future__ import annotations

from . import functional as F
from .module import Module


class CosineSimilarity(Module):
    """Cosine of the angle between x1 and x2 along `dim`, norms clamped at eps.

    >>> CosineSimilarity()
    CosineSimilarity()
    """

    def __init__(self, dim: int = 1, eps: float = 1e-8):
        super().__init__()
        self.dim = dim
        self.eps = eps

    def forward(self, x1, x2):
        return F.cosine_similarity(x1, x2, self.dim, self.eps)
