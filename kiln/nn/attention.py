"""Attention: `scaled_dot_product_attention`, `multi_head_attention_forward` and
`MultiheadAttention`, with PyTorch's signatures, masks and parameter layout, written with
registry ops (matmul, softmax, where, concat) so autograd and @kiln.jit see through them.

    >>> import kiln
    >>> q = k = v = kiln.ones(1, 2, 3, 4)
    >>> scaled_dot_product_attention(q, k, v, is_causal=True).shape
    kiln.Size([1, 2, 3, 4])
    >>> mha = MultiheadAttention(8, 2, batch_first=True)
    >>> out, weights = mha(kiln.ones(2, 5, 8), kiln.ones(2, 5, 8), kiln.ones(2, 5, 8))
    >>> out.shape, weights.shape
    (kiln.Size([2, 5, 8]), kiln.Size([2, 5, 5]))
"""
from __future__ import annotations

import math

from kiln.frontend import composite as C
from kiln.frontend import functional as K
from kiln.frontend import reductions as R
from kiln.frontend.creation import arange, zeros
from kiln.frontend.tensor import Tensor
from kiln.ir import dtypes
from kiln.ir.errors import DTypeError, NotSupportedError, ShapeError
from kiln.ir.types import user_loc

from . import functional as F
from . import init
from .linear import Linear
from .module import Module
from .parameter import Parameter

_NEG_INF = float("-inf")


# ---- masks -----------------------------------------------------------------------------------
def causal_mask(target_len: int, source_len: int, device=None) -> Tensor:
    """Bool [L, S], True where query i may attend key j (j <= i): PyTorch's
    `ones(L, S).tril()`, built from two aranges so a trace keeps it as ops, not data.

    >>> causal_mask(2, 3).tolist()
    [[True, False, False], [True, True, False]]
    """
    rows = K.unsqueeze(arange(target_len, device=device), 1)
    cols = K.unsqueeze(arange(source_len, device=device), 0)
    return K.ge(rows, cols)


def _as_bias(mask: Tensor, dtype, allowed_when_true: bool) -> Tensor:
    """A mask as an additive float bias: a bool mask becomes 0 / -inf (True allows when
    `allowed_when_true`, as in scaled_dot_product_attention; True forbids in
    MultiheadAttention); a float mask is used as it is."""
    if mask.dtype == dtypes.bool_:
        allowed = mask if allowed_when_true else K.eq(mask, False)
        return K.where(allowed, K.full((), 0.0, dtype, like=mask), _NEG_INF)
    if not mask.dtype.is_float:
        raise DTypeError(f"only bool and floating types of masks are supported, got "
                         f"{mask.dtype}", loc=user_loc())
    return K.cast(mask, dtype)


def _safe_softmax(scores: Tensor) -> Tensor:
    """softmax over the last dim, with 0 (not NaN) for rows that are all -inf, as PyTorch's
    `_safe_softmax` in scaled_dot_product_attention."""
    top = R.amax(scores, -1, keepdim=True).detach()
    masked_row = K.eq(top, _NEG_INF)
    e = K.exp(scores - K.where(masked_row, 0.0, top))
    total = R.sum(e, -1, keepdim=True)
    return e / K.where(masked_row, 1.0, total)


# ---- scaled_dot_product_attention ------------------------------------------------------------
def _check_qkv(query: Tensor, key: Tensor, value: Tensor):
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, Tensor):
            raise TypeError(f"scaled_dot_product_attention(): {name} must be a Tensor, got "
                            f"{type(t).__name__}")
        if t.ndim < 2:
            raise ShapeError(f"scaled_dot_product_attention: {name} must have at least 2 "
                             f"dimensions (..., length, features), got shape "
                             f"{list(t.shape)}", loc=user_loc())
    if key.shape[-1] != query.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise ShapeError(f"scaled_dot_product_attention: expected key [..., S, E] to match "
                         f"query [..., L, E] in E and value [..., S, Ev] in S, got query "
                         f"{list(query.shape)}, key {list(key.shape)}, value "
                         f"{list(value.shape)}", loc=user_loc())


def _repeat_kv_heads(query: Tensor, t: Tensor) -> Tensor:
    """Grouped-query attention: key/value heads (dim -3) repeated to the query's heads."""
    heads, kv_heads = query.shape[-3], t.shape[-3]
    if heads % kv_heads:
        raise ShapeError(f"scaled_dot_product_attention: number of query heads ({heads}) "
                         f"must be divisible by the number of key/value heads "
                         f"({kv_heads}) with enable_gqa=True", loc=user_loc())
    shape = tuple(t.shape)
    grouped = K.expand(K.unsqueeze(t, -3), shape[:-2] + (heads // kv_heads,) + shape[-2:])
    return K.reshape(grouped, shape[:-3] + (heads,) + shape[-2:])


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale=None,
                                 enable_gqa: bool = False) -> Tensor:
    """softmax(query @ key^T * scale + bias) @ value, over query [..., L, E], key
    [..., S, E] and value [..., S, Ev] (batch dims broadcast).

    attn_mask: bool (True takes part) or float (added), broadcastable to [..., L, S];
    is_causal: query i sees keys j <= i (no attn_mask then); scale defaults to
    1/sqrt(E); dropout_p drops attention weights (always, as PyTorch's function does).
    Rows with every key masked give 0, as in PyTorch.

    >>> import kiln
    >>> q = kiln.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> scaled_dot_product_attention(q, q, q, is_causal=True).tolist()[0]
    [1.0, 0.0]
    """
    _check_qkv(query, key, value)
    if is_causal and attn_mask is not None:
        raise RuntimeError("_scaled_dot_product_attention: Explicit attn_mask should not be "
                           "set when is_causal=True")
    if enable_gqa:
        key, value = _repeat_kv_heads(query, key), _repeat_kv_heads(query, value)
    length, source = query.shape[-2], key.shape[-2]
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    scores = K.matmul(query, K.transpose(key, -2, -1)) * scale
    if is_causal:
        attn_mask = causal_mask(length, source, query.device)
    if attn_mask is not None:
        scores = scores + _as_bias(attn_mask, scores.dtype, allowed_when_true=True)
    weights = _safe_softmax(scores)
    if dropout_p > 0.0:
        weights = F.dropout(weights, dropout_p, training=True)
    return K.matmul(weights, value)


# ---- multi_head_attention_forward ------------------------------------------------------------
def _in_projection(query, key, value, embed_dim: int, in_proj_weight, in_proj_bias,
                   separate=None):
    """q, k, v projections: slices of the packed [3E, E] weight (one matmul for
    self-attention), or the three separate weights (q, k, v) when kdim/vdim differ."""
    biases = [None] * 3 if in_proj_bias is None else \
        [in_proj_bias[i * embed_dim:(i + 1) * embed_dim] for i in range(3)]
    if separate is not None:
        return tuple(F.linear(x, w, b) for x, w, b in zip((query, key, value), separate,
                                                           biases))
    if query is key and key is value:
        packed = F.linear(query, in_proj_weight, in_proj_bias)
        return tuple(packed[..., i * embed_dim:(i + 1) * embed_dim] for i in range(3))
    weights = [in_proj_weight[i * embed_dim:(i + 1) * embed_dim] for i in range(3)]
    return tuple(F.linear(x, w, b) for x, w, b in zip((query, key, value), weights, biases))


def _pad_mask(mask, with_column: bool):
    """A float mask with one more (zero) key column: the extra bias_k or zero-attention key."""
    if mask is None or not with_column:
        return mask
    pad = K.full(tuple(mask.shape[:-1]) + (1,), 0.0, mask.dtype, like=mask)
    return K.cat([mask, pad], -1)


def _check_attn_mask(attn_mask, length: int, source: int, batch_heads: int):
    if attn_mask.ndim == 2:
        if tuple(attn_mask.shape) != (length, source):
            raise ShapeError(f"The shape of the 2D attn_mask is {list(attn_mask.shape)}, but "
                             f"should be {[length, source]}.", loc=user_loc())
        return K.unsqueeze(attn_mask, 0)
    if attn_mask.ndim == 3:
        if tuple(attn_mask.shape) != (batch_heads, length, source):
            raise ShapeError(f"The shape of the 3D attn_mask is {list(attn_mask.shape)}, but "
                             f"should be {[batch_heads, length, source]}.", loc=user_loc())
        return attn_mask
    raise ShapeError(f"attn_mask's dimension {attn_mask.ndim} is not supported (2-D "
                     f"[L, S] or 3-D [N * num_heads, L, S])", loc=user_loc())


def _merged_mask(attn_mask, key_padding_mask, bsz: int, num_heads: int, length: int,
                 source: int, dtype):
    """attn_mask [1 or N*H, L, S] plus the key padding mask [N, S] as [N*H, 1, S]: one
    float bias (or None)."""
    merged = None
    if attn_mask is not None:
        merged = _check_attn_mask(_as_bias(attn_mask, dtype, allowed_when_true=False),
                                  length, source, bsz * num_heads)
    if key_padding_mask is not None:
        if tuple(key_padding_mask.shape) != (bsz, source):
            raise ShapeError(f"expecting key_padding_mask shape of {(bsz, source)}, but got "
                             f"{tuple(key_padding_mask.shape)}", loc=user_loc())
        kpm = _as_bias(key_padding_mask, dtype, allowed_when_true=False)
        kpm = K.expand(K.reshape(kpm, (bsz, 1, 1, source)), (bsz, num_heads, 1, source))
        kpm = K.reshape(kpm, (bsz * num_heads, 1, source))
        merged = kpm if merged is None else merged + kpm
    return merged


def _split_heads(x: Tensor, bsz: int, num_heads: int) -> Tensor:
    """[S, N, E] -> [N * H, S, E / H] (PyTorch's layout: batch-major, then head)."""
    return K.transpose(K.reshape(x, (x.shape[0], bsz * num_heads, -1)), 0, 1)


def _add_bias_kv(k, v, bias_k, bias_v, bsz: int):
    if (bias_k is None) != (bias_v is None):
        raise ValueError("bias_k and bias_v must both be given or both be None")
    if bias_k is None:
        return k, v, False
    k = K.cat([k, K.expand(bias_k, (1, bsz, bias_k.shape[-1]))], 0)
    v = K.cat([v, K.expand(bias_v, (1, bsz, bias_v.shape[-1]))], 0)
    return k, v, True


def _add_zero_attn(k, v):
    zeros_k = K.full((k.shape[0], 1, k.shape[2]), 0.0, k.dtype, like=k)
    zeros_v = K.full((v.shape[0], 1, v.shape[2]), 0.0, v.dtype, like=v)
    return K.cat([k, zeros_k], 1), K.cat([v, zeros_v], 1)


def _check_mha_inputs(query, key, value, embed_dim_to_check: int, num_heads: int):
    if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
        raise ShapeError(f"multi_head_attention_forward: query, key and value must all be "
                         f"3-D (L, N, E) or all 2-D (L, E) (unbatched), got shapes "
                         f"{list(query.shape)}, {list(key.shape)}, {list(value.shape)}",
                         loc=user_loc())
    if query.shape[-1] != embed_dim_to_check:
        raise ShapeError(f"was expecting embedding dimension of {embed_dim_to_check}, but got "
                         f"{query.shape[-1]}", loc=user_loc())
    if embed_dim_to_check % num_heads:
        raise ShapeError(f"embed_dim {embed_dim_to_check} not divisible by num_heads "
                         f"{num_heads}", loc=user_loc())
    if key.shape[:-1] != value.shape[:-1]:
        raise ShapeError(f"key shape {list(key.shape)} does not match value shape "
                         f"{list(value.shape)}", loc=user_loc())


def _unbatched_masks(key_padding_mask, attn_mask):
    if key_padding_mask is not None:
        key_padding_mask = K.unsqueeze(key_padding_mask, 0)
    return key_padding_mask, attn_mask


def multi_head_attention_forward(query, key, value, embed_dim_to_check: int, num_heads: int,
                                 in_proj_weight, in_proj_bias, bias_k, bias_v,
                                 add_zero_attn: bool, dropout_p: float, out_proj_weight,
                                 out_proj_bias, training: bool = True, key_padding_mask=None,
                                 need_weights: bool = True, attn_mask=None,
                                 use_separate_proj_weight: bool = False, q_proj_weight=None,
                                 k_proj_weight=None, v_proj_weight=None, static_k=None,
                                 static_v=None, average_attn_weights: bool = True,
                                 is_causal: bool = False):
    """PyTorch's multi-head attention over sequence-first query (L, N, E), key and value
    (S, N, E), or unbatched (L, E) and (S, E). Returns (output (L, N, E), attention
    weights (N, L, S) averaged over heads, (N, H, L, S), or None)."""
    if static_k is not None or static_v is not None:
        raise NotSupportedError("not supported yet: multi_head_attention_forward with "
                                "static_k / static_v", loc=user_loc())
    if is_causal and attn_mask is None:
        raise RuntimeError("Need attn_mask if specifying the is_causal hint. You may use the "
                           "Transformer module method `generate_square_subsequent_mask` to "
                           "create this mask.")
    _check_mha_inputs(query, key, value, embed_dim_to_check, num_heads)
    batched = query.ndim == 3
    if not batched:
        query, key, value = (K.unsqueeze(t, 1) for t in (query, key, value))
        key_padding_mask, attn_mask = _unbatched_masks(key_padding_mask, attn_mask)
    length, bsz, embed_dim = query.shape
    separate = (q_proj_weight, k_proj_weight, v_proj_weight) if use_separate_proj_weight \
        else None
    q, k, v = _in_projection(query, key, value, embed_dim, in_proj_weight, in_proj_bias,
                             separate)
    k, v, extra_key = _add_bias_kv(k, v, bias_k, bias_v, bsz)
    q, k, v = (_split_heads(t, bsz, num_heads) for t in (q, k, v))
    if add_zero_attn:
        k, v = _add_zero_attn(k, v)
    source = k.shape[1] - int(extra_key) - int(add_zero_attn)
    mask = _merged_mask(attn_mask, key_padding_mask, bsz, num_heads, length, source, q.dtype)
    mask = _pad_mask(_pad_mask(mask, extra_key), add_zero_attn)
    if not training:
        dropout_p = 0.0
    out, weights = _attend(q, k, v, mask, dropout_p, need_weights)
    out = K.reshape(K.transpose(out, 0, 1), (length * bsz, embed_dim))
    out = K.reshape(F.linear(out, out_proj_weight, out_proj_bias), (length, bsz, embed_dim))
    if weights is not None:
        weights = K.reshape(weights, (bsz, num_heads, length, weights.shape[-1]))
        if average_attn_weights:
            weights = R.mean(weights, 1)
    if not batched:
        out = K.squeeze(out, 1)
        weights = None if weights is None else K.squeeze(weights, 0)
    return out, weights


def _attend(q, k, v, mask, dropout_p: float, need_weights: bool):
    """(weights @ v, weights or None) over [N*H, L, hd] heads. PyTorch's two paths: with
    weights, a plain softmax (NaN for fully masked rows); without, scaled_dot_product_
    attention (0 for them)."""
    if not need_weights:
        return scaled_dot_product_attention(q, k, v, mask, dropout_p), None
    scores = K.matmul(q * math.sqrt(1.0 / q.shape[-1]), K.transpose(k, -2, -1))
    if mask is not None:
        scores = scores + mask
    weights = C.softmax(scores, -1)
    if dropout_p > 0.0:
        weights = F.dropout(weights, dropout_p)
    return K.matmul(weights, v), weights


# ---- MultiheadAttention ----------------------------------------------------------------------
class NonDynamicallyQuantizableLinear(Linear):
    """The Linear that MultiheadAttention's `out_proj` is (PyTorch's name, for its repr)."""


class MultiheadAttention(Module):
    """Multi-head attention, PyTorch's parameters and layout: `in_proj_weight` [3E, E] (or
    `q_proj_weight`, `k_proj_weight`, `v_proj_weight` when kdim/vdim differ from E),
    `in_proj_bias` [3E], `out_proj` (Linear E -> E), optional `bias_k`, `bias_v` [1, 1, E].

    forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False) -> (output, weights or None). Inputs are
    (L, N, E), (N, L, E) with batch_first, or unbatched (L, E). Masks: True (bool) means
    "may not attend"; float masks are added.

    >>> import kiln
    >>> MultiheadAttention(4, 2)
    MultiheadAttention(
      (out_proj): NonDynamicallyQuantizableLinear(in_features=4, out_features=4, bias=True)
    )
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim=None, vdim=None,
                 batch_first: bool = False, device=None, dtype=None):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"embed_dim and num_heads must be greater than 0, got "
                             f"embed_dim={embed_dim} and num_heads={num_heads} instead")
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        if self.head_dim * num_heads != embed_dim:
            raise ValueError("embed_dim must be divisible by num_heads")
        self._make_projections(bias, device, dtype)
        self.out_proj = NonDynamicallyQuantizableLinear(embed_dim, embed_dim, bias=bias,
                                                        device=device, dtype=dtype)
        if add_bias_kv:
            self.bias_k = Parameter(zeros(1, 1, embed_dim, dtype=dtype, device=device))
            self.bias_v = Parameter(zeros(1, 1, embed_dim, dtype=dtype, device=device))
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn
        self._reset_parameters()

    def _make_projections(self, bias: bool, device, dtype):
        e = self.embed_dim
        like = dict(dtype=dtype, device=device)
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(zeros(3 * e, e, **like))
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.q_proj_weight = Parameter(zeros(e, e, **like))
            self.k_proj_weight = Parameter(zeros(e, self.kdim, **like))
            self.v_proj_weight = Parameter(zeros(e, self.vdim, **like))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(zeros(3 * e, **like))
        else:
            self.register_parameter("in_proj_bias", None)

    def _reset_parameters(self) -> None:
        """PyTorch's: xavier_uniform_ projections, zero biases, xavier_normal_ bias_k/v."""
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            init.xavier_uniform_(self.q_proj_weight)
            init.xavier_uniform_(self.k_proj_weight)
            init.xavier_uniform_(self.v_proj_weight)
        if self.in_proj_bias is not None:
            init.constant_(self.in_proj_bias, 0.0)
            init.constant_(self.out_proj.bias, 0.0)
        if self.bias_k is not None:
            init.xavier_normal_(self.bias_k)
        if self.bias_v is not None:
            init.xavier_normal_(self.bias_v)

    def forward(self, query, key, value, key_padding_mask=None, need_weights: bool = True,
                attn_mask=None, average_attn_weights: bool = True, is_causal: bool = False):
        batch_first = self.batch_first and query.ndim == 3
        if batch_first:
            query, key, value = _seq_first(query, key, value)
        out, weights = multi_head_attention_forward(
            query, key, value, self.embed_dim, self.num_heads, self.in_proj_weight,
            self.in_proj_bias, self.bias_k, self.bias_v, self.add_zero_attn, self.dropout,
            self.out_proj.weight, self.out_proj.bias, training=self.training,
            key_padding_mask=key_padding_mask, need_weights=need_weights,
            attn_mask=attn_mask, use_separate_proj_weight=not self._qkv_same_embed_dim,
            q_proj_weight=self.q_proj_weight, k_proj_weight=self.k_proj_weight,
            v_proj_weight=self.v_proj_weight, average_attn_weights=average_attn_weights,
            is_causal=is_causal)
        if batch_first:
            out = K.transpose(out, 0, 1)
        return out, weights


def _seq_first(query, key, value):
    """(N, L, E) -> (L, N, E), keeping self-attention recognizable (query is key is value)."""
    if query is key and key is value:
        query = key = value = K.transpose(query, 0, 1)
        return query, key, value
    return tuple(K.transpose(t, 0, 1) for t in (query, key, value))
