"""The ``ota/cmd`` install command: its fields, its validation, and the bytes that are signed.

A command is JSON (UTF-8, schema ``agent/schemas/ota_cmd.json``)::

    {"schema": "rapp/ota_cmd/v1", "target": {"kind": "device" | "group", "id": "..."},
     "transfer_id": "...", "robot": "arm1" | null, "bundle_id": "...", "version": "3",
     "size": 123456, "sha256": "<64 hex>", "chunk_size": 65536,
     "chunks": ["<sha256 of chunk 0>", ...], "url": null | "https://…",
     "rollback": false, "expires": 1767225600, "signature": "<base64 Ed25519>"}

``signature`` is Ed25519, by a key of the agent's ``[trust] keys`` (the release key), over
:meth:`TransferCommand.signed_bytes`: the domain tag ``rapp-ota-cmd/v1`` and a newline, then
the JSON object of every other field above, keys sorted, no whitespace (``separators=(",",
":")``), non-ASCII escaped (``ensure_ascii``). The agent rebuilds those bytes from the fields
it parsed, so every field it acts on is covered and nothing it ignores can matter. The tag
keeps a command signature from ever verifying as a bundle signature (a manifest is JSON, so
it cannot start with the tag) and the other way round. ``expires`` is Unix time in seconds.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from agent.ota.errors import TransferError

COMMAND_SCHEMA = "rapp/ota_cmd/v1"
SIGNING_TAG = b"rapp-ota-cmd/v1\n"
DEFAULT_CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 1024 * 1024
MAX_COMMAND_BYTES = 512 * 1024  # ~7,000 chunk hashes; a bigger payload is not a command
TARGET_KINDS = ("device", "group")
URL_SCHEMES = ("file://", "https://", "http://")
_SHA = re.compile(r"^[0-9a-f]{64}$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SIGNATURE_BYTES = 64


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def chunk_hashes(data: bytes, chunk_size: int) -> list[str]:
    """sha256 of every ``chunk_size`` slice of ``data`` (the last one may be shorter)."""
    return [sha256_hex(data[i : i + chunk_size]) for i in range(0, len(data), chunk_size)]


def chunk_count(size: int, chunk_size: int) -> int:
    return (size + chunk_size - 1) // chunk_size


@dataclass(frozen=True)
class CommandTarget:
    """Who a command is for: one device id, or one group of ``[ota] groups``."""

    kind: str
    id: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "id": self.id}


@dataclass(frozen=True)
class TransferCommand:
    """A validated ``ota/cmd`` install command (``signature`` None: unsigned)."""

    transfer_id: str
    robot: str | None
    bundle_id: str
    version: str
    size: int
    sha256: str
    chunk_size: int
    chunks: tuple[str, ...]
    url: str | None = None
    target: CommandTarget | None = None
    rollback: bool = False
    expires: int | None = None
    signature: bytes | None = None

    @property
    def n_chunks(self) -> int:
        return chunk_count(self.size, self.chunk_size)

    def chunk_length(self, index: int) -> int:
        """Bytes chunk ``index`` must have (all full-size but the last)."""
        if index < self.n_chunks - 1:
            return self.chunk_size
        return self.size - self.chunk_size * (self.n_chunks - 1)

    def _body(self) -> dict[str, Any]:
        return {
            "schema": COMMAND_SCHEMA,
            "target": self.target.to_json() if self.target is not None else None,
            "transfer_id": self.transfer_id,
            "robot": self.robot,
            "bundle_id": self.bundle_id,
            "version": self.version,
            "size": self.size,
            "sha256": self.sha256,
            "chunk_size": self.chunk_size,
            "chunks": list(self.chunks),
            "url": self.url,
            "rollback": self.rollback,
            "expires": self.expires,
        }

    def signed_bytes(self) -> bytes:
        """What the release key signs (see the module docstring)."""
        body = json.dumps(self._body(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return SIGNING_TAG + body.encode("ascii")

    def with_signature(self, signature: bytes) -> TransferCommand:
        return replace(self, signature=signature)

    def to_json(self) -> dict[str, Any]:
        body = self._body()
        if self.signature is not None:
            body["signature"] = base64.b64encode(self.signature).decode("ascii")
        return body

    @classmethod
    def for_bundle(
        cls,
        data: bytes,
        transfer_id: str,
        bundle_id: str,
        version: str,
        robot: str | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        url: str | None = None,
        *,
        target: CommandTarget | None = None,
        rollback: bool = False,
        expires: int | None = None,
    ) -> TransferCommand:
        """The (unsigned) command announcing ``data`` (``rapp-export push`` and tests)."""
        return cls(
            transfer_id=transfer_id,
            robot=robot,
            bundle_id=bundle_id,
            version=version,
            size=len(data),
            sha256=sha256_hex(data),
            chunk_size=chunk_size,
            chunks=tuple(chunk_hashes(data, chunk_size)),
            url=url,
            target=target,
            rollback=rollback,
            expires=expires,
        )


def valid_transfer_id(transfer_id: str) -> bool:
    return bool(_ID.match(transfer_id))


def _need(obj: Mapping[str, Any], key: str, kind: type) -> Any:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TransferError(f"ota command: {key} = {value!r} is missing or not a {kind.__name__}")
    return value


def _decode(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_COMMAND_BYTES:
        raise TransferError(f"ota command: {len(payload)} bytes, over {MAX_COMMAND_BYTES}")
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise TransferError(f"ota command: not UTF-8 JSON ({err})") from err
    if not isinstance(obj, dict) or obj.get("schema") != COMMAND_SCHEMA:
        raise TransferError(f"ota command: schema must be {COMMAND_SCHEMA!r}")
    return obj


def _transfer_id(obj: Mapping[str, Any]) -> str:
    tid = _need(obj, "transfer_id", str)
    if not valid_transfer_id(tid):
        raise TransferError(f"ota command: transfer_id = {tid!r}: use 1–64 letters/digits/._-")
    return tid


def _sizes(obj: Mapping[str, Any], tid: str) -> tuple[int, int, str]:
    """(size, chunk_size, sha256) of the announced file."""
    size = _need(obj, "size", int)
    chunk_size = _need(obj, "chunk_size", int)
    sha = _need(obj, "sha256", str)
    if size <= 0 or not 0 < chunk_size <= MAX_CHUNK_SIZE or not _SHA.match(sha):
        raise TransferError(
            f"ota command {tid}: size {size}, chunk_size {chunk_size} (≤ {MAX_CHUNK_SIZE}) and "
            "sha256 (64 lowercase hex) must be valid"
        )
    return size, chunk_size, sha


def _chunk_hashes(obj: Mapping[str, Any], tid: str, size: int, chunk_size: int) -> list[str]:
    chunks = obj.get("chunks") or []
    valid = isinstance(chunks, list) and all(isinstance(c, str) and _SHA.match(c) for c in chunks)
    if not valid:
        raise TransferError(f"ota command {tid}: chunks must be a list of sha256 hex strings")
    if obj.get("url") is None and len(chunks) != chunk_count(size, chunk_size):
        raise TransferError(
            f"ota command {tid}: {len(chunks)} chunk hashes for {size} bytes in "
            f"{chunk_size}-byte chunks (expected {chunk_count(size, chunk_size)})"
        )
    return chunks


def _url(obj: Mapping[str, Any], tid: str) -> str | None:
    url = obj.get("url")
    if url is not None and (not isinstance(url, str) or not url.startswith(URL_SCHEMES)):
        raise TransferError(
            f"ota command {tid}: url = {url!r}: use file:// and https:// (or http://) URLs"
        )
    return url


def _optional(obj: Mapping[str, Any], key: str, kind: type, tid: str) -> Any:
    value = obj.get(key)
    if value is not None and (
        isinstance(value, bool) != (kind is bool) or not isinstance(value, kind)
    ):
        raise TransferError(f"ota command {tid}: {key} = {value!r} must be a {kind.__name__}")
    return value


def _target(obj: Mapping[str, Any], tid: str) -> CommandTarget | None:
    raw = obj.get("target")
    if raw is None:
        return None
    kind = raw.get("kind") if isinstance(raw, dict) else None
    ident = raw.get("id") if isinstance(raw, dict) else None
    if kind not in TARGET_KINDS or not isinstance(ident, str) or not _ID.match(ident):
        raise TransferError(
            f"ota command {tid}: target = {raw!r} must be {{'kind': 'device' | 'group', "
            "'id': <id>}}"
        )
    return CommandTarget(kind, ident)


def _signature(obj: Mapping[str, Any], tid: str) -> bytes | None:
    text = _optional(obj, "signature", str, tid)
    if text is None:
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise TransferError(f"ota command {tid}: signature is not base64") from err
    if len(raw) != _SIGNATURE_BYTES:
        raise TransferError(f"ota command {tid}: signature is {len(raw)} bytes, not 64")
    return raw


def parse_command(payload: bytes) -> TransferCommand:
    """Parse and validate an ``ota/cmd`` payload; :class:`TransferError` says what is wrong.
    (Whether it is signed, current and for this device is the authenticator's question.)"""
    obj = _decode(payload)
    tid = _transfer_id(obj)
    size, chunk_size, sha = _sizes(obj, tid)
    return TransferCommand(
        transfer_id=tid,
        robot=_optional(obj, "robot", str, tid),
        bundle_id=_need(obj, "bundle_id", str),
        version=_optional(obj, "version", str, tid) or "",
        size=size,
        sha256=sha,
        chunk_size=chunk_size,
        chunks=tuple(_chunk_hashes(obj, tid, size, chunk_size)),
        url=_url(obj, tid),
        target=_target(obj, tid),
        rollback=bool(_optional(obj, "rollback", bool, tid)),
        expires=_optional(obj, "expires", int, tid),
        signature=_signature(obj, tid),
    )
