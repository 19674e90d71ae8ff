# A GPT-style transformer block with causal self-attention (masked_fill with a tril mask),
# trained with AdamW to continue a repeating token pattern.
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
VOCAB, BLOCK, D_MODEL, N_HEAD = 7, 8, 16, 2


class CausalSelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(D_MODEL, 3 * D_MODEL, bias=False)
        self.proj = nn.Linear(D_MODEL, D_MODEL)
        self.register_buffer("mask", torch.tril(torch.ones(BLOCK, BLOCK)).view(1, 1, BLOCK, BLOCK))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.qkv(x).split(C, dim=2)
        q = q.view(B, T, N_HEAD, C // N_HEAD).transpose(1, 2)
        k = k.view(B, T, N_HEAD, C // N_HEAD).transpose(1, 2)
        v = v.view(B, T, N_HEAD, C // N_HEAD).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.mask[:, :, :T, :T] == 0, float("-inf"))
        att = F.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.proj(y)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(D_MODEL)
        self.attn = CausalSelfAttention()
        self.ln2 = nn.LayerNorm(D_MODEL)
        self.mlp = nn.Sequential(nn.Linear(D_MODEL, 4 * D_MODEL), nn.GELU(),
                                 nn.Linear(4 * D_MODEL, D_MODEL))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, D_MODEL)
        self.pos = nn.Parameter(torch.zeros(1, BLOCK, D_MODEL))
        self.block = Block()
        self.ln_f = nn.LayerNorm(D_MODEL)
        self.head = nn.Linear(D_MODEL, VOCAB, bias=False)

    def forward(self, idx):
        x = self.tok(idx) + self.pos[:, :idx.size(1)]
        return self.head(self.ln_f(self.block(x)))


pattern = torch.tensor([0, 1, 2, 3, 4, 5, 6, 5, 4, 3, 2, 1] * 4)
starts = torch.arange(0, 24, 3)
x = torch.stack([pattern[s:s + BLOCK] for s in starts.tolist()])
y = torch.stack([pattern[s + 1:s + BLOCK + 1] for s in starts.tolist()])
model = TinyGPT()
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
for step in range(30):
    logits = model(x)
    loss = F.cross_entropy(logits.view(-1, VOCAB), y.view(-1))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 10 == 0 or step == 29:
        print(f"step {step} loss {loss.item():.8g}")

with torch.no_grad():
    attn = model.block.attn
    h = model.block.ln1(model.tok(x[:1]) + model.pos)
    q, k, v = attn.qkv(h).split(D_MODEL, dim=2)
    q, k, v = (t.view(1, BLOCK, N_HEAD, -1).transpose(1, 2) for t in (q, k, v))
    fused = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    print("sdpa", [f"{t:.8g}" for t in fused[0, 0, -1].tolist()[:4]])
    print("next tokens", model(x[:2]).argmax(dim=-1).tolist())
checksum = sum(p.detach().abs().sum().item() for p in model.parameters())
print(f"param checksum {checksum:.8g}")
