# Feature extraction with forward hooks, gradient inspection with full backward hooks and
# retain_grad, retain_graph for two backward passes, and requires_grad_(False) to freeze.
import torch
import torch.nn as nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
x = torch.randn(5, 4)
features = {}
gradients = {}


def save_output(name):
    def hook(module, inputs, output):
        features[name] = output.detach()
    return hook


def save_grad_output(name):
    def hook(module, grad_input, grad_output):
        gradients[name] = grad_output[0].detach()
    return hook


handles = [model[1].register_forward_hook(save_output("relu")),
           model[2].register_full_backward_hook(save_grad_output("fc2"))]
out = model(x)
loss = out.pow(2).mean()
loss.backward(retain_graph=True)
first = model[0].weight.grad.clone()
loss.backward()
print("relu features", features["relu"].shape, f"{features['relu'].sum().item():.8g}")
print("fc2 grad output", [f"{v:.8g}" for v in gradients["fc2"][0].tolist()])
print("accumulated twice", bool(torch.all((model[0].weight.grad - 2 * first).abs() < 1e-6)))
for handle in handles:
    handle.remove()

model.zero_grad()
model[0].requires_grad_(False)
hidden = model[0](x * 2).requires_grad_(True)
activated = model[1](hidden)
activated.retain_grad()
model[2](activated).sum().backward()
print("frozen grad", model[0].weight.grad, hidden.requires_grad)
print("retained grad", [f"{v:.8g}" for v in activated.grad[0].tolist()[:4]])
print("leaf grad", [f"{v:.8g}" for v in hidden.grad[1].tolist()[:4]])
print("trainable", [name for name, p in model.named_parameters() if p.requires_grad])
features.clear()
model(x)
print("hook removed", len(features))
