"""Downloading a bundle named by a signed command's ``url``, with hard limits.

- ``https://`` (certificates and host names verified) and ``http://`` (integrity comes from
  the signed sha256, not the channel): redirects only to http(s), a socket timeout, the whole
  download within ``[ota] url_timeout_s``, and a streamed read that stops as soon as the
  body exceeds the signed size.
- ``file://`` only below ``[ota] file_url_root`` (unset: every file:// url is refused). The
  path is resolved component by component from that directory with ``O_NOFOLLOW``, so no
  symbolic link is followed (in or out of it), and only a regular file is opened — a FIFO or
  a device node is refused before it is read, so it can neither hang nor stream forever.
  Every file:// failure has the one reason :data:`FILE_REFUSED`: the published status must
  not tell a broker client whether a local file exists, how big it is, or what it holds
  (the device's log has the detail).

Either way the data is checked against the command's size and sha256 before anyone parses
it (:func:`agent.ota.transfer.check_whole`).
"""

from __future__ import annotations

import http.client
import logging
import os
import posixpath
import ssl
import stat
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from agent.ota.command import TransferCommand
from agent.ota.errors import TransferError
from agent.ota.transfer import check_whole

log = logging.getLogger("agent.ota")
FILE_REFUSED = "url not allowed or not readable"
READ_BLOCK = 64 * 1024
SOCKET_TIMEOUT_S = 30.0
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only (the stock handler also follows ftp://)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[override]
        if urllib.parse.urlsplit(newurl).scheme not in ("http", "https"):
            raise urllib.error.HTTPError(newurl, code, "redirect refused", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener() -> urllib.request.OpenerDirector:
    """http(s) and nothing else: no file://, ftp:// or data: handlers behind a redirect."""
    opener = urllib.request.OpenerDirector()
    context = ssl.create_default_context()  # verifies certificates and host names
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.UnknownHandler(),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(context=context),
        urllib.request.HTTPDefaultErrorHandler(),
        _HttpOnlyRedirects(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


class UrlFetcher:
    """Fetches a command's url (see the module docstring); :class:`TransferError` says why
    not, in words safe to publish."""

    def __init__(self, file_root: Path | None, timeout_s: float) -> None:
        self.file_root = file_root
        self.timeout_s = timeout_s

    def fetch(self, command: TransferCommand) -> bytes:
        assert command.url is not None
        if command.url.startswith("file://"):
            return self._file(command)
        return self._http(command)

    # -- file:// ------------------------------------------------------------------------------

    def _file(self, command: TransferCommand) -> bytes:
        try:
            if self.file_root is None:
                raise TransferError("[ota] file_url_root is not set: file:// urls are refused")
            parts = _parts_under(self.file_root, _file_url_path(command.url or ""))
            data = _read_confined(self.file_root, parts, command.size)
            return check_whole(command, data)
        except (OSError, TransferError, ValueError) as err:
            log.warning("ota %s: %s refused: %s", command.transfer_id, command.url, err)
            raise TransferError(FILE_REFUSED) from err

    # -- http(s) ----------------------------------------------------------------------------

    def _http(self, command: TransferCommand) -> bytes:
        deadline = time.monotonic() + self.timeout_s
        timeout = min(SOCKET_TIMEOUT_S, self.timeout_s)
        try:
            with _opener().open(command.url or "", timeout=timeout) as response:
                announced = response.headers.get("Content-Length")
                if announced is not None and announced.strip() != str(command.size):
                    raise TransferError(
                        f"download: the server announces {announced.strip()} bytes, the "
                        f"signed command {command.size}"
                    )
                data = _read_until(response, command.size, deadline, self.timeout_s)
        except urllib.error.HTTPError as err:
            raise TransferError(f"download failed: HTTP {err.code}") from err
        except (OSError, ValueError, http.client.HTTPException) as err:
            raise TransferError(f"download failed: {_why(err)}") from err
        return check_whole(command, data)


def _why(err: BaseException) -> str:
    if isinstance(err, urllib.error.URLError) and isinstance(err.reason, BaseException):
        err = err.reason
    if isinstance(err, TimeoutError):
        return "timed out"
    if isinstance(err, ssl.SSLError):
        return f"TLS error ({err.reason or err})"
    return type(err).__name__


def _read_until(response, size: int, deadline: float, timeout_s: float) -> bytes:
    """The body, read block by block; stops past ``size`` bytes or at the deadline."""
    blocks: list[bytes] = []
    total = 0
    while True:
        if time.monotonic() > deadline:
            raise TransferError(f"download did not finish within {timeout_s:g} s")
        block = response.read1(READ_BLOCK)
        if not block:
            return b"".join(blocks)
        total += len(block)
        if total > size:
            raise TransferError(f"download is larger than the signed size of {size} bytes")
        blocks.append(block)


def _file_url_path(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
        raise TransferError("file:// url with a host, query or fragment")
    path = urllib.parse.unquote(parts.path)
    if "\x00" in path or not path.startswith("/"):
        raise TransferError("file:// url without an absolute path")
    return path


def _parts_under(root: Path, path: str) -> list[str]:
    """The path components of ``path`` below ``root`` (lexically; links are checked later)."""
    base = posixpath.normpath(str(root))
    target = posixpath.normpath(path)
    if not target.startswith(base.rstrip("/") + "/"):
        raise TransferError(f"{target} is not below {base}")
    parts = target[len(base.rstrip("/")) + 1 :].split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise TransferError(f"{target}: unexpected path component")
    return parts


def _read_confined(root: Path, parts: list[str], size: int) -> bytes:
    """Open ``root/parts…`` without following any link; read a regular file of ``size``."""
    fd = _open_parent(root, parts[:-1])
    try:
        info = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
        if not stat.S_ISREG(info.st_mode):
            raise TransferError("not a regular file")
        handle = os.open(parts[-1], _FILE_FLAGS, dir_fd=fd)
    finally:
        os.close(fd)
    with os.fdopen(handle, "rb") as file:
        opened = os.fstat(file.fileno())
        if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (
            info.st_dev,
            info.st_ino,
        ):
            raise TransferError("the file changed while it was opened")
        if opened.st_size != size:
            raise TransferError(f"{opened.st_size} bytes, the signed command says {size}")
        return file.read(size + 1)


def _open_parent(root: Path, directories: list[str]) -> int:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in directories:
            child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd
