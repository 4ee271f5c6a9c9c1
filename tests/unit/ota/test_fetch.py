"""Unit tests of url downloads: file:// confined to ``file_url_root`` without following links
and without revealing anything about local files; http(s) with a size cap, a deadline and
http-only redirects; the signed size and sha256 checked either way."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.ota.command import TransferCommand
from agent.ota.errors import TransferError
from agent.ota.fetch import FILE_REFUSED, UrlFetcher
from tests.support.fixtures.ota import (
    BundleServer,
    serve_bytes,
    serve_drip,
    serve_endless,
    serve_redirect,
)

BUNDLE = os.urandom(50_000)


def _command(url: str, data: bytes = BUNDLE) -> TransferCommand:
    return TransferCommand.for_bundle(data, "t1", "b", "2", url=url)


def _refusal(fetcher: UrlFetcher, url: str, data: bytes = BUNDLE) -> str:
    with pytest.raises(TransferError) as info:
        fetcher.fetch(_command(url, data))
    return str(info.value)


@pytest.fixture
def root(tmp_path) -> Path:
    incoming = tmp_path / "incoming"
    (incoming / "sub").mkdir(parents=True)
    (incoming / "good.rapp").write_bytes(BUNDLE)
    (incoming / "sub" / "good.rapp").write_bytes(BUNDLE)
    (tmp_path / "outside.rapp").write_bytes(BUNDLE)
    return incoming


def test_file_urls_are_read_only_below_the_root(root, tmp_path):
    fetcher = UrlFetcher(root, 5.0)
    assert fetcher.fetch(_command((root / "good.rapp").as_uri())) == BUNDLE
    assert fetcher.fetch(_command((root / "sub" / "good.rapp").as_uri())) == BUNDLE
    assert fetcher.fetch(_command("file://localhost" + str(root / "good.rapp"))) == BUNDLE
    assert _refusal(UrlFetcher(None, 5.0), (root / "good.rapp").as_uri()) == FILE_REFUSED


def test_every_file_url_refusal_has_the_same_reason_and_nothing_hangs(root, tmp_path):
    """Existence, size, type and content of local files stay secret; FIFOs and devices are
    never opened for reading, so nothing blocks."""
    os.symlink(tmp_path / "outside.rapp", root / "link-out.rapp")
    os.symlink(root / "good.rapp", root / "link-in.rapp")
    os.symlink("/dev/zero", root / "zero.rapp")
    os.symlink(tmp_path, root / "dirlink")
    os.mkfifo(root / "fifo.rapp")
    (root / "short.rapp").write_bytes(BUNDLE[:-1])
    (root / "other.rapp").write_bytes(bytes(len(BUNDLE)))
    urls = [
        (tmp_path / "outside.rapp").as_uri(),  # exists, outside
        "file:///etc/passwd",  # exists, outside
        "file:///etc/no-such-file",  # missing, outside
        (root / "missing.rapp").as_uri(),
        (root / "sub").as_uri(),  # a directory
        (root / "link-out.rapp").as_uri(),
        (root / "link-in.rapp").as_uri(),  # links are not followed at all
        (root / "zero.rapp").as_uri(),
        (root / "dirlink" / "outside.rapp").as_uri(),
        (root / "fifo.rapp").as_uri(),
        (root / "short.rapp").as_uri(),  # wrong size
        (root / "other.rapp").as_uri(),  # right size, wrong sha256
        root.as_uri() + "/../outside.rapp",
        root.as_uri() + "/sub/../../outside.rapp",
        "file://evil.example" + str(root / "good.rapp"),
        (root / "good.rapp").as_uri() + "?x=1",
        "file://" + str(root / "good.rapp").replace("good", "go%00od"),
        "file:///dev/zero",
    ]
    fetcher = UrlFetcher(root, 5.0)
    started = time.monotonic()
    reasons = {url: _refusal(fetcher, url) for url in urls}
    assert set(reasons.values()) == {FILE_REFUSED}, reasons
    assert time.monotonic() - started < 5, "no url blocked"


@pytest.fixture
def server() -> Iterator[BundleServer]:
    with BundleServer() as s:
        yield s


def test_http_downloads_are_capped_bounded_in_time_and_checked(server, root):
    server.routes = {
        "/good": lambda h: serve_bytes(h, BUNDLE),
        "/chunked": lambda h: serve_bytes(h, BUNDLE, length=None),  # no length announced
        "/lying": lambda h: serve_bytes(h, BUNDLE, length=len(BUNDLE) + 1),
        "/other": lambda h: serve_bytes(h, bytes(len(BUNDLE))),
        "/endless": serve_endless,
        "/drip": serve_drip,
        "/to-file": serve_redirect((root / "good.rapp").as_uri()),
        "/to-ftp": serve_redirect("ftp://127.0.0.1/good.rapp"),
        "/to-good": serve_redirect("/good"),
    }
    fetcher = UrlFetcher(None, 2.0)
    assert fetcher.fetch(_command(server.url("/good"))) == BUNDLE
    assert fetcher.fetch(_command(server.url("/chunked"))) == BUNDLE
    assert fetcher.fetch(_command(server.url("/to-good"))) == BUNDLE
    assert "announces" in _refusal(fetcher, server.url("/lying"))
    assert "sha256 differs" in _refusal(fetcher, server.url("/other"))
    assert _refusal(fetcher, server.url("/missing")) == "download failed: HTTP 404"
    started = time.monotonic()
    assert "larger than the signed size" in _refusal(fetcher, server.url("/endless"))
    assert time.monotonic() - started < 2
    started = time.monotonic()
    assert "within 2 s" in _refusal(fetcher, server.url("/drip"))
    assert time.monotonic() - started < 4
    for path in ("/to-file", "/to-ftp"):
        assert _refusal(fetcher, server.url(path)).startswith("download failed"), path
    closed = server.url("/good").rsplit(":", 1)[0] + ":1/good"
    assert _refusal(fetcher, closed) == "download failed: ConnectionRefusedError"
