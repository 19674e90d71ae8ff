"""kiln.nn.Module: registration, traversal, state dicts (round trip and errors), modes,
casting, gradients, containers and PyTorch's repr."""
import copy
import pickle
from collections import OrderedDict

import numpy as np
import pytest
from nn_helpers import check_gradients, t64

import kiln
from kiln import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.bn = nn.BatchNorm1d(4)
        self.fc2 = nn.Linear(4, 2)
        self.register_buffer("scale", kiln.tensor(2.0))
        self.register_buffer("cache", kiln.zeros(1), persistent=False)

    def forward(self, x):
        return self.fc2(nn.functional.relu(self.bn(self.fc1(x)))) * self.scale


NET_KEYS = ["scale", "fc1.weight", "fc1.bias", "bn.weight", "bn.bias", "bn.running_mean",
            "bn.running_var", "bn.num_batches_tracked", "fc2.weight", "fc2.bias"]


# ---- registration and traversal --------------------------------------------------------------
def test_attributes_register_parameters_buffers_and_modules():
    net = Net()
    assert [k for k, _ in net.named_parameters()] == ["fc1.weight", "fc1.bias", "bn.weight",
                                                      "bn.bias", "fc2.weight", "fc2.bias"]
    assert [k for k, _ in net.named_buffers()] == ["scale", "cache", "bn.running_mean",
                                                   "bn.running_var", "bn.num_batches_tracked"]
    assert [k for k, _ in net.named_children()] == ["fc1", "bn", "fc2"]
    assert [k for k, _ in net.named_modules()] == ["", "fc1", "bn", "fc2"]
    assert list(net.children()) == [net.fc1, net.bn, net.fc2]
    assert [k for k, _ in net.named_parameters(recurse=False)] == []
    assert isinstance(net.fc1.weight, nn.Parameter) and net.fc1.weight.requires_grad
    assert net.get_submodule("bn") is net.bn


def test_shared_parameters_and_modules_are_listed_once():
    shared = nn.Linear(2, 2)
    seq = nn.Sequential(shared, nn.ReLU(), shared)
    assert len(list(seq.parameters())) == 2
    assert len(list(seq.modules())) == 3
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_setattr_rules_follow_pytorch():
    m = nn.Linear(2, 2)
    m.bias = None
    assert m.bias is None and [k for k, _ in m.named_parameters()] == ["weight"]
    with pytest.raises(TypeError, match="cannot assign .* as parameter 'weight'"):
        m.weight = kiln.ones(2, 2)
    m.extra = nn.ReLU()
    assert "extra" in dict(m.named_children())
    del m.extra
    assert "extra" not in dict(m.named_children())
    with pytest.raises(AttributeError, match="'Linear' object has no attribute 'nope'"):
        m.nope
    with pytest.raises(KeyError, match=r"buffer name can.*t contain"):
        m.register_buffer("a.b", kiln.ones(1))
    p = nn.Parameter(kiln.ones(2), requires_grad=False)
    p.add_(kiln.ones(2, requires_grad=True))           # now has a grad_fn: not a leaf
    with pytest.raises(ValueError, match="Cannot assign non-leaf Tensor to parameter 'p'"):
        m.register_parameter("p", p)


def test_assigning_before_init_is_an_error():
    class Broken(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(kiln.ones(1))
    with pytest.raises(AttributeError, match=r"before Module.__init__\(\) call"):
        Broken()


def test_forward_missing_is_reported():
    with pytest.raises(NotImplementedError, match='missing the required "forward"'):
        nn.Module()(kiln.ones(1))


# ---- Parameter -------------------------------------------------------------------------------
def test_parameter_shares_data_and_prints_like_pytorch():
    data = kiln.tensor([1.0, 2.0])
    p = nn.Parameter(data)
    assert p.requires_grad and p.is_leaf and not data.requires_grad
    assert repr(p) == str(p) == "Parameter containing:\ntensor([1., 2.], requires_grad=True)"
    assert not nn.Parameter(data, requires_grad=False).requires_grad
    assert type(p * 2) is kiln.Tensor
    with pytest.raises(TypeError, match="expects a kiln.Tensor"):
        nn.Parameter([1.0])


def test_deepcopy_and_pickle_keep_structure():
    net = Net()
    for clone in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        assert isinstance(clone.fc1.weight, nn.Parameter)
        assert clone.fc1.weight is not net.fc1.weight
        np.testing.assert_array_equal(clone.fc1.weight.detach().numpy(),
                                      net.fc1.weight.detach().numpy())
        assert list(clone.state_dict()) == NET_KEYS


# ---- state dicts -----------------------------------------------------------------------------
def test_state_dict_keys_order_and_detached_values():
    net = Net()
    sd = net.state_dict()
    assert isinstance(sd, OrderedDict) and list(sd) == NET_KEYS
    assert not sd["fc1.weight"].requires_grad and type(sd["fc1.weight"]) is kiln.Tensor
    assert sd["bn.num_batches_tracked"].dtype == kiln.int64
    kept = net.state_dict(keep_vars=True)
    assert kept["fc1.weight"] is net.fc1.weight


def test_state_dict_round_trip_keeps_parameter_objects(rng):
    src, dst = Net(), Net()
    src.train()(kiln.randn(5, 3))               # moves src's running statistics
    params = list(dst.parameters())
    result = dst.load_state_dict(src.state_dict())
    assert repr(result) == "<All keys matched successfully>"
    assert list(dst.parameters()) == params and all(
        a is b for a, b in zip(dst.parameters(), params))
    for key, value in src.state_dict().items():
        np.testing.assert_array_equal(dst.state_dict()[key].numpy(), value.numpy(), key)
    x = kiln.randn(4, 3)
    src.eval(), dst.eval()
    np.testing.assert_array_equal(dst(x).detach().numpy(), src(x).detach().numpy())


def test_load_state_dict_reports_missing_and_unexpected_keys():
    net = Net()
    sd = net.state_dict()
    del sd["fc2.bias"], sd["bn.running_var"]
    sd["fc3.weight"] = kiln.ones(1)
    sd["fc1.extra"] = kiln.ones(1)
    before = net.fc1.weight.detach().numpy().copy()
    with pytest.raises(RuntimeError) as info:
        net.load_state_dict({**sd, "fc1.weight": kiln.zeros(4, 3)})
    text = str(info.value)
    assert text.startswith("Error(s) in loading state_dict for Net:")
    assert 'Missing key(s) in state_dict: "bn.running_var", "fc2.bias".' in text
    # NOTE: PyTorch's order: the root module's unknown keys first, then each child's
    assert 'Unexpected key(s) in state_dict: "fc3.weight", "fc1.extra".' in text
    assert isinstance(info.value, nn.StateDictError)
    np.testing.assert_array_equal(net.fc1.weight.detach().numpy(), before)  # nothing copied
    missing, unexpected = net.load_state_dict(sd, strict=False)
    assert missing == ["bn.running_var", "fc2.bias"]
    assert unexpected == ["fc3.weight", "fc1.extra"]


def test_load_state_dict_shape_mismatch_names_key_and_both_shapes():
    model = nn.Sequential(OrderedDict(fc=nn.Linear(3, 2)))
    bigger = nn.Sequential(OrderedDict(fc=nn.Linear(3, 4))).state_dict()
    message = ("size mismatch for fc.weight: copying a param with shape [4, 3] from "
               "checkpoint, the shape in current model is [2, 3].")
    for strict in (True, False):
        with pytest.raises(RuntimeError) as info:
            model.load_state_dict(bigger, strict=strict)
        assert message in str(info.value)
        assert "size mismatch for fc.bias: copying a param with shape [4] from checkpoint, " \
               "the shape in current model is [2]." in str(info.value)


def test_load_state_dict_casts_values_and_rejects_non_tensors():
    model = nn.Linear(2, 1)
    model.load_state_dict({"weight": kiln.tensor([[1.0, 2.0]], dtype=kiln.float64),
                           "bias": kiln.tensor([3.0])})
    assert model.weight.dtype == kiln.float32 and model.weight.tolist() == [[1.0, 2.0]]
    with pytest.raises(RuntimeError, match='parameter named "bias", expected kiln.Tensor'):
        model.load_state_dict({"weight": kiln.ones(1, 2), "bias": [1.0]})


def test_non_persistent_buffers_stay_out_of_state_dict():
    net = Net()
    assert "cache" not in net.state_dict()
    net.load_state_dict(net.state_dict())


# ---- modes, gradients, casting ---------------------------------------------------------------
def test_train_eval_propagate():
    net = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Dropout(), nn.BatchNorm1d(2)))
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    with pytest.raises(ValueError, match="boolean"):
        net.train("yes")


def test_zero_grad_and_requires_grad():
    net = nn.Linear(3, 2)
    net(kiln.ones(1, 3)).sum().backward()
    assert net.weight.grad is not None
    net.zero_grad(set_to_none=False)
    assert net.weight.grad.tolist() == [[0.0] * 3] * 2
    net.zero_grad()
    assert net.weight.grad is None and net.bias.grad is None
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())


def test_double_and_to_cast_in_place_keeping_parameters():
    net = Net()
    weight = net.fc1.weight
    net(kiln.randn(4, 3)).sum().backward()
    assert net.double() is net
    assert net.fc1.weight is weight and weight.dtype == kiln.float64
    assert weight.grad.dtype == kiln.float64
    assert net.bn.running_mean.dtype == kiln.float64
    assert net.bn.num_batches_tracked.dtype == kiln.int64       # integer buffers stay
    net.to(kiln.float32)
    assert net.fc1.weight is weight and weight.dtype == kiln.float32
    device = "cuda" if kiln.cuda.is_available() else "cpu"
    assert net.to(device) is net and net.to(kiln.device("cpu"), dtype=kiln.float64) is net
    assert weight.dtype == kiln.float64 and net.cpu() is net
    with pytest.raises(TypeError, match="only accepts floating point"):
        net.to(kiln.int64)


def test_apply_visits_children_first():
    seen = []
    nn.Sequential(nn.Linear(1, 1), nn.ReLU()).apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "ReLU", "Sequential"]


def test_module_gradients_match_finite_differences(rng):
    net = Net().double()
    with kiln.no_grad():
        net.bn.weight.copy_(t64(rng.uniform(0.5, 1.5, 4)))
    x = t64(rng.standard_normal((5, 3)), requires_grad=True)
    assert len(check_gradients(net, x, rng=rng)) == 7


def test_gradient_check_catches_a_wrong_gradient(rng):
    """The checker itself: a layer whose gradient is wrong (a detach) must fail it."""
    class Wrong(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(t64([0.5, -1.5]))

        def forward(self, x):
            return x * self.w + (x * self.w).detach() ** 2
    with pytest.raises(AssertionError, match="w: max scaled error"):
        check_gradients(Wrong(), t64([1.0, 2.0]), rng=rng)


# ---- containers ------------------------------------------------------------------------------
def test_sequential_indexing_and_editing():
    a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    seq = nn.Sequential(a, b, c)
    assert seq[0] is a and seq[-1] is c and len(seq) == 3 and list(seq) == [a, b, c]
    assert isinstance(seq[1:], nn.Sequential) and list(seq[1:]) == [b, c]
    assert list(seq[1:]._modules) == ["1", "2"]
    seq[1] = nn.Tanh()
    assert isinstance(seq[1], nn.Tanh)
    del seq[1]
    assert list(seq._modules) == ["0", "1"] and seq[1] is c
    seq.append(nn.Sigmoid()).insert(1, nn.ReLU())
    assert [type(m).__name__ for m in seq] == ["Linear", "ReLU", "Linear", "Sigmoid"]
    with pytest.raises(IndexError, match="index 4 is out of range"):
        seq[4]
    named = nn.Sequential(OrderedDict([("conv", nn.Identity()), ("act", nn.ReLU())]))
    assert named.act is named[1] and list(named.state_dict()) == []


def test_module_list_behaves_like_a_list():
    layers = nn.ModuleList([nn.Linear(2, 2), nn.ReLU()])
    layers += [nn.Tanh()]
    layers.insert(0, nn.Identity())
    assert [type(m).__name__ for m in layers] == ["Identity", "Linear", "ReLU", "Tanh"]
    assert isinstance(layers[1:3], nn.ModuleList) and len(layers[1:3]) == 2
    assert isinstance(layers.pop(), nn.Tanh) and len(layers) == 3
    del layers[0]
    assert list(layers._modules) == ["0", "1"]
    assert [k for k, _ in layers.named_parameters()] == ["0.weight", "0.bias"]
    with pytest.raises(TypeError, match="should be called with an iterable"):
        layers.extend(5)
    with pytest.raises(NotImplementedError):
        layers(kiln.ones(2))


def test_module_dict_behaves_like_a_dict():
    heads = nn.ModuleDict([("b", nn.Linear(2, 1)), ("a", nn.ReLU())])
    heads["c"] = nn.Tanh()
    assert list(heads) == ["b", "a", "c"] and "a" in heads and len(heads) == 3
    assert [k for k, _ in heads.items()] == list(heads.keys())
    assert isinstance(heads.pop("a"), nn.ReLU) and list(heads.keys()) == ["b", "c"]
    assert list(heads.state_dict()) == ["b.weight", "b.bias"]
    with pytest.raises(ValueError, match="has length 3; 2 is required"):
        heads.update([("x", nn.ReLU(), 1)])
    heads.clear()
    assert len(heads) == 0


# ---- repr ------------------------------------------------------------------------------------
def test_nested_repr_is_pytorchs():
    net = nn.Sequential(
        nn.Linear(4, 8), nn.ReLU(),
        nn.ModuleList([nn.Linear(8, 8), nn.Linear(8, 8), nn.Dropout(0.1)]),
        nn.ModuleDict({"head": nn.Linear(8, 2)}), nn.Sequential())
    assert repr(net) == """Sequential(
  (0): Linear(in_features=4, out_features=8, bias=True)
  (1): ReLU()
  (2): ModuleList(
    (0-1): 2 x Linear(in_features=8, out_features=8, bias=True)
    (2): Dropout(p=0.1, inplace=False)
  )
  (3): ModuleDict(
    (head): Linear(in_features=8, out_features=2, bias=True)
  )
  (4): Sequential()
)"""
    assert repr(Net()).splitlines()[2] == ("  (bn): BatchNorm1d(4, eps=1e-05, momentum=0.1, "
                                           "affine=True, bias=True, track_running_stats=True)")


LAYER_REPRS = [
    (lambda: nn.Linear(3, 2, bias=False), "Linear(in_features=3, out_features=2, bias=False)"),
    (nn.ReLU, "ReLU()"), (lambda: nn.ReLU(True), "ReLU(inplace=True)"),
    (nn.GELU, "GELU(approximate='none')"), (lambda: nn.GELU("tanh"), "GELU(approximate='tanh')"),
    (nn.Sigmoid, "Sigmoid()"), (nn.Tanh, "Tanh()"), (nn.SiLU, "SiLU()"),
    (nn.LeakyReLU, "LeakyReLU(negative_slope=0.01)"),
    (lambda: nn.Softmax(dim=1), "Softmax(dim=1)"), (nn.LogSoftmax, "LogSoftmax(dim=None)"),
    (nn.Dropout, "Dropout(p=0.5, inplace=False)"), (nn.Identity, "Identity()"),
    (nn.Flatten, "Flatten(start_dim=1, end_dim=-1)"),
    (lambda: nn.Unflatten(1, (2, 5)), "Unflatten(dim=1, unflattened_size=(2, 5))"),
    (lambda: nn.BatchNorm2d(16, momentum=None, affine=False), "BatchNorm2d(16, eps=1e-05, "
     "momentum=None, affine=False, bias=False, track_running_stats=True)"),
    (lambda: nn.BatchNorm1d(2, bias=False), "BatchNorm1d(2, eps=1e-05, momentum=0.1, "
     "affine=True, bias=False, track_running_stats=True)"),
    (lambda: nn.LayerNorm([2, 3], elementwise_affine=False),
     "LayerNorm((2, 3), eps=1e-05, elementwise_affine=False, bias=False)"),
    (lambda: nn.Embedding(10, 3), "Embedding(10, 3)"),
    (lambda: nn.Embedding(10, 3, padding_idx=2), "Embedding(10, 3, padding_idx=2)"),
    (nn.CrossEntropyLoss, "CrossEntropyLoss()"), (nn.MSELoss, "MSELoss()"),
    (nn.BCEWithLogitsLoss, "BCEWithLogitsLoss()"), (nn.ModuleList, "ModuleList()"),
]


@pytest.mark.parametrize("make,text", LAYER_REPRS, ids=[t for _, t in LAYER_REPRS])
def test_layer_repr_is_pytorchs(make, text):
    assert repr(make()) == text
