# A custom Dataset read by a DataLoader with two worker processes (shuffled for training,
# in order for evaluation).
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset


class Quadratics(Dataset):
    """Item i: features (t, t^2) for t in [-1, 1] and the target 3t^2 - t + 0.5."""

    def __init__(self, size):
        self.size = size

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        t = -1.0 + 2.0 * index / (self.size - 1)
        features = torch.tensor([t, t * t])
        target = torch.tensor([3 * t * t - t + 0.5])
        return features, target


def main():
    torch.manual_seed(0)
    dataset = Quadratics(96)
    train_loader = DataLoader(dataset, batch_size=16, shuffle=True, num_workers=2)
    eval_loader = DataLoader(dataset, batch_size=32, shuffle=False, num_workers=2)
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in range(4):
        total = 0.0
        for features, target in train_loader:
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(features), target)
            loss.backward()
            optimizer.step()
            total += loss.item()
        print(f"epoch {epoch} mean batch loss {total / len(train_loader):.8g}")
    with torch.no_grad():
        firsts = [features[0, 0].item() for features, _ in eval_loader]
        error = sum(nn.functional.mse_loss(model(f), t, reduction="sum").item()
                    for f, t in eval_loader)
    print("eval batches start at", [f"{v:.8g}" for v in firsts])
    print(f"eval error {error / len(dataset):.8g}")
    print("weights", [f"{v:.8g}" for v in model.weight.view(-1).tolist()],
          f"{model.bias.item():.8g}")


if __name__ == "__main__":
    main()
