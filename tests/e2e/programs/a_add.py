import torch

x = torch.tensor([2.0, 3.0])
y = torch.tensor([4.0, 1.0])
print(x + y)
