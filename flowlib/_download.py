"""Downloading one file: open (redirects, Google Drive's confirmation page), stream
(resumable ``.part`` file), commit (kind of file, size, SHA-256, atomic rename).

The policy (what is cached where, checksums recorded on first use, the messages that say how
to install a file by hand) is :mod:`flowlib.hub`'s; this module only moves bytes and refuses
answers that are not the file: HTML pages other than Drive's confirmation form, Git LFS
pointers, truncated or damaged archives, files of another kind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html.parser
import http.client
import os
import pickle
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowlib._files import fsync_dir

__all__ = [
    "EXPECTED",
    "UnexpectedContentError",
    "content_problem",
    "download",
    "download_checked",
    "sha256_file",
]


class UnexpectedContentError(ValueError):
    """A download answered with something that is not the file (an HTML page, a Git LFS
    pointer, a damaged or different kind of file); nothing was written under its name."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _progress_bar(total: int | None, initial: int, name: str, enabled: bool):
    from tqdm import tqdm

    stream = sys.stderr
    on = enabled and hasattr(stream, "isatty") and stream.isatty()
    return tqdm(
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=name,
        disable=not on,
        file=stream,
        dynamic_ncols=True,
        leave=False,
    )


# ----------------------------------------------------------------------------- what came back

#: ``torch.save``'s legacy format starts with the pickled magic number
#: 0x1950A86A20F9469CFC6C (torch/serialization.py MAGIC_NUMBER), protocol 2, minus STOP.
_LEGACY_TORCH = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)[:-1]
_ZIP = b"PK\x03\x04"
#: Torch7 binary files start with the int32 type tag of their root object (table or torch).
_T7 = (b"\x03\x00\x00\x00", b"\x04\x00\x00\x00")
_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<title", b"<!--", b"<meta")
_LFS_POINTER = b"version https://git-lfs.github.com/spec/"


def _looks_like_html(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf").lstrip().lower()
    return text.startswith(_HTML_STARTS)


def _describe(head: bytes, size: int) -> str:
    """A few words on what a file that starts with ``head`` is (for error messages)."""
    if size == 0:
        return "an empty file"
    if head.startswith(_ZIP):
        return f"a zip archive ({size:,} bytes)"
    if head.startswith(_LEGACY_TORCH):
        return f"a legacy PyTorch checkpoint ({size:,} bytes)"
    if head[:4] in _T7:
        return f"what looks like a Torch7 file ({size:,} bytes)"
    if _looks_like_html(head):
        return f"an HTML page ({size:,} bytes)"
    if head.startswith(_LFS_POINTER):
        return "a Git LFS pointer file (the repository's placeholder, not the file)"
    if head.startswith(b"\x1f\x8b"):
        return f"a gzip file ({size:,} bytes)"
    return f"{size:,} bytes starting with {head[:8]!r}"


def _check_zip(path: Path, member: Callable[[str], bool], what: str) -> str | None:
    try:
        with zipfile.ZipFile(path) as zf:
            if not any(member(name) for name in zf.namelist()):
                return f"a zip archive without {what}"
            bad = zf.testzip()  # reads every member: catches truncated or damaged data
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as err:
        return f"a damaged or truncated zip archive ({err})"
    return f"a zip archive whose member {bad!r} fails its CRC check" if bad else None


def content_problem(path: Path, source_format: str) -> str | None:
    """``None`` if ``path`` is a file of ``source_format`` the converters read, else what
    it is instead. Checks the structure (magic numbers, zip directory and CRCs), not the
    tensors."""
    with open(path, "rb") as f:
        head = f.read(512)
    size = path.stat().st_size
    if source_format == "pytorch":
        if head.startswith(_ZIP):
            return _check_zip(path, lambda n: n.endswith("/data.pkl"), "a */data.pkl record")
        if head.startswith(_LEGACY_TORCH):
            return None
        return _describe(head, size)
    if source_format == "flowlib-npz":
        if head.startswith(_ZIP):
            return _check_zip(path, lambda n: n == "__meta__.npy", "flowlib's __meta__ entry")
        return _describe(head, size)
    if source_format == "t7":
        return None if head[:4] in _T7 else _describe(head, size)
    raise ValueError(f"unknown source_format {source_format!r}")


EXPECTED = {
    "pytorch": "a PyTorch checkpoint (zip archive or legacy pickle)",
    "flowlib-npz": "a flowlib .npz weight file",
    "t7": "a Torch7 binary file",
}


# ------------------------------------------------------------------------------- HTML pages


class _Page(html.parser.HTMLParser):
    """The parts of an HTML page a download needs: title, forms, links, Drive's error line."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.forms: list[dict[str, Any]] = []
        self.links: list[str] = []
        self.error = ""
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "title":
            self._in = "title"
        elif tag == "form":
            self.forms.append(
                {
                    "id": a.get("id", ""),
                    "action": a.get("action", ""),
                    "method": a.get("method", "get").lower(),
                    "inputs": [],
                }
            )
        elif tag == "input" and self.forms and a.get("type", "").lower() == "hidden":
            if a.get("name"):
                self.forms[-1]["inputs"].append((a["name"], a.get("value", "")))
        elif tag == "a" and a.get("href"):
            self.links.append(a["href"])
        elif tag == "p" and "uc-error-subcaption" in a.get("class", "").split():
            self._in = "error"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("title", "p"):
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "title":
            self.title += data
        elif self._in == "error":
            self.error += data


def _parse_page(body: bytes) -> _Page:
    page = _Page()
    page.feed(body.decode("utf-8", errors="replace"))
    page.close()
    return page


#: Hosts whose HTML answers may be Drive's confirmation page for a large file.
_DRIVE_HOSTS = ("drive.google.com", "docs.google.com", "drive.usercontent.google.com")


def _drive_confirmation(page: _Page, page_url: str) -> str | None:
    """The URL Drive's "can't scan this file for viruses" page points the download at.

    Today's page holds ``<form id="download-form" action="https://drive.usercontent.google
    .com/download" method="get">`` with hidden ``id``, ``export``, ``confirm`` and ``uuid``
    inputs: the file is the form's GET target. Older pages linked
    ``/uc?export=download&confirm=<token>&id=<id>`` instead. Only targets on Drive's own
    hosts are followed.
    """
    target = None
    for form in page.forms:
        if form["id"] == "download-form" and form["method"] == "get" and form["action"]:
            action = urllib.parse.urlsplit(urllib.parse.urljoin(page_url, form["action"]))
            query = urllib.parse.parse_qsl(action.query) + form["inputs"]
            target = action._replace(query=urllib.parse.urlencode(query)).geturl()
            break
    else:
        for href in page.links:
            if "confirm=" in href and "export=download" in href:
                target = urllib.parse.urljoin(page_url, href)
                break
    if target is None or urllib.parse.urlsplit(target).hostname not in _DRIVE_HOSTS:
        return None
    return target


def _page_summary(status: int, content_type: str, body: bytes, truncated: bool) -> str:
    page = _parse_page(body)
    size = f"{len(body):,}{'+' if truncated else ''} bytes"
    words = [f"HTTP {status}", content_type or "no content type", size]
    text = f"an HTML page ({', '.join(words)}"
    title = " ".join(page.title.split())
    if title:
        text += f", title {title[:80]!r}"
    error = " ".join(page.error.split())
    if error:
        text += f": {error[:160]!r}"
    return text + ")"


# -------------------------------------------------------------------------------- download

#: A mirror of the hosts (``$FLOWLIB_MIRROR``): ``https://<host>/<path>?<query>`` is
#: requested as ``<mirror>/<host>/<path>?<query>``.
MIRROR_ENV = "FLOWLIB_MIRROR"


def mirrored(url: str) -> str:
    """The address requested for ``url`` (a checkpoint's, a redirect's, a confirmation
    form's): ``url`` itself, or its place on the mirror ``$FLOWLIB_MIRROR`` names (an
    ``http(s)://`` address, for example a folder served on a machine without internet
    access, holding ``<host>/<path>`` for each file; it may answer as the hosts do,
    redirects and Drive's confirmation page included). ``file://`` addresses are not
    mirrored."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    parts = urllib.parse.urlsplit(url)
    if not mirror or parts.scheme not in ("http", "https"):
        return url
    if urllib.parse.urlsplit(mirror).scheme not in ("http", "https"):
        raise ValueError(f"${MIRROR_ENV} must be an http:// or https:// address, got {mirror!r}")
    query = f"?{parts.query}" if parts.query else ""
    return f"{mirror.rstrip('/')}/{parts.hostname}{parts.path}{query}"

_MAX_REDIRECTS = 10
_MAX_PAGES = 3  # confirmation pages followed per download
_PAGE_LIMIT = 1 << 20  # bytes of an HTML answer read to parse it
_BLOCK = 1 << 16
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Hand 3xx answers back (as HTTPError) so that :func:`_open` follows them itself."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


@dataclasses.dataclass
class _Answer:
    """An open response carrying the file's bytes from offset ``start``."""

    url: str  # the URL (as the hub means it) whose answer this is
    response: Any
    start: int
    total: int | None  # the whole file's size, where the server says
    resumable: bool  # the server honours Range requests


def _request(opener: urllib.request.OpenerDirector, url: str, start: int, timeout: float):
    headers = {"User-Agent": "flowlib-hub", "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    target = mirrored(url)
    return opener.open(urllib.request.Request(target, headers=headers), timeout=timeout)


def _follow(err: urllib.error.HTTPError, url: str) -> str | None:
    """The next URL of a redirect answer, or ``None`` if ``err`` is not one."""
    location = err.headers.get("Location") if err.code in (301, 302, 303, 307, 308) else None
    if not location:
        return None
    nxt = urllib.parse.urljoin(url, location)
    if urllib.parse.urlsplit(nxt).scheme not in ("http", "https"):
        raise UnexpectedContentError(f"{url} redirects to {nxt!r}, not an http(s) address")
    return nxt


def _http_error(err: urllib.error.HTTPError, url: str) -> urllib.error.HTTPError:
    """The same error, its message naming the URL and, for an HTML body, the page."""
    ctype = err.headers.get("Content-Type", "")
    detail = ""
    if "html" in ctype.lower():
        body = err.read(_PAGE_LIMIT + 1)
        page = _page_summary(err.code, ctype, body[:_PAGE_LIMIT], len(body) > _PAGE_LIMIT)
        detail = f"; the answer is {page}"
    err.close()
    return urllib.error.HTTPError(
        url, err.code, f"{err.reason} from {url}{detail}", err.headers, None
    )


def _answer(response: Any, url: str, start: int) -> _Answer:
    status = getattr(response, "status", None) or 200
    headers = response.headers
    resumable = status == 206 or headers.get("Accept-Ranges", "").strip().lower() == "bytes"
    if start and status == 206:
        m = _CONTENT_RANGE.fullmatch(headers.get("Content-Range", "").strip())
        if not m or int(m.group(1)) != start:
            response.close()
            raise ConnectionError(
                f"{url}: server answered a range request with Content-Range "
                f"{headers.get('Content-Range')!r}"
            )
        return _Answer(url, response, start, int(m.group(3)) if m.group(3) != "*" else None, True)
    # The whole file (a 200 to a range request means: no Range support).
    length = headers.get("Content-Length", "")
    return _Answer(url, response, 0, int(length) if length.isdigit() else None, resumable)


def _open(url: str, start: int, timeout: float) -> _Answer:
    """Open step: request ``url`` (from byte ``start``), following redirects and Drive's
    confirmation page, and refusing any other HTML answer.

    Raises:
      UnexpectedContentError: an HTML page that is not Drive's confirmation form, too many
        confirmation pages, a redirect to something other than http(s).
      urllib.error.HTTPError: a 4xx/5xx answer (416 unchanged, for the caller to restart).
      OSError: the network (``URLError``), too many redirects (``ConnectionError``).
    """
    opener = urllib.request.build_opener(_NoRedirect(), urllib.request.HTTPCookieProcessor())
    redirects = pages = 0
    first = url
    while True:
        try:
            response = _request(opener, url, start, timeout)
        except urllib.error.HTTPError as err:
            nxt = _follow(err, url)
            if nxt is None:
                raise err if err.code == 416 else _http_error(err, url) from None
            err.close()
            redirects += 1
            if redirects > _MAX_REDIRECTS:
                raise ConnectionError(
                    f"{first}: more than {_MAX_REDIRECTS} redirects (the last to {nxt})"
                ) from None
            url = nxt
            continue
        ctype = response.headers.get("Content-Type", "")
        if not ctype.lower().startswith("text/html"):
            return _answer(response, url, start)
        with response:
            body = response.read(_PAGE_LIMIT + 1)
        status = getattr(response, "status", None) or 200
        nxt = None
        if urllib.parse.urlsplit(url).hostname in _DRIVE_HOSTS and pages < _MAX_PAGES:
            nxt = _drive_confirmation(_parse_page(body[:_PAGE_LIMIT]), url)
        if nxt is None:
            what = _page_summary(status, ctype, body[:_PAGE_LIMIT], len(body) > _PAGE_LIMIT)
            raise UnexpectedContentError(f"{url} answered with {what} instead of the file")
        pages += 1
        url = nxt


def _stream(answer: _Answer, part: Path, *, name: str, progress: bool) -> int:
    """Stream step: write the answer's bytes into ``part`` (appending after a 206 answer,
    from scratch otherwise); returns the size of ``part`` afterwards.

    Raises:
      UnexpectedContentError: the body starts like an HTML page (nothing is written).
      ConnectionError: the transfer broke off (what arrived is in ``part``).
    """
    received = answer.start
    try:
        block = answer.response.read(_BLOCK)
    except (OSError, http.client.HTTPException) as err:
        raise ConnectionError(f"interrupted after {received} bytes ({err})") from err
    if not answer.start and _looks_like_html(block):
        ctype = answer.response.headers.get("Content-Type", "") or "no content type"
        raise UnexpectedContentError(
            f"{answer.url} answered with an HTML page ({ctype}, starting {block[:40]!r}) "
            "instead of the file"
        )
    with (
        open(part, "ab" if answer.start else "wb") as out,
        _progress_bar(answer.total, answer.start, name, progress) as bar,
    ):
        try:
            while block:
                out.write(block)
                received += len(block)
                bar.update(len(block))
                block = answer.response.read(_BLOCK)
        except (OSError, http.client.HTTPException) as err:
            raise ConnectionError(f"interrupted after {received} bytes ({err})") from err
        finally:
            out.flush()
            os.fsync(out.fileno())
    return received


def _commit(
    part: Path,
    dest: Path,
    *,
    url: str,
    sha256: str | None,
    size: int | None,
    source_format: str | None,
) -> str:
    """Commit step: check ``part`` (kind of file, size, SHA-256), then rename it to ``dest``.
    Returns its SHA-256. On a failed check ``part`` is deleted.

    Raises:
      UnexpectedContentError: not a file of ``source_format``.
      ValueError: the size or SHA-256 differs from the expected one.
    """
    try:
        problem = content_problem(part, source_format) if source_format else None
        if problem is not None:
            raise UnexpectedContentError(f"{url} gave {problem}, not {EXPECTED[source_format]}")
        got = part.stat().st_size
        if size is not None and got != size:
            raise ValueError(f"{url} gave {got:,} bytes, expected {size:,}")
        digest = sha256_file(part)
        if sha256 is not None and digest != sha256.lower():
            raise ValueError(
                f"SHA-256 mismatch for {url}: expected {sha256.lower()}, got {digest} ({got} bytes)"
            )
    except ValueError as err:
        part.unlink(missing_ok=True)
        raise type(err)(f"{err}; the download was deleted") from None
    os.replace(part, dest)
    fsync_dir(dest.parent)
    return digest


def _open_resuming(url: str, part: Path, timeout: float) -> _Answer:
    """:func:`_open` asking for the rest of an existing ``part`` (restarting on a 416)."""
    start = part.stat().st_size if part.is_file() else 0
    try:
        return _open(url, start, timeout)
    except urllib.error.HTTPError as err:
        if err.code != 416 or not start:
            raise
        # 416 Range Not Satisfiable: the .part is not a prefix of this file; start over.
        err.close()
        part.unlink()
        return _open(url, 0, timeout)


def download_checked(
    url: str,
    dest: Path,
    *,
    sha256: str | None,
    size: int | None,
    source_format: str | None,
    progress: bool,
    timeout: float,
) -> str:
    """Open, stream and commit; returns the SHA-256 of the file now at ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        answer = _open_resuming(url, part, timeout)
        try:
            with answer.response:
                received = _stream(answer, part, name=dest.name, progress=progress)
            if answer.total is not None and received != answer.total:
                raise ConnectionError(f"ended after {received} of {answer.total} bytes")
        except ConnectionError as err:
            raise _broken_off(url, part, str(err), answer.resumable) from err
    except UnexpectedContentError:
        part.unlink(missing_ok=True)  # an HTML answer: nothing of this file to resume
        raise
    return _commit(part, dest, url=url, sha256=sha256, size=size, source_format=source_format)


def _broken_off(url: str, part: Path, what: str, resumable: bool) -> ConnectionError:
    """The error for a transfer that stopped early; keeps ``part`` only where the server
    takes Range requests (so that the next attempt can resume), else deletes it."""
    if resumable and part.is_file():
        return ConnectionError(f"download of {url} {what}; run again to resume from {part}")
    part.unlink(missing_ok=True)
    return ConnectionError(f"download of {url} {what}; nothing was kept, run again to retry")


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    source_format: str | None = None,
    progress: bool = True,
    timeout: float = 30,
) -> Path:
    """Download ``url`` to ``dest``, resumably, atomically and checked.

    Three steps. *Open*: request the URL, follow redirects (at most 10) and Google Drive's
    confirmation page; any other HTML answer is refused. *Stream*: bytes go into
    ``dest + ".part"``; if a ``.part`` file is already there (an earlier interrupted
    download) the request asks for the rest with an HTTP ``Range`` header and appends, and a
    server that answers with the whole file instead (no Range support, ``file://``) restarts
    it. *Commit*: only a complete file of the expected kind whose SHA-256 matches is fsynced
    and renamed to ``dest``, so ``dest`` is never a partial or wrong file.

    Args:
      url: ``http://``, ``https://`` or ``file://`` address.
      dest: final path (parent folders are created).
      sha256: expected hex digest, or ``None`` to skip the check.
      source_format: ``"pytorch"``, ``"flowlib-npz"`` or ``"t7"`` to check that the file
        is one (``None``: any file that is not an HTML page).
      progress: show a tqdm bar (bytes, rate, ETA) on a terminal's stderr.
      timeout: socket timeout in seconds for connecting and for each read.

    Returns:
      ``dest`` as a :class:`~pathlib.Path`.

    Raises:
      UnexpectedContentError: the answer is an HTML page (other than Drive's confirmation)
        or not a file of ``source_format``; the message names the URL and what came back.
      ValueError: the SHA-256 differs from ``sha256`` (the message gives both digests).
      ConnectionError: the transfer failed or ended early. The ``.part`` file is kept for
        the next attempt to resume only if the server takes Range requests.
      OSError: other network or disk errors (``urllib.error.URLError``, ``HTTPError``).
    """
    dest = Path(dest)
    download_checked(
        url,
        dest,
        sha256=sha256,
        size=None,
        source_format=source_format,
        progress=progress,
        timeout=timeout,
    )
    return dest
