"""Weight hub: cache location, resumable checked downloads from loopback servers that imitate
the zoo's hosts (Google Drive, GitHub LFS media, plain servers), cache metadata, offline
messages, the ``download`` and ``models`` commands, and every named variant end to end."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import os
import re
import tempfile
import urllib.error
import urllib.parse
import zipfile
from pathlib import Path

import numpy as np
import pytest

from flowlib import _download, cli, hub
from tests._fake_hosts import LFS_POINTER, QUOTA, FakeHosts
from tests.convert._torch_writer import write_torch_checkpoint

PAYLOAD = bytes((i * 7919 + (i >> 8) * 31) % 251 for i in range(300_000))
SHA = hashlib.sha256(PAYLOAD).hexdigest()
URL = "https://files.example/w.pth"


@pytest.fixture(scope="module")
def ckpt_bytes(tmp_path_factory) -> bytes:
    """A real (small) PyTorch zip checkpoint, ~100 kB."""
    path = tmp_path_factory.mktemp("ckpt") / "w.pth"
    rng = np.random.default_rng(0)
    write_torch_checkpoint(
        path, {"state_dict": {"w": rng.standard_normal(25_000).astype(np.float32)}}
    )
    return path.read_bytes()


@pytest.fixture
def hosts(monkeypatch):
    fake = FakeHosts()
    monkeypatch.setenv("FLOWLIB_MIRROR", fake.mirror)
    fake.add(URL, PAYLOAD)
    yield fake
    fake.close()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWLIB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FLOWLIB_OFFLINE", raising=False)
    return tmp_path / "home"


def _ckpt(url: str, sha256: str | None, **kw) -> hub.Checkpoint:
    return hub.Checkpoint(
        url=url,
        filename="w.pth",
        sha256=sha256,
        license="test",
        training_data="none",
        source_format=kw.pop("source_format", "pytorch"),
        **kw,
    )


def _cache_files(home) -> list[str]:
    folder = home / "checkpoints"
    return sorted(os.listdir(folder)) if folder.is_dir() else []


# ------------------------------------------------------------------------- cache, fields


def test_suite_keeps_out_of_the_users_cache():
    """The tests' flowlib cache (downloads, converted weights, compiled models) is a temporary
    folder of this run, not the user's ``~/.cache/flowlib`` (conftest)."""
    cache = hub.cache_dir().resolve()
    assert cache.is_relative_to(Path(tempfile.gettempdir()).resolve())
    assert not cache.is_relative_to((Path.home() / ".cache").resolve())
    assert cache.is_dir()


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.delenv("FLOWLIB_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert hub.cache_dir() == tmp_path / "user" / ".cache" / "flowlib"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.cache_dir() == tmp_path / "xdg" / "flowlib"
    monkeypatch.setenv("FLOWLIB_HOME", str(tmp_path / "fh"))
    assert hub.cache_dir() == tmp_path / "fh"
    assert hub.checkpoint_path(_ckpt("x", None)) == tmp_path / "fh" / "checkpoints" / "w.pth"
    assert (
        hub.converted_path("spynet", "kitti-final")
        == tmp_path / "fh" / "converted" / "spynet-kitti-final.npz"
    )


def test_checkpoint_fields_are_keyword_only_and_frozen():
    c = _ckpt("http://x/y", None, model_kwargs={"a": 1}, notes="n")
    assert (c.model_kwargs, c.notes, c.source_format) == ({"a": 1}, "n", "pytorch")
    with pytest.raises(TypeError):
        hub.Checkpoint("u", "f", None, "l", "t", "pytorch")  # positional
    with pytest.raises(AttributeError):
        c.url = "other"  # frozen
    assert issubclass(hub.WeightsUnavailableError, FileNotFoundError)
    assert issubclass(hub.WeightsUnavailableError, RuntimeError)
    assert issubclass(hub.UnexpectedContentError, ValueError)


# ------------------------------------------------------------------ download: transfer


def test_download_verifies_and_leaves_only_the_final_file(tmp_path, hosts):
    dest = tmp_path / "d" / "w.pth"
    assert hub.download(URL, dest, sha256=SHA, progress=False) == dest
    assert dest.read_bytes() == PAYLOAD
    assert sorted(os.listdir(dest.parent)) == ["w.pth"]
    assert hosts.requests == [("files.example", "/w.pth", None)]


def test_interrupted_download_resumes_where_ranges_work(tmp_path, hosts):
    hosts.drop_after = 123_456
    dest = tmp_path / "w.pth"
    with pytest.raises(ConnectionError, match=r"123456 .*resume from .*w\.pth\.part"):
        hub.download(URL, dest, sha256=SHA, progress=False)
    assert not dest.exists()  # never a final file that passes as valid
    part = tmp_path / "w.pth.part"
    assert part.read_bytes() == PAYLOAD[:123_456]
    hub.download(URL, dest, sha256=SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD and not part.exists()
    assert hosts.requests[1] == ("files.example", "/w.pth", "bytes=123456-")


def test_truncated_body_without_range_support_keeps_nothing(tmp_path, hosts):
    hosts.no_range.add("files.example")
    hosts.drop_after = 123_456
    dest = tmp_path / "w.pth"
    with pytest.raises(ConnectionError) as err:
        hub.download(URL, dest, sha256=SHA, progress=False)
    assert URL in str(err.value) and "123456" in str(err.value)
    assert "nothing was kept" in str(err.value) and os.listdir(tmp_path) == []
    # a leftover .part is not appended to by a server without ranges: the file restarts
    (tmp_path / "w.pth.part").write_bytes(PAYLOAD[:1000])
    hub.download(URL, dest, sha256=SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert hosts.requests[-1] == ("files.example", "/w.pth", "bytes=1000-")


def test_stale_part_longer_than_the_file_restarts(tmp_path, hosts):
    dest = tmp_path / "w.pth"
    (tmp_path / "w.pth.part").write_bytes(b"x" * (len(PAYLOAD) + 10))
    hub.download(URL, dest, sha256=SHA, progress=False)  # 416 -> restart
    assert dest.read_bytes() == PAYLOAD
    assert [r for _, _, r in hosts.requests] == [f"bytes={len(PAYLOAD) + 10}-", None]


def test_checksum_mismatch_deletes_the_download(tmp_path, hosts):
    wrong = "0" * 64
    with pytest.raises(ValueError) as err:
        hub.download(URL, tmp_path / "w.pth", sha256=wrong, progress=False)
    assert wrong in str(err.value) and SHA in str(err.value) and "deleted" in str(err.value)
    assert os.listdir(tmp_path) == []


def test_resumed_corrupt_part_fails_the_checksum(tmp_path, hosts):
    dest = tmp_path / "w.pth"
    (tmp_path / "w.pth.part").write_bytes(b"\0" * 1000)  # not a prefix of the file
    with pytest.raises(ValueError, match="SHA-256 mismatch"):
        hub.download(URL, dest, sha256=SHA, progress=False)
    assert os.listdir(tmp_path) == []
    hub.download(URL, dest, sha256=SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_file_urls(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    dest = tmp_path / "out" / "w.pth"
    hub.download(src.as_uri(), dest, sha256=SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    # a leftover .part is replaced, not appended to (file:// has no ranges)
    (tmp_path / "out" / "w2.pth.part").write_bytes(PAYLOAD[:1000])
    hub.download(src.as_uri(), tmp_path / "out" / "w2.pth", sha256=SHA, progress=False)
    assert (tmp_path / "out" / "w2.pth").read_bytes() == PAYLOAD


def test_progress_bar_only_on_a_terminal(tmp_path, hosts, monkeypatch, capsys):
    hub.download(URL, tmp_path / "a.pth", progress=True)
    assert capsys.readouterr().err == ""  # pytest's stderr is not a tty

    class Tty(io.StringIO):
        def isatty(self):
            return True

    fake = Tty()
    monkeypatch.setattr("sys.stderr", fake)
    hub.download(URL, tmp_path / "b.pth", progress=True)
    shown = fake.getvalue()
    assert "b.pth" in shown and "293k" in shown.lower() and "/s" in shown
    fake2 = Tty()
    monkeypatch.setattr("sys.stderr", fake2)
    hub.download(URL, tmp_path / "c.pth", progress=False)
    assert fake2.getvalue() == ""


def test_redirect_chains_are_followed_and_bounded(tmp_path, hosts):
    dest = tmp_path / "w.pth"
    hub.download("https://files.example/hop/4", dest, sha256=SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert [p for _, p, _ in hosts.requests] == ["/hop/4", "/hop/3", "/hop/2", "/hop/1", "/w.pth"]
    with pytest.raises(ConnectionError, match="more than 10 redirects"):
        hub.download("https://files.example/loop", tmp_path / "x.pth", progress=False)
    with pytest.raises(ConnectionError, match="more than 10 redirects"):
        hub.download("https://files.example/hop/11", tmp_path / "x.pth", progress=False)
    hub.download("https://files.example/hop/10", tmp_path / "y.pth", progress=False)
    assert sorted(os.listdir(tmp_path)) == ["w.pth", "y.pth"]


def test_github_raw_redirects_to_lfs_media(tmp_path, hosts, ckpt_bytes):
    media = "https://media.githubusercontent.com/media/owner/repo/abc123/weights/w.pth"
    hosts.add(media, ckpt_bytes)
    dest = tmp_path / "w.pth"
    hub.download(
        "https://github.com/owner/repo/raw/abc123/weights/w.pth",
        dest,
        source_format="pytorch",
        progress=False,
    )
    assert dest.read_bytes() == ckpt_bytes
    assert [h for h, _, _ in hosts.requests] == ["github.com", "media.githubusercontent.com"]
    # raw.githubusercontent.com serves the LFS pointer, not the file: refused
    with pytest.raises(hub.UnexpectedContentError, match="Git LFS pointer"):
        hub.download(
            "https://raw.githubusercontent.com/owner/repo/abc123/weights/w.pth",
            tmp_path / "p.pth",
            source_format="pytorch",
            progress=False,
        )
    assert sorted(os.listdir(tmp_path)) == ["w.pth"]
    assert LFS_POINTER.startswith("version https://git-lfs.github.com/spec/")


# --------------------------------------------------------------- download: HTML answers


@pytest.mark.parametrize("path", ["/html", "/html-octet"])
def test_html_answers_are_never_written(tmp_path, hosts, path):
    url = f"https://files.example{path}"
    with pytest.raises(hub.UnexpectedContentError) as err:
        hub.download(url, tmp_path / "w.pth", progress=False)
    text = str(err.value)
    assert "\n" not in text and url in text and "HTML page" in text
    if path == "/html":  # the page was read and named
        assert "Service Unavailable" in text and "text/html" in text
    else:  # sniffed from the body although the server said application/octet-stream
        assert "application/octet-stream" in text and "<!doctype html>" in text
    assert os.listdir(tmp_path) == []


def test_http_error_with_an_html_page(tmp_path, hosts):
    url = "https://files.example/missing.pth"
    with pytest.raises(urllib.error.HTTPError) as err:
        hub.download(url, tmp_path / "w.pth", progress=False)
    assert err.value.code == 404
    assert url in str(err.value) and "404 Not Found" in str(err.value)
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------- download: Google Drive

DRIVE_ID = "1gFNUc4cOCFXbGv6kkjjcPw2cJWmodypv"
DRIVE_URL = f"https://drive.google.com/uc?export=download&id={DRIVE_ID}"


def test_drive_confirmation_page_is_followed(tmp_path, hosts, ckpt_bytes):
    hosts.add(DRIVE_URL, ckpt_bytes)
    dest = tmp_path / "w.ckpt"
    hub.download(DRIVE_URL, dest, source_format="pytorch", progress=False)
    assert dest.read_bytes() == ckpt_bytes and os.listdir(tmp_path) == ["w.ckpt"]
    (token,) = hosts.uuids
    assert [(h, p) for h, p, _ in hosts.requests] == [
        ("drive.google.com", f"/uc?export=download&id={DRIVE_ID}"),
        ("drive.usercontent.google.com", f"/download?id={DRIVE_ID}&export=download"),
        (
            "drive.usercontent.google.com",
            f"/download?id={DRIVE_ID}&export=download&confirm=t&uuid={token}",
        ),
    ]


def test_small_drive_files_come_without_the_page(tmp_path, hosts, ckpt_bytes):
    hosts.add(DRIVE_URL, ckpt_bytes)
    hosts.drive_small.add(DRIVE_ID)
    hub.download(DRIVE_URL, tmp_path / "w.ckpt", source_format="pytorch", progress=False)
    assert (tmp_path / "w.ckpt").read_bytes() == ckpt_bytes
    assert [h for h, _, _ in hosts.requests] == ["drive.google.com", "drive.usercontent.google.com"]


def test_drive_download_resumes_through_the_confirmation_page(tmp_path, hosts, ckpt_bytes):
    hosts.add(DRIVE_URL, ckpt_bytes)
    hosts.drop_after = 40_000
    dest = tmp_path / "w.ckpt"
    with pytest.raises(ConnectionError, match="resume"):
        hub.download(DRIVE_URL, dest, source_format="pytorch", progress=False)
    assert (tmp_path / "w.ckpt.part").stat().st_size == 40_000
    hub.download(DRIVE_URL, dest, source_format="pytorch", progress=False)
    assert dest.read_bytes() == ckpt_bytes and os.listdir(tmp_path) == ["w.ckpt"]
    assert hosts.requests[-1][2] == "bytes=40000-"


def test_drive_quota_page_is_an_error_naming_the_reason(tmp_path, hosts, ckpt_bytes):
    hosts.add(DRIVE_URL, ckpt_bytes)
    hosts.drive_quota = True
    (tmp_path / "w.ckpt.part").write_bytes(ckpt_bytes[:1000])
    with pytest.raises(hub.UnexpectedContentError) as err:
        hub.download(DRIVE_URL, tmp_path / "w.ckpt", source_format="pytorch", progress=False)
    text = str(err.value)
    assert (
        "Quota exceeded" in text and QUOTA[:40] in text and "drive.usercontent.google.com" in text
    )
    assert os.listdir(tmp_path) == []  # nothing partial stays


def test_drive_confirmation_pages_are_bounded(tmp_path, hosts, ckpt_bytes):
    hosts.add(DRIVE_URL, ckpt_bytes)
    hosts.drive_accepts = False  # the page comes back each time
    with pytest.raises(hub.UnexpectedContentError, match="Virus scan warning"):
        hub.download(DRIVE_URL, tmp_path / "w.ckpt", progress=False)
    assert len(hosts.requests) == 2 + _download._MAX_PAGES


def test_confirmation_parser_today_legacy_and_foreign_pages():
    page_url = "https://drive.usercontent.google.com/download?id=X&export=download"
    today = (
        '<form id="download-form" action="https://drive.usercontent.google.com/download" '
        'method="get"><input type="submit" value="Download anyway"/><input type="hidden" '
        'name="id" value="X"><input type="hidden" name="export" value="download"><input '
        'type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" '
        'value="a-b&amp;c"></form>'
    )
    got = _download._drive_confirmation(_download._parse_page(today.encode()), page_url)
    assert (
        got == "https://drive.usercontent.google.com/download"
        "?id=X&export=download&confirm=t&uuid=a-b%26c"
    )
    legacy = (
        '<a id="uc-download-link" class="goog-inline-block jfk-button" '
        'href="/uc?export=download&amp;confirm=Ab_1&amp;id=X">Download anyway</a>'
    )
    got = _download._drive_confirmation(
        _download._parse_page(legacy.encode()), "https://drive.google.com/uc?id=X"
    )
    assert got == "https://drive.google.com/uc?export=download&confirm=Ab_1&id=X"
    foreign = today.replace("https://drive.usercontent.google.com", "https://evil.example")
    assert _download._drive_confirmation(_download._parse_page(foreign.encode()), page_url) is None
    post = today.replace('method="get"', 'method="post"')
    assert _download._drive_confirmation(_download._parse_page(post.encode()), page_url) is None
    assert (
        _download._drive_confirmation(_download._parse_page(b"<html><p>hi</p></html>"), page_url)
        is None
    )


# ---------------------------------------------------------------- download: file content


def test_only_what_the_converter_reads_is_committed(tmp_path, hosts, ckpt_bytes):
    legacy = tmp_path / "legacy.pth"
    write_torch_checkpoint(legacy, {"w": np.ones(3, np.float32)}, legacy=True)
    t7 = b"\x04\x00\x00\x00" + b"\x00" * 60
    damaged = bytearray(ckpt_bytes)
    damaged[len(damaged) // 2] ^= 0xFF  # inside a storage record: its CRC fails
    cases = {
        "/zip.pth": (ckpt_bytes, None),
        "/legacy.pth": (legacy.read_bytes(), None),
        "/random.pth": (PAYLOAD, "bytes starting with"),
        "/t7.pth": (t7, "Torch7"),
        "/cut.pth": (ckpt_bytes[:-200], "damaged or truncated zip"),
        "/crc.pth": (bytes(damaged), "CRC"),
        "/empty.pth": (b"", "empty"),
        "/npz.pth": (_npz_bytes(), "without a */data.pkl"),
    }
    out = tmp_path / "out"
    for path, (body, problem) in cases.items():
        hosts.add(f"https://files.example{path}", body)
        dest = out / path.lstrip("/")
        if problem is None:
            hub.download(
                f"https://files.example{path}", dest, source_format="pytorch", progress=False
            )
            assert dest.read_bytes() == body
            continue
        with pytest.raises(hub.UnexpectedContentError) as err:
            hub.download(
                f"https://files.example{path}", dest, source_format="pytorch", progress=False
            )
        assert problem in str(err.value) and "not a PyTorch checkpoint" in str(err.value), path
    assert sorted(os.listdir(out)) == ["legacy.pth", "zip.pth"]


def _npz_bytes() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, a=np.zeros(3))
    return buf.getvalue()


def test_content_check_per_format(tmp_path):
    npz = tmp_path / "w.npz"
    with zipfile.ZipFile(npz, "w") as zf:
        zf.writestr("__meta__.npy", b"x")
    assert _download.content_problem(npz, "flowlib-npz") is None
    (tmp_path / "a.npz").write_bytes(_npz_bytes())
    assert "without flowlib's __meta__" in _download.content_problem(
        tmp_path / "a.npz", "flowlib-npz"
    )
    (tmp_path / "w.t7").write_bytes(b"\x03\x00\x00\x00rest")
    assert _download.content_problem(tmp_path / "w.t7", "t7") is None
    assert "HTML" in _download.content_problem(_write(tmp_path / "h", b"\n  <HTML><body>"), "t7")
    with pytest.raises(ValueError, match="unknown source_format"):
        _download.content_problem(npz, "onnx")


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------- fetch and cache


def test_fetch_downloads_once_and_verifies_the_cache_once(home, hosts, ckpt_bytes):
    sha = hashlib.sha256(ckpt_bytes).hexdigest()
    hosts.add(URL, ckpt_bytes)
    ckpt = _ckpt(URL, sha)
    path = hub.fetch(ckpt, progress=False)
    assert path == home / "checkpoints" / "w.pth" and path.read_bytes() == ckpt_bytes
    record = json.loads((home / "checkpoints" / "w.pth.json").read_text())
    assert (record["sha256"], record["size"], record["sha256_source"]) == (
        sha,
        len(ckpt_bytes),
        "published",
    )
    assert _cache_files(home) == ["w.pth", "w.pth.json"]
    (home / "checkpoints" / "w.pth.sha256").write_text(f"{sha}  w.pth\n1 2\n")  # old sidecar
    os.utime(path, ns=(5, 5))
    hub.fetch(ckpt, progress=False)  # re-hashed, recorded, old sidecar gone
    assert _cache_files(home) == ["w.pth", "w.pth.json"]
    # A file of the recorded size and mtime is trusted without being read: a same-size
    # change with its mtime put back goes unnoticed, and there is no network.
    checked = path.stat().st_mtime_ns
    path.write_bytes(ckpt_bytes[:-1] + bytes([ckpt_bytes[-1] ^ 1]))
    os.utime(path, ns=(checked, checked))
    assert hub.fetch(ckpt, progress=False) == path and len(hosts.requests) == 1
    os.utime(path, ns=(1, 1))  # a file whose size/mtime changed is hashed again
    with pytest.raises(ValueError, match=sha):
        hub.fetch(ckpt, progress=False)
    path.write_bytes(ckpt_bytes)
    assert hub.fetch(ckpt, progress=False) == path  # hashed, recorded, then trusted again
    record = json.loads((home / "checkpoints" / "w.pth.json").read_text())
    assert record["checked"] == [len(ckpt_bytes), path.stat().st_mtime_ns]
    assert len(hosts.requests) == 1


def test_a_mirror_is_asked_for_the_host_and_path(monkeypatch):
    monkeypatch.setenv("FLOWLIB_MIRROR", "http://mirror.example/weights/")
    assert (_download.mirrored("https://drive.google.com/uc?export=download&id=X")
            == "http://mirror.example/weights/drive.google.com/uc?export=download&id=X")
    assert _download.mirrored("file:///tmp/w.pth") == "file:///tmp/w.pth"
    monkeypatch.setenv("FLOWLIB_MIRROR", "ftp://mirror.example")
    with pytest.raises(ValueError, match=r"\$FLOWLIB_MIRROR must be an http:// or https://"):
        _download.mirrored("https://files.example/w.pth")
    monkeypatch.delenv("FLOWLIB_MIRROR")
    assert _download.mirrored(URL) == URL


def test_fetch_refuses_a_corrupt_cached_file(home, hosts, ckpt_bytes):
    path = home / "checkpoints" / "w.pth"
    path.parent.mkdir(parents=True)
    path.write_bytes(ckpt_bytes[:-1] + b"!")
    sha = hashlib.sha256(ckpt_bytes).hexdigest()
    with pytest.raises(ValueError) as err:
        hub.fetch(_ckpt(URL, sha), progress=False)
    assert str(path) in str(err.value) and sha in str(err.value)
    assert path.exists() and hosts.requests == []


def test_sha256_prefix_checked_on_download_and_in_the_cache(home, hosts, ckpt_bytes):
    digest = hashlib.sha256(ckpt_bytes).hexdigest()
    hosts.add("https://example.org/w.pth", ckpt_bytes)
    bad = _ckpt("https://example.org/w.pth", None,
                sha256_prefix=("1" if digest[0] == "0" else "0") * 8)
    with pytest.raises(ValueError, match=f"SHA-256 is {digest}, which does not start with"):
        hub.fetch(bad, progress=False)
    assert _cache_files(home) == []  # deleted, nothing recorded
    good = dataclasses.replace(bad, sha256_prefix=digest[:8].upper())
    path = hub.fetch(good, progress=False)
    assert path.read_bytes() == ckpt_bytes
    assert _cache_files(home) == ["w.pth", "w.pth.json"]
    # A copy put in the cache by hand is checked against the prefix before it is recorded.
    os.remove(hub.cache_info(good).record)
    with pytest.raises(ValueError, match="does not start with"):
        hub.fetch(bad, progress=False)
    assert hub.fetch(good, progress=False) == path


def test_first_download_records_the_checksum_later_copies_are_verified(home, hosts, ckpt_bytes):
    hosts.add(URL, ckpt_bytes)
    ckpt = _ckpt(URL, None)
    assert hub.cache_info(ckpt).sha256_source is None
    path = hub.fetch(ckpt, progress=False)
    info = hub.cache_info(ckpt)
    assert (info.present, info.sha256, info.sha256_source) == (
        True,
        hashlib.sha256(ckpt_bytes).hexdigest(),
        "recorded",
    )
    record = json.loads(info.record.read_text())
    assert record["origin"] == "first download" and record["size"] == len(ckpt_bytes)
    # the file is deleted and the host now serves another (valid) checkpoint: refused
    path.unlink()
    write_torch_checkpoint(home / "other.pth", {"w": np.zeros(7, np.float32)})
    hosts.add(URL, (home / "other.pth").read_bytes())
    with pytest.raises(ValueError) as err:
        hub.fetch(ckpt, progress=False)
    text = str(err.value)
    assert "recorded from the first download" in text and str(info.record) in text
    assert _cache_files(home) == ["w.pth.json"]  # nothing partial, the record kept
    # the same bytes again pass
    hosts.add(URL, ckpt_bytes)
    assert hub.fetch(ckpt, progress=False).read_bytes() == ckpt_bytes


def test_a_file_put_in_the_cache_by_hand_is_checked_then_recorded(home, ckpt_bytes):
    ckpt = _ckpt("https://example.invalid/w.pth", None)
    path = home / "checkpoints" / "w.pth"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"<!DOCTYPE html><html><title>Google Drive - Virus scan warning</title>")
    with pytest.raises(hub.WeightsUnavailableError) as err:
        hub.fetch(ckpt, offline=True)
    text = str(err.value)
    assert "\n" not in text and "an HTML page" in text and "delete it" in text
    assert f"save the file as {path}" in text
    path.write_bytes(ckpt_bytes)
    assert hub.fetch(ckpt, offline=True) == path
    record = json.loads((home / "checkpoints" / "w.pth.json").read_text())
    assert record["origin"] == "copy found in the cache"
    path.write_bytes(ckpt_bytes + b"x")
    with pytest.raises(ValueError, match="not the recorded one"):
        hub.fetch(ckpt, offline=True)


def test_offline_message_is_one_line_with_the_manual_steps(home, monkeypatch, ckpt_bytes):
    monkeypatch.setenv("FLOWLIB_OFFLINE", "1")
    url = "https://example.invalid/weights/w.pth"
    with pytest.raises(hub.WeightsUnavailableError) as err:
        hub.fetch(_ckpt(url, None))
    text = str(err.value)
    assert "\n" not in text
    assert f"open {url} in a browser" in text
    assert f"save the file as {home / 'checkpoints' / 'w.pth'}" in text
    assert "local copy" in text and "offline" in text
    # offline with the file already cached is fine
    (home / "checkpoints").mkdir(parents=True)
    (home / "checkpoints" / "w.pth").write_bytes(ckpt_bytes)
    assert hub.fetch(_ckpt(url, None)).read_bytes() == ckpt_bytes
    # offline=True wins over FLOWLIB_OFFLINE=0
    monkeypatch.setenv("FLOWLIB_OFFLINE", "0")
    other = dataclasses.replace(_ckpt(url, None), filename="other.pth")
    with pytest.raises(hub.WeightsUnavailableError, match="offline mode"):
        hub.fetch(other, offline=True)


def test_failures_become_one_line_weights_unavailable(home, hosts):
    closed = FakeHosts()
    dead = f"http://127.0.0.1:{closed.port}/w.pth"
    closed.close()
    cases = {
        dead: ("download failed", OSError),
        "https://files.example/missing.pth": ("404", OSError),
        "https://files.example/html": ("Service Unavailable", hub.UnexpectedContentError),
        "https://raw.githubusercontent.com/o/r/c/w.pth": (
            "Git LFS pointer",
            hub.UnexpectedContentError,
        ),
        URL: ("random" and "bytes starting with", hub.UnexpectedContentError),
    }
    for url, (words, cause) in cases.items():
        with pytest.raises(hub.WeightsUnavailableError) as err:
            hub.fetch(_ckpt(url, None), progress=False)
        text = str(err.value)
        assert "\n" not in text and words in text and url in text, text
        assert f"save the file as {home / 'checkpoints' / 'w.pth'}" in text
        assert isinstance(err.value.__cause__, cause)
        assert _cache_files(home) == []


def test_truncated_fetch_then_success(home, hosts, ckpt_bytes):
    hosts.add(URL, ckpt_bytes)
    hosts.no_range.add("files.example")
    hosts.drop_after = 1000
    with pytest.raises(
        hub.WeightsUnavailableError, match="ended after 1000 of|interrupted after 1000"
    ):
        hub.fetch(_ckpt(URL, None), progress=False)
    assert _cache_files(home) == []
    assert hub.fetch(_ckpt(URL, None), progress=False).read_bytes() == ckpt_bytes


def test_t7_folder_checkpoints(home):
    ckpt = _ckpt(
        "https://github.com/anuragranj/spynet/tree/master/models", None, source_format="t7-dir"
    )
    with pytest.raises(hub.WeightsUnavailableError) as err:
        hub.fetch(ckpt, offline=False)
    assert "save the folder as" in str(err.value) and str(home / "checkpoints" / "w.pth") in str(
        err.value
    )
    assert "\n" not in str(err.value)
    (home / "checkpoints" / "w.pth").mkdir(parents=True)
    assert hub.fetch(ckpt).is_dir() and hub.cache_info(ckpt).present


# ---------------------------------------------------------------- the zoo, end to end


def _variants():
    from flowlib import _zoo

    return [
        (name, variant)
        for name in sorted(_zoo.MODELS)
        for variant, ckpt in _zoo.spec(name).checkpoints.items()
        if ckpt.source_format != "t7-dir"
    ]


@functools.cache
def _flax_shapes(name: str, kwargs: tuple) -> dict:
    import jax
    import jax.numpy as jnp

    from flowlib import _zoo
    from flowlib.convert._common import flatten

    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    module = _zoo.spec(name).build(**dict(kwargs))
    return {
        k: tuple(v.shape)
        for k, v in flatten(jax.eval_shape(module.init, jax.random.PRNGKey(0), x, x)).items()
    }


def _rows(name: str, kwargs: dict) -> list[tuple[str, str, str | None]]:
    """(torch key, flax path, kind) of every tensor the converter of ``name`` reads."""
    from flowlib.convert import cfnet, flownet, spynet

    if name == "spynet":
        return [
            row
            for src, dst in spynet.key_table(6, prefix="moduleBasic")
            for row in (
                (f"{src}.weight", f"{dst}/kernel", "conv"),
                (f"{src}.bias", f"{dst}/bias", None),
            )
        ]
    if name.startswith("flownet"):
        kinds = {flownet.conv_kernel: "conv", flownet.conv_transpose_kernel: "convT", None: None}
        table = flownet.key_table(
            correlation=kwargs["correlation"],
            batch_norm=kwargs["batch_norm"],
            family=kwargs["family"],
        )
        return [(key, path, kinds[t]) for key, path, t in table]
    if name.startswith("raft"):
        from flowlib.convert import raft
        from tests.models import raft_parity

        with np.load(raft_parity.GOLDEN) as golden:  # torchvision's names and shapes
            shapes = raft_parity.shapes_from_json(str(golden[f"{name}/shapes"]))
        rows = []
        for key, shape in shapes:
            if not key.endswith("num_batches_tracked"):
                path, transform = raft.flax_path(key)
                rows.append((key, path, "conv" if transform is not None else None))
        return rows
    assert name == "cfnet"
    rows = []
    for t, f, kind in cfnet.key_table():
        if kind == "param":
            rows.append((t, f"params/{f}", None))
        elif kind in ("conv", "convT"):
            rows.append((f"{t}.weight", f"params/{f}/kernel", kind))
        else:
            rows += [
                (f"{t}.{a}", f"{c}/{f}/{b}", None)
                for a, b, c in (
                    ("weight", "scale", "params"),
                    ("bias", "bias", "params"),
                    ("running_mean", "mean", "batch_stats"),
                    ("running_var", "var", "batch_stats"),
                )
            ]
    return rows


def _fake_checkpoint(name: str, ckpt: hub.Checkpoint, path) -> dict[str, float]:
    """Write a key-complete, full-shape checkpoint of the upstream layout (each tensor a
    constant, stored as one shared few-kB storage); returns {flax path: constant}."""
    from flowlib import _zoo
    from tests._fake_hosts import BASE, constant, torch_shape

    kwargs = dict(ckpt.model_kwargs)
    shapes = _flax_shapes(name, tuple(sorted(kwargs.items())))
    state, values = {}, {}
    for i, (key, flax_path, kind) in enumerate(_rows(name, kwargs)):
        state[key] = constant(i, torch_shape(kind, shapes[flax_path]))
        values[flax_path] = float(BASE[i % BASE.size])
    if name in ("spynet", "raft", "raft_small"):
        obj = state  # sniklaus's .pytorch files, torchvision's .pth: the bare state dict
    elif name == "cfnet":
        from flowlib.convert.cfnet import IGNORED

        state.update({k: np.zeros(2, np.float32) for k in IGNORED})
        obj = {"epoch": 19, "model": {f"module.{k}": v for k, v in state.items()}}
    elif kwargs["family"] == "fnp":
        arch = ("flownetc" if kwargs["correlation"] else "flownets") + (
            "_bn" if kwargs["batch_norm"] else ""
        )
        obj = {"epoch": 300, "arch": arch, "div_flow": 20, "state_dict": state}
    else:
        obj = {"epoch": 100, "best_EPE": 2.1, "state_dict": state}
    write_torch_checkpoint(path, obj)
    return values


def _serve_variant(hosts, name: str, variant: str, tmp_path, monkeypatch):
    """Serve a fake of ``name:variant`` at its URL; returns (checkpoint, bytes, constants).
    A fake cannot match a published SHA-256 or hash prefix, so the table then publishes the
    fake's."""
    from flowlib import _zoo

    ckpt = _zoo.spec(name).checkpoints[variant]
    values = _fake_checkpoint(name, ckpt, tmp_path / "fake")
    body = (tmp_path / "fake").read_bytes()
    digest = hashlib.sha256(body).hexdigest()
    if ckpt.sha256 is not None:
        ckpt = dataclasses.replace(ckpt, sha256=digest)
        monkeypatch.setitem(_zoo.spec(name).checkpoints, variant, ckpt)
    if ckpt.sha256_prefix is not None:
        ckpt = dataclasses.replace(ckpt, sha256_prefix=digest[: len(ckpt.sha256_prefix)])
        monkeypatch.setitem(_zoo.spec(name).checkpoints, variant, ckpt)
    hosts.add(ckpt.url, body)
    return ckpt, body, values


def _check_values(variables, values: dict[str, float]) -> None:
    from flowlib.convert._common import flatten

    got = flatten(variables)
    for flax_path, value in list(values.items())[:: max(1, len(values) // 7)]:
        assert np.all(np.asarray(got[flax_path]) == value), flax_path


@pytest.mark.parametrize("name,variant", _variants(), ids=lambda v: v)
def test_every_named_variant_downloads_through_its_host_and_converts(
    name, variant, home, hosts, tmp_path, monkeypatch
):
    """What ``load_model`` does for a named variant, to the converter accepting the file."""
    from flowlib import _zoo

    ckpt, body, values = _serve_variant(hosts, name, variant, tmp_path, monkeypatch)
    path = hub.fetch(_zoo.spec(name).checkpoints[variant], progress=False)
    assert path.read_bytes() == body
    host = urllib.parse.urlsplit(ckpt.url).hostname
    assert hosts.requests[0][0] == host
    if host == "drive.google.com":  # the interstitial page, then the file
        assert [h for h, _, _ in hosts.requests] == ["drive.google.com"] + [
            "drive.usercontent.google.com"
        ] * 2
    assert _cache_files(home) == [ckpt.filename, ckpt.filename + ".json"]
    info = hub.cache_info(ckpt)
    assert info.sha256 == hashlib.sha256(body).hexdigest()
    assert info.sha256_source == ("published" if ckpt.sha256 else "recorded")
    variables, _ = _zoo.spec(name).convert(path, **dict(ckpt.model_kwargs))
    _check_values(variables, values)


@pytest.mark.parametrize(
    "name,variant",
    [
        ("spynet", "sintel-final"),  # plain http server
        ("flownetc", "chairs"),  # GitHub LFS media, published SHA-256
        ("flownets", "things"),  # Google Drive
        ("cfnet", "robust"),  # Google Drive; the slowest (CFNet tracing: 6-13 s)
        ("raft_small", "C_T_V2"),  # download.pytorch.org, hash prefix in the file name
    ],
    ids=lambda v: v,
)
def test_load_model_downloads_a_named_variant(name, variant, home, hosts, tmp_path, monkeypatch):
    import flowlib

    ckpt, _, values = _serve_variant(hosts, name, variant, tmp_path, monkeypatch)
    model = flowlib.load_model(f"{name}:{variant}", progress=False)
    assert model.meta["weights"] == f"{name}:{variant}" and model.meta["source_url"] == ckpt.url
    _check_values(model.variables, values)
    assert hub.converted_path(name, variant).is_file()
    n = len(hosts.requests)
    assert flowlib.load_model(f"{name}:{variant}", offline=True).meta == model.meta
    assert len(hosts.requests) == n


def test_the_zoo_uses_only_imitated_hosts():
    from flowlib import _zoo

    hosts = {
        urllib.parse.urlsplit(c.url).hostname
        for spec in _zoo.specs()
        for c in spec.checkpoints.values()
        if c.source_format != "t7-dir"
    }
    # download.pytorch.org (torchvision's weights) is a plain server with Range support.
    assert hosts <= {"drive.google.com", "media.githubusercontent.com", "content.sniklaus.com",
                     "download.pytorch.org"}, hosts


# ------------------------------------------------------------------------------ the CLI


def test_cli_download_prints_the_whole_message_and_says_what_it_did(
    home, hosts, capsys, monkeypatch, tmp_path
):
    from flowlib import _zoo

    ckpt = _zoo.spec("spynet").checkpoints["kitti-final"]
    path = hub.checkpoint_path(ckpt)
    monkeypatch.setenv("FLOWLIB_OFFLINE", "1")
    assert cli.main(["download", "spynet:kitti-final"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ckpt.url in err and f"save the file as {path}" in err
    # the file put there by hand: found, not "downloaded"
    _fake_checkpoint("spynet", ckpt, tmp_path / "fake")
    path.parent.mkdir(parents=True)
    os.replace(tmp_path / "fake", path)
    assert cli.main(["download", "spynet:kitti-final", "-q"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"spynet:kitti-final: found {path} in the cache") and "ready" not in out
    assert str(hub.converted_path("spynet", "kitti-final")) in out
    assert cli.main(["download", "spynet:kitti-final", "-q"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("spynet:kitti-final: found in the cache") and ckpt.url in out
    # downloaded: says so, from where, and how the file was checked
    monkeypatch.delenv("FLOWLIB_OFFLINE")
    ckpt2 = _zoo.spec("spynet").checkpoints["sintel-clean"]
    _fake_checkpoint("spynet", ckpt2, tmp_path / "fake2")
    hosts.add(ckpt2.url, (tmp_path / "fake2").read_bytes())
    assert cli.main(["download", "spynet:sintel-clean", "-q"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        f"spynet:sintel-clean: downloaded {ckpt2.url} to {hub.checkpoint_path(ckpt2)}"
    )
    assert "SHA-256 recorded" in out


def test_cli_estimate_offline_prints_the_whole_message(home, tmp_path, capsys, monkeypatch):
    from flowlib import _zoo
    from flowlib import io as fio

    monkeypatch.setenv("FLOWLIB_OFFLINE", "1")
    img = np.zeros((32, 32, 3), np.uint8)
    for n in ("a.png", "b.png"):
        fio.write_image(tmp_path / n, img)
    ckpt = _zoo.spec("spynet").checkpoints["sintel-final"]
    code = cli.main(
        [
            "estimate",
            str(tmp_path / "a.png"),
            str(tmp_path / "b.png"),
            "--model",
            "spynet:sintel-final",
            "-o",
            str(tmp_path / "f.flo"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and ckpt.url in err and f"save the file as {hub.checkpoint_path(ckpt)}" in err


def test_cli_models_table(home, capsys, ckpt_bytes):
    from flowlib import _zoo

    spy = _zoo.spec("spynet").checkpoints["sintel-final"]
    path = hub.checkpoint_path(spy)
    path.parent.mkdir(parents=True)
    path.write_bytes(ckpt_bytes)
    hub.fetch(spy, offline=True)  # records its checksum
    assert cli.main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.lstrip("* ").startswith("MODEL"))
    columns = [m.start() for m in re.finditer(r"\S+", lines[header])]
    assert lines[header].split() == [
        "MODEL",
        "TASK",
        "CACHED",
        "SHA-256",
        "LICENCE",
        "TRAINED",
        "ON",
    ]
    end = lines.index("", header)
    rows = lines[header + 1 : end]
    names = {f"{n}:{v}" for n, v in _variants()}
    assert {r[2:].split()[0] for r in rows} >= names
    for row in rows:  # every column starts where its header does
        for start in columns[1:6]:
            assert row[start - 1] == " " and row[start] != " ", (row, start)
    by_name = {r[2:].split()[0]: r for r in rows}
    assert by_name["spynet:sintel-final"][columns[2] : columns[4]].split() == [
        "checkpoint",
        "recorded",
    ]
    assert by_name["spynet:kitti-final"][columns[2] : columns[4]].split() == ["no", "none"]
    assert by_name["flownetc:chairs"][columns[2] : columns[4]].split() == ["no", "published"]
    assert by_name["cfnet:sceneflow"][columns[2] : columns[4]].split() == ["no", "none"]
    text = "\n".join(lines)
    assert str(hub.cache_dir()) in text and "FLOWLIB_HOME" in text
    # The weights used without --weights: spynet's embedded file, not a named variant.
    assert "spynet (embedded)" in text and "spynet:sintel-final (default)" not in text
    assert "flownetc:chairs (default)" in text
