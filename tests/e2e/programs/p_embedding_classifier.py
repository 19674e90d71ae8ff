# A bag-of-embeddings text classifier: tokenize, pad, embed (padding_idx), masked mean pooling.
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
sentences = [
    ("what a great movie", 1), ("truly wonderful acting", 1), ("i loved it", 1),
    ("great fun and wonderful music", 1), ("a great great film", 1),
    ("what a boring movie", 0), ("truly awful acting", 0), ("i hated it", 0),
    ("boring and awful music", 0), ("a dull dull film", 0),
]
vocab = {"<pad>": 0}
for text, _ in sentences:
    for word in text.split():
        vocab.setdefault(word, len(vocab))
longest = max(len(text.split()) for text, _ in sentences)
tokens = torch.tensor([[vocab[w] for w in text.split()] + [0] * (longest - len(text.split()))
                       for text, _ in sentences])
labels = torch.tensor([label for _, label in sentences])


class MeanPoolClassifier(nn.Module):
    def __init__(self, vocab_size, dim=8):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.fc = nn.Linear(dim, 2)

    def forward(self, tokens):
        mask = (tokens != 0).unsqueeze(-1).float()
        summed = (self.embedding(tokens) * mask).sum(dim=1)
        return self.fc(summed / mask.sum(dim=1).clamp(min=1.0))


model = MeanPoolClassifier(len(vocab))
optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
for epoch in range(30):
    optimizer.zero_grad()
    loss = F.cross_entropy(model(tokens), labels)
    loss.backward()
    optimizer.step()
    if epoch % 10 == 0 or epoch == 29:
        print(f"epoch {epoch} loss {loss.item():.8g}")

test = torch.tensor([[vocab["great"], vocab["music"], 0, 0, 0], [vocab["awful"], vocab["film"], 0, 0, 0]])
with torch.no_grad():
    probabilities = F.softmax(model(test), dim=1)
print("positive probability", [f"{p:.8g}" for p in probabilities[:, 1].tolist()])
print("padding row stays zero", model.embedding.weight[0].abs().sum().item())
print("embedding grad rows", int((model.embedding.weight.grad.abs().sum(1) > 0).sum().item()))
checksum = sum(p.detach().abs().sum().item() for p in model.parameters())
print(f"param checksum {checksum:.8g}")
