import torch
import torch.nn as nn

torch.manual_seed(0)
layer = nn.Linear(3, 1)
out = layer(torch.tensor([1.0, 2.0, 3.0]))
print(out)
expected = (layer.weight @ torch.tensor([1.0, 2.0, 3.0]) + layer.bias).item()
print("RESULT", out.shape == torch.Size([1]), abs(out.item() - expected) < 1e-6)
