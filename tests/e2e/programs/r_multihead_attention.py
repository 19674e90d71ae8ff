# nn.MultiheadAttention: self-attention with a key padding mask and a causal attention mask,
# the averaged attention weights, and a few training steps of a sequence regressor.
import torch
import torch.nn as nn

torch.manual_seed(0)
B, T, E = 4, 6, 16
x = torch.randn(B, T, E)
lengths = torch.tensor([6, 4, 5, 2])
padding = torch.arange(T)[None, :] >= lengths[:, None]
causal = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)

attention = nn.MultiheadAttention(E, num_heads=4, batch_first=True)
out, weights = attention(x, x, x, key_padding_mask=padding)
print("padded", out.shape, weights.shape, f"{out.abs().sum().item():.8g}")
print("weights row", [f"{v:.8g}" for v in weights[1, 0].tolist()])
out, weights = attention(x, x, x, attn_mask=causal, average_attn_weights=False)
print("causal", weights.shape, [f"{v:.8g}" for v in weights[0, 2, 3].tolist()])


class Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = nn.MultiheadAttention(E, num_heads=2, batch_first=True)
        self.norm = nn.LayerNorm(E)
        self.head = nn.Linear(E, 1)

    def forward(self, x, padding):
        attended, _ = self.attention(x, x, x, key_padding_mask=padding, need_weights=False)
        h = self.norm(x + attended)
        keep = (~padding).unsqueeze(-1).float()
        return self.head((h * keep).sum(1) / keep.sum(1)).squeeze(-1)


target = x[:, :, 0].cumsum(1)[torch.arange(B), lengths - 1]
model = Regressor()
# NOTE: SGD rather than Adam: the key projection's bias cannot change the attention (softmax
# ignores a constant per query), so its gradient is rounding noise that Adam would scale up.
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
for step in range(15):
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(x, padding), target)
    loss.backward()
    optimizer.step()
    if step % 5 == 0 or step == 14:
        print(f"step {step} loss {loss.item():.8g}")
checksum = sum(p.detach().abs().sum().item() for p in model.parameters())
print(f"param checksum {checksum:.8g}")
