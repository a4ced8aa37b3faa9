"""Torch7 binary reader: SpyNet's original files, hand-made files, hostile and damaged inputs."""

from __future__ import annotations

import hashlib
import json
import re
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowlib.convert._t7 import T7Object, read_t7
from tests.conftest import fuzz_examples
from tests.convert._t7_writer import write_t7

T7_DIR = "weights/spynet-t7-sintel-final"


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


# Raw builders for hand-made files (little-endian, 8-byte longs).
def _i(v: int) -> bytes:
    return struct.pack("<i", v)


def _q(v: int) -> bytes:
    return struct.pack("<q", v)


def _s(text: str) -> bytes:
    return _i(len(text)) + text.encode()


def _torch(index: int, cls: str) -> bytes:
    return _i(4) + _i(index) + _s("V 1") + _s(cls)


def _double_tensor(size, stride, offset1, storage: np.ndarray) -> bytes:
    body = _i(len(size)) + b"".join(_q(n) for n in size) + b"".join(_q(s) for s in stride) + _q(offset1)
    return _torch(1, "torch.DoubleTensor") + body + _torch(2, "torch.DoubleStorage") + _q(storage.size) + storage.astype("<f8").tobytes()


# ------------------------------------------------------------------------------------------
# The original SpyNet files.


@pytest.fixture(scope="module")
def t7_reference(fixtures):
    """{(file, module index, field): entry} from the fixtures' key table."""
    ref = json.loads((fixtures / "spynet_real" / "checkpoint_keys.json").read_text())
    table = {}
    for e in ref["keys"]:
        m = re.match(r"(modelL\d_F\.t7): nn\.Sequential\.modules\[(\d+)\].*\.(weight|bias)$", e["source"])
        assert m, e["source"]
        table[(m.group(1), int(m.group(2)), m.group(3))] = e
    assert len(table) == 60
    return table


@pytest.mark.parametrize("level", range(1, 7))
def test_spynet_t7_levels_match_recorded_hashes(data, t7_reference, level):
    name = f"modelL{level}_F.t7"
    model = read_t7(data / T7_DIR / name)
    assert isinstance(model, T7Object) and model.class_name == "nn.Sequential"
    modules = model["modules"]
    assert isinstance(modules, list) and len(modules) == 9
    channels = [8, 32, 64, 32, 16, 2]
    for j, module in enumerate(modules):
        if j % 2:
            assert module.class_name.endswith("ReLU")
            continue
        conv = channels[j // 2], channels[j // 2 + 1]
        assert module.class_name == "cudnn.SpatialConvolution"
        assert (module["nInputPlane"], module["nOutputPlane"]) == conv
        assert (module["kW"], module["kH"], module["dW"], module["padW"]) == (7, 7, 1, 3)
        for field, shape in (("weight", (conv[1], conv[0], 7, 7)), ("bias", (conv[1],))):
            arr = module[field]
            e = t7_reference[(name, j, field)]
            assert arr.dtype == np.float32 and arr.shape == shape == tuple(e["shape"])
            assert _sha(arr) == e["sha256"], (name, j, field)


def test_spynet_t7_equals_the_pytorch_port(data):
    from flowlib.convert._torch import read_torch_checkpoint

    state = read_torch_checkpoint(data / "weights/spynet-pytorch-sintel-final/network-sintel-final.pytorch")
    model = read_t7(data / T7_DIR / "modelL3_F.t7")
    for j in (0, 2, 4, 6, 8):
        np.testing.assert_array_equal(model["modules"][j]["weight"], state[f"moduleBasic.2.moduleBasic.{j}.weight"])
        np.testing.assert_array_equal(model["modules"][j]["bias"], state[f"moduleBasic.2.moduleBasic.{j}.bias"])


def test_spynet_t7_needs_eight_byte_longs(data):
    path = data / T7_DIR / "modelL1_F.t7"
    assert read_t7(path, long_size=8).class_name == "nn.Sequential"
    with pytest.raises(ValueError, match="modelL1_F.t7"):
        read_t7(path, long_size=4)


# ------------------------------------------------------------------------------------------
# Hand-made files.


def test_strided_tensor_with_one_based_offset(tmp_path):
    storage = np.arange(12, dtype=np.float64)
    path = tmp_path / "t.t7"
    path.write_bytes(_double_tensor((2, 3), (1, 4), 2, storage))
    # element (i, j) = storage[(2 - 1) + i + 4 j]
    np.testing.assert_array_equal(read_t7(path), [[1, 5, 9], [2, 6, 10]])


def test_plain_values_and_tables(tmp_path):
    blob = (
        _i(3) + _i(1) + _i(5)
        + _i(2) + _s("pi") + _i(1) + struct.pack("<d", 3.5)
        + _i(2) + _s("n") + _i(1) + struct.pack("<d", 7.0)
        + _i(2) + _s("flag") + _i(5) + _i(1)
        + _i(2) + _s("nothing") + _i(0)
        + _i(2) + _s("list") + _i(3) + _i(2) + _i(2) + _i(1) + struct.pack("<d", 2) + _i(2) + _s("b") + _i(1) + struct.pack("<d", 1) + _i(2) + _s("a")
    )
    path = tmp_path / "v.t7"
    path.write_bytes(blob)
    assert read_t7(path) == {"pi": 3.5, "n": 7, "flag": True, "nothing": None, "list": ["a", "b"]}


def test_shared_and_recursive_references(tmp_path):
    # table 1 = {self = <table 1>, w = <tensor 2>, again = <tensor 2>}
    tensor = _double_tensor((3,), (1,), 1, np.array([1.0, 2.0, 3.0])).replace(_i(4) + _i(1), _i(4) + _i(2), 1).replace(
        _i(4) + _i(2) + _s("V 1") + _s("torch.DoubleStorage"), _i(4) + _i(3) + _s("V 1") + _s("torch.DoubleStorage")
    )
    blob = (
        _i(3) + _i(1) + _i(3)
        + _i(2) + _s("self") + _i(3) + _i(1)
        + _i(2) + _s("w") + tensor
        + _i(2) + _s("again") + _i(4) + _i(2)
    )
    path = tmp_path / "r.t7"
    path.write_bytes(blob)
    got = read_t7(path)
    assert got["self"] is got
    assert got["again"] is got["w"]
    np.testing.assert_array_equal(got["w"], [1, 2, 3])


@pytest.mark.parametrize("long_size", [8, 4])
def test_writer_round_trip(tmp_path, long_size):
    w = np.arange(2 * 3 * 5 * 5, dtype=np.float32).reshape(2, 3, 5, 5) / 7
    shared = np.array([1, -2, 3], dtype=np.int64)
    model = T7Object(
        "nn.Sequential",
        {
            "modules": [
                T7Object("nn.SpatialConvolution", {"weight": w, "bias": np.array([0.5, -1.0]), "kW": 5, "train": False}),
                T7Object("nn.ReLU", {"inplace": True}),
            ],
            "ids": shared,
            "ids_again": shared,
            "h": np.array([1.5, 2.0], dtype=np.float16),
            "bytes": np.array([[0, 255]], dtype=np.uint8),
            "empty": np.zeros((0,), np.float32),
            "name": "spynet",
        },
    )
    path = tmp_path / f"m{long_size}.t7"
    write_t7(path, model, long_size=long_size)
    for ls in (None, long_size):
        got = read_t7(path, long_size=ls)
        conv, relu = got["modules"]
        assert conv.class_name == "nn.SpatialConvolution" and relu.class_name == "nn.ReLU"
        np.testing.assert_array_equal(conv["weight"], w)
        assert conv["weight"].dtype == np.float32 and conv["kW"] == 5 and conv["train"] is False
        np.testing.assert_array_equal(conv["bias"], [0.5, -1.0])
        np.testing.assert_array_equal(got["ids"], shared)
        assert got["ids"].dtype == (np.int64 if long_size == 8 else np.int32)
        assert got["ids_again"] is got["ids"]
        assert got["h"].dtype == np.float16 and got["bytes"].shape == (1, 2) and got["empty"].shape == (0,)
        assert got["name"] == "spynet" and relu["inplace"] is True


# ------------------------------------------------------------------------------------------
# Hostile, absurd and damaged inputs.


@pytest.mark.parametrize(
    "blob, match",
    [
        (_i(6) + _i(1) + _s("\x1bLua bytecode"), "Lua function"),
        (_i(8) + _i(1) + _s("\x1bLua"), "Lua function"),
        (_i(9), "unknown type code 9"),
        (_torch(1, "torch.FloatStorage") + _q(2**40) + b"\0" * 16, "declares 1099511627776 elements"),
        (_torch(1, "torch.FloatStorage") + _q(-1), "declares -1 elements"),
        (_i(3) + _i(1) + _i(2**30), "declares 1073741824 entries"),
        (_i(2) + _i(2**31 - 1) + b"abc", "string needs 2147483647 bytes"),
        (_torch(1, "torch.FloatTensor") + _i(1000), "1000 dimensions"),
        (_double_tensor((2**40,), (1,), 1, np.zeros(4)), "overruns"),
        (_double_tensor((4, 2**30), (1, 0), 1, np.zeros(4)), "expands"),
        (_double_tensor((4,), (1,), 0, np.zeros(4)), "offset 0"),
        (_double_tensor((3,), (1,), 1, np.zeros(3)) + b"\0", "unread bytes"),
        (_i(5) + _i(7), "boolean"),
        (b"4\n1\n3\nV 1\n", "ASCII"),
        (b"", "type code needs 4 bytes"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_file(tmp_path, blob, match):
    path = tmp_path / "bad.t7"
    path.write_bytes(blob)
    with pytest.raises(ValueError, match=match) as err:
        read_t7(path)
    assert str(path) in str(err.value)


def test_deep_nesting_is_refused(tmp_path):
    blob = b"".join(_i(3) + _i(k + 1) + _i(1) + _i(1) + struct.pack("<d", 1) for k in range(5000)) + _i(0)
    path = tmp_path / "deep.t7"
    path.write_bytes(blob)
    with pytest.raises(ValueError, match="nested deeper"):
        read_t7(path)


@pytest.fixture(scope="module")
def level1_bytes(data):
    return (data / T7_DIR / "modelL1_F.t7").read_bytes()


def test_truncated_and_bit_flipped_spynet_files(tmp_path, level1_bytes):
    blob = level1_bytes
    path = tmp_path / "damaged.t7"
    for cut in list(range(0, 3000, 37)) + list(range(3000, len(blob), len(blob) // 40)):
        path.write_bytes(blob[:cut])
        with pytest.raises(ValueError, match="damaged.t7"):
            read_t7(path)
    refused = flips = 0
    for pos in range(0, 0x2F0, 2):  # headers and field tables before the first weight storage
        flips += 1
        damaged = bytearray(blob)
        damaged[pos] ^= 0x40
        path.write_bytes(bytes(damaged))
        try:
            read_t7(path)
        except ValueError as err:
            assert "damaged.t7" in str(err)
            refused += 1
    # flips inside numbers and string contents still parse; type codes, lengths, indices don't
    assert refused > flips // 3


@settings(max_examples=fuzz_examples(200), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    edits=st.lists(
        st.tuples(st.one_of(st.integers(0, 4095), st.integers(0, 1_927_717)), st.integers(0, 255)), min_size=1, max_size=3
    ),
    cut=st.one_of(st.none(), st.integers(0, 1_927_718)),
)
def test_fuzzed_t7_bytes_raise_only_value_error(tmp_path, level1_bytes, edits, cut):
    blob = bytearray(level1_bytes)
    for pos, value in edits:
        blob[pos % len(blob)] = value
    if cut is not None:
        blob = blob[:cut]
    path = tmp_path / "fuzz.t7"
    path.write_bytes(bytes(blob))
    try:
        got = read_t7(path)
    except ValueError as err:
        assert "fuzz.t7" in str(err)
    else:
        assert isinstance(got, (T7Object, dict, list, np.ndarray, str, int, float, bool, type(None)))
