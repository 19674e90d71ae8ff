# A GRU sequence classifier (batch_first, bidirectional) deciding whether a noisy sequence
# trends up or down.
import torch
import torch.nn as nn

torch.manual_seed(0)
N, T = 64, 10
slopes = torch.randn(N)
steps = torch.arange(T, dtype=torch.float32) / T
sequences = (slopes[:, None] * steps + 0.3 * torch.randn(N, T)).unsqueeze(-1)
labels = (slopes > 0).long()


class GRUClassifier(nn.Module):
    def __init__(self, hidden=12):
        super().__init__()
        self.gru = nn.GRU(1, hidden, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, 2)

    def forward(self, x):
        output, h_n = self.gru(x)
        final = torch.cat([h_n[0], h_n[1]], dim=1)
        return self.fc(final), output


model = GRUClassifier()
optimizer = torch.optim.RMSprop(model.parameters(), lr=0.01)
criterion = nn.CrossEntropyLoss()
for step in range(25):
    optimizer.zero_grad()
    logits, _ = model(sequences)
    loss = criterion(logits, labels)
    loss.backward()
    optimizer.step()
    if step % 8 == 0 or step == 24:
        accuracy = (logits.argmax(1) == labels).float().mean().item()
        print(f"step {step} loss {loss.item():.8g} accuracy {accuracy:.8g}")

with torch.no_grad():
    logits, output = model(sequences[:3])
    probabilities = torch.softmax(logits, dim=1)
print("output", output.shape, f"{output.abs().sum().item():.8g}")
print("probabilities", [[f"{p:.8g}" for p in row] for row in probabilities.tolist()])
checksum = sum(p.detach().abs().sum().item() for p in model.parameters())
print(f"param checksum {checksum:.8g}")
