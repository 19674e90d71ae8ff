# A small CNN (Conv2d, BatchNorm2d, MaxPool2d, Dropout) classifying synthetic 8x8 stripes.
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)


def make_images(n):
    images = torch.randn(n, 1, 8, 8) * 0.3
    labels = torch.arange(n) % 3
    for i in range(n):
        if labels[i] == 0:
            images[i, 0, 3, :] += 1.0       # a horizontal stripe
        elif labels[i] == 1:
            images[i, 0, :, 4] += 1.0       # a vertical stripe
        else:
            images[i, 0].diagonal().add_(1.0)
    return images, labels


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(0.25)
        self.fc = nn.Linear(16 * 2 * 2, 3)

    def forward(self, x):
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        return self.fc(self.dropout(x))


train_x, train_y = make_images(48)
test_x, test_y = make_images(12)
model = SmallCNN()
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
criterion = nn.CrossEntropyLoss()
for step in range(30):
    model.train()
    optimizer.zero_grad()
    loss = criterion(model(train_x), train_y)
    loss.backward()
    optimizer.step()
    if step % 10 == 0 or step == 29:
        print(f"step {step} loss {loss.item():.8g}")

model.eval()
with torch.no_grad():
    logits = model(test_x)
    predicted = logits.argmax(dim=1)
print("test logits", [f"{v:.8g}" for v in logits[0].tolist()])
print("predicted", predicted.tolist())
print("accuracy", (predicted == test_y).float().mean().item())
print("running mean", [f"{v:.8g}" for v in model.bn1.running_mean[:4].tolist()])
checksum = sum(p.detach().abs().sum().item() for p in model.parameters())
print(f"param checksum {checksum:.8g}")
