# Tensor manipulation: slicing, boolean masks, integer indexing, assignment, gather/scatter,
# sort/topk, cumsum, einsum, and gradients through indexing.
import torch

torch.manual_seed(0)
x = torch.arange(24, dtype=torch.float32).reshape(4, 6)
print("slice", x[1:3, ::2].tolist())
print("mask", x[x > 16].tolist())
print("list index", x[0, [0, 2]].tolist(), x[[1, 3], [5, 0]].tolist())
rows = torch.tensor([0, 2, 3])
print("tensor index", x[rows].sum().item(), x[:, rows].sum().item())
print("negative", x[-1, -2].item(), x[..., -1].tolist())
print("none", x[None, 1, :2].shape)

y = x.clone()
y[y % 4 == 0] = -1.0
y[:, 1:3] += 100
y[0] = 7
y[2, [0, 5]] = torch.tensor([0.5, 0.25])
print("assign", y.tolist())

idx = torch.tensor([[0, 1], [2, 3], [4, 5], [1, 0]])
print("gather", torch.gather(x, 1, idx).tolist())
src = torch.arange(1, 7, dtype=torch.float32).reshape(3, 2)
scattered = torch.zeros(3, 5).scatter_(1, torch.tensor([[0, 1], [2, 3], [4, 0]]), src)
print("scatter", scattered.tolist())
counts = torch.zeros(4).scatter_add_(0, torch.tensor([0, 1, 1, 3, 3, 3]), torch.ones(6))
print("scatter_add", counts.tolist())
print("index_select", torch.index_select(x, 1, torch.tensor([5, 0])).tolist())
print("masked_fill", x[:2].masked_fill(x[:2] > 8, 0.0).tolist())
print("where", torch.where(x[0] > 2, x[0], -x[0]).tolist())

v = torch.tensor([3.0, -1.0, 4.0, 1.5, -9.0, 2.6, 5.0])
values, order = torch.sort(v, descending=True)
print("sort", values.tolist(), order.tolist())
print("argsort", torch.argsort(v).tolist())
top = torch.topk(v, 3)
print("topk", top.values.tolist(), top.indices.tolist())
print("cumsum", torch.cumsum(v, dim=0).tolist())
print("cumprod", torch.cumprod(torch.tensor([1.0, 2.0, 0.5, 3.0]), dim=0).tolist())
print("cumsum rows", x.cumsum(1)[:, -1].tolist())

a = torch.arange(6, dtype=torch.float32).reshape(2, 3)
b = torch.arange(12, dtype=torch.float32).reshape(3, 4)
print("einsum matmul", torch.einsum("ij,jk->ik", a, b).tolist())
batch = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4) / 10
print("einsum batch", torch.einsum("bij,bkj->bik", batch, batch).sum().item())
print("einsum trace", torch.einsum("ii->", torch.arange(9.0).reshape(3, 3)).item())
print("einsum outer", torch.einsum("i,j->ij", v[:2], v[2:4]).tolist())
print("tril", torch.tril(torch.ones(3, 3)).tolist(), torch.triu(x[:3, :3], diagonal=1).tolist())

w = torch.linspace(-1.0, 1.0, 8, requires_grad=True)
picked = w[w > 0].sum() + 2 * w[[0, 1, 1]].sum() + torch.gather(w, 0, torch.tensor([7, 7])).sum()
loss = picked + (w.cumsum(0) ** 2).sum() + torch.topk(w * w, 2).values.sum()
loss.backward()
print("loss", f"{loss.item():.8g}")
print("grad", [f"{g:.8g}" for g in w.grad.tolist()])
