"""kiln.save / kiln.load on the files people have: every key length (no header length is taken
for a pickle), every dtype (F16 and BF16 files from safetensors and PyTorch), nesting of any
depth, module and optimizer state dicts, random structures (Hypothesis), and a clear
SerializationError for every kind of bad file."""
from __future__ import annotations

import collections
import io
import json

import numpy as np
import pytest
import safetensors.numpy as st
from hypothesis import given, settings
from hypothesis import strategies as hs

import kiln
import kiln.nn as nn
import kiln.optim as optim
from kiln import serialization
from kiln.serialization import SerializationError, load, save

DTYPES = [kiln.float32, kiln.float64, kiln.int32, kiln.int64, kiln.bool]


def _round_trip(obj):
    buffer = io.BytesIO()
    save(obj, buffer)
    return load(io.BytesIO(buffer.getvalue()))


def _bytes_of(obj) -> bytes:
    buffer = io.BytesIO()
    save(obj, buffer)
    return buffer.getvalue()


def _assert_same(want, got):
    """Equal values of exactly the same types, key order and tensor dtypes."""
    assert type(got) is type(want), (type(want), type(got))
    if isinstance(want, kiln.Tensor):
        assert (got.dtype, got.shape) == (want.dtype, want.shape)
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    elif isinstance(want, dict):
        assert list(got) == list(want)
        for key in want:
            _assert_same(want[key], got[key])
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want)
        for a, b in zip(want, got):
            _assert_same(a, b)
    else:
        assert got == want


# ---- every key length -----------------------------------------------------------------------
@pytest.mark.parametrize("length", range(1, 401))
def test_every_key_length_round_trips(length):
    key = ("abcdefghij" * 40)[:length]
    obj = {key: kiln.arange(3, dtype=kiln.float32), "nested": {key: [kiln.tensor(length)]}}
    _assert_same(obj, _round_trip(obj))


def test_the_key_lengths_cover_headers_that_start_like_a_pickle():
    # NOTE: proves the table above meets the old bug: a header length of 0x280 is written
    # as the bytes 80 02, the start of a protocol-2 pickle (what torch.save wrote).
    firsts = {_bytes_of({("abcdefghij" * 40)[:n]: kiln.arange(3, dtype=kiln.float32),
                         "nested": {("abcdefghij" * 40)[:n]: [kiln.tensor(n)]}})[:2]
              for n in range(1, 401)}
    assert {b[:1] for b in firsts} >= {b"\x80"} and b"\x80\x02" in firsts


def test_a_path_round_trip_of_a_header_that_starts_with_0x80(tmp_path):
    for length in range(60, 140):
        data = _bytes_of({"k" * length: kiln.ones(2)})
        if data[0] == 0x80:
            break
    path = tmp_path / "k.safetensors"
    save({"k" * length: kiln.ones(2)}, path)
    assert path.read_bytes()[0] == 0x80
    assert load(path)["k" * length].tolist() == [1.0, 1.0]


# ---- every dtype ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_kiln_dtype_round_trips_with_extreme_values(dtype):
    info = np.finfo if dtype.is_float else np.iinfo
    values = [0, 1] if dtype == kiln.bool else \
        [info(dtype.np).min, info(dtype.np).max, 0, -1, 7]
    t = kiln.tensor(np.array(values, dtype=dtype.np).reshape(-1, 1))
    _assert_same({"t": t, "scalar": t[0, 0]}, _round_trip({"t": t, "scalar": t[0, 0]}))


def test_special_float_values_round_trip_bit_for_bit():
    values = np.array([np.nan, np.inf, -np.inf, -0.0, 5e-324, 1e308], np.float64)
    back = _round_trip(kiln.tensor(values))
    assert back.numpy().tobytes() == values.tobytes()


def test_bfloat16_bytes_load_as_the_same_float32_values(tmp_path):
    # NOTE: hand-written BF16 bits: 1.0, -2.0, inf, the smallest subnormal, 3.140625
    bits = np.array([0x3F80, 0xC000, 0x7F80, 0x0001, 0x4049], "<u2")
    path = tmp_path / "bf16.safetensors"
    path.write_bytes(_file({"w": {"dtype": "BF16", "shape": [5], "data_offsets": [0, 10]}},
                           bits.tobytes()))
    back = load(path)["w"]
    assert back.dtype == kiln.float32
    want = np.array([1.0, -2.0, np.inf, np.float32(2.0) ** -133, 3.140625], np.float32)
    np.testing.assert_array_equal(back.numpy(), want)


@pytest.mark.parametrize("name", ["bfloat16", "float16"])
def test_torch_half_safetensors_files_load_as_float32(tmp_path, name):
    torch = pytest.importorskip("torch")
    storch = pytest.importorskip("safetensors.torch")
    gen = torch.Generator().manual_seed(0)
    w = (torch.randn(3, 4, generator=gen) * 100).to(getattr(torch, name))
    path = str(tmp_path / "half.safetensors")
    storch.save_file({"w": w, "b": torch.zeros(2, dtype=w.dtype)}, path)
    back = load(path)
    assert list(back) == ["b", "w"] and back["w"].dtype == kiln.float32
    np.testing.assert_array_equal(back["w"].numpy(), w.float().numpy())
    model = nn.Linear(4, 3)
    model.load_state_dict({"weight": back["w"], "bias": kiln.zeros(3)})
    np.testing.assert_array_equal(model.weight.detach().numpy(), w.float().numpy())


@pytest.mark.parametrize("np_dtype,kiln_dtype", [
    (np.float16, kiln.float32), (np.int8, kiln.int32), (np.uint8, kiln.int32),
    (np.int16, kiln.int32), (np.uint16, kiln.int32), (np.uint32, kiln.int64)], ids=str)
def test_narrower_dtypes_load_widened_with_the_same_values(tmp_path, np_dtype, kiln_dtype):
    info = np.finfo if np.dtype(np_dtype).kind == "f" else np.iinfo
    values = np.array([info(np_dtype).min, info(np_dtype).max, 0, 1], np_dtype)
    path = str(tmp_path / "n.safetensors")
    st.save_file({"x": values}, path)
    back = load(path)["x"]
    assert back.dtype == kiln_dtype
    np.testing.assert_array_equal(back.numpy(), values.astype(kiln_dtype.np))


def test_files_kiln_writes_load_in_pytorch_with_the_same_values(tmp_path):
    torch = pytest.importorskip("torch")
    storch = pytest.importorskip("safetensors.torch")
    obj = {"w": kiln.randn(3, 2), "i": kiln.arange(4), "m": kiln.ones(2) > 0,
           "d": kiln.tensor([1.5], dtype=kiln.float64), "k" * 80: kiln.zeros(1)}
    save(obj, tmp_path / "k.safetensors")
    theirs = storch.load_file(str(tmp_path / "k.safetensors"))
    for key, t in obj.items():
        assert str(theirs[key].dtype) == "torch." + {"bool": "bool"}.get(
            t.dtype.name, t.dtype.name)
        np.testing.assert_array_equal(theirs[key].numpy(), t.numpy())
    del torch


# ---- nesting, cycles, state dicts -----------------------------------------------------------
def test_deep_nesting_saves_and_loads_without_recursion():
    depth = 5000
    obj = kiln.tensor([7])
    for i in range(depth):
        obj = [obj] if i % 2 else {"k": obj, "i": i}
    back = _round_trip(obj)
    for i in reversed(range(depth)):
        assert type(back) is (list if i % 2 else dict)
        back = back[0] if i % 2 else back["k"]
    assert back.tolist() == [7]


def test_an_object_that_contains_itself_fails_clearly():
    cycle: list = [kiln.ones(1)]
    cycle.append({"again": cycle})
    with pytest.raises(SerializationError, match="contains itself \\(at '1.again'\\)"):
        save(cycle, io.BytesIO())
    shared = kiln.ones(1)
    back = _round_trip({"a": [shared], "b": [shared]})  # NOTE: shared, not a cycle
    assert back["a"][0].tolist() == back["b"][0].tolist() == [1.0]


def test_old_nested_descriptions_too_deep_to_read_fail_clearly(tmp_path):
    text = '["L", [' * 100_000 + ']]' * 100_000
    path = str(tmp_path / "deep.safetensors")
    st.save_file({"x": np.ones(1, np.float32)}, path,
                 metadata={serialization.STRUCTURE_KEY: text})
    with pytest.raises(SerializationError, match=f"'{path}'.*nested too deeply"):
        load(path)


def _model():
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def test_module_state_dict_round_trips_with_its_metadata(tmp_path):
    model = _model()
    model(kiln.randn(5, 3))                                # NOTE: moves the running stats
    sd = model.state_dict()
    save(sd, tmp_path / "m.safetensors")
    back = load(tmp_path / "m.safetensors")
    _assert_same(sd, back)
    assert back._metadata == sd._metadata and back._metadata["1"] == {"version": 2}
    fresh = _model()
    fresh.load_state_dict(back)
    fresh.eval()
    model.eval()
    x = kiln.randn(2, 3)
    np.testing.assert_array_equal(fresh(x).detach().numpy(), model(x).detach().numpy())


@pytest.mark.parametrize("make", [
    lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    lambda ps: optim.Adam(ps, lr=0.01, amsgrad=True),
    lambda ps: optim.AdamW([{"params": ps[:1]}, {"params": ps[1:], "lr": 0.5}], lr=0.01),
    lambda ps: optim.RMSprop(ps, lr=0.01, centered=True, momentum=0.5)],
    ids=["sgd", "adam", "adamw-groups", "rmsprop"])
def test_optimizer_state_dicts_round_trip_exactly(make):
    params = [kiln.randn(3, requires_grad=True), kiln.randn(2, 2, requires_grad=True)]
    opt = make(params)
    for _ in range(2):
        sum((p * p).sum() for p in params).backward()
        opt.step()
        opt.zero_grad()
    sd = opt.state_dict()
    back = _round_trip(sd)
    _assert_same(sd, back)
    make([p.detach().clone().requires_grad_() for p in params]).load_state_dict(back)


# ---- random structures ----------------------------------------------------------------------
def _tensor(dtype, shape, seed):
    values = np.random.default_rng(seed).standard_normal(shape) * 1000
    return kiln.tensor(values.astype(dtype.np) if dtype != kiln.bool else values > 0)


_KEYS = hs.one_of(hs.text(max_size=120), hs.integers(-2**70, 2**70))
_LEAVES = hs.one_of(
    hs.builds(_tensor, hs.sampled_from(DTYPES), hs.lists(hs.integers(0, 3), max_size=3),
              hs.integers(0, 2**32 - 1)),
    hs.none(), hs.booleans(), hs.integers(-2**70, 2**70), hs.floats(allow_nan=False),
    hs.text(max_size=20))
_TREES = hs.recursive(
    _LEAVES, lambda children: hs.one_of(
        hs.lists(children, max_size=4), hs.tuples(children, children),
        hs.dictionaries(_KEYS, children, max_size=4),
        hs.dictionaries(_KEYS, children, max_size=4).map(collections.OrderedDict)),
    max_leaves=16)


@settings(max_examples=60)
@given(_TREES)
def test_random_nested_structures_round_trip(obj):
    _assert_same(obj, _round_trip(obj))


# ---- bad files ------------------------------------------------------------------------------
def _file(header: dict, body: bytes = b"", raw: bytes | None = None) -> bytes:
    text = raw if raw is not None else json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + body


def _load_bytes(tmp_path, data: bytes, match: str):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(data)
    with pytest.raises(SerializationError, match=f"(?s)'{path}'.*{match}"):
        load(path)


F32x2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


@pytest.mark.parametrize("data,match", [
    (b"\x05\0\0\0\0\0\0\0{}", "header length says 5 bytes, but only 2 follow"),
    (b"\xff" * 8 + b"{}", "header length says"),
    (_file({}, raw=b"{abc"), "header is not JSON"),
    (_file({}, raw=b"{\xff\xfe}"), "header is not JSON.*UnicodeDecodeError"),
    (_file({}, raw=b"[1, 2]"), "header is a JSON list, not an object"),
    (_file({}, raw=b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"), "nested too deeply"),
    (_file({"__metadata__": [1]}), "__metadata__ is a list"),
    (_file({"x": [1]}), "'x' is not an object with dtype, shape and data_offsets"),
    (_file({"x": {**F32x2, "shape": [-2]}}, b"\0" * 8), "shape \\[-2\\], not a list"),
    (_file({"x": {**F32x2, "shape": "2"}}, b"\0" * 8), "shape '2', not a list"),
    (_file({"x": {**F32x2, "data_offsets": [8, 0]}}, b"\0" * 8), "not \\[begin, end\\]"),
    (_file({"x": {**F32x2, "data_offsets": [0, 8, 9]}}, b"\0" * 8), "not \\[begin, end\\]"),
    (_file({"x": {**F32x2, "data_offsets": [0, 800]}}, b"\0" * 8), "past the end of the data"),
    (_file({"x": {**F32x2, "data_offsets": [0, 4]}}, b"\0" * 8), "needs 8 bytes.*hold 4"),
    (_file({"x": {**F32x2, "shape": [2**40, 2**40]}}, b"\0" * 8), "needs .* bytes"),
    (_file({"x": {**F32x2, "dtype": "F8_E4M3"}}, b"\0" * 8), "'F8_E4M3', which Kiln cannot"),
    (_file({"x": {**F32x2, "dtype": "float32"}}, b"\0" * 8), "'float32', which Kiln cannot"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_headers_fail_clearly(tmp_path, data, match):
    _load_bytes(tmp_path, data, match)


def test_every_truncation_of_a_file_fails_clearly(tmp_path):
    data = _bytes_of({"w": kiln.ones(3, 3), "step": 3, "b": [kiln.arange(2)]})
    for cut in range(len(data)):
        with pytest.raises(SerializationError, match="not a valid safetensors file"):
            load(io.BytesIO(data[:cut]))


def test_any_corrupted_header_byte_loads_or_fails_clearly():
    data = _bytes_of({"w": kiln.ones(2), 3: (kiln.arange(2), 0.5), "s": "x"})
    header_end = 8 + int.from_bytes(data[:8], "little")
    for at in range(header_end):
        for byte in (0x00, 0x22, 0x30, 0x5B, 0x7D, 0x80, 0xFF):
            bad = data[:at] + bytes([byte]) + data[at + 1:]
            try:
                load(io.BytesIO(bad))
            except SerializationError:
                pass


def test_pickles_and_torch_checkpoints_are_refused(tmp_path):
    torch = pytest.importorskip("torch")
    for zipped in (True, False):
        path = tmp_path / f"model-{zipped}.pt"
        torch.save({"w": torch.ones(2)}, path, _use_new_zipfile_serialization=zipped)
        with pytest.raises(SerializationError, match=f"'{path}' looks like a PyTorch "
                                                     "pickle/zip.*never unpickles"):
            load(path)


def test_missing_paths_and_directories_fail_like_pytorch(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file") as info:
        load(tmp_path / "missing.safetensors")
    assert isinstance(info.value, SerializationError)
    with pytest.raises(IsADirectoryError, match=f"cannot read '{tmp_path}'") as info:
        load(tmp_path)
    assert isinstance(info.value, SerializationError)
    with pytest.raises(IsADirectoryError, match=f"cannot write '{tmp_path}'"):
        save({"w": kiln.ones(1)}, tmp_path)
    with pytest.raises(FileNotFoundError, match="cannot write .*no/such/dir"):
        save({"w": kiln.ones(1)}, tmp_path / "no" / "such" / "dir" / "w.safetensors")


def test_text_mode_file_objects_fail_clearly(tmp_path):
    save({"w": kiln.ones(1)}, tmp_path / "w.safetensors")
    with open(tmp_path / "w.safetensors", encoding="latin-1") as fh:
        with pytest.raises(SerializationError, match="text mode.*'rb'"):
            load(fh)


def test_keys_that_are_not_str_or_int_fail_clearly():
    for key in [(1, 2), 1.5, True, None]:
        with pytest.raises(SerializationError, match="dict keys must be str or int"):
            save({"outer": {key: kiln.ones(1)}}, io.BytesIO())
    back = _round_trip({0: kiln.ones(1), "0": kiln.zeros(1), -5: 1})
    assert list(back) == [0, "0", -5] and back[0].tolist() == [1.0]


def test_empty_containers_scalars_and_zero_size_tensors_round_trip():
    for obj in [{}, [], (), 3, None, "text", kiln.zeros(2, 0),
                {"a": kiln.ones(2), "z": kiln.zeros(0)}, [[], {}, ((),)]]:
        _assert_same(obj, _round_trip(obj))
