"""scaled_dot_product_attention, MultiheadAttention and TransformerEncoder(Layer) against
PyTorch (state-dict keys and shapes, outputs, attention weights, gradients of inputs and
parameters), against finite differences, under @kiln.jit, and their errors."""
import warnings

import numpy as np
import pytest
from nn_helpers import check_gradients, t64, torch_or_skip
from torch_compare import compare_with_torch, copy_torch_weights

import kiln
import kiln.nn.functional as F
from kiln import nn
from kiln.frontend.jit import KilnJitWarning
from kiln.nn.transformer import generate_square_subsequent_mask


def _x(rng, shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


# ---- scaled_dot_product_attention ------------------------------------------------------------
def _causal(length, source):
    return np.tril(np.ones((length, source), bool))


SDPA_CASES = [  # id, (q, k, v shapes), keyword arguments (arrays become tensors)
    ("plain", ((2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 7)), {}),
    ("causal", ((2, 3, 4, 5), (2, 3, 4, 5), (2, 3, 4, 5)), dict(is_causal=True)),
    ("causal-rectangular", ((1, 4, 5), (1, 6, 5), (1, 6, 2)), dict(is_causal=True)),
    ("bool-mask", ((2, 4, 5), (2, 6, 5), (2, 6, 3)), dict(attn_mask=_causal(4, 6))),
    ("float-mask-scale", ((2, 1, 4, 5), (2, 1, 6, 5), (2, 1, 6, 3)),
     dict(attn_mask=np.random.default_rng(1).standard_normal((2, 1, 4, 6)), scale=0.3)),
    ("broadcast-batch", ((2, 3, 4, 5), (3, 6, 5), (3, 6, 5)), {}),
    ("gqa", ((1, 4, 3, 2), (1, 2, 5, 2), (1, 2, 5, 3)), dict(enable_gqa=True)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,shapes,kw", SDPA_CASES, ids=[c[0] for c in SDPA_CASES])
def test_sdpa_matches_pytorch(name, shapes, kw, dtype, rng):
    torch = torch_or_skip()
    kw = {k: (v.astype(dtype) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v)
          for k, v in kw.items()}
    compare_with_torch(F.scaled_dot_product_attention,
                       torch.nn.functional.scaled_dot_product_attention,
                       [_x(rng, s, dtype) for s in shapes], rng, kwargs=kw)


def test_sdpa_fully_masked_rows_are_zero_like_pytorch(rng):
    torch = torch_or_skip()
    mask = _causal(3, 5)
    mask[1] = False
    compare_with_torch(F.scaled_dot_product_attention,
                       torch.nn.functional.scaled_dot_product_attention,
                       [_x(rng, (2, 3, 4)), _x(rng, (2, 5, 4)), _x(rng, (2, 5, 4))], rng,
                       kwargs=dict(attn_mask=mask))


def test_sdpa_gradients_by_finite_differences(rng):
    q, k, v = (t64(rng.standard_normal(s), requires_grad=True)
               for s in ((2, 3, 2), (2, 4, 2), (2, 4, 3)))
    check_gradients(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=True),
                    q, k, v)


def test_sdpa_dropout_drops_weights_and_scales_the_rest():
    q, k, v = kiln.zeros(1, 1, 4), kiln.zeros(1, 400, 4), kiln.ones(1, 400, 1)
    # NOTE: uniform attention over 400 keys
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5).item()
    # NOTE: each weight 1/400 is dropped or doubled: the mean stays near 1 (std 0.05)
    assert 0.8 < out < 1.2 and out != 1.0


def test_sdpa_errors():
    q = kiln.ones(2, 3, 4)
    with pytest.raises(RuntimeError, match="attn_mask should not be set when is_causal"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=kiln.ones(3, 3), is_causal=True)
    with pytest.raises(kiln.KilnError, match="key \\[..., S, E\\] to match query"):
        F.scaled_dot_product_attention(q, kiln.ones(2, 3, 5), q)
    with pytest.raises(kiln.KilnError, match="divisible by the number of key/value heads"):
        F.scaled_dot_product_attention(kiln.ones(3, 2, 4), kiln.ones(2, 2, 4),
                                       kiln.ones(2, 2, 4), enable_gqa=True)


# ---- MultiheadAttention ----------------------------------------------------------------------
def _mha_pair(torch, dtype, **kw):
    theirs = torch.nn.MultiheadAttention(**kw)
    ours = nn.MultiheadAttention(**kw)
    if dtype == np.float64:
        return ours.double(), theirs.double()
    return ours, theirs


def _kpm(batch, source, rng):
    mask = rng.uniform(size=(batch, source)) < 0.3
    mask[:, 0] = False                   # every row keeps a key: no NaN rows
    return mask


MHA_CASES = [  # id, constructor kw, query/key/value shapes (None: self-attention), forward kw
    ("self", dict(embed_dim=8, num_heads=2), ((5, 3, 8), None, None), {}),
    ("batch-first-per-head", dict(embed_dim=8, num_heads=4, batch_first=True),
     ((3, 5, 8), None, None), dict(average_attn_weights=False)),
    ("cross-no-weights", dict(embed_dim=8, num_heads=2),
     ((5, 3, 8), (4, 3, 8), (4, 3, 8)), dict(need_weights=False)),
    ("kdim-vdim-no-bias", dict(embed_dim=6, num_heads=3, kdim=4, vdim=5, bias=False),
     ((5, 2, 6), (3, 2, 4), (3, 2, 5)), {}),
    ("unbatched", dict(embed_dim=8, num_heads=2), ((5, 8), (4, 8), (4, 8)), {}),
    ("bias-kv-zero-attn", dict(embed_dim=8, num_heads=2, add_bias_kv=True, add_zero_attn=True),
     ((5, 3, 8), None, None), {}),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,kw,shapes,fkw", MHA_CASES, ids=[c[0] for c in MHA_CASES])
def test_multihead_attention_matches_pytorch(name, kw, shapes, fkw, dtype, rng):
    torch = torch_or_skip()
    ours, theirs = _mha_pair(torch, dtype, **kw)
    if shapes[1] is None:
        def run(m):
            return lambda x: m(x, x, x, **fkw)
        args = [_x(rng, shapes[0], dtype)]
    else:
        def run(m):
            return lambda q, k, v: m(q, k, v, **fkw)
        args = [_x(rng, s, dtype) for s in shapes]
    copy_torch_weights(ours, theirs)
    compare_with_torch(run(ours), run(theirs), args, rng)
    for p, q in zip(ours.parameters(), theirs.parameters()):    # gradients of the weights
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mask_kind", ["bool", "float"])
def test_multihead_attention_masks_match_pytorch(mask_kind, rng):
    torch = torch_or_skip()
    ours, theirs = _mha_pair(torch, np.float64, embed_dim=8, num_heads=2)
    kpm = _kpm(3, 4, rng)
    attn = ~_causal(5, 4) if mask_kind == "bool" else _x(rng, (6, 5, 4))
    if mask_kind == "float":
        kpm = np.where(kpm, -1e9, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)     # PyTorch's mask-type deprecations
        compare_with_torch(ours, theirs, [_x(rng, (5, 3, 8)), _x(rng, (4, 3, 8)),
                                          _x(rng, (4, 3, 8))], rng,
                           kwargs=dict(key_padding_mask=kpm, attn_mask=attn))


def test_multihead_attention_layout_and_initialization():
    torch = torch_or_skip()
    for kw in (dict(embed_dim=8, num_heads=2, add_bias_kv=True),
               dict(embed_dim=6, num_heads=2, kdim=3, vdim=5, bias=False)):
        ours, theirs = nn.MultiheadAttention(**kw), torch.nn.MultiheadAttention(**kw)
        assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == \
            [(k, tuple(v.shape)) for k, v in theirs.state_dict().items()]
        assert repr(ours) == repr(theirs)
    mha = nn.MultiheadAttention(64, 4)
    bound = (6.0 / (64 + 192)) ** 0.5                    # xavier_uniform_ of [3E, E]
    w = mha.in_proj_weight.detach().numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert not mha.in_proj_bias.detach().numpy().any()
    assert not mha.out_proj.bias.detach().numpy().any()


def test_multihead_attention_gradients_by_finite_differences(rng):
    mha = nn.MultiheadAttention(4, 2, add_bias_kv=True).double()
    x = t64(rng.standard_normal((2, 1, 4)), requires_grad=True)
    names = check_gradients(lambda t: mha(t, t, t, attn_mask=kiln.tensor(~_causal(2, 2)))[0],
                            x, module=mha)
    assert names == ["input 0", "in_proj_weight", "in_proj_bias", "bias_k", "bias_v",
                     "out_proj.weight", "out_proj.bias"]


def test_multihead_attention_errors():
    mha = nn.MultiheadAttention(8, 2)
    x = kiln.ones(5, 3, 8)
    with pytest.raises(ValueError, match="embed_dim must be divisible by num_heads"):
        nn.MultiheadAttention(8, 3)
    with pytest.raises(kiln.KilnError, match="was expecting embedding dimension of 8, but got 4"):
        mha(kiln.ones(5, 3, 4), kiln.ones(5, 3, 4), kiln.ones(5, 3, 4))
    with pytest.raises(kiln.KilnError, match="2D attn_mask is \\[4, 4\\], but should be "
                                             "\\[5, 5\\]"):
        mha(x, x, x, attn_mask=kiln.ones(4, 4, dtype=kiln.bool))
    with pytest.raises(kiln.KilnError, match="expecting key_padding_mask shape of \\(3, 5\\)"):
        mha(x, x, x, key_padding_mask=kiln.ones(5, 3, dtype=kiln.bool))
    with pytest.raises(RuntimeError, match="Need attn_mask if specifying the is_causal hint"):
        mha(x, x, x, is_causal=True)


# ---- TransformerEncoderLayer / TransformerEncoder --------------------------------------------
ENCODER_CASES = [  # id, layer kw, batch_first input?
    ("post-norm-relu", dict(), False),
    ("pre-norm-gelu-batch-first", dict(norm_first=True, activation="gelu", batch_first=True),
     True),
    ("module-activation-no-bias", dict(activation="GELU", bias=False), False),
]


def _layer(lib, kw):
    kw = dict(kw)
    if kw.get("activation") == "GELU":
        kw["activation"] = lib.GELU(approximate="tanh")
    return lib.TransformerEncoderLayer(8, 2, 16, dropout=0.0, **kw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,kw,batch_first", ENCODER_CASES,
                         ids=[c[0] for c in ENCODER_CASES])
def test_transformer_encoder_matches_pytorch(name, kw, batch_first, dtype, rng):
    torch = torch_or_skip()
    ours = nn.TransformerEncoder(_layer(nn, kw), 2, norm=nn.LayerNorm(8))
    theirs = torch.nn.TransformerEncoder(_layer(torch.nn, kw), 2, norm=torch.nn.LayerNorm(8),
                                         enable_nested_tensor=False)
    if dtype == np.float64:
        ours, theirs = ours.double(), theirs.double()
    assert repr(ours) == repr(theirs)
    x = _x(rng, (3, 5, 8) if batch_first else (5, 3, 8), dtype)
    # NOTE: float32 through two layers: rounding differences (and PyTorch's threaded
    # attention kernel) reach about 1e-6 in small gradients
    tol = (1e-10, 1e-12) if dtype == np.float64 else (2e-5, 1e-5)
    compare_with_torch(ours, theirs, [x], rng, tol=tol,
                       kwargs=dict(mask=~_causal(5, 5), is_causal=True,
                                   src_key_padding_mask=_kpm(3, 5, rng)))


def test_square_subsequent_mask_matches_pytorch():
    torch = torch_or_skip()
    want = torch.nn.Transformer.generate_square_subsequent_mask(5, dtype=torch.float64)
    got = generate_square_subsequent_mask(5, dtype=kiln.float64)
    assert got.dtype == kiln.float64
    np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_encoder_layer_dropout_in_training_only(rng):
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.5)
    x = kiln.tensor(_x(rng, (4, 2, 8), np.float32))
    with kiln.no_grad():
        assert not np.allclose(layer(x).numpy(), layer(x).numpy())
        layer.eval()
        np.testing.assert_array_equal(layer(x).numpy(), layer(x).numpy())
    with pytest.raises(RuntimeError, match="activation should be relu/gelu, not tanh"):
        nn.TransformerEncoderLayer(8, 2, activation="tanh")


# ---- @kiln.jit: a training step over a causal transformer block ------------------------------
class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True,
                                                activation="gelu")
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        mask = generate_square_subsequent_mask(x.shape[1])
        return self.head(self.layer(x, src_mask=mask, is_causal=True))


def _train_block(batches, jit: bool):
    kiln.manual_seed(0)
    model = _Block()
    # NOTE: SGD, not Adam: the key bias gets a zero gradient in exact arithmetic (softmax is
    # shift invariant), and Adam would blow its rounding noise up to full-size steps.
    opt = kiln.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x).reshape(-1, 5), y.reshape(-1))
        loss.backward()
        opt.step()
        return loss

    run = kiln.jit(step) if jit else step
    return model, [run(x, y).item() for x, y in batches], run


def test_transformer_training_step_compiles_and_matches_eager(rng):
    batches = [(kiln.tensor(_x(rng, (3, 4, 8), np.float32)),
                kiln.tensor(rng.integers(0, 5, (3, 4)))) for _ in range(3)]
    eager, eager_losses, _ = _train_block(batches, jit=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", KilnJitWarning)          # no fallback, no break
        jitted, jit_losses, step = _train_block(batches, jit=True)
    assert step.traces == 1
    np.testing.assert_allclose(jit_losses, eager_losses, rtol=1e-5)
    for key, value in eager.state_dict().items():
        np.testing.assert_allclose(jitted.state_dict()[key].numpy(), value.numpy(),
                                   rtol=1e-4, atol=1e-6, err_msg=key)
