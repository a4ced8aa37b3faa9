"""Torch-free checkpoint reader/writer: real files, round trips, hostile and damaged inputs."""

from __future__ import annotations

import collections
import hashlib
import io
import json
import os
import pickle
import pickletools
import struct
import subprocess
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowlib.convert._torch import (
    LEGACY_MAGIC,
    LEGACY_PROTOCOL,
    read_torch_checkpoint,
    unwrap_state_dict,
)
from tests.conftest import fuzz_examples
from tests.convert._torch_writer import write_torch_checkpoint

SPYNET = "weights/spynet-pytorch-sintel-final"


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


# ------------------------------------------------------------------------------------------
# Hand-made pickles and archives (no torch, no Python pickler naming torch functions).


def _pint(n: int) -> bytes:
    enc = pickle.encode_long(n)
    return b"\x8a" + bytes([len(enc)]) + enc


def _pstr(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _ptuple(items) -> bytes:
    return b"(" + b"".join(_pint(i) for i in items) + b"t"


def _tensor_pickle(storage="FloatStorage", key="0", numel=4, offset=0, size=(4,), stride=(1,), legacy=False):
    """data.pkl of one tensor rebuilt by torch._utils._rebuild_tensor_v2."""
    pid = b"(" + _pstr("storage") + b"ctorch\n" + storage.encode() + b"\n" + _pstr(key) + _pstr("cpu") + _pint(numel)
    pid += (b"N" if legacy else b"") + b"t"
    return (
        b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(" + pid + b"Q" + _pint(offset) + _ptuple(size)
        + _ptuple(stride) + b"\x89ccollections\nOrderedDict\n)Rt" + b"R."
    )


def _zip_bytes(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _legacy_bytes(main: bytes, keys: list[str], storages: list[bytes]) -> bytes:
    out = pickle.dumps(LEGACY_MAGIC, protocol=2) + pickle.dumps(LEGACY_PROTOCOL, protocol=2)
    out += pickle.dumps({"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 8}}, protocol=2)
    out += main + pickle.dumps(keys, protocol=2)
    for raw in storages:
        out += raw
    return out


def _write(tmp_path, name: str, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return p


# ------------------------------------------------------------------------------------------
# The real SpyNet checkpoints.


@pytest.fixture(scope="module")
def spynet_reference(fixtures):
    return json.loads((fixtures / "spynet_real" / "checkpoint_keys.json").read_text())


@pytest.mark.parametrize("name", ["network-sintel-final.pytorch", "network-sintel-final.legacy.pytorch"])
def test_real_spynet_checkpoint_matches_recorded_hashes(data, spynet_reference, name):
    state = read_torch_checkpoint(data / SPYNET / name)
    expected = {e["key"]: e for e in spynet_reference["keys"]}
    assert sorted(state) == sorted(expected)
    for key, arr in state.items():
        e = expected[key]
        assert isinstance(arr, np.ndarray) and arr.flags.c_contiguous and arr.flags.writeable
        assert list(arr.shape) == e["shape"], key
        assert str(arr.dtype) == e["dtype"], key
        assert _sha(arr) == e["sha256"], key


def test_zip_and_legacy_spynet_files_give_identical_arrays(data):
    a = read_torch_checkpoint(data / SPYNET / "network-sintel-final.pytorch")
    b = read_torch_checkpoint(data / SPYNET / "network-sintel-final.legacy.pytorch")
    assert isinstance(a, collections.OrderedDict)  # what state_dict() pickles
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k])
    state, extras = unwrap_state_dict(a)
    assert extras == {} and set(state) == set(a)
    assert state["moduleBasic.0.moduleBasic.0.weight"].shape == (32, 8, 7, 7)


# ------------------------------------------------------------------------------------------
# Writer -> reader round trips.


def _tree():
    import ml_dtypes

    base = np.arange(60, dtype=np.float32).reshape(6, 10) * 0.5 - 3
    ints = np.arange(-12, 12, dtype=np.int64).reshape(2, 3, 4)
    state = collections.OrderedDict(
        [
            ("module.conv.weight", np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)),
            ("module.conv.bias", np.linspace(-1, 1, 4, dtype=np.float32)),
            ("module.bn.num_batches_tracked", np.array(7, dtype=np.int64)),  # 0-d int64
            ("module.view.rows", base[2:5]),  # offset view of `base`
            ("module.view.transposed", base.T),  # non-contiguous view
            ("module.view.strided", base[1::2, ::3]),  # offset + strides
            ("module.view.base", base),
            ("module.h", np.array([1.5, -2.25, 65504.0], dtype=np.float16)),
            ("module.d", np.array([[1e-300, np.pi]], dtype=np.float64)),
            ("module.b", np.array([True, False, True])),
            ("module.u8", np.array([0, 255, 7], dtype=np.uint8)),
            ("module.i8", np.array([-128, 127], dtype=np.int8)),
            ("module.i16", np.array([-32768, 5], dtype=np.int16)),
            ("module.i32", ints[1, :, ::2].astype(np.int32)),
            ("module.i64view", ints[:, 1]),
            ("module.c64", np.array([1 + 2j, -3j], dtype=np.complex64)),
            ("module.empty", np.zeros((0, 3), dtype=np.float32)),
            ("module.bf16", np.array([1.0, -2.5, 3.140625, 1e30], dtype=ml_dtypes.bfloat16)),
        ]
    )
    return {
        "state_dict": state,
        "epoch": 12,
        "arch": "flownets_bn",
        "div_flow": 20.0,
        "best_EPE": float("inf"),
        "big": 2**70,
        "negative": -(2**40),
        "nested": {"lr": [1e-4, (0.9, 0.999)], "flags": {True, None}, "raw": b"\x00\xffbytes", "name": "Ünïcode"},
        "none": None,
        "optimizer": {"state": {0: {"step": np.array(3.0, dtype=np.float32)}}, "param_groups": [{"params": [0, 1]}]},
    }


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_round_trip_preserves_values_views_and_metadata(tmp_path, legacy):
    tree = _tree()
    path = tmp_path / "ckpt.pth.tar"
    write_torch_checkpoint(path, tree, legacy=legacy)
    back = read_torch_checkpoint(path)
    src = tree["state_dict"]
    got = back["state_dict"]
    assert isinstance(got, collections.OrderedDict) and list(got) == list(src)
    for k, v in src.items():
        expect = np.asarray(v, dtype=np.float32) if v.dtype.name == "bfloat16" else v
        assert got[k].dtype == expect.dtype, k
        assert got[k].shape == expect.shape, k
        np.testing.assert_array_equal(got[k], expect, err_msg=k)
        assert got[k].flags.c_contiguous and got[k].flags.writeable, k
    # Views were not aliased to one another after loading (each tensor is its own copy).
    got["module.view.base"][0, 0] = 99
    assert got["module.view.transposed"][0, 0] == src["module.view.transposed"][0, 0]
    for key in ("epoch", "arch", "div_flow", "best_EPE", "big", "negative", "none"):
        assert back[key] == tree[key] and type(back[key]) is type(tree[key])
    assert back["nested"] == tree["nested"]
    assert back["optimizer"]["param_groups"] == [{"params": [0, 1]}]
    assert back["optimizer"]["state"][0]["step"].shape == () and back["optimizer"]["state"][0]["step"] == 3

    state, extras = unwrap_state_dict(back)
    assert set(state) == {k[len("module."):] for k in src}
    assert extras["div_flow"] == 20.0 and extras["arch"] == "flownets_bn" and extras["epoch"] == 12
    assert "state_dict" not in extras


def test_views_share_one_storage_in_the_zip(tmp_path):
    base = np.arange(24, dtype=np.float32)
    tree = {"a": base[3:9].reshape(2, 3), "b": base.reshape(4, 6).T, "c": base[::5], "d": base.copy()}
    path = tmp_path / "v.pth"
    write_torch_checkpoint(path, tree)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        data = [n for n in names if n.startswith("archive/data/")]
        assert sorted(names) == sorted(["archive/data.pkl", "archive/byteorder", "archive/version", *data])
        assert len(data) == 2  # base (shared by a, b, c) and its copy d
        assert zf.read("archive/byteorder") == b"little" and zf.read("archive/version") == b"3\n"
        raw = path.read_bytes()
        for info in zf.infolist():
            # like torch's writer: every record's data starts on a 64-byte boundary
            n, e = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
            assert (info.header_offset + 30 + n + e) % 64 == 0, info.filename
    back = read_torch_checkpoint(path)
    for k, v in tree.items():
        np.testing.assert_array_equal(back[k], v)


def test_zip_folder_name_and_big_endian_storages(tmp_path):
    # torch names the folder after the file; byteorder "big" storages are swapped on load.
    values = np.array([1.5, -2.0, 3.25], dtype=np.float32)
    members = {
        "my model (1)/data.pkl": _tensor_pickle(numel=3, size=(3,)),
        "my model (1)/byteorder": b"big",
        "my model (1)/data/0": values.astype(">f4").tobytes(),
        "my model (1)/version": b"3\n",
    }
    got = read_torch_checkpoint(_write(tmp_path, "big.pth", _zip_bytes(members)))
    np.testing.assert_array_equal(got, values)
    assert got.dtype == np.float32 and got.dtype.isnative


def test_write_is_atomic_and_rejects_unsupported_objects(tmp_path):
    path = tmp_path / "x.pth"
    write_torch_checkpoint(path, {"a": np.ones(3, np.float32)})
    before = path.read_bytes()
    with pytest.raises(ValueError, match="cannot write a object"):
        write_torch_checkpoint(path, {"a": object()})
    with pytest.raises(ValueError, match="uint16"):
        write_torch_checkpoint(path, {"a": np.ones(3, np.uint16)})
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError, match="refer to themselves"):
        write_torch_checkpoint(path, cyclic)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["x.pth"]  # no temp files left behind


def test_unwrap_state_dict_variants():
    w = np.zeros((2, 2), np.float32)
    assert unwrap_state_dict({"a.weight": w})[0].keys() == {"a.weight"}
    state, extras = unwrap_state_dict({"epoch": 3, "model": {"module.x": w, "module.y": w}, "optimizer": {}})
    assert set(state) == {"x", "y"} and extras == {"epoch": 3, "optimizer": {}}
    # prefix stripped only when every key has it
    assert set(unwrap_state_dict({"module.x": w, "y": w})[0]) == {"module.x", "y"}
    state, extras = unwrap_state_dict({"x": w, "version": 2})
    assert set(state) == {"x"} and extras == {"non_tensor_entries": {"version": 2}}
    with pytest.raises(ValueError, match="state dict"):
        unwrap_state_dict([w])
    with pytest.raises(ValueError, match="no tensors"):
        unwrap_state_dict({"epoch": 1, "arch": "x"})
    with pytest.raises(ValueError, match="strings"):
        unwrap_state_dict({0: w})


def test_hand_made_tensor_pickle_with_offset_and_strides(tmp_path):
    storage = np.arange(12, dtype=np.float64)
    members = {
        "archive/data.pkl": _tensor_pickle("DoubleStorage", numel=12, offset=1, size=(2, 3), stride=(1, 4)),
        "archive/data/0": storage.tobytes(),
    }
    got = read_torch_checkpoint(_write(tmp_path, "t.pth", _zip_bytes(members)))
    # element (i, j) sits at 1 + i + 4 j
    np.testing.assert_array_equal(got, [[1, 5, 9], [2, 6, 10]])
    legacy = _legacy_bytes(
        _tensor_pickle("DoubleStorage", numel=12, offset=1, size=(2, 3), stride=(1, 4), legacy=True),
        ["0"], [struct.pack("<q", 12) + storage.tobytes()],
    )
    np.testing.assert_array_equal(read_torch_checkpoint(_write(tmp_path, "t.legacy", legacy)), got)


# ------------------------------------------------------------------------------------------
# Hostile pickles: nothing may run.


class _Evil:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _evil_payloads(marker):
    """(global the reader must name, pickle bytes) pairs that would create ``marker``."""
    cmd = f"touch {marker}"
    return [
        ("posix.system", pickle.dumps({"w": _Evil(os.system, cmd)}, protocol=2)),
        ("builtins.eval", pickle.dumps(_Evil(eval, f"__import__('os').system({cmd!r})"), protocol=2)),
        ("subprocess.Popen", pickle.dumps(_Evil(subprocess.Popen, ["touch", str(marker)]), protocol=2)),
        # protocol 4 names globals with STACK_GLOBAL (module and name pushed as strings)
        ("builtins.exec", pickle.dumps([_Evil(exec, f"open({str(marker)!r}, 'w')")], protocol=4)),
        # protocol 0 INST opcode (find_class, then call)
        ("os.system", b"(S'" + cmd.encode() + b"'\nios\nsystem\n."),
        # inside a tensor rebuild: the storage-type slot names os.system
        ("os.system", _tensor_pickle().replace(b"ctorch\nFloatStorage\n", b"cos\nsystem\n")),
        # Python-2 spelling, mapped like pickle does before the allow-list is consulted
        ("builtins.eval", b"\x80\x02c__builtin__\neval\nX\x02\x00\x00\x001+\x85R."),
    ]


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_malicious_pickles_are_refused_and_never_run(tmp_path, fmt):
    marker = tmp_path / "pwned"
    for refused, payload in _evil_payloads(marker):
        if fmt == "zip":
            blob = _zip_bytes({"archive/data.pkl": payload, "archive/data/0": b"\0" * 16, "archive/version": b"3\n"})
        else:
            blob = _legacy_bytes(payload, [], [])
        path = _write(tmp_path, f"evil.{fmt}", blob)
        with pytest.raises(ValueError) as err:
            read_torch_checkpoint(path)
        msg = str(err.value)
        assert refused in msg and str(path) in msg and "refusing" in msg, msg
        assert not marker.exists()


def test_malicious_global_in_legacy_header_pickle(tmp_path):
    marker = tmp_path / "pwned"
    blob = pickle.dumps(LEGACY_MAGIC, protocol=2) + pickle.dumps(_Evil(os.system, f"touch {marker}"), protocol=2)
    with pytest.raises(ValueError, match="posix.system"):
        read_torch_checkpoint(_write(tmp_path, "evil.pth", blob))
    assert not marker.exists()


def test_whole_module_pickles_are_refused(tmp_path):
    main = b"\x80\x02(X\x06\x00\x00\x00modulecflowlib.models\nThing\nNNtQ."
    with pytest.raises(ValueError, match="flowlib.models.Thing"):
        read_torch_checkpoint(_write(tmp_path, "m.pth", _legacy_bytes(main, [], [])))


# ------------------------------------------------------------------------------------------
# Absurd sizes, zip bombs, odd member names.


def _one_tensor_zip(**kw):
    members = {"archive/data.pkl": _tensor_pickle(**{k: v for k, v in kw.items() if k != "raw"}), "archive/data/0": kw.get("raw", b"\0" * 16)}
    return _zip_bytes(members)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(numel=1000), "holds 16 bytes, the pickle declares 4000"),  # storage larger than the member
        (dict(numel=2**61, storage="LongStorage"), "declares 18446744073709551616"),  # numel * itemsize overflow
        (dict(size=(2**40,)), "reaches element"),  # tensor larger than its storage
        (dict(size=(4, 2**30), stride=(1, 0)), "expands"),  # stride-0 expansion beyond the cap
        (dict(offset=4, size=(1,)), "reaches element 4"),
        (dict(size=(2, -2)), "integer >= 0"),
        (dict(key="../../etc/passwd"), "not a plain name"),
        (dict(storage="QInt8Storage"), "torch.QInt8Storage"),
        (dict(key="1"), "data/1 is missing"),
    ],
)
def test_absurd_declarations_are_refused(tmp_path, kw, match):
    path = _write(tmp_path, "bad.pth", _one_tensor_zip(**kw))
    with pytest.raises(ValueError, match=match) as err:
        read_torch_checkpoint(path)
    assert str(path) in str(err.value)


def test_deflate_bomb_and_lying_size_headers(tmp_path):
    zeros = b"\0" * (64 << 20)
    bomb = _zip_bytes({"archive/data.pkl": _tensor_pickle(), "archive/data/0": zeros}, zipfile.ZIP_DEFLATED)
    assert len(bomb) < len(zeros) // 500
    with pytest.raises(ValueError, match="holds 67108864 bytes, the pickle declares 16"):
        read_torch_checkpoint(_write(tmp_path, "bomb.pth", bomb))
    # Central-directory size patched to claim far more than deflate can produce.
    good = _one_tensor_zip()
    with zipfile.ZipFile(io.BytesIO(good)) as zf:
        info = zf.getinfo("archive/data/0")
    cd = [i for i in range(len(good)) if good.startswith(b"PK\x01\x02", i)]
    lying = bytearray(good)
    for off in cd:
        name_len = struct.unpack_from("<H", lying, off + 28)[0]
        if lying[off + 46 : off + 46 + name_len] == b"archive/data/0":
            struct.pack_into("<I", lying, off + 24, 0xFFFFFFF0)  # uncompressed size
    with pytest.raises(ValueError) as err:
        read_torch_checkpoint(_write(tmp_path, "lying.pth", bytes(lying)))
    assert "lying.pth" in str(err.value)
    assert info.file_size == 16


@pytest.mark.parametrize(
    "names, match",
    [
        (["archive/data.pkl", "../archive/data/0"], "plain relative path"),
        (["/archive/data.pkl"], "plain relative path"),
        (["archive/../data.pkl"], "plain relative path"),
        (["archive\\data.pkl"], "plain relative path"),
        (["archive/data.pkl", "other/data/0"], "one top-level folder"),
        (["data.pkl"], "plain relative path"),
        (["archive/data.pkl\x00.txt"], "plain relative path"),
        (["archive/version"], "no archive/data.pkl"),
        (["archive/constants.pkl", "archive/version"], "TorchScript"),
    ],
)
def test_odd_member_names_are_refused(tmp_path, names, match):
    members = {n: _tensor_pickle() if n.endswith("data.pkl") else b"\0" * 16 for n in names}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n, d in members.items():
            info = zipfile.ZipInfo("placeholder")
            info.filename = n  # bypass zipfile's own name normalisation
            zf.writestr(info, d)
    with pytest.raises(ValueError, match=match):
        read_torch_checkpoint(_write(tmp_path, "odd.pth", buf.getvalue()))


def test_duplicate_member_names_are_refused(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", _tensor_pickle())
        with pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr("archive/data/0", b"\0" * 16)
            zf.writestr("archive/data/0", b"\1" * 16)
    with pytest.raises(ValueError, match="appears twice"):
        read_torch_checkpoint(_write(tmp_path, "dup.pth", buf.getvalue()))


def test_huge_declared_pickle_lengths_do_not_allocate(tmp_path):
    # BINBYTES8 / BINUNICODE8 claiming 2**60 bytes inside a 40-byte pickle
    for op in (b"\x8e", b"\x8d"):
        payload = b"\x80\x04" + op + struct.pack("<Q", 2**60) + b"abc."
        with pytest.raises(ValueError, match="damaged pickle.*only 4 remain"):
            read_torch_checkpoint(_write(tmp_path, "len.pth", _zip_bytes({"archive/data.pkl": payload})))


def test_huge_memo_indices_and_allocating_builtins_are_refused(tmp_path):
    # LONG_BINPUT 2**32-1 would make CPython's unpickler allocate and zero a 64 GiB memo.
    for payload, match in [
        (b"\x80\x02N" + b"r\xff\xff\xff\xff" + b".", "memo index 4294967295"),
        (b"\x80\x02N" + b"p99999999\n" + b".", "memo index 99999999"),
        (b"\x80\x04\x95" + struct.pack("<Q", 2**60) + b"N.", "frame of"),
        (b"\x80\x02c__builtin__\nbytearray\n" + _pint(2**34) + b"\x85R.", "refusing to load builtins.bytearray"),
    ]:
        with pytest.raises(ValueError, match=match):
            read_torch_checkpoint(_write(tmp_path, "memo.pth", _zip_bytes({"archive/data.pkl": payload})))


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="not a PyTorch checkpoint.*expected a zip"):
        read_torch_checkpoint(_write(tmp_path, "x.pth", b"GIF89a......"))
    with pytest.raises(ValueError, match="empty"):
        read_torch_checkpoint(_write(tmp_path, "e.pth", b""))
    with pytest.raises(FileNotFoundError):
        read_torch_checkpoint(tmp_path / "missing.pth")


def test_legacy_storage_table_mismatches(tmp_path):
    main = _tensor_pickle(numel=4, legacy=True)
    good = struct.pack("<q", 4) + b"\0" * 16
    cases = {
        "does not match": _legacy_bytes(main, ["0", "1"], [good, good]),
        "holds 5 elements": _legacy_bytes(main, ["0"], [struct.pack("<q", 5) + b"\0" * 20]),
        "needs 16 bytes": _legacy_bytes(main, ["0"], [struct.pack("<q", 4) + b"\0" * 8]),
        "distinct strings": _legacy_bytes(main, ["0", "0"], [good, good]),
        "protocol version": _legacy_bytes(main, ["0"], [good]).replace(b"M\xe9\x03", b"M\xea\x03", 1),
    }
    assert read_torch_checkpoint(_write(tmp_path, "ok.pth", _legacy_bytes(main, ["0"], [good]))).shape == (4,)
    for match, blob in cases.items():
        with pytest.raises(ValueError, match=match):
            read_torch_checkpoint(_write(tmp_path, "l.pth", blob))


# ------------------------------------------------------------------------------------------
# Damaged files: only ValueError (naming the file) may escape.


@pytest.fixture(scope="module")
def small_checkpoints(tmp_path_factory, data):
    """A small real checkpoint (SpyNet's level-0 biases + one 2x16x7x7 weight), both formats."""
    real = read_torch_checkpoint(data / SPYNET / "network-sintel-final.pytorch")
    keep = collections.OrderedDict((k, v) for k, v in real.items() if k.startswith("moduleBasic.0.") and v.size < 2000)
    keep["epoch"] = np.array(3, np.int64)
    out = {}
    for legacy in (False, True):
        p = tmp_path_factory.mktemp("small") / f"small{'.legacy' if legacy else ''}.pth"
        write_torch_checkpoint(p, keep, legacy=legacy)
        out["legacy" if legacy else "zip"] = (p.read_bytes(), keep)
    return out


def _load_or_value_error(path) -> object | None:
    try:
        return read_torch_checkpoint(path)
    except ValueError as err:
        assert str(path) in str(err)
        return None


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_truncations_and_bit_flips(tmp_path, small_checkpoints, fmt):
    blob, ref = small_checkpoints[fmt]
    path = tmp_path / "damaged.pth"
    for cut in list(range(0, 200, 7)) + list(range(200, len(blob), max(1, len(blob) // 150))):
        path.write_bytes(blob[:cut])
        assert _load_or_value_error(path) is None, cut
    refused = 0
    for pos in range(0, len(blob), max(1, len(blob) // 200)):
        for bit in (0, 5):
            damaged = bytearray(blob)
            damaged[pos] ^= 1 << bit
            path.write_bytes(bytes(damaged))
            got = _load_or_value_error(path)
            if got is None:
                refused += 1
            elif fmt == "zip":
                # Every zip member is CRC-checked, so a flip that still loads hit a byte
                # zipfile ignores (a timestamp, the alignment padding): values are intact.
                assert list(got) == list(ref)
                for k in ref:
                    np.testing.assert_array_equal(got[k], ref[k])
    assert refused > 0


def test_zip_bit_flips_in_tensor_data_are_caught_by_crc(tmp_path, small_checkpoints):
    blob, ref = small_checkpoints["zip"]
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        info = zf.getinfo("archive/data/0")
    start = info.header_offset + 30 + len(info.filename) + struct.unpack_from("<H", blob, info.header_offset + 28)[0]
    damaged = bytearray(blob)
    damaged[start + 5] ^= 0x10
    with pytest.raises(ValueError, match="CRC"):
        read_torch_checkpoint(_write(tmp_path, "crc.pth", bytes(damaged)))


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
@settings(max_examples=fuzz_examples(100), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.one_of(st.none(), st.floats(0, 1)),
)
def test_fuzzed_bytes_raise_only_value_error(tmp_path, small_checkpoints, fmt, edits, cut):
    blob = bytearray(small_checkpoints[fmt][0])
    for where, value in edits:
        blob[int(where * len(blob))] = value
    if cut is not None:
        blob = blob[: int(cut * len(blob))]
    path = tmp_path / f"fuzz.{fmt}"
    path.write_bytes(bytes(blob))
    got = _load_or_value_error(path)
    if got is not None:
        assert isinstance(got, (dict, np.ndarray, list, tuple, int, float, str, type(None), bytes, set))


# ------------------------------------------------------------------------------------------
# Other rebuild paths torch uses (Parameters, tensor subclasses, untyped storages, metadata).


def _storage_pid(storage: str, key: str, numel: int) -> bytes:
    return b"(" + _pstr("storage") + b"ctorch\n" + storage.encode() + b"\n" + _pstr(key) + _pstr("cpu") + _pint(numel) + b"tQ"


_HOOKS = b"ccollections\nOrderedDict\n)R"


def test_parameter_subclass_untyped_and_metadata_rebuilds(tmp_path):
    v2 = b"ctorch._utils\n_rebuild_tensor_v2\n"
    args = lambda key, n: b"(" + _storage_pid("FloatStorage", key, n) + _pint(0) + _ptuple((n,)) + _ptuple((1,)) + b"\x89" + _HOOKS + b"t"
    entries = [
        # nn.Parameter pickled directly: _rebuild_parameter(tensor, requires_grad, hooks)
        ("param", b"ctorch._utils\n_rebuild_parameter\n(" + v2 + args("0", 3) + b"R\x88" + _HOOKS + b"tR"),
        # tensor with Python attributes: _rebuild_from_type_v2(func, type, args, state)
        ("subclass", b"ctorch._tensor\n_rebuild_from_type_v2\n(" + v2 + b"ctorch.nn.parameter\nParameter\n" + args("0", 3) + b"}tR"),
        # untyped byte storage viewed as int16 by _rebuild_tensor_v3
        ("v3", b"ctorch._utils\n_rebuild_tensor_v3\n(" + _storage_pid("UntypedStorage", "1", 4) + _pint(0) + _ptuple((2,))
         + _ptuple((1,)) + b"\x89" + _HOOKS + b"ctorch\nint16\ntR"),
        ("bf16", v2 + b"(" + _storage_pid("BFloat16Storage", "2", 2) + _pint(0) + _ptuple((2,)) + _ptuple((1,)) + b"\x89" + _HOOKS + b"tR"),
        ("bool", v2 + b"(" + _storage_pid("BoolStorage", "3", 3) + _pint(0) + _ptuple((3,)) + _ptuple((1,)) + b"\x89" + _HOOKS + b"tR"),
        ("size", b"ctorch\nSize\n" + _ptuple((2, 3)) + b"\x85R"),
        ("device", b"ctorch\ndevice\n" + _pstr("cuda") + _pint(1) + b"\x86R"),
        ("dtype", b"ctorch\nfloat32\n"),
        ("np_scalar", b"cnumpy.core.multiarray\nscalar\ncnumpy\ndtype\n" + _pstr("f8") + b"\x89\x88\x87R"
         + b"(" + _pint(3) + _pstr("<") + b"NNN" + _pint(-1) + _pint(-1) + _pint(0) + b"tb"
         + b"c_codecs\nencode\n" + _pstr("\x00\x00\x00\x00\x00\x00\xf8\x3f") + _pstr("latin1") + b"\x86R\x86R"),
    ]
    pkl = b"\x80\x02}(" + b"".join(_pstr(k) + v for k, v in entries) + b"u."
    members = {
        "a/data.pkl": pkl,
        "a/data/0": np.array([1, 2, 3], "<f4").tobytes(),
        "a/data/1": np.array([-2, 300], "<i2").tobytes(),
        "a/data/2": np.array([0x3FC0, 0xC020], "<u2").tobytes(),  # bf16 1.5, -2.5
        "a/data/3": bytes([1, 0, 1]),
    }
    got = read_torch_checkpoint(_write(tmp_path, "p.pth", _zip_bytes(members)))
    np.testing.assert_array_equal(got["param"], [1, 2, 3])
    np.testing.assert_array_equal(got["subclass"], [1, 2, 3])
    assert got["v3"].dtype == np.int16 and got["v3"].tolist() == [-2, 300]
    assert got["bf16"].dtype == np.float32 and got["bf16"].tolist() == [1.5, -2.5]
    assert got["bool"].dtype == bool and got["bool"].tolist() == [True, False, True]
    assert got["size"] == (2, 3) and got["device"] == "cuda:1" and got["dtype"] == "torch.float32"
    assert got["np_scalar"] == 1.5 and got["np_scalar"].dtype == np.float64


def test_rebuild_from_type_only_accepts_rebuild_functions(tmp_path):
    pkl = b"\x80\x02ctorch._tensor\n_rebuild_from_type_v2\n(c_codecs\nencode\nctorch\nTensor\n(" + _pstr("x") + b"t}tR."
    with pytest.raises(ValueError, match="not a tensor-rebuild function"):
        read_torch_checkpoint(_write(tmp_path, "f.pth", _zip_bytes({"a/data.pkl": pkl})))
    # calling a storage class or a marker type is refused, not executed
    for body in (b"ctorch\nFloatStorage\n)R.", b"ctorch\nTensor\n)R."):
        with pytest.raises(ValueError, match="damaged"):
            read_torch_checkpoint(_write(tmp_path, "g.pth", _zip_bytes({"a/data.pkl": b"\x80\x02" + body})))


def test_written_pickles_use_only_what_torch_weights_only_accepts(tmp_path):
    # Opcodes and globals accepted by torch/_weights_only_unpickler.py (torch 2.x), where
    # __builtin__ names are mapped to builtins as for any protocol-2 pickle.
    torch_opcodes = {
        "PROTO", "GLOBAL", "NEWOBJ", "REDUCE", "BUILD", "APPEND", "APPENDS", "SETITEM", "SETITEMS", "MARK",
        "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "NONE", "NEWFALSE", "NEWTRUE", "EMPTY_TUPLE", "EMPTY_LIST",
        "EMPTY_DICT", "EMPTY_SET", "BINPERSID", "BININT", "BININT1", "BININT2", "BINFLOAT", "BINGET",
        "LONG_BINGET", "BINPUT", "LONG_BINPUT", "BINUNICODE", "SHORT_BINSTRING", "LONG1", "STOP",
    }
    torch_globals = {"collections OrderedDict", "torch._utils _rebuild_tensor_v2", "_codecs encode",
                     "__builtin__ set", "__builtin__ complex"} | {f"torch {s}Storage" for s in (
        "Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool", "ComplexFloat", "ComplexDouble")}
    tree = _tree()
    tree["many"] = {f"k{i}": np.full(2, i, np.float32) for i in range(300)}  # > 256 memo entries
    tree["extra"] = [1 + 2j, frozenset({1}), -1, 2**31, -(2**31) - 1, 1e-9, ""]
    for legacy in (False, True):
        path = tmp_path / f"c{legacy}.pth"
        write_torch_checkpoint(path, tree, legacy=legacy)
        if legacy:
            blob = path.read_bytes()
            pickles, pos = [], 0
            for _ in range(5):
                ops = list(pickletools.genops(io.BytesIO(blob[pos:])))
                pickles.append(blob[pos : pos + ops[-1][2] + 1])
                pos += ops[-1][2] + 1
        else:
            with zipfile.ZipFile(path) as zf:
                pickles = [zf.read("archive/data.pkl")]
        for pkl in pickles:
            ops = list(pickletools.genops(pkl))
            assert {op.name for op, _, _ in ops} <= torch_opcodes
            assert {arg for op, arg, _ in ops if op.name == "GLOBAL"} <= torch_globals
            assert ops[0][0].name == "PROTO" and ops[0][1] == 2
        back = read_torch_checkpoint(path)
        assert back["extra"] == [1 + 2j, {1}, -1, 2**31, -(2**31) - 1, 1e-9, ""]
        assert back["many"]["k299"].tolist() == [299, 299]
