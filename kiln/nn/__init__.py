"""`kiln.nn`: modules, layers, losses, `functional` and `init`, spelled like `torch.nn`.

    >>> import kiln
    >>> from kiln import nn
    >>> model = nn.Sequential(nn.Linear(3, 1))
    >>> model(kiln.tensor([1.0, 2.0, 3.0])).shape
    kiln.Size([1])
"""
from . import functional, init, parallel, utils  # noqa: F401
from .activation import (ELU, GELU, LeakyReLU, LogSoftmax, ReLU, Sigmoid, SiLU, Softmax,
                         Softplus, Tanh)
from .attention import MultiheadAttention
from .container import ModuleDict, ModuleList, Sequential
from .distance import CosineSimilarity
from .dropout import Dropout
from .linear import Flatten, Identity, Linear, Unflatten
from .loss import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, KLDivLoss, L1Loss,
                   MSELoss, NLLLoss, SmoothL1Loss)
from .module import Module, StateDictError
from .normalization import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm
from .parameter import Parameter
from .rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNBase, RNNCell, RNNCellBase
from .sparse import Embedding
from .transformer import TransformerEncoder, TransformerEncoderLayer
from .upsampling import Upsample, UpsamplingBilinear2d, UpsamplingNearest2d

try:    # NOTE: convolution and pooling are written in kiln/nn/conv.py and kiln/nn/pooling.py
    from .conv import Conv2d  # noqa: F401
    from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d  # noqa: F401
except ModuleNotFoundError as e:     # pragma: no cover - only while those files are missing
    if e.name not in ("kiln.nn.conv", "kiln.nn.pooling"):
        raise

__all__ = [n for n in dir() if not n.startswith("_")]
