"""Weight hub: cache location, resumable verified downloads from a loopback server, offline."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import os
import threading

import pytest

from flowlib import hub

PAYLOAD = bytes((i * 7919 + (i >> 8) * 31) % 251 for i in range(300_000))
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Server:
    """A loopback HTTP server for PAYLOAD with switchable Range support and drop-outs."""

    def __init__(self) -> None:
        self.range_ok = True
        self.drop_after: int | None = None  # close the connection after this many body bytes (once)
        self.requests: list[tuple[str, str | None]] = []
        self.body = PAYLOAD
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 10

            def log_message(self, *args):
                pass

            def do_GET(self):
                owner.requests.append((self.path, self.headers.get("Range")))
                if self.path != "/w.pth":
                    self.send_error(404)
                    return
                body, start = owner.body, 0
                rng = self.headers.get("Range")
                if rng and owner.range_ok:
                    start = int(rng.removeprefix("bytes=").rstrip("-"))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                chunk = body[start:]
                if owner.drop_after is not None:
                    chunk, owner.drop_after = chunk[: owner.drop_after], None
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(chunk)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/w.pth"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWLIB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FLOWLIB_OFFLINE", raising=False)
    return tmp_path / "home"


def _ckpt(url: str, sha256: str | None = SHA, **kw) -> hub.Checkpoint:
    return hub.Checkpoint(
        url=url, filename="w.pth", sha256=sha256, license="test", training_data="none",
        source_format=kw.pop("source_format", "pytorch"), **kw,
    )


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.delenv("FLOWLIB_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert hub.cache_dir() == tmp_path / "user" / ".cache" / "flowlib"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.cache_dir() == tmp_path / "xdg" / "flowlib"
    monkeypatch.setenv("FLOWLIB_HOME", str(tmp_path / "fh"))
    assert hub.cache_dir() == tmp_path / "fh"
    assert hub.checkpoint_path(_ckpt("x")) == tmp_path / "fh" / "checkpoints" / "w.pth"


def test_checkpoint_fields_are_keyword_only_and_frozen():
    c = _ckpt("http://x/y", model_kwargs={"a": 1}, notes="n")
    assert (c.model_kwargs, c.notes, c.source_format) == ({"a": 1}, "n", "pytorch")
    with pytest.raises(TypeError):
        hub.Checkpoint("u", "f", None, "l", "t", "pytorch")  # positional
    with pytest.raises(AttributeError):
        c.url = "other"  # frozen
    assert issubclass(hub.WeightsUnavailableError, FileNotFoundError)
    assert issubclass(hub.WeightsUnavailableError, RuntimeError)


def test_download_verifies_and_leaves_only_the_final_file(tmp_path, server):
    dest = tmp_path / "d" / "w.pth"
    assert hub.download(server.url, dest, sha256=SHA, progress=False) == dest
    assert dest.read_bytes() == PAYLOAD
    assert sorted(os.listdir(dest.parent)) == ["w.pth"]
    assert server.requests == [("/w.pth", None)]


@pytest.mark.parametrize("range_ok", [True, False], ids=["range", "no-range"])
def test_interrupted_download_resumes_or_restarts(tmp_path, server, range_ok):
    server.range_ok = range_ok
    server.drop_after = 123_456
    dest = tmp_path / "w.pth"
    with pytest.raises(ConnectionError, match="123456 of 300000"):
        hub.download(server.url, dest, sha256=SHA, progress=False)
    assert not dest.exists()  # never a final file that passes as valid
    part = tmp_path / "w.pth.part"
    assert part.read_bytes() == PAYLOAD[:123_456]
    hub.download(server.url, dest, sha256=SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD and not part.exists()
    # second request asked for the rest; a server without Range support sent it all again
    assert server.requests[1] == ("/w.pth", "bytes=123456-")


def test_stale_part_longer_than_the_file_restarts(tmp_path, server):
    dest = tmp_path / "w.pth"
    (tmp_path / "w.pth.part").write_bytes(b"x" * (len(PAYLOAD) + 10))
    hub.download(server.url, dest, sha256=SHA, progress=False)  # 416 -> restart
    assert dest.read_bytes() == PAYLOAD
    assert [r for _, r in server.requests] == [f"bytes={len(PAYLOAD) + 10}-", None]


def test_checksum_mismatch_deletes_the_download(tmp_path, server):
    dest = tmp_path / "w.pth"
    wrong = "0" * 64
    with pytest.raises(ValueError) as err:
        hub.download(server.url, dest, sha256=wrong, progress=False)
    assert wrong in str(err.value) and SHA in str(err.value)
    assert os.listdir(tmp_path) == []


def test_resumed_corrupt_part_fails_the_checksum(tmp_path, server):
    dest = tmp_path / "w.pth"
    (tmp_path / "w.pth.part").write_bytes(b"\0" * 1000)  # not a prefix of the file
    with pytest.raises(ValueError, match="SHA-256 mismatch"):
        hub.download(server.url, dest, sha256=SHA, progress=False)
    assert not dest.exists() and not (tmp_path / "w.pth.part").exists()
    hub.download(server.url, dest, sha256=SHA, progress=False)
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


def test_progress_bar_only_on_a_terminal(tmp_path, server, monkeypatch, capsys):
    hub.download(server.url, tmp_path / "a.pth", progress=True)
    assert capsys.readouterr().err == ""  # pytest's stderr is not a tty

    class Tty(io.StringIO):
        def isatty(self):
            return True

    fake = Tty()
    monkeypatch.setattr("sys.stderr", fake)
    hub.download(server.url, tmp_path / "b.pth", progress=True)
    shown = fake.getvalue()
    assert "b.pth" in shown and "293k" in shown.lower() and "/s" in shown
    fake2 = Tty()
    monkeypatch.setattr("sys.stderr", fake2)
    hub.download(server.url, tmp_path / "c.pth", progress=False)
    assert fake2.getvalue() == ""


def test_fetch_downloads_once_and_verifies_the_cache_once(home, server, monkeypatch):
    ckpt = _ckpt(server.url)
    path = hub.fetch(ckpt, progress=False)
    assert path == home / "checkpoints" / "w.pth" and path.read_bytes() == PAYLOAD
    assert (home / "checkpoints" / "w.pth.sha256").read_text().startswith(SHA)
    hashed = []
    real = hub._sha256_file
    monkeypatch.setattr(hub, "_sha256_file", lambda p: hashed.append(p) or real(p))
    assert hub.fetch(ckpt, progress=False) == path
    assert hashed == [] and len(server.requests) == 1  # sidecar trusted, no network
    # a file whose size/mtime changed is hashed again
    os.utime(path, ns=(1, 1))
    assert hub.fetch(ckpt, progress=False) == path and hashed == [path]
    assert hub.fetch(ckpt, progress=False) == path and hashed == [path]


def test_fetch_refuses_a_corrupt_cached_file(home, server):
    path = home / "checkpoints" / "w.pth"
    path.parent.mkdir(parents=True)
    path.write_bytes(PAYLOAD[:-1] + b"!")
    with pytest.raises(ValueError) as err:
        hub.fetch(_ckpt(server.url), progress=False)
    assert str(path) in str(err.value) and SHA in str(err.value)
    assert path.exists() and server.requests == []


def test_offline_message_says_where_to_put_the_file(home, monkeypatch):
    monkeypatch.setenv("FLOWLIB_OFFLINE", "1")
    url = "https://example.invalid/weights/w.pth"
    with pytest.raises(hub.WeightsUnavailableError) as err:
        hub.fetch(_ckpt(url))
    text = str(err.value)
    assert url in text
    assert str(home / "checkpoints" / "w.pth") in text
    assert "local copy" in text and "offline" in text
    # offline with the file already cached is fine
    (home / "checkpoints").mkdir(parents=True)
    (home / "checkpoints" / "w.pth").write_bytes(PAYLOAD)
    assert hub.fetch(_ckpt(url)).read_bytes() == PAYLOAD
    # offline=True wins over FLOWLIB_OFFLINE=0
    monkeypatch.setenv("FLOWLIB_OFFLINE", "0")
    other = dataclasses.replace(_ckpt(url), filename="other.pth")
    with pytest.raises(hub.WeightsUnavailableError, match="offline mode"):
        hub.fetch(other, offline=True)


def test_network_errors_become_weights_unavailable(home, server):
    closed = _Server()
    dead_url = closed.url
    closed.close()
    with pytest.raises(hub.WeightsUnavailableError) as err:
        hub.fetch(_ckpt(dead_url), progress=False)
    assert dead_url in str(err.value) and "download failed" in str(err.value)
    assert isinstance(err.value.__cause__, OSError)
    missing = server.url.replace("w.pth", "missing.pth")
    with pytest.raises(hub.WeightsUnavailableError, match="404"):
        hub.fetch(_ckpt(missing), progress=False)
    assert not (home / "checkpoints" / "w.pth").exists()


def test_interrupted_fetch_then_success(home, server):
    server.drop_after = 1000
    with pytest.raises(hub.WeightsUnavailableError, match="resume"):
        hub.fetch(_ckpt(server.url), progress=False)
    assert not (home / "checkpoints" / "w.pth").exists()
    assert hub.fetch(_ckpt(server.url), progress=False).read_bytes() == PAYLOAD


def test_t7_folder_checkpoints(home):
    ckpt = _ckpt("https://github.com/anuragranj/spynet/tree/master/models", sha256=None, source_format="t7-dir")
    with pytest.raises(hub.WeightsUnavailableError) as err:
        hub.fetch(ckpt, offline=False)
    assert "save the folder as" in str(err.value) and str(home / "checkpoints" / "w.pth") in str(err.value)
    (home / "checkpoints" / "w.pth").mkdir(parents=True)
    assert hub.fetch(ckpt).is_dir()
