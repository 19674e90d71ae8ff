# nn.TransformerEncoder (two TransformerEncoderLayers) with a causal mask and a padding mask,
# trained to predict a running sum.
import torch
import torch.nn as nn

torch.manual_seed(0)
B, T, D = 6, 7, 16
x = torch.randn(B, T, 1)
target = x.cumsum(dim=1)
lengths = torch.tensor([7, 7, 5, 6, 3, 7])
padding = torch.arange(T)[None, :] >= lengths[:, None]
causal = torch.triu(torch.full((T, T), float("-inf")), diagonal=1)


class RunningSum(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(1, D)
        self.position = nn.Embedding(T, D)
        layer = nn.TransformerEncoderLayer(d_model=D, nhead=2, dim_feedforward=32, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.out = nn.Linear(D, 1)

    def forward(self, x, padding):
        h = self.embed(x) + self.position(torch.arange(x.size(1)))
        return self.out(self.encoder(h, mask=causal, src_key_padding_mask=padding))


model = RunningSum()
# NOTE: SGD rather than Adam: the key projection's bias cannot change the attention (softmax
# ignores a constant per query), so its gradient is rounding noise that Adam would scale up.
optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
keep = (~padding).unsqueeze(-1).float()
for step in range(15):
    optimizer.zero_grad()
    prediction = model(x, padding)
    loss = (((prediction - target) ** 2) * keep).sum() / keep.sum()
    loss.backward()
    optimizer.step()
    if step % 5 == 0 or step == 14:
        print(f"step {step} loss {loss.item():.8g}")

model.eval()
with torch.no_grad():
    prediction = model(x[:1], padding[:1])
print("prediction", [f"{v:.8g}" for v in prediction.view(-1).tolist()])
print("layers", len(model.encoder.layers), sum(p.numel() for p in model.parameters()))
checksum = sum(p.detach().abs().sum().item() for p in model.parameters())
print(f"param checksum {checksum:.8g}")
