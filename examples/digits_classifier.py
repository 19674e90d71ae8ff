"""The classic PyTorch MNIST training loop, on scikit-learn's bundled 8x8 digits.

Written exactly as a PyTorch user writes it; only the imports say `kiln`. Run:

    python examples/digits_classifier.py [--epochs 20]
"""
import argparse

import numpy as np
from sklearn.datasets import load_digits
from tqdm import tqdm

import kiln as torch
import kiln.nn as nn
import kiln.nn.functional as F
import kiln.optim as optim
from kiln.utils.data import DataLoader, TensorDataset


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 128)
        self.fc2 = nn.Linear(128, 64)
        self.fc3 = nn.Linear(64, 10)

    def forward(self, x):
        x = x.view(-1, 64)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def load_data(batch_size: int):
    digits = load_digits()                      # 1,797 images shipped inside scikit-learn
    order = np.random.default_rng(0).permutation(len(digits.target))
    images = torch.tensor(digits.images[order] / 16.0, dtype=torch.float32)
    labels = torch.tensor(digits.target[order], dtype=torch.long)
    train = TensorDataset(images[:1437], labels[:1437])
    test = TensorDataset(images[1437:], labels[1437:])
    return (DataLoader(train, batch_size=batch_size, shuffle=True),
            DataLoader(test, batch_size=batch_size))


def evaluate(model, loader, device) -> float:
    model.eval()
    correct, total = 0, 0
    with torch.no_grad():
        for inputs, targets in loader:
            outputs = model(inputs.to(device))
            _, predicted = torch.max(outputs.data, 1)
            total += targets.size(0)
            correct += (predicted == targets.to(device)).sum().item()
    return correct / total


def main(epochs: int = 20, device: str | None = None) -> float:
    torch.manual_seed(0)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    train_loader, test_loader = load_data(batch_size=64)
    model = Net().to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    print(model)
    for epoch in range(epochs):
        model.train()
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{epochs}", leave=False)
        for inputs, targets in bar:
            inputs, targets = inputs.to(device), targets.to(device)
            optimizer.zero_grad()
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()
            bar.set_postfix(loss=f"{loss.item():.4f}")
    accuracy = evaluate(model, test_loader, device)
    print(f"test accuracy: {100 * accuracy:.2f}% on {len(test_loader.dataset)} held-out digits")
    return accuracy


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="where to train (default: cuda where available)")
    args = parser.parse_args()
    main(args.epochs, args.device)
