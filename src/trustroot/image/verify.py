"""Verify MCUboot images: streaming, in flat memory, raising one error with the reason.

The order is fixed, and nothing an attacker controls is acted upon before the signature holds
(the encryption key TLV excepted: it must be opened to hash the plaintext, as MCUboot does)::

    file ──► parse header + TLV areas (bounds only)          "not an image", "truncated", ...
         ──► encrypted? open the ENC TLV with enc_key         "encrypted: give the key", "cannot decrypt"
         ──► hash header ‖ payload (decrypted) ‖ protected     "hash mismatch"
             TLVs, streamed; compare with the hash TLV
         ──► KEYHASH / PUBKEY names a given key, and the      "signature absent", "key not among the
             signature TLV after it verifies over the hash     N given", "signature does not verify"
         ──► only now: security counter, dependencies          "counter below the floor N"

Every refusal is :class:`~trustroot._mcuboot.ImageVerificationError` (one line; parse faults
are wrapped with ``raise ... from``). A file that cannot be opened at all is
:class:`~trustroot.errors.UnreadableInputError`. An image may carry several key/signature
pairs (MCUboot accepts the first pair whose key it knows); one verifying pair is enough.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final, TypeAlias, cast

from trustroot._mcuboot import (
    HASH_TLV_TYPES,
    SIGNATURE_TLV_TYPES,
    Dependency,
    ImageFormatError,
    ImageLayout,
    ImageVerificationError,
    ImageVersion,
    Tlv,
    TlvType,
    parse_image,
    parse_image_stream,
)
from trustroot.errors import UnreadableInputError, UsageError
from trustroot.image.hexfile import is_hex_path, iter_hex, scan_hex

if TYPE_CHECKING:  # cryptography is imported once the keys are needed: the image is hashed meanwhile
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

    from trustroot.keys._interface import KeyHandle

__all__ = ["DecryptionKey", "VerificationKeys", "VerifiedImage", "verify_image", "verify_image_file"]

_log = logging.getLogger(__name__)
_CHUNK: Final = 1 << 20

#: What ``enc_key`` may be: a key store handle (its ``exchange`` is used) or a private key object.
DecryptionKey: TypeAlias = "KeyHandle | PrivateKeyTypes"
#: The keys to accept: public keys, key handles or private keys (their public part), or a
#: callable that loads them (the image is then hashed while it runs).
VerificationKeys: TypeAlias = "Sequence[PublicKeyTypes | KeyHandle | Any] | Callable[[], Sequence[Any]]"


@dataclass(frozen=True)
class VerifiedImage:
    """What a successful verification vouches for."""

    layout: ImageLayout
    version: ImageVersion
    hash_algorithm: str
    digest: bytes
    security_counter: int | None
    dependencies: tuple[Dependency, ...]
    #: trustroot's key id (SHA-256 of the SubjectPublicKeyInfo) of the key whose signature verified.
    key_id: str | None
    #: ``ecdsa-p256``... of that key.
    algorithm: str | None
    encrypted: bool

    @property
    def size(self) -> int:
        return self.layout.file_size


def _refuse(message: str) -> ImageVerificationError:
    return ImageVerificationError(message)


# --- reading ---------------------------------------------------------------------------------------


class _Source:
    """Random access to the image bytes: a buffer in memory or a seekable file."""

    def __init__(self, data: bytes | memoryview | None, stream: BinaryIO | None) -> None:
        self._data = data
        self._stream = stream

    def layout(self, *, strict_tail: bool) -> ImageLayout:
        if self._data is not None:
            return parse_image(self._data, strict_tail=strict_tail)
        assert self._stream is not None  # noqa: S101 - one of the two is always set
        return parse_image_stream(self._stream, strict_tail=strict_tail)

    def ranges(self, start: int, end: int) -> Iterator[bytes | memoryview]:
        if self._data is not None:
            view = memoryview(self._data)
            for pos in range(start, end, _CHUNK):
                yield view[pos : min(end, pos + _CHUNK)]
            return
        assert self._stream is not None  # noqa: S101 - one of the two is always set
        self._stream.seek(start)
        left = end - start
        while left:
            chunk = self._stream.read(min(left, _CHUNK))
            if not chunk:
                raise _refuse("truncated: the file shrank while it was verified")
            left -= len(chunk)
            yield chunk


@contextlib.contextmanager
def _open(source: str | os.PathLike[str] | bytes | bytearray | memoryview) -> Iterator[tuple[_Source, str]]:
    if isinstance(source, bytes | bytearray | memoryview):
        yield _Source(memoryview(source).cast("B") if not isinstance(source, bytes) else source, None), "image"
        return
    path = Path(source)
    label = f"image {path}"
    if is_hex_path(path):
        with _hex_as_binary(path, label) as stream:
            yield _Source(None, stream), label
        return
    try:
        handle = path.open("rb")
    except FileNotFoundError as exc:
        raise UnreadableInputError(f"{label}: no such file") from exc
    except IsADirectoryError as exc:
        raise UnreadableInputError(f"{label}: is a directory, expected a file") from exc
    except OSError as exc:
        raise UnreadableInputError(f"{label}: cannot be read ({exc.strerror})") from exc
    with handle:
        yield _Source(None, handle), label


@contextlib.contextmanager
def _hex_as_binary(path: Path, label: str) -> Iterator[BinaryIO]:
    """The HEX file's bytes (from its lowest address, gaps 0xff) in an anonymous temp file."""
    try:
        scan_hex(path)
    except ImageFormatError as exc:
        raise _refuse(f"{label}: {exc.message}") from exc
    with tempfile.TemporaryFile() as stream:
        for chunk in iter_hex(path, fill=0xFF):
            stream.write(chunk)
        yield cast(BinaryIO, stream)


# --- the steps -------------------------------------------------------------------------------------


def _decryptor(layout: ImageLayout, enc_key: DecryptionKey | None, label: str) -> Callable[[bytes], bytes] | None:
    bits = layout.header.aes_key_bits
    if bits is None:
        return None
    if enc_key is None:
        raise _refuse(f"{label}: the image is encrypted: its hash can only be checked with the decryption key")
    tlv = layout.enc_tlv
    assert tlv is not None  # noqa: S101 - the codec refuses an encrypted image without one
    encryption = importlib.import_module("trustroot.image.encryption")
    try:
        decrypt: Callable[[bytes], bytes] = encryption.make_decryptor(enc_key, tlv.type, tlv.value, bits)
    except encryption.ImageDecryptionError as exc:  # the image's fault; key store failures pass through
        raise _refuse(f"{label}: cannot decrypt: {exc.message}") from exc
    return decrypt


def _digest(source: _Source, layout: ImageLayout, hash_name: str, decrypt: Callable[[bytes], bytes] | None) -> bytes:
    hasher = hashlib.new(hash_name)
    payload_start, payload_end = layout.payload_offset, layout.protected_offset
    for chunk in source.ranges(0, payload_start):
        hasher.update(chunk)
    for chunk in source.ranges(payload_start, payload_end):
        hasher.update(decrypt(bytes(chunk)) if decrypt is not None else chunk)
    for chunk in source.ranges(payload_end, layout.hashed_size):
        hasher.update(chunk)
    return hasher.digest()


@dataclass(frozen=True)
class _Candidate:
    public_key: PublicKeyTypes
    key_bytes: bytes
    key_id: str


def _candidates(keys: Sequence[PublicKeyTypes]) -> list[_Candidate]:
    from trustroot.image._crypto import mcuboot_key_bytes, public_key_fingerprint

    return [_Candidate(key, mcuboot_key_bytes(key), public_key_fingerprint(key)) for key in keys]


def _named_key(tlv: Tlv, candidates: list[_Candidate], hash_name: str) -> _Candidate | None:
    from trustroot.image._crypto import same_bytes

    for candidate in candidates:
        if tlv.type == TlvType.KEYHASH:
            named = same_bytes(hashlib.new(hash_name, candidate.key_bytes).digest(), tlv.value)
        else:
            named = same_bytes(candidate.key_bytes, tlv.value)
        if named:
            return candidate
    return None


def _check_signature(layout: ImageLayout, candidates: list[_Candidate], hash_name: str, digest: bytes) -> _Candidate:
    """The given key whose signature verifies; otherwise the refusal that says why not."""
    from trustroot.image._crypto import scheme_for, signature_verifies

    named: _Candidate | None = None
    key_tlvs = matched = signatures = 0
    failed: _Candidate | None = None
    for tlv in layout.tlvs:
        if tlv.type in (TlvType.KEYHASH, TlvType.PUBKEY):
            key_tlvs += 1
            if tlv.type == TlvType.KEYHASH and len(tlv.value) != len(digest):
                raise _refuse(f"the key hash has {len(tlv.value)} bytes but the image hash {len(digest)}")
            named = _named_key(tlv, candidates, hash_name)
            matched += named is not None
        elif tlv.type in SIGNATURE_TLV_TYPES:
            signatures += 1
            if named is not None:
                scheme = scheme_for(named.public_key)
                if (
                    tlv.type == scheme.signature_tlv
                    and hash_name in scheme.hashes
                    and signature_verifies(named.public_key, hash_name, digest, tlv.value)
                ):
                    return named
                failed = named
            named = None
    if failed is not None:
        raise _refuse(
            f"the signature does not verify under key {failed.key_id[:16]} ({scheme_for(failed.public_key).algorithm})"
        )
    if key_tlvs == 0:
        what = "no key TLV (KEYHASH or PUBKEY) before its signature" if signatures else "no key and signature TLVs"
        raise _refuse(f"signature absent: the image has {what}")
    if matched == 0:
        raise _refuse(f"signed by another key: the image's key hash matches none of the {len(candidates)} key(s) given")
    raise _refuse("signature absent: no signature follows the key TLV of a given key")


def _check_counter(counter: int | None, min_counter: int | None) -> None:
    if min_counter is None:
        return
    if counter is None:
        raise _refuse(f"no security counter, but at least {min_counter} is required (anti-rollback)")
    if counter < min_counter:
        raise _refuse(f"security counter {counter} is below the floor {min_counter} (a rollback)")


def _public_keys(keys: Sequence[Any]) -> list[PublicKeyTypes]:
    """Public keys of ``keys``: a handle or a private key stands for its public part (a public key
    object has no ``public_key()``); a key MCUboot cannot verify with is a usage error."""
    from trustroot.image._crypto import scheme_for

    public = [k.public_key() if hasattr(k, "public_key") else k for k in keys]
    for key in public:
        scheme_for(key)
    return public


def _background_digest(
    source: _Source, layout: ImageLayout, hash_name: str, loader: Callable[[], Sequence[Any]]
) -> tuple[bytes, list[PublicKeyTypes]]:
    """Hash the image in a thread (hashlib and reads release the GIL) while ``loader`` runs."""
    result: list[bytes] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(_digest(source, layout, hash_name, None))
        except BaseException as exc:  # noqa: BLE001 - handed over to the caller's thread below
            failure.append(exc)

    thread = threading.Thread(target=run, name="trustroot-image-digest", daemon=True)
    thread.start()
    try:
        keys = _public_keys(loader())
    finally:
        thread.join()
    if failure:
        raise failure[0]
    return result[0], keys


def _verify(
    source: _Source,
    label: str,
    keys: VerificationKeys,
    enc_key: DecryptionKey | None,
    min_counter: int | None,
    *,
    allow_unsigned: bool,
    strict_tail: bool,
) -> VerifiedImage:
    from trustroot.image._crypto import same_bytes, scheme_for

    try:
        layout = source.layout(strict_tail=strict_tail)
    except ImageFormatError as exc:
        raise _refuse(f"{label}: {exc.message}") from exc
    hash_tlv = layout.hash_tlv
    if hash_tlv is None:
        raise _refuse(f"{label}: no hash TLV")
    hash_name = HASH_TLV_TYPES[TlvType(hash_tlv.type)]
    if callable(keys) and not layout.header.encrypted:
        digest, public_keys = _background_digest(source, layout, hash_name, keys)
    else:
        public_keys = _public_keys(keys() if callable(keys) else keys)
        decrypt = _decryptor(layout, enc_key, label)
        digest = _digest(source, layout, hash_name, decrypt)
    if not same_bytes(digest, hash_tlv.value):
        raise _refuse(f"{label}: hash mismatch: the {hash_name} of the image does not match its hash TLV")
    signer: _Candidate | None = None
    if public_keys:
        try:
            signer = _check_signature(layout, _candidates(public_keys), hash_name, digest)
        except ImageVerificationError as exc:
            raise _refuse(f"{label}: {exc.message}") from None
    elif not allow_unsigned:
        raise UsageError("no public key given to verify the signature with")
    else:
        _log.warning("%s: verified WITHOUT a key: only the hash was checked (allow_unsigned)", label)
    # Only now is the protected content trusted.
    try:
        _check_counter(layout.security_counter, min_counter)
    except ImageVerificationError as exc:
        raise _refuse(f"{label}: {exc.message}") from None
    return VerifiedImage(
        layout=layout,
        version=layout.header.version,
        hash_algorithm=hash_name,
        digest=digest,
        security_counter=layout.security_counter,
        dependencies=layout.dependencies,
        key_id=signer.key_id if signer else None,
        algorithm=scheme_for(signer.public_key).algorithm if signer else None,
        encrypted=layout.header.encrypted,
    )


def verify_image(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview,
    *,
    keys: VerificationKeys,
    enc_key: DecryptionKey | None = None,
    min_counter: int | None = None,
    allow_unsigned: bool = False,
    strict_tail: bool = True,
) -> VerifiedImage:
    """Verify the image at ``source`` (a path, ``.hex`` included, or bytes) against ``keys``.

    ``keys`` are public keys (a key handle or a private key stands for its public part), or a
    callable that loads them: the image is then hashed while it runs.

    Raises :class:`~trustroot._mcuboot.ImageVerificationError` with the reason; returns what
    was verified. ``enc_key`` decrypts an encrypted image (its hash covers the plaintext);
    ``min_counter`` refuses a security counter below it (or none at all). ``allow_unsigned``
    accepts an image on its hash alone when no key is given (logs a warning); ``strict_tail``
    refuses bytes after the TLV area that are not erased fill plus a trailer.
    """
    if min_counter is not None and not 0 <= min_counter <= 0xFFFFFFFF:
        raise UsageError(f"minimum security counter {min_counter} is outside 0..0xffffffff")
    if not callable(keys):
        keys = _public_keys(keys)  # a key MCUboot cannot verify with is a usage error, before any reading
    try:
        with _open(source) as (opened, label):
            return _verify(
                opened,
                label,
                keys,
                enc_key,
                min_counter,
                allow_unsigned=allow_unsigned,
                strict_tail=strict_tail,
            )
    except OSError as exc:  # a read failing midway: not a verdict on the image
        raise UnreadableInputError(f"image {source!s}: cannot be read ({exc.strerror or exc})") from exc


#: The name the benchmarks use.
verify_image_file = verify_image
