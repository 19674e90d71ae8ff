# A character-level LSTM language model: embedding, 2-layer LSTM, gradient clipping, then
# greedy generation carrying the hidden state.
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
text = ("the quick brown fox jumps over the lazy dog. "
        "a stitch in time saves nine. the early bird catches the worm. ") * 3
chars = sorted(set(text))
stoi = {c: i for i, c in enumerate(chars)}
data = torch.tensor([stoi[c] for c in text], dtype=torch.long)


class CharLSTM(nn.Module):
    def __init__(self, vocab_size, embed=16, hidden=32):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, x, state=None):
        out, state = self.lstm(self.embed(x), state)
        return self.head(out), state


def get_batch(batch_size=8, seq_len=20):
    starts = torch.randint(0, len(data) - seq_len - 1, (batch_size,))
    x = torch.stack([data[s:s + seq_len] for s in starts.tolist()])
    y = torch.stack([data[s + 1:s + seq_len + 1] for s in starts.tolist()])
    return x, y


model = CharLSTM(len(chars))
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
for step in range(40):
    x, y = get_batch()
    logits, _ = model(x)
    loss = F.cross_entropy(logits.view(-1, len(chars)), y.view(-1))
    optimizer.zero_grad()
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
    optimizer.step()
    if step % 10 == 0 or step == 39:
        print(f"step {step} loss {loss.item():.8g} perplexity {math.exp(loss.item()):.8g} "
              f"grad norm {norm.item():.8g}")

model.eval()
with torch.no_grad():
    idx = torch.tensor([[stoi["t"]]])
    state = None
    generated = "t"
    for _ in range(30):
        logits, state = model(idx, state)
        idx = logits[:, -1].argmax(dim=-1, keepdim=True)
        generated += chars[idx.item()]
    h, c = state
print("generated", repr(generated))
print("state", h.shape, f"{h.abs().sum().item():.8g} {c.abs().sum().item():.8g}")
checksum = sum(p.detach().abs().sum().item() for p in model.parameters())
print(f"param checksum {checksum:.8g}")
