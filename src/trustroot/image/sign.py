"""Sign firmware images in MCUboot's format, byte for byte what imgtool 2.5.0 makes.

One pass over the input, in fixed-size chunks, whatever the image size::

    input ──► [header area] ──► hash ◄── payload chunk ──► (AES-CTR) ──► output (temp file)
                                 ▲                                          │
                    protected TLVs (SEC_CNT, DEPENDENCY...) ────────────────┤
                                 │                                          │
                       digest ───┴─► hash TLV, KEYHASH | PUBKEY, signature ─┤
                                      (sign_digest: ECDSA, RSA-PSS;         │
                                       sign(digest): Ed25519), ENC TLV      │
                                                   erased fill + trailer ───┴─► rename onto OUT

What imgtool 2.5.0 does, and so what this does for the same inputs:

- without ``pad_header`` the input's first ``header_size`` bytes must be zeros (they become the
  header); with it, ``header_size`` bytes of the erased value are put in front. Only the first
  32 bytes of that area are the header; the rest stays as it was and is hashed;
- the protected TLVs are SEC_CNT (u32), then one DEPENDENCY per dependency;
- the hash covers header + payload + protected TLVs, over the PLAINTEXT of an encrypted image;
  an encrypted payload is first padded with zeros so that header + payload is a multiple of 16;
- unprotected TLVs, in order: the hash, KEYHASH (the image hash of the key bytes) or PUBKEY, the
  signature, the encryption key TLV;
- ``load_addr`` != 0 sets RAM_LOAD, ``rom_fixed`` sets ROM_FIXED (and is the load address field);
- ``pad`` fills the slot with the erased value and ends it with the trailer magic (the
  ``max_align`` = max(8, align) variant), ``confirm`` (which implies ``pad``) sets image_ok = 1;
- ``slot_size`` refuses an image whose TLVs plus trailer do not fit;
- ``.hex`` input is read from its lowest address (gaps 0xff, as intelhex fills them); ``.hex``
  output starts at that address (less the header when ``pad_header`` moves it, unless the
  address is 0) or at ``hex_addr``, and a padded HEX image holds only the image, the
  image_ok slot (if confirmed) and the magic: the fill is left out. Where imgtool would move
  the start below address 0 (and write a wrapped-around file), this refuses.

The key may be given as a *loader* (a callable): the input is then hashed and written in a
thread while the key loads (``cryptography`` is imported only then, and hashlib and file I/O
release the GIL), with SHA-256 or the requested hash; a key that needs another hash (ECDSA
P-384) has the input read and hashed once more.

Encryption is not done here: a :class:`PayloadEncryptor` from ``trustroot.image.encryption``
(``make_encryptor``) is passed in, and this module feeds it the payload in order.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, TypeAlias

from trustroot._mcuboot import (
    DEFAULT_MAX_SECTORS,
    IMAGE_F_NON_BOOTABLE,
    IMAGE_F_RAM_LOAD,
    IMAGE_F_ROM_FIXED,
    IMAGE_HEADER_SIZE,
    TLV_HEADER_SIZE,
    TLV_INFO_SIZE,
    VALID_ALIGNS,
    VALID_MAX_ALIGNS,
    Dependency,
    ImageFormatError,
    ImageHeader,
    ImageVersion,
    TlvType,
    encode_tlv_area,
    trailer_size,
)
from trustroot.errors import KeyStateError, UnreadableInputError, UsageError
from trustroot.image import _stream
from trustroot.image.hexfile import is_hex_path

if TYPE_CHECKING:  # cryptography is imported when a key is used: the input streams meanwhile
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, utils
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

    from trustroot.image._crypto import SigningScheme
    from trustroot.keys._interface import KeyHandle

__all__ = [
    "HASH_TLV_FOR",
    "KeySource",
    "PayloadEncryptor",
    "SignedImage",
    "SigningKey",
    "load_key_file",
    "sign_image",
    "sign_image_bytes",
    "sign_image_file",
]

#: hashlib name -> hash TLV type.
HASH_TLV_FOR: Final = {"sha256": TlvType.SHA256, "sha384": TlvType.SHA384, "sha512": TlvType.SHA512}
_CHUNK: Final = 1 << 20
_MAX_KEY_FILE: Final = 64 << 10
_U32: Final = 0xFFFFFFFF
_PSS_SALT: Final = 32
#: Smallest signature of each TLV, for the early does-it-fit check (ECDSA DER varies in length).
_MIN_SIGNATURE: Final = {TlvType.ECDSA_SIG: 8, TlvType.ED25519: 64, TlvType.RSA3072_PSS: 384}


class PayloadEncryptor(Protocol):
    """What ``trustroot.image.encryption.make_encryptor`` returns: AES-CTR over the payload in order.

    ``flags`` is the header flag (ENCRYPTED_AES128 or ENCRYPTED_AES256); ``tlv_type`` and
    ``tlv_value`` the unprotected key-exchange TLV; ``update`` encrypts the next chunk.
    """

    @property
    def flags(self) -> int: ...

    @property
    def tlv_type(self) -> int: ...

    @property
    def tlv_value(self) -> bytes: ...

    def update(self, chunk: bytes) -> bytes: ...


#: A key that signs images: a key store handle (file or PKCS#11), or a private key object.
SigningKey: TypeAlias = "KeyHandle | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey"
#: A key, a callable that loads one (the input streams while it runs), or None (unsigned).
KeySource: TypeAlias = "SigningKey | Callable[[], object] | None"


@dataclass(frozen=True)
class SignedImage:
    """What :func:`sign_image` made."""

    #: The output file (None for :func:`sign_image_bytes`).
    path: Path | None
    #: Bytes written (the whole file: image, TLVs and, when padded, fill and trailer).
    size: int
    version: ImageVersion
    hash_algorithm: str
    #: The value of the hash TLV.
    digest: bytes
    security_counter: int | None
    dependencies: tuple[Dependency, ...]
    #: trustroot's key id of the signing key (SHA-256 of its SubjectPublicKeyInfo), None if unsigned.
    key_id: str | None
    #: The KEYHASH TLV value (None with a full PUBKEY or when unsigned).
    key_hash: bytes | None
    #: ``ecdsa-p256``, ``ecdsa-p384``, ``ed25519``, ``rsa-3072``, or None when unsigned.
    algorithm: str | None
    encrypted: bool
    #: SHA-256 (hex) of the output file, when asked for.
    sha256: str | None


@dataclass(frozen=True)
class _Signer:
    scheme: SigningScheme
    public_key: PublicKeyTypes
    sign: Callable[[bytes], bytes]


@dataclass(frozen=True)
class _Plan:
    """Every option, checked once."""

    version: ImageVersion
    header_size: int
    pad_header: bool
    slot_size: int | None
    pad: bool
    confirm: bool
    align: int
    max_align: int
    max_sectors: int
    erased_val: int
    load_field: int
    flags: int
    security_counter: int | None
    dependencies: tuple[Dependency, ...]
    public_key_format: Literal["hash", "full"]
    #: The hash asked for (None: the key's default, or SHA-256 unsigned).
    hash_request: str | None
    hex_addr: int | None

    def hash_for(self, signer: _Signer | None) -> str:
        return signer.scheme.choose_hash(self.hash_request) if signer else (self.hash_request or "sha256")


# --- keys ------------------------------------------------------------------------------------------


def _prehashed(scheme: SigningScheme) -> utils.Prehashed:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import utils

    return utils.Prehashed(hashes.SHA384() if scheme.algorithm == "ecdsa-p384" else hashes.SHA256())


def _signer(key: SigningKey) -> _Signer:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    from trustroot.image._crypto import scheme_for

    if isinstance(key, ec.EllipticCurvePrivateKey):
        scheme = scheme_for(key.public_key())
        algorithm = ec.ECDSA(_prehashed(scheme))
        return _Signer(scheme, key.public_key(), lambda digest: key.sign(digest, algorithm))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return _Signer(scheme_for(key.public_key()), key.public_key(), key.sign)
    if isinstance(key, rsa.RSAPrivateKey):
        scheme = scheme_for(key.public_key())
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=_PSS_SALT)
        signer = _Signer(scheme, key.public_key(), lambda digest: key.sign(digest, pss, _prehashed(scheme)))
    else:
        public = key.public_key()
        scheme = scheme_for(public)
        if scheme.algorithm != key.info.algorithm.value:
            raise KeyStateError(
                f"key '{key.info.name}' is recorded as {key.info.algorithm.value} but holds an {scheme.algorithm} key"
            )
        sign = key.sign if scheme.signature_tlv == TlvType.ED25519 else key.sign_digest
        signer = _Signer(scheme, public, sign)
    if signer.scheme.algorithm == "rsa-2048":
        raise UsageError("trustroot signs with RSA-3072, not RSA-2048 (imgtool's RSA-2048 images still verify)")
    return signer


def load_key_file(path: str | os.PathLike[str], password: str | bytes | None = None) -> PrivateKeyTypes:
    """A PEM private key file as imgtool takes it (PKCS#8, SEC1 or PKCS#1; encrypted with ``password``).

    A clear key is read directly; an encrypted one goes through the key store's reader, which
    bounds the cost of its key derivation. Raises :class:`~trustroot.errors.WrongSecretError`
    for a missing or wrong password and :class:`~trustroot.errors.KeyFileCorruptError` for
    anything that is not a private key.
    """
    from cryptography.hazmat.primitives import serialization

    from trustroot._fsutil import read_bounded
    from trustroot.errors import KeyFileCorruptError

    path = Path(path)
    data = read_bounded(path, _MAX_KEY_FILE, what="key file")
    if b"ENCRYPTED" not in data and b"PRIVATE KEY-----" in data:
        try:
            return serialization.load_pem_private_key(data, None)
        except (ValueError, TypeError) as exc:
            raise KeyFileCorruptError(f"{path} is not a PEM private key this toolkit can use") from exc
    from trustroot.keys.filestore import load_pem_private_key_file

    der = load_pem_private_key_file(path, password)
    return serialization.load_der_private_key(der, None)


def _as_signing_key(key: object) -> SigningKey:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey):
        return key
    from trustroot.keys._interface import KeyHandle  # only for a handle: a key file's path stays lean

    if isinstance(key, KeyHandle):
        return key
    raise UsageError(f"a {type(key).__name__.removeprefix('_')} cannot sign MCUboot images")


# --- options ---------------------------------------------------------------------------------------


def _u32(name: str, value: int) -> int:
    if isinstance(value, bool) or not 0 <= value <= _U32:
        raise UsageError(f"{name} {value!r} is outside 0..0xffffffff")
    return value


def _dependency(item: Dependency | tuple[int, ImageVersion | str]) -> Dependency:
    if isinstance(item, Dependency):
        return item
    image_id, version = item
    try:
        return Dependency(image_id, version if isinstance(version, ImageVersion) else ImageVersion.parse(version))
    except ImageFormatError as exc:
        raise UsageError(f"dependency {item!r}: {exc.message}") from None


def _plan(  # noqa: PLR0912 - one check per option, in one place
    *,
    version: ImageVersion | str,
    header_size: int,
    slot_size: int | None,
    pad_header: bool,
    pad: bool,
    confirm: bool,
    align: int,
    max_align: int | None,
    max_sectors: int,
    erased_val: int,
    load_addr: int,
    rom_fixed: int | None,
    non_bootable: bool,
    security_counter: int | None,
    dependencies: Sequence[Dependency | tuple[int, ImageVersion | str]],
    public_key_format: str,
    hash_algorithm: str | None,
    hex_addr: int | None,
) -> _Plan:
    try:
        parsed_version = version if isinstance(version, ImageVersion) else ImageVersion.parse(version)
    except ImageFormatError as exc:
        raise UsageError(exc.message) from None
    if not IMAGE_HEADER_SIZE <= header_size <= 0xFFFF:
        raise UsageError(f"header size {header_size} is outside {IMAGE_HEADER_SIZE}..0xffff")
    if align not in VALID_ALIGNS:
        raise UsageError(f"alignment {align} is not one of {', '.join(map(str, VALID_ALIGNS))}")
    chosen_max_align = max(8, align) if max_align is None else max_align
    if chosen_max_align not in VALID_MAX_ALIGNS or chosen_max_align < align:
        raise UsageError(f"maximum alignment {chosen_max_align} must be 8, 16 or 32 and at least the alignment")
    if erased_val not in (0x00, 0xFF):
        raise UsageError(f"erased value 0x{erased_val:x} must be 0x00 or 0xff")
    if not 1 <= max_sectors <= 0x10000:
        raise UsageError(f"maximum sectors {max_sectors} is outside 1..65536")
    pad = pad or confirm
    if slot_size is not None and not 0 < slot_size <= _U32:
        raise UsageError(f"slot size {slot_size} is outside 1..0xffffffff")
    if pad and slot_size is None:
        raise UsageError("padding (--pad or --confirm) needs the slot size")
    if rom_fixed is not None and load_addr:
        raise UsageError("a load address (RAM load) and a fixed ROM address cannot both be set")
    flags = IMAGE_F_RAM_LOAD if _u32("load address", load_addr) else 0
    if rom_fixed is not None:
        flags |= IMAGE_F_ROM_FIXED
    if non_bootable:
        flags |= IMAGE_F_NON_BOOTABLE
    if security_counter is not None:
        _u32("security counter", security_counter)
    if public_key_format not in ("hash", "full"):
        raise UsageError(f"public key format {public_key_format!r}: use hash or full")
    if hash_algorithm is not None and hash_algorithm not in HASH_TLV_FOR:
        raise UsageError(f"hash {hash_algorithm!r}: use sha256, sha384 or sha512")
    return _Plan(
        version=parsed_version,
        header_size=header_size,
        pad_header=pad_header,
        slot_size=slot_size,
        pad=pad,
        confirm=confirm,
        align=align,
        max_align=chosen_max_align,
        max_sectors=max_sectors,
        erased_val=erased_val,
        load_field=_u32("fixed ROM address", rom_fixed) if rom_fixed is not None else load_addr,
        flags=flags,
        security_counter=security_counter,
        dependencies=tuple(_dependency(d) for d in dependencies),
        public_key_format="hash" if public_key_format == "hash" else "full",
        hash_request=hash_algorithm,
        hex_addr=None if hex_addr is None else _u32("HEX address", hex_addr),
    )


# --- the image -------------------------------------------------------------------------------------


def _protected_area(plan: _Plan) -> bytes:
    entries: list[tuple[int, bytes]] = []
    if plan.security_counter is not None:
        entries.append((TlvType.SEC_CNT, plan.security_counter.to_bytes(4, "little")))
    entries += [(TlvType.DEPENDENCY, dep.pack()) for dep in plan.dependencies]
    return encode_tlv_area(entries, protected=True)


def _key_tlv(plan: _Plan, signer: _Signer, hash_name: str) -> tuple[int, bytes]:
    from trustroot.image._crypto import mcuboot_key_bytes

    key_bytes = mcuboot_key_bytes(signer.public_key)
    if plan.public_key_format == "full":
        return TlvType.PUBKEY, key_bytes
    return TlvType.KEYHASH, hashlib.new(hash_name, key_bytes).digest()


def _unprotected_size(plan: _Plan, signer: _Signer | None, encryptor: PayloadEncryptor | None) -> int:
    """The smallest the unprotected area can be (an ECDSA signature's length varies)."""
    hash_name = plan.hash_for(signer)
    size = TLV_INFO_SIZE + TLV_HEADER_SIZE + hashlib.new(hash_name).digest_size
    if signer is not None:
        size += TLV_HEADER_SIZE + len(_key_tlv(plan, signer, hash_name)[1])
        size += TLV_HEADER_SIZE + _MIN_SIGNATURE[signer.scheme.signature_tlv]
    if encryptor is not None:
        size += TLV_HEADER_SIZE + len(encryptor.tlv_value)
    return size


def _check_fit(plan: _Plan, total: int, tsize: int) -> None:
    if plan.slot_size is not None and total + tsize > plan.slot_size:
        raise UsageError(
            f"image size (0x{total:x}) + trailer (0x{tsize:x}) exceeds the slot size 0x{plan.slot_size:x}",
            hint="use a larger slot, a smaller image, or fewer maximum sectors",
        )


@dataclass(frozen=True)
class _Made:
    signer: _Signer | None
    hash_name: str
    digest: bytes
    key_hash: bytes | None
    size: int


@dataclass(frozen=True)
class _Frame:
    """What comes before and after the payload; none of it depends on the key."""

    area: bytes
    protected: bytes
    enc_pad: int
    hashed_size: int
    tsize: int


def _frame(plan: _Plan, body: _stream.Input, encryptor: PayloadEncryptor | None) -> _Frame:
    header_size = plan.header_size
    enc_pad = (-(header_size + body.length)) % 16 if encryptor is not None else 0
    img_size = body.length + enc_pad
    if img_size > _U32:
        raise UsageError(f"the image is {img_size} bytes: more than MCUboot's 4 GiB limit")
    protected = _protected_area(plan)
    flags = plan.flags | (encryptor.flags if encryptor is not None else 0)
    header = ImageHeader(plan.load_field, header_size, len(protected), img_size, flags, plan.version)
    fill = plan.erased_val if plan.pad_header else 0
    area = header.pack() + bytes([fill]) * (header_size - IMAGE_HEADER_SIZE)
    tsize = trailer_size(plan.align, plan.max_align, max_sectors=plan.max_sectors, encrypted=encryptor is not None)
    return _Frame(area, protected, enc_pad, header_size + img_size + len(protected), tsize)


def _feed(
    frame: _Frame,
    body: _stream.Input,
    hasher: Any,
    sink: _stream.Sink | None,
    *,
    encryptor: PayloadEncryptor | None = None,
    cancel: threading.Event | None = None,
) -> None:
    """Hash header area, payload and protected TLVs; write them to ``sink`` (encrypted) if given."""
    hasher.update(frame.area)
    if sink is not None:
        sink.write(frame.area)
    seen = 0
    for chunk in body.chunks():
        if cancel is not None and cancel.is_set():
            return
        seen += len(chunk)
        hasher.update(chunk)
        if sink is not None:
            sink.write(encryptor.update(bytes(chunk)) if encryptor is not None else chunk)
    if seen != body.length:
        raise UnreadableInputError(f"the input changed while it was read ({seen} bytes, expected {body.length})")
    if frame.enc_pad:  # only an encrypted image is padded, and it is always written as it is hashed
        zeros = bytes(frame.enc_pad)
        hasher.update(zeros)
        if sink is not None and encryptor is not None:  # pragma: no branch
            sink.write(encryptor.update(zeros))
    hasher.update(frame.protected)
    if sink is not None:
        sink.write(frame.protected)


class _Background:
    """:func:`_feed` in a thread: hashlib and file I/O release the GIL, so it overlaps key loading."""

    def __init__(self, frame: _Frame, body: _stream.Input, hasher: Any, sink: _stream.Sink) -> None:
        self._cancel = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(frame, body, hasher, sink), name="trustroot-image-stream", daemon=True
        )
        self._thread.start()

    def _run(self, frame: _Frame, body: _stream.Input, hasher: Any, sink: _stream.Sink) -> None:
        try:
            _feed(frame, body, hasher, sink, cancel=self._cancel)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread by join()
            self._error = exc

    def join(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error

    def cancel(self) -> None:
        self._cancel.set()
        self._thread.join()


def _sign_digest(
    plan: _Plan,
    signer: _Signer | None,
    hash_name: str,
    digest: bytes,
    encryptor: PayloadEncryptor | None,
) -> tuple[bytes, bytes | None]:
    """The unprotected TLV area, and the KEYHASH value if there is one."""
    entries: list[tuple[int, bytes]] = [(HASH_TLV_FOR[hash_name], digest)]
    key_hash = None
    if signer is not None:
        key_type, key_value = _key_tlv(plan, signer, hash_name)
        key_hash = key_value if key_type == TlvType.KEYHASH else None
        entries += [(key_type, key_value), (signer.scheme.signature_tlv, signer.sign(digest))]
    if encryptor is not None:
        entries.append((encryptor.tlv_type, encryptor.tlv_value))
    return encode_tlv_area(entries, protected=False), key_hash


def _padding(plan: _Plan, tsize: int) -> _stream.Padding | None:
    if not plan.pad or plan.slot_size is None:
        return None
    return _stream.Padding(plan.slot_size, tsize, plan.max_align, plan.confirm, plan.erased_val)


def _produce(
    plan: _Plan,
    key: KeySource,
    encryptor: PayloadEncryptor | None,
    body: _stream.Input,
    sink: _stream.Sink,
) -> _Made:
    """Write the whole image to ``sink``.

    With a key *loader* (and no encryption) the payload is hashed and written in a thread while
    the key loads, hashed with the requested hash or SHA-256; a key that needs another hash
    (ECDSA P-384) has the input hashed again.
    """
    frame = _frame(plan, body, encryptor)
    if callable(key) and encryptor is None:  # a loader (keys and handles are not callable)
        guess = plan.hash_request or "sha256"
        hasher = hashlib.new(guess)
        background = _Background(frame, body, hasher, sink)
        try:
            signer: _Signer | None = _signer(_as_signing_key(key()))
            hash_name = plan.hash_for(signer)
        except BaseException:
            background.cancel()
            raise
        background.join()
        if hash_name != guess:
            hasher = hashlib.new(hash_name)
            _feed(frame, body, hasher, None)
    else:
        signer = _signer(_as_signing_key(key)) if key is not None else None
        hash_name = plan.hash_for(signer)
        _check_fit(plan, frame.hashed_size + _unprotected_size(plan, signer, encryptor), frame.tsize)
        hasher = hashlib.new(hash_name)
        _feed(frame, body, hasher, sink, encryptor=encryptor)
    digest: bytes = hasher.digest()
    unprotected, key_hash = _sign_digest(plan, signer, hash_name, digest, encryptor)
    _check_fit(plan, frame.hashed_size + len(unprotected), frame.tsize)
    sink.write(unprotected)
    sink.finish(_padding(plan, frame.tsize))
    return _Made(signer, hash_name, digest, key_hash, sink.size)


def _result(
    path: Path | None,
    *,
    plan: _Plan,
    made: _Made,
    encrypted: bool,
    sha256: str | None,
) -> SignedImage:
    from trustroot.image._crypto import public_key_fingerprint

    signer = made.signer
    return SignedImage(
        path=path,
        size=made.size,
        version=plan.version,
        hash_algorithm=made.hash_name,
        digest=made.digest,
        security_counter=plan.security_counter,
        dependencies=plan.dependencies,
        key_id=public_key_fingerprint(signer.public_key) if signer else None,
        key_hash=made.key_hash,
        algorithm=signer.scheme.algorithm if signer else None,
        encrypted=encrypted,
        sha256=sha256,
    )


def sign_image(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    key: KeySource,
    *,
    version: ImageVersion | str,
    header_size: int,
    slot_size: int | None = None,
    pad_header: bool = False,
    pad: bool = False,
    confirm: bool = False,
    align: int = 1,
    max_align: int | None = None,
    max_sectors: int = DEFAULT_MAX_SECTORS,
    erased_val: int = 0xFF,
    load_addr: int = 0,
    rom_fixed: int | None = None,
    non_bootable: bool = False,
    security_counter: int | None = None,
    dependencies: Sequence[Dependency | tuple[int, ImageVersion | str]] = (),
    public_key_format: Literal["hash", "full"] = "hash",
    hash_algorithm: str | None = None,
    encryptor: PayloadEncryptor | None = None,
    hex_addr: int | None = None,
    output_sha256: bool = False,
    durable: bool = False,
) -> SignedImage:
    """Sign the firmware file ``source`` into the MCUboot image ``destination`` (streaming).

    ``key`` is a key store handle (file or PKCS#11: the token signs the streamed digest), a
    private key object (:func:`load_key_file` reads imgtool's PEM files), a zero-argument
    callable that returns one (the input is then hashed while it runs), or None for an
    unsigned, hash-only image. Either path may end in ``.hex`` (Intel HEX in or out). The
    options are imgtool's (see the module docstring); ``output_sha256`` also hashes the output
    as it is written (a second hash, so off unless asked). The output is a temp file renamed
    onto ``destination`` only on success, so nothing is left there on failure; ``durable``
    also fsyncs it (and the directory) so that it survives a power cut: off by default, as
    imgtool, and on where a record points at the file (a product's evidence).
    """
    source, destination = Path(source), Path(destination)
    plan = _plan(
        version=version,
        header_size=header_size,
        slot_size=slot_size,
        pad_header=pad_header,
        pad=pad,
        confirm=confirm,
        align=align,
        max_align=max_align,
        max_sectors=max_sectors,
        erased_val=erased_val,
        load_addr=load_addr,
        rom_fixed=rom_fixed,
        non_bootable=non_bootable,
        security_counter=security_counter,
        dependencies=dependencies,
        public_key_format=public_key_format,
        hash_algorithm=hash_algorithm,
        hex_addr=hex_addr,
    )
    label = f"input {source}"
    try:
        with contextlib.ExitStack() as stack:
            if is_hex_path(source):
                body = _stream.hex_input(source, header_size=plan.header_size, pad_header=plan.pad_header)
            else:
                handle = stack.enter_context(_stream.open_input(source))
                body = _stream.binary_input(
                    handle, header_size=plan.header_size, pad_header=plan.pad_header, label=label
                )
            output = stack.enter_context(_stream.atomic_output(destination, durable=durable))
            out = _stream.DigestingFile(output, digest=output_sha256)
            hex_out = is_hex_path(destination)
            sink: _stream.Sink = (
                _stream.HexSink(out, _hex_base(plan, body, destination)) if hex_out else _stream.BinarySink(out)
            )
            made = _produce(plan, key, encryptor, body, sink)
    except OSError as exc:  # a read or write failing midway (I/O error, disk full): the temp file is gone
        raise UnreadableInputError(f"signing {source} into {destination}: {exc.strerror or exc}") from exc
    sha256 = out.hasher.hexdigest() if out.hasher is not None else None
    return _result(destination, plan=plan, made=made, encrypted=encryptor is not None, sha256=sha256)


def _hex_base(plan: _Plan, body: _stream.Input, destination: Path) -> int:
    if plan.hex_addr is not None:
        return plan.hex_addr
    if body.address is None:
        raise UsageError(
            f"output {destination} is Intel HEX but the input has no address",
            hint="give the address of the image with --hex-addr",
        )
    # imgtool moves the start back by the header it adds, unless the start is address 0
    if plan.pad_header and body.address:
        if body.address < plan.header_size:
            raise UsageError(
                f"the HEX input starts at 0x{body.address:x}, too low to put a "
                f"0x{plan.header_size:x}-byte header in front of it",
                hint="give the image address with --hex-addr",
            )
        return body.address - plan.header_size
    return body.address


#: The name the benchmarks use.
sign_image_file = sign_image


def sign_image_bytes(
    data: bytes,
    key: KeySource,
    *,
    version: ImageVersion | str,
    header_size: int,
    slot_size: int | None = None,
    pad_header: bool = False,
    pad: bool = False,
    confirm: bool = False,
    align: int = 1,
    max_align: int | None = None,
    max_sectors: int = DEFAULT_MAX_SECTORS,
    erased_val: int = 0xFF,
    load_addr: int = 0,
    rom_fixed: int | None = None,
    non_bootable: bool = False,
    security_counter: int | None = None,
    dependencies: Sequence[Dependency | tuple[int, ImageVersion | str]] = (),
    public_key_format: Literal["hash", "full"] = "hash",
    hash_algorithm: str | None = None,
    encryptor: PayloadEncryptor | None = None,
) -> bytes:
    """:func:`sign_image` over bytes in memory (small images, tests): returns the image bytes."""
    plan = _plan(
        version=version,
        header_size=header_size,
        slot_size=slot_size,
        pad_header=pad_header,
        pad=pad,
        confirm=confirm,
        align=align,
        max_align=max_align,
        max_sectors=max_sectors,
        erased_val=erased_val,
        load_addr=load_addr,
        rom_fixed=rom_fixed,
        non_bootable=non_bootable,
        security_counter=security_counter,
        dependencies=dependencies,
        public_key_format=public_key_format,
        hash_algorithm=hash_algorithm,
        hex_addr=None,
    )
    view = memoryview(data)
    if not plan.pad_header:
        _stream.check_header_area(bytes(view[: plan.header_size]), plan.header_size, "input")
        view = view[plan.header_size :]
    collected = _stream.Collect()
    sink = _stream.BinarySink(_stream.DigestingFile(collected, digest=False))
    _produce(plan, key, encryptor, _stream.Input(len(view), lambda: iter([view])), sink)
    return bytes(collected.data)
