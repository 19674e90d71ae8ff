"""kiln.save / kiln.load: safetensors round trips of tensors of every dtype, nested state dicts,
optimizer state and checkpoints; other tools' safetensors files; clear errors for files that
are missing, truncated, not safetensors, or pickles; never unpickling."""
from __future__ import annotations

import collections
import doctest
import io
import json
import pickle

import numpy as np
import pytest
import safetensors.numpy as st

import kiln
import kiln.optim as optim
from kiln import serialization
from kiln.serialization import SerializationError, load, save

DTYPES = [kiln.float32, kiln.float64, kiln.int32, kiln.int64, kiln.bool]


def _same(a, b):
    assert isinstance(b, kiln.Tensor) and a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(), (0,), (3,), (2, 3, 4)])
def test_tensor_round_trip_keeps_dtype_shape_and_values(tmp_path, rng, dtype, shape):
    t = kiln.tensor(rng.standard_normal(shape) * 10, dtype=dtype)
    save(t, tmp_path / "t.safetensors")
    _same(t, load(tmp_path / "t.safetensors"))


def test_parameters_that_require_grad_save_their_values(tmp_path):
    w = kiln.tensor([1.5, -2.0], requires_grad=True)
    (w * w).sum().backward()
    save({"w": w}, tmp_path / "w.safetensors")
    back = load(str(tmp_path / "w.safetensors"))["w"]
    assert back.tolist() == [1.5, -2.0] and not back.requires_grad


def test_nested_state_dict_keeps_structure_key_order_and_key_types(tmp_path):
    sd = {"encoder": {"weight": kiln.ones(2, 3), "bias": kiln.zeros(3)},
          "head.weight": kiln.full((1,), 2.0), 0: kiln.tensor([1, 2]),
          "a.b": kiln.tensor(1.0), "a": {"b": kiln.tensor(2.0)}}
    save(sd, tmp_path / "sd.safetensors")
    back = load(tmp_path / "sd.safetensors")
    assert list(back) == ["encoder", "head.weight", 0, "a.b", "a"]
    assert list(back["encoder"]) == ["weight", "bias"]
    for want, got in [(sd["encoder"]["weight"], back["encoder"]["weight"]),
                      (sd[0], back[0]), (sd["a.b"], back["a.b"]), (sd["a"]["b"], back["a"]["b"])]:
        _same(want, got)
    names = sorted(st.load_file(str(tmp_path / "sd.safetensors")))
    assert names == ["0", "a.b", "a.b#1", "encoder.bias", "encoder.weight", "head.weight"]


def test_ordered_dicts_lists_tuples_and_scalars_round_trip(tmp_path):
    obj = collections.OrderedDict(
        [("xs", [kiln.ones(1), (kiln.zeros(2), 3)]), ("lr", 0.01), ("name", "run-1"),
         ("flags", [True, None, float("inf")]), ("epoch", 7), ("seed", np.int64(5))])
    save(obj, tmp_path / "o.safetensors")
    back = load(tmp_path / "o.safetensors")
    assert type(back) is collections.OrderedDict and list(back) == list(obj)
    assert isinstance(back["xs"], list) and isinstance(back["xs"][1], tuple)
    _same(obj["xs"][1][0], back["xs"][1][0])
    assert back["xs"][1][1] == 3 and back["lr"] == 0.01 and back["name"] == "run-1"
    assert back["flags"] == [True, None, float("inf")] and back["epoch"] == 7
    assert back["seed"] == 5 and type(back["seed"]) is int


def _trained_adam(params, steps):
    opt = optim.Adam(params, lr=0.05, amsgrad=True, weight_decay=0.01)
    for k in range(steps):
        for p in params:
            p.grad = p.detach() * 0.5 + k
        opt.step()
    return opt


def test_optimizer_checkpoint_round_trip_resumes_training_identically(tmp_path):
    params = [kiln.tensor([1.0, -2.0], requires_grad=True), kiln.ones(2, 2, requires_grad=True)]
    opt = _trained_adam(params, 3)
    path = tmp_path / "ckpt.safetensors"
    save({"params": [p.detach() for p in params], "optimizer": opt.state_dict(), "epoch": 3},
         path)
    ckpt = load(path, map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 3 and sorted(ckpt["optimizer"]["state"]) == [0, 1]
    assert ckpt["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    copies = [p.requires_grad_() for p in ckpt["params"]]
    resumed = optim.Adam(copies)
    resumed.load_state_dict(ckpt["optimizer"])
    for opt_, ps in [(opt, params), (resumed, copies)]:
        for k in range(3, 6):
            for p in ps:
                p.grad = p.detach() * 0.5 + k
            opt_.step()
    for a, b in zip(params, copies):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())


def test_file_objects_work_like_paths():
    buffer = io.BytesIO()
    save({"w": kiln.arange(4)}, buffer)
    assert load(io.BytesIO(buffer.getvalue()))["w"].tolist() == [0, 1, 2, 3]


def test_plain_safetensors_files_load_as_a_flat_dict(tmp_path):
    path = str(tmp_path / "hf.safetensors")
    st.save_file({"b.weight": np.ones((2, 2), np.float32), "a": np.arange(3, dtype=np.int64)},
                 path, metadata={"format": "pt"})
    back = load(path)
    assert list(back) == ["a", "b.weight"] and back["a"].dtype == kiln.int64


def test_a_file_is_plain_safetensors_with_no_pickle(tmp_path):
    path = tmp_path / "t.safetensors"
    save({"x": kiln.ones(2)}, path)
    data = path.read_bytes()
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    assert header["__metadata__"]["format"] == "kiln"
    assert json.loads(header["__metadata__"][serialization.NODES_KEY]) == \
        [["T", "x"], ["D", [["x", 0]]]]
    assert b"\x80\x04" not in data and b"pickle" not in data


def test_missing_file_error_names_the_path(tmp_path):
    path = tmp_path / "nope.safetensors"
    with pytest.raises(SerializationError, match=f"no such file: '{path}'") as info:
        load(path)
    assert isinstance(info.value, kiln.KilnError) and isinstance(info.value, FileNotFoundError)


@pytest.mark.parametrize("cut", [1, 7, 9, 40, -1, -8])
def test_truncated_file_fails_clearly(tmp_path, cut):
    path = tmp_path / "t.safetensors"
    save({"w": kiln.ones(4, 4), "b": kiln.zeros(4)}, path)
    data = path.read_bytes()
    path.write_bytes(data[:cut] if cut > 0 else data[:len(data) + cut])
    with pytest.raises(SerializationError, match=f"'{path}' is not a valid safetensors file.*"
                                                 "truncated or corrupted"):
        load(path)


@pytest.mark.parametrize("content", [b"", b"hello, this is not a tensor file at all",
                                     b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}"])
def test_garbage_files_fail_clearly(tmp_path, content):
    path = tmp_path / "g.bin"
    path.write_bytes(content)
    with pytest.raises(SerializationError, match="not a valid safetensors file"):
        load(path)


class _Boom:
    def __reduce__(self):
        return (pytest.fail, ("kiln.load unpickled a file",))


@pytest.mark.parametrize("header", [b"", b"PK\x03\x04"])
def test_pickles_are_refused_never_loaded(tmp_path, header):
    path = tmp_path / "model.pt"
    path.write_bytes(header + pickle.dumps(_Boom(), protocol=4))
    with pytest.raises(SerializationError, match="never unpickles") as info:
        load(path)
    assert "safetensors" in str(info.value)


def test_files_of_kiln_0_1_with_a_nested_description_still_load(tmp_path):
    path = str(tmp_path / "old.safetensors")
    nested = ["O", [["w", ["T", "w"]], ["state", ["D", [[0, ["L", [["T", "state.0.0"],
                                                                    ["V", 2.5]]]]]]]]]
    st.save_file({"w": np.arange(3, dtype=np.float32), "state.0.0": np.ones(2, np.int64)},
                 path, metadata={"format": "kiln", serialization.STRUCTURE_KEY: json.dumps(nested)})
    back = load(path)
    assert type(back) is collections.OrderedDict and list(back) == ["w", "state"]
    assert back["w"].tolist() == [0.0, 1.0, 2.0] and back["w"].dtype == kiln.float32
    assert back["state"][0][0].tolist() == [1, 1] and back["state"][0][1] == 2.5


def test_malformed_kiln_description_fails_clearly(tmp_path):
    path = str(tmp_path / "m.safetensors")
    for key, text in [(serialization.STRUCTURE_KEY, text) for text in
                      ["{not json", '["T", "missing"]', '["D", [["k"]]]', '["Q", 1]']] + \
                     [(serialization.NODES_KEY, text) for text in
                      ["{not json", "[]", '[["T", "missing"]]', '[["D", [["k", 0]]]]',
                       '[["V", 1], ["L", [1]]]', '[["V", [1, 2]]]', '[["V", 1], ["D", [[1.5, 0]]]]',
                       '[["V", 1], ["D", [[true, 0]]]]', '[["Q", 1]]', '[["V", 1], ["L", [-1]]]']]:
        st.save_file({"x": np.ones(1, np.float32)}, path, metadata={key: text})
        with pytest.raises(SerializationError, match="Kiln structure description|does not hold"):
            load(path)


def test_unsupported_dtypes_and_objects_fail_clearly(tmp_path):
    path = str(tmp_path / "h.safetensors")
    st.save_file({"big": np.ones(2, np.uint64)}, path)
    with pytest.raises(SerializationError, match="'big'.*'U64'.*cannot load"):
        load(path)
    with pytest.raises(SerializationError, match="cannot save a ndarray") as info:
        save({"a": np.ones(2)}, tmp_path / "x.safetensors")
    assert "kiln.from_numpy" in str(info.value)
    with pytest.raises(SerializationError, match="(?s)cannot save a SGD.*state_dict"):
        save(optim.SGD([kiln.ones(1, requires_grad=True)], lr=0.1), tmp_path / "x.safetensors")
    with pytest.raises(SerializationError, match="keys must be str or int"):
        save({(1, 2): kiln.ones(1)}, tmp_path / "x.safetensors")


def test_map_location_puts_tensors_on_cpu_or_cuda(tmp_path, monkeypatch):
    path = tmp_path / "t.safetensors"
    save({"w": kiln.ones(1), "more": [kiln.zeros(2)]}, path)
    assert load(path, map_location=kiln.device("cpu"))["w"].tolist() == [1.0]
    with pytest.raises(kiln.NotSupportedError, match="map_location='tpu'"):
        load(path, map_location="tpu")
    with pytest.raises(kiln.NotSupportedError, match="dict or function"):
        load(path, map_location=lambda storage, loc: storage)
    monkeypatch.setenv("KILN_FAKE_CUDA", "1")         # NOTE: the simulated GPU
    got = load(path, map_location="cuda:0")
    assert got["w"].device == "cuda:0" and got["more"][0].device == "cuda:0"
    save({"w": got["w"] * 3}, tmp_path / "back.safetensors")     # NOTE: saved from the GPU
    assert load(tmp_path / "back.safetensors")["w"].tolist() == [3.0]


def test_docstring_examples():
    result = doctest.testmod(serialization)
    assert result.attempted > 0 and result.failed == 0
