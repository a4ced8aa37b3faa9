"""A loopback HTTP server imitating the hosts the zoo downloads from, and small checkpoints.

``FakeHosts`` listens on 127.0.0.1 only (threads, 10 s socket timeout) and is stopped by the
fixture that starts it. The hub reaches it as its mirror (``FLOWLIB_MIRROR`` set to
:attr:`FakeHosts.mirror`), requesting ``https://<host>/<path>?<query>`` as
``http://127.0.0.1:<port>/<host>/<path>?<query>``; each host answers the way the real one
does:

* ``drive.google.com/uc?export=download&id=ID`` -> 303 to
  ``drive.usercontent.google.com/download?id=ID&export=download``, which answers with the
  "Google Drive can't scan this file for viruses" page: a ``<form id="download-form"
  action="https://drive.usercontent.google.com/download">`` with hidden ``id``, ``export``,
  ``confirm=t`` and a fresh ``uuid``. Only that GET (with the issued uuid) returns the file
  (``Content-Disposition: attachment``, Range support). ``drive_quota`` answers the quota
  page instead;
* ``media.githubusercontent.com/media/<owner>/<repo>/<commit>/<path>``: Git LFS media, the file
  with Range support; ``github.com/<owner>/<repo>/raw/<commit>/<path>`` redirects (302)
  there; ``raw.githubusercontent.com`` serves the LFS pointer text;
* any other host (``content.sniklaus.com``, ``files.example``): a plain server, Range support
  per host (``no_range``);
* ``files.example`` also has ``/html`` (an HTML error page, 200 text/html),
  ``/html-octet`` (the same page as application/octet-stream), ``/missing`` (404 with an
  HTML page), ``/hop/<n>`` (a chain of n redirects, mixed 301/302/307/308, to ``/w.pth``)
  and ``/loop``.

``drop_after`` cuts the next file answer after that many body bytes (Content-Length still
announces the whole file): a truncated body.
"""

from __future__ import annotations

import http.server
import threading
import urllib.parse
import uuid

import numpy as np

DRIVE_PAGE = (
    "<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title><meta "
    'http-equiv="content-type" content="text/html; charset=utf-8"/><link rel="icon" '
    'href="//ssl.gstatic.com/docs/doclist/images/drive_2022q3_32dp.png"/></head><body>'
    '<div class="uc-main"><div id="uc-text"><p class="uc-warning-caption">Google Drive can'
    '&#39;t scan this file for viruses.</p><p class="uc-warning-subcaption"><span '
    'class="uc-name-size"><a href="/open?id={id}">{name}</a> (149M)</span> is too large for '
    "Google to scan for viruses. Would you still like to download this file?</p><form "
    'id="download-form" action="https://drive.usercontent.google.com/download" method="get">'
    '<input type="submit" id="uc-download-link" class="goog-inline-block jfk-button '
    'jfk-button-action" value="Download anyway"/><input type="hidden" name="id" value="{id}">'
    '<input type="hidden" name="export" value="download"><input type="hidden" name="confirm" '
    'value="t"><input type="hidden" name="uuid" value="{uuid}"></form></div></div><div '
    'class="uc-footer"><hr class="uc-footer-divider"></div></body></html>'
)
QUOTA = (
    "Too many users have viewed or downloaded this file recently. Please try accessing the "
    "file again later."
)
QUOTA_PAGE = (
    "<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>"
    '<div class="uc-main"><div id="uc-text"><p class="uc-error-caption">Sorry, you can&#39;t '
    f'view or download this file at this time.</p><p class="uc-error-subcaption">{QUOTA}</p>'
    "</div></div></body></html>"
)
ERROR_PAGE = (
    "<!doctype html>\n<html><head><title>Service Unavailable</title></head><body><h1>"
    "Maintenance</h1><p>Back soon.</p></body></html>"
)
LFS_POINTER = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:d98505dc749c35f0d4b4ce0536b4f64797ec22ea194a5f743af97dc3f778447d\n"
    "size 154706509\n"
)


class FakeHosts:
    """See the module docstring. ``files`` maps ``(host, path)`` to bytes, ``drive`` maps a
    Drive file id to ``(filename, bytes)``; ``requests`` logs ``(host, path?query, Range)``."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, str], bytes] = {}
        self.drive: dict[str, tuple[str, bytes]] = {}
        self.no_range: set[str] = set()
        self.drop_after: int | None = None
        self.drive_quota = False
        self.drive_accepts = True  # False: the confirmation never works (page again)
        self.drive_small: set[str] = set()  # ids Drive serves without the warning page
        self.uuids: set[str] = set()
        self.requests: list[tuple[str, str, str | None]] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 10

            def log_message(self, *args):
                pass

            def do_GET(self):
                _, host, rest = self.path.split("/", 2)
                split = urllib.parse.urlsplit("/" + rest)
                with owner._lock:
                    owner.requests.append((host, "/" + rest, self.headers.get("Range")))
                owner._dispatch(self, host, split.path, dict(urllib.parse.parse_qsl(split.query)))

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def mirror(self) -> str:
        """The address to set ``FLOWLIB_MIRROR`` to."""
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def add(self, url: str, body: bytes) -> None:
        """Serve ``body`` at ``url`` (a Drive ``uc?id=`` URL registers the Drive file)."""
        s = urllib.parse.urlsplit(url)
        if s.hostname == "drive.google.com":
            file_id = dict(urllib.parse.parse_qsl(s.query))["id"]
            self.drive[file_id] = (f"{file_id}.bin", body)
        else:
            self.files[(s.hostname, s.path)] = body

    # ------------------------------------------------------------------------ answers

    def _dispatch(self, h, host: str, path: str, query: dict[str, str]) -> None:
        if host == "drive.google.com" and path == "/uc" and query.get("id") in self.drive:
            target = (
                f"https://drive.usercontent.google.com/download?id={query['id']}&export=download"
            )
            return self._redirect(h, 303, target)
        if host == "drive.usercontent.google.com" and path == "/download":
            return self._drive_download(h, query)
        if host == "github.com" and "/raw/" in path:
            owner_repo, _, rest = path.partition("/raw/")
            return self._redirect(
                h, 302, f"https://media.githubusercontent.com/media{owner_repo}/{rest}"
            )
        if host == "raw.githubusercontent.com":
            return self._send(h, 200, LFS_POINTER.encode(), "text/plain; charset=utf-8")
        if host == "files.example" and path == "/html":
            return self._send(h, 200, ERROR_PAGE.encode(), "text/html; charset=utf-8")
        if host == "files.example" and path == "/html-octet":
            return self._send(h, 200, ERROR_PAGE.encode(), "application/octet-stream")
        if host == "files.example" and path == "/loop":
            return self._redirect(h, 302, "https://files.example/loop")
        if host == "files.example" and path.startswith("/hop/"):
            n = int(path.rsplit("/", 1)[1])
            code = (301, 302, 307, 308)[n % 4]
            target = f"/hop/{n - 1}" if n > 1 else "https://files.example/w.pth"
            return self._redirect(h, code, target)  # relative, then absolute
        body = self.files.get((host, path))
        if body is None:
            page = b"<html><head><title>404 Not Found</title></head><body>no</body></html>"
            return self._send(h, 404, page, "text/html")
        return self._file(h, body, range_ok=host not in self.no_range)

    def _drive_download(self, h, query: dict[str, str]) -> None:
        name, body = self.drive.get(query.get("id", ""), (None, None))
        if body is None:
            return self._send(h, 404, b"<html><title>Not Found</title></html>", "text/html")
        if self.drive_quota:
            return self._send(h, 200, QUOTA_PAGE.encode(), "text/html; charset=utf-8")
        if query.get("id") in self.drive_small:
            return self._file(h, body, range_ok=True, disposition=f'attachment; filename="{name}"')
        if (
            self.drive_accepts
            and query.get("confirm") == "t"
            and query.get("uuid") in self.uuids
            and query.get("export") == "download"
        ):
            disposition = f'attachment; filename="{name}"'
            return self._file(h, body, range_ok=True, disposition=disposition)
        token = str(uuid.uuid4())
        self.uuids.add(token)
        page = DRIVE_PAGE.format(id=query["id"], name=name, uuid=token)
        return self._send(h, 200, page.encode(), "text/html; charset=utf-8")

    @staticmethod
    def _redirect(h, code: int, location: str) -> None:
        h.send_response(code)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()

    @staticmethod
    def _send(h, code: int, body: bytes, ctype: str) -> None:
        h.send_response(code)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _file(self, h, body: bytes, *, range_ok: bool, disposition: str | None = None) -> None:
        start = 0
        rng = h.headers.get("Range")
        if rng and range_ok:
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            if start >= len(body):
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(body)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        if range_ok:
            h.send_header("Accept-Ranges", "bytes")
        if disposition:
            h.send_header("Content-Disposition", disposition)
        h.send_header("Content-Length", str(len(body) - start))
        h.end_headers()
        chunk = body[start:]
        with self._lock:
            drop, self.drop_after = self.drop_after, None
        if drop is not None:
            chunk = chunk[:drop]
            h.close_connection = True
        h.wfile.write(chunk)
        h.wfile.flush()


# ----------------------------------------------------------------------------- checkpoints

#: Every tensor of a fake checkpoint is a broadcast view of one element of this array, so a
#: key-complete, full-shape checkpoint is a few kB on disk (one shared storage, stride 0).
BASE = np.arange(1, 4097, dtype=np.float32)


def constant(index: int, shape: tuple[int, ...]) -> np.ndarray:
    i = index % BASE.size
    return np.broadcast_to(BASE[i : i + 1].reshape((1,) * len(shape)), shape)


def torch_shape(kind: str | None, flax_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The PyTorch layout the converters turn into ``flax_shape``: conv ``(O, I, *k)``,
    transposed conv ``(I, O, *k)``, anything else unchanged."""
    if kind == "conv":
        return (flax_shape[-1], flax_shape[-2], *flax_shape[:-2])
    if kind == "convT":
        return (flax_shape[-2], flax_shape[-1], *flax_shape[:-2])
    return tuple(flax_shape)
