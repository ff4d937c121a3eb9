"""M-of-N backup of the offline root of trust: one encrypted file plus custodian shares.

:func:`create_backup` draws a fresh 256-bit backup key, encrypts a JSON manifest of the keys with
AES-256-GCM under it, splits the key into ``n`` Shamir shares (any ``m`` recover it,
:mod:`trustroot.keys.shamir`) and drops it. The file alone, or fewer than ``m`` shares, reveal
nothing of the keys. Each custodian keeps one share (the one-line text form); the file can sit
anywhere.

File format (all integers big-endian)::

    offset  size  field
    0       19    magic       b"TRUSTROOT-BACKUP-1\\n"
    19      16    backup_id   random; its hex is the backup id in every share
    35      1     threshold   m, 2..count
    36      1     count       n, threshold..255
    37      8     created     Unix seconds (UTC), so a backup can be described without its shares
    45      12    nonce       AES-GCM nonce (random; the key is used once)
    57      ...   ciphertext  AES-256-GCM(manifest), 16-byte tag at the end;
                              associated data = bytes 0..56 (the whole header: format, id, m, n, time)

Manifest (UTF-8 JSON, only ever seen decrypted)::

    {"format": "trustroot.backup/1", "backup_id": "<hex>", "created": "2026-01-15T12:00:00Z",
     "keys": [{"name", "role", "algorithm", "generation", "public_fingerprint", "domain",
               "pkcs8": "<base64 of the clear PKCS#8 DER, or of the raw secret for hmac-sha256>"}]}

Errors: every refusal is a :class:`~trustroot.errors.BackupError` naming the input. Any failure
to decrypt (wrong shares that combine to a wrong key, a changed header, a changed ciphertext) is
one message, so the file is no oracle. Python cannot wipe memory: the backup key and the clear
key material live in ordinary ``bytes`` objects until collected.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TypedDict

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from trustroot.errors import BackupError
from trustroot.keys import shamir
from trustroot.keys._interface import Algorithm, KeyInfo, KeyRole, public_key_fingerprint
from trustroot.keys.shamir import Share
from trustroot.limits import DEFAULT_LIMITS, Limits

__all__ = [
    "BACKUP_FORMAT",
    "BACKUP_MAGIC",
    "BackupDescription",
    "BackupKeyMetadata",
    "create_backup",
    "describe_backup",
    "open_backup",
]

BACKUP_MAGIC = b"TRUSTROOT-BACKUP-1\n"
BACKUP_FORMAT = "trustroot.backup/1"

_HEADER = struct.Struct(">19s16sBBQ12s")
_TAG_BYTES = 16
_KEY_BYTES = 32
_FINGERPRINT_HEX = 64
_DECRYPTION_FAILED = (
    "cannot be decrypted with these shares: a share is wrong (mistyped values that still pass "
    "their checksum are caught only here) or the backup file was altered"
)


class BackupKeyMetadata(TypedDict):
    """What the backup records about each key (besides its material)."""

    name: str
    role: str
    algorithm: str
    generation: int
    public_fingerprint: str
    #: The passphrase domain the key lived in ("root" for the offline root's own passphrase).
    domain: Literal["store", "root"]


@dataclass(frozen=True)
class BackupDescription:
    """The clear header of a backup file: readable without any share."""

    backup_id: str
    threshold: int
    count: int
    created: datetime
    size: int


@dataclass(frozen=True)
class _Header:
    backup_id: str
    threshold: int
    count: int
    created: datetime
    nonce: bytes
    raw: bytes


# ------------------------------------------------------------------------------------------ metadata


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def _metadata(item: Mapping[str, object] | KeyInfo, position: int) -> BackupKeyMetadata:
    if isinstance(item, KeyInfo):
        return BackupKeyMetadata(
            name=item.name,
            role=item.role.value,
            algorithm=item.algorithm.value,
            generation=item.generation,
            public_fingerprint=item.fingerprint,
            domain=item.passphrase_domain,
        )
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise BackupError(f"key #{position + 1} to back up has no name")
    role, algorithm = item.get("role"), item.get("algorithm")
    generation = item.get("generation", 1)
    fingerprint = item.get("public_fingerprint", item.get("fingerprint", ""))
    domain = item.get("domain", item.get("passphrase_domain", "store"))
    try:
        role_value = KeyRole(str(role)).value
        algorithm_value = Algorithm(str(algorithm)).value
    except ValueError as exc:
        raise BackupError(f"key '{name}': unknown role {role!r} or algorithm {algorithm!r}") from exc
    if not isinstance(generation, int) or isinstance(generation, bool) or generation < 1:
        raise BackupError(f"key '{name}': generation must be a positive integer, got {generation!r}")
    if not isinstance(fingerprint, str) or (
        fingerprint and (len(fingerprint) != _FINGERPRINT_HEX or not _is_hex(fingerprint))
    ):
        raise BackupError(f"key '{name}': public_fingerprint must be {_FINGERPRINT_HEX} hex digits or empty")
    if domain not in ("store", "root"):
        raise BackupError(f"key '{name}': domain must be 'store' or 'root', got {domain!r}")
    return BackupKeyMetadata(
        name=name,
        role=role_value,
        algorithm=algorithm_value,
        generation=generation,
        public_fingerprint=fingerprint,
        domain="root" if domain == "root" else "store",
    )


def _check_material(meta: BackupKeyMetadata, material: bytes) -> BackupKeyMetadata:
    """Refuse material that is not a clear private key matching the metadata; fill the fingerprint."""
    name = meta["name"]
    if not material:
        raise BackupError(f"key '{name}': the key material is empty")
    if Algorithm(meta["algorithm"]).is_secret:
        return meta
    try:
        private = serialization.load_der_private_key(material, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise BackupError(f"key '{name}': the material is not a clear PKCS#8 private key") from exc
    fingerprint = public_key_fingerprint(private.public_key())
    if meta["public_fingerprint"] and meta["public_fingerprint"].lower() != fingerprint:
        raise BackupError(f"key '{name}': the private key does not match its recorded public fingerprint")
    return BackupKeyMetadata(**{**meta, "public_fingerprint": fingerprint})


# ---------------------------------------------------------------------------------------------- create


def create_backup(
    items: Sequence[tuple[Mapping[str, object] | KeyInfo, bytes]],
    threshold: int,
    shares: int,
    *,
    now: datetime,
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[bytes, list[Share]]:
    """Encrypt ``items`` (metadata, clear PKCS#8 DER) into a backup; return it and its shares.

    Metadata is a :class:`KeyInfo` or a mapping with ``name``, ``role``, ``algorithm`` and
    optionally ``generation`` (1), ``public_fingerprint`` (or ``fingerprint``; computed when
    absent, and a given one must match the private key) and ``domain`` (or
    ``passphrase_domain``; "store" or "root", default "store"). Any ``threshold`` of the
    ``shares`` open the backup.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise BackupError("now must be a timezone-aware datetime")
    created = now.astimezone(UTC).replace(microsecond=0)
    if not items:
        raise BackupError("nothing to back up: no keys given")
    entries: list[dict[str, object]] = []
    names: set[str] = set()
    for position, (info, material) in enumerate(items):
        meta = _check_material(_metadata(info, position), bytes(material))
        if meta["name"] in names:
            raise BackupError(f"key '{meta['name']}' is listed twice")
        names.add(meta["name"])
        entries.append({**meta, "pkcs8": base64.b64encode(material).decode("ascii")})

    backup_key = secrets.token_bytes(_KEY_BYTES)
    split = shamir.split(backup_key, threshold, shares)
    backup_id = split[0].backup_id
    nonce = secrets.token_bytes(12)
    header = _HEADER.pack(BACKUP_MAGIC, bytes.fromhex(backup_id), threshold, shares, int(created.timestamp()), nonce)
    manifest = {
        "format": BACKUP_FORMAT,
        "backup_id": backup_id,
        "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "keys": entries,
    }
    plaintext = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode("utf-8")
    blob = header + AESGCM(backup_key).encrypt(nonce, plaintext, header)
    del backup_key, plaintext
    if len(blob) > limits.max_backup_bytes:
        raise BackupError(f"the backup would be {len(blob)} bytes, over the limit of {limits.max_backup_bytes}")
    return blob, split


# ------------------------------------------------------------------------------------------------ read


def _header(blob: bytes, source: str, limits: Limits) -> _Header:
    if len(blob) > limits.max_backup_bytes:
        raise BackupError(f"{source}: larger than the limit of {limits.max_backup_bytes} bytes")
    if not blob.startswith(BACKUP_MAGIC):
        if blob.startswith(b"TRUSTROOT-BACKUP-"):
            raise BackupError(f"{source}: unsupported backup format version")
        raise BackupError(f"{source}: not a trustroot backup")
    if len(blob) < _HEADER.size + _TAG_BYTES:
        raise BackupError(f"{source}: truncated backup ({len(blob)} bytes)")
    _, raw_id, threshold, count, created, nonce = _HEADER.unpack_from(blob)
    if not shamir.MIN_THRESHOLD <= threshold <= count:
        raise BackupError(f"{source}: corrupt header (threshold {threshold} of {count})")
    try:
        when = datetime.fromtimestamp(created, UTC)
    except (OverflowError, ValueError, OSError) as exc:
        raise BackupError(f"{source}: corrupt header (creation time)") from exc
    return _Header(raw_id.hex(), threshold, count, when, nonce, blob[: _HEADER.size])


def describe_backup(backup: bytes, *, source: str = "backup", limits: Limits = DEFAULT_LIMITS) -> BackupDescription:
    """The clear header of a backup (id, m-of-n, creation time) without any share."""
    header = _header(bytes(backup), source, limits)
    return BackupDescription(header.backup_id, header.threshold, header.count, header.created, len(backup))


def _manifest_keys(plaintext: bytes, header: _Header, source: str) -> list[tuple[BackupKeyMetadata, bytes]]:
    """Parse the (already authenticated) manifest strictly."""
    bad = f"{source}: the decrypted manifest is malformed"
    try:
        manifest = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackupError(bad) from exc
    if not isinstance(manifest, dict):
        raise BackupError(bad)
    if manifest.get("format") != BACKUP_FORMAT:
        raise BackupError(f"{source}: unsupported manifest format {manifest.get('format')!r}")
    if manifest.get("backup_id") != header.backup_id or not isinstance(manifest.get("keys"), list):
        raise BackupError(bad)
    result: list[tuple[BackupKeyMetadata, bytes]] = []
    for position, entry in enumerate(manifest["keys"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("pkcs8"), str):
            raise BackupError(bad)
        try:
            material = base64.b64decode(entry["pkcs8"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BackupError(bad) from exc
        result.append((_metadata(entry, position), material))
    return result


def open_backup(
    backup: bytes,
    shares: Iterable[Share],
    *,
    source: str = "backup",
    limits: Limits = DEFAULT_LIMITS,
) -> list[tuple[BackupKeyMetadata, bytes]]:
    """Recover the keys (metadata, clear PKCS#8 DER) from a backup and at least m of its shares."""
    blob = bytes(backup)
    header = _header(blob, source, limits)
    given = list(shares)
    if not given:
        raise BackupError(f"{source}: no shares given (backup {header.backup_id[:8]} needs {header.threshold})")
    for share in given:
        if share.backup_id != header.backup_id:
            raise BackupError(
                f"{share.label} belongs to another backup, not to {source} (backup {header.backup_id[:8]})"
            )
        if (share.threshold, share.count) != (header.threshold, header.count):
            raise BackupError(
                f"{share.label} is a {share.threshold}-of-{share.count} share but {source} is "
                f"{header.threshold}-of-{header.count}"
            )
    backup_key = shamir.combine(given)
    try:
        plaintext = AESGCM(backup_key).decrypt(header.nonce, blob[_HEADER.size :], header.raw)
    except (InvalidTag, ValueError) as exc:
        raise BackupError(f"{source}: {_DECRYPTION_FAILED}") from exc
    finally:
        del backup_key
    return _manifest_keys(plaintext, header, source)
