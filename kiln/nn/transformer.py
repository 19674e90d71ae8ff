"""`TransformerEncoderLayer` and `TransformerEncoder`, with PyTorch's submodules (so the same
state-dict keys), defaults and residual/normalization order (post-norm, or pre-norm with
norm_first=True).

    >>> import kiln
    >>> layer = TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16, batch_first=True)
    >>> encoder = TransformerEncoder(layer, num_layers=2)
    >>> mask = generate_square_subsequent_mask(5)
    >>> encoder(kiln.randn(3, 5, 8), mask=mask).shape
    kiln.Size([3, 5, 8])
"""
from __future__ import annotations

import copy

from kiln.frontend import functional as K
from kiln.ir import dtypes

from . import functional as F
from .attention import MultiheadAttention, causal_mask
from .container import ModuleList
from .dropout import Dropout
from .linear import Linear
from .module import Module
from .normalization import LayerNorm


def generate_square_subsequent_mask(sz: int, device=None, dtype=None):
    """Float [sz, sz] causal mask: 0 on and below the diagonal, -inf above (PyTorch's
    `nn.Transformer.generate_square_subsequent_mask`).

    >>> generate_square_subsequent_mask(2).tolist()
    [[0.0, -inf], [0.0, 0.0]]
    """
    dtype = dtypes.as_dtype(dtype) if dtype is not None else dtypes.DEFAULT_FLOAT
    allowed = causal_mask(sz, sz, device)
    return K.where(allowed, K.full((), 0.0, dtype, like=allowed), float("-inf"))


def _activation_fn(activation):
    if activation == "relu":
        return F.relu
    if activation == "gelu":
        return F.gelu
    if isinstance(activation, str):
        raise RuntimeError(f"activation should be relu/gelu, not {activation}")
    return activation


class TransformerEncoderLayer(Module):
    """Self-attention and a feed-forward block (linear1 -> activation -> dropout ->
    linear2), each with dropout, a residual connection and LayerNorm: after the residual
    by default, before the block with norm_first=True.

    forward(src, src_mask=None, src_key_padding_mask=None, is_causal=False): src is
    (S, N, E), (N, S, E) with batch_first, or unbatched (S, E); masks as in
    MultiheadAttention.

    >>> TransformerEncoderLayer(4, 2, 8).linear1
    Linear(in_features=4, out_features=8, bias=True)
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation="relu", layer_norm_eps: float = 1e-5,
                 batch_first: bool = False, norm_first: bool = False, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                            batch_first=batch_first, device=device,
                                            dtype=dtype)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, device=device, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, device=device, dtype=dtype)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, device=device, dtype=dtype)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, device=device, dtype=dtype)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.activation = _activation_fn(activation)

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal: bool = False):
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            return x + self._ff_block(self.norm2(x))
        x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
        return self.norm2(x + self._ff_block(x))

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal: bool):
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                           need_weights=False, is_causal=is_causal)[0]
        return self.dropout1(x)

    def _ff_block(self, x):
        x = self.linear2(self.dropout(self.activation(self.linear1(x))))
        return self.dropout2(x)


class TransformerEncoder(Module):
    """A stack of num_layers copies of `encoder_layer` (as `layers`), then `norm` if given.

    >>> TransformerEncoder(TransformerEncoderLayer(4, 2, 8), 3).num_layers
    3
    """

    def __init__(self, encoder_layer: TransformerEncoderLayer, num_layers: int, norm=None,
                 enable_nested_tensor: bool = True, mask_check: bool = True):
        super().__init__()
        self.layers = ModuleList([copy.deepcopy(encoder_layer) for _ in range(num_layers)])
        self.num_layers = num_layers
        self.norm = norm
        # NOTE: nested tensors are a PyTorch inference fast path; the flags are kept for
        # signature compatibility and change no result.
        self.enable_nested_tensor = enable_nested_tensor
        self.mask_check = mask_check

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        out = src
        for layer in self.layers:
            out = layer(out, src_mask=mask, src_key_padding_mask=src_key_padding_mask,
                        is_causal=bool(is_causal))
        return out if self.norm is None else self.norm(out)
