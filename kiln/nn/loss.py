"""Loss modules: each holds its options and calls its `kiln.nn.functional` function.

    >>> import kiln
    >>> from kiln import nn
    >>> loss_fn = nn.CrossEntropyLoss()
    >>> loss_fn
    CrossEntropyLoss()
    >>> round(loss_fn(kiln.tensor([[2.0, 0.0, 0.0]]), kiln.tensor([0])).item(), 4)
    0.2395
"""
from __future__ import annotations

from . import functional as F
from .module import Module


class _Loss(Module):
    def __init__(self, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__()
        self.reduction = F.legacy_reduction(size_average, reduce, reduction)


class _WeightedLoss(_Loss):
    """A loss with a per-class `weight`, kept as a buffer (it is in the state dict)."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)


class L1Loss(_Loss):
    """Mean (or sum) absolute error |input - target|.

    >>> import kiln
    >>> L1Loss()(kiln.tensor([1.0, 2.0]), kiln.tensor([0.0, 4.0])).item()
    1.5
    """

    def forward(self, input, target):
        return F.l1_loss(input, target, reduction=self.reduction)


class MSELoss(_Loss):
    """Mean (or sum) squared error (input - target)**2.

    >>> import kiln
    >>> MSELoss(reduction="sum")(kiln.tensor([1.0, 2.0]), kiln.tensor([0.0, 4.0])).item()
    5.0
    """

    def forward(self, input, target):
        return F.mse_loss(input, target, reduction=self.reduction)


class NLLLoss(_WeightedLoss):
    """Negative log-likelihood of class indices under log-probabilities [N, C, ...].

    >>> import kiln
    >>> logp = kiln.log(kiln.tensor([[0.5, 0.5], [0.9, 0.1]]))
    >>> round(NLLLoss(ignore_index=1)(logp, kiln.tensor([0, 1])).item(), 4)
    0.6931
    """

    def __init__(self, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean"):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index

    def forward(self, input, target):
        return F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                          reduction=self.reduction)


class CrossEntropyLoss(_WeightedLoss):
    """log_softmax + NLL over logits [N, C, ...], against class indices [N, ...] or class
    probabilities [N, C, ...]; with weight, ignore_index and label_smoothing.

    >>> import kiln
    >>> loss = CrossEntropyLoss(label_smoothing=0.1)(kiln.zeros(2, 5), kiln.tensor([1, 4]))
    >>> round(loss.item(), 5)   # log(5): uniform logits cost the same under any smoothing
    1.60944
    """

    def __init__(self, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input, target):
        return F.cross_entropy(input, target, weight=self.weight,
                               ignore_index=self.ignore_index, reduction=self.reduction,
                               label_smoothing=self.label_smoothing)


class BCELoss(_WeightedLoss):
    """Binary cross-entropy of probabilities in [0, 1] (logs clamped at -100).

    >>> import kiln
    >>> round(BCELoss()(kiln.tensor([0.8, 0.4]), kiln.tensor([1.0, 0.0])).item(), 4)
    0.367
    """

    def forward(self, input, target):
        return F.binary_cross_entropy(input, target, weight=self.weight,
                                      reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Sigmoid + binary cross-entropy in one numerically stable step; pos_weight scales the
    positive term per class.

    >>> import kiln
    >>> round(BCEWithLogitsLoss()(kiln.tensor([100.0, -100.0]), kiln.tensor([1.0, 0.0]))
    ...       .item(), 6)
    0.0
    """

    def __init__(self, weight=None, size_average=None, reduce=None, reduction: str = "mean",
                 pos_weight=None):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, self.weight,
                                                  pos_weight=self.pos_weight,
                                                  reduction=self.reduction)


class KLDivLoss(_Loss):
    """Pointwise KL divergence of log-probabilities `input` from `target` (probabilities,
    or log-probabilities with log_target=True); use reduction="batchmean" for the true KL.

    >>> import kiln
    >>> logq = kiln.log(kiln.tensor([[0.25, 0.75]]))
    >>> round(KLDivLoss(reduction="batchmean")(logq, kiln.tensor([[0.5, 0.5]])).item(), 4)
    0.1438
    """

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean",
                 log_target: bool = False):
        super().__init__(size_average, reduce, reduction)
        self.log_target = log_target

    def forward(self, input, target):
        return F.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)


class SmoothL1Loss(_Loss):
    """Squared error below `beta` (halved, over beta), absolute error above it.

    >>> import kiln
    >>> SmoothL1Loss()(kiln.tensor([0.5, 3.0]), kiln.zeros(2)).item()
    1.3125
    """

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean",
                 beta: float = 1.0):
        super().__init__(size_average, reduce, reduction)
        self.beta = beta

    def forward(self, input, target):
        return F.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(_Loss):
    """Halved squared error below `delta`, delta * (|d| - delta / 2) above it.

    >>> import kiln
    >>> HuberLoss(delta=2.0)(kiln.tensor([0.5, 3.0]), kiln.zeros(2)).item()
    2.0625
    """

    def __init__(self, reduction: str = "mean", delta: float = 1.0):
        super().__init__(reduction=reduction)
        self.delta = delta

    def forward(self, input, target):
        return F.huber_loss(input, target, reduction=self.reduction, delta=self.delta)
