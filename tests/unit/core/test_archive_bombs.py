"""Hostile archives fail fast, before any signature check, having read almost nothing."""

from __future__ import annotations

import bz2
import gzip
import io
import tarfile
import time

import pytest

from agent.core.bundle import BundleError
from agent.core.bundle.archive import MAX_MEMBERS, read_archive


def _tar(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _declared_huge_member(size: int) -> bytes:
    """A header that declares ``size`` bytes, followed by almost none of them."""
    info = tarfile.TarInfo("model.onnx")
    info.size = size
    return info.tobuf(format=tarfile.PAX_FORMAT) + b"\0" * 1024


@pytest.mark.parametrize(("kind", "compress"), [("gzip", gzip.compress), ("bzip2", bz2.compress)])
def test_compressed_archives_are_refused_before_decompression(kind, compress) -> None:
    bomb = compress(_declared_huge_member(500 << 30))
    started = time.process_time()
    with pytest.raises(BundleError, match=f"{kind}-compressed archive"):
        read_archive(bomb)
    assert time.process_time() - started < 0.5


def test_a_member_declaring_500_gib_fails_on_its_header() -> None:
    with pytest.raises(BundleError, match=r"over the .*-byte member limit"):
        read_archive(_declared_huge_member(500 << 30))


def test_millions_of_members_stop_at_the_cap_while_streaming() -> None:
    data = _tar([(f"m{i}", b"") for i in range(MAX_MEMBERS * 8)])
    started = time.process_time()
    with pytest.raises(BundleError, match=f"more than {MAX_MEMBERS} members"):
        read_archive(data)
    # streaming: the error comes at member MAX_MEMBERS + 1, not after indexing all of them
    assert time.process_time() - started < 0.5


def test_a_gzip_tar_of_many_empty_members_costs_nothing() -> None:
    bomb = gzip.compress(_tar([(f"e{i}", b"") for i in range(20_000)]))
    with pytest.raises(BundleError, match="gzip-compressed"):
        read_archive(bomb)
