"""The image recipes: sign and verify with a product's defaults, keys and evidence, or like imgtool.

A :class:`SignRequest` holds what the caller said (None = not said). :func:`sign_request`
resolves it one of two ways and signs:

============================  ==============================================  ================================
                              inside a product (``product`` given)           standalone (``product`` None)
============================  ==============================================  ================================
header / slot size, align,    the context's ``[boot]`` section                header and slot size REQUIRED;
erased value, hash                                                            align 1, 0xff, key's default hash
max sectors                   slot size / sector size                         128 (imgtool's)
signing key                   ``key_file`` or the store's active              ``key_file`` (or none: unsigned)
                              firmware-signing key (file or PKCS#11)
encryption                    ``[boot] encryption`` (the store's active       only with ``enc_key_file``
                              image-encryption key), ``[boot] key bits``      (AES-128 unless told)
security counter ``auto``     highest counter in ``image.signed`` evidence+1  refused (no evidence to count)
counter when not given        ``auto`` if ``[boot] anti_rollback``, else none none
evidence                      one ``image.signed`` record                     none
============================  ==============================================  ================================

Only the product path imports the context (pydantic) and the key store; the standalone path
keeps the process lean.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from trustroot._mcuboot import DEFAULT_MAX_SECTORS, Dependency, ImageFormatError, ImageVersion
from trustroot.errors import EvidenceError, UsageError
from trustroot.image.sign import KeySource, PayloadEncryptor, SignedImage, SigningKey, load_key_file, sign_image

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

    from trustroot.image.verify import DecryptionKey
    from trustroot.keys._interface import KeyHandle
    from trustroot.product import Product

__all__ = [
    "SIGNED_EVIDENCE_TYPE",
    "SignRequest",
    "decryption_key_file",
    "evidence_data",
    "load_public_key_file",
    "next_security_counter",
    "password_from_env",
    "product_decryption_key",
    "product_verification_keys",
    "sign_request",
]

SIGNED_EVIDENCE_TYPE = "image.signed"
_MAX_KEY_FILE = 64 << 10


@dataclass(frozen=True)
class SignRequest:
    """What the caller asked for; None means "not said" (the defaults of the mode apply)."""

    source: Path
    destination: Path
    version: str
    security_counter: int | Literal["auto"] | None = None
    encrypt: bool | None = None
    encrypt_keylen: Literal[128, 256] | None = None
    header_size: int | None = None
    pad_header: bool = False
    slot_size: int | None = None
    align: int | None = None
    max_align: int | None = None
    max_sectors: int | None = None
    pad: bool = False
    confirm: bool = False
    dependencies: Sequence[Dependency] = field(default_factory=tuple)
    key_file: Path | None = None
    key_password: bytes | None = None
    enc_key_file: Path | None = None
    load_addr: int = 0
    rom_fixed: int | None = None
    non_bootable: bool = False
    hex_addr: int | None = None
    erased_val: int | None = None
    public_key_format: Literal["hash", "full"] = "hash"
    hash_algorithm: str | None = None


# --- keys from files -------------------------------------------------------------------------------


def _read_key_file(path: Path) -> bytes:
    from trustroot._fsutil import read_bounded

    return read_bounded(path, _MAX_KEY_FILE, what="key file")


def load_public_key_file(path: Path, password: bytes | None = None) -> PublicKeyTypes:
    """The public key of a PEM file holding a public key, or a private one (as imgtool takes both)."""
    from cryptography.hazmat.primitives import serialization

    from trustroot.errors import KeyFileCorruptError

    data = _read_key_file(path)
    if b"PUBLIC KEY-----" in data:
        try:
            return serialization.load_pem_public_key(data)
        except (ValueError, TypeError) as exc:
            raise KeyFileCorruptError(f"{path} is not a PEM public key this toolkit can use") from exc
    return load_key_file(path, password).public_key()


def _signing_key(path: Path, password: bytes | None) -> SigningKey:
    key = load_key_file(path, password)
    from trustroot.image.sign import _as_signing_key

    return _as_signing_key(key)


def _encryptor(public_key: PublicKeyTypes, bits: Literal[128, 256], signer: SigningKey | None) -> PayloadEncryptor:
    from trustroot.image._crypto import scheme_for
    from trustroot.image.encryption import make_encryptor

    if signer is None:
        raise UsageError("an encrypted image must be signed: give the signing key")
    public = signer.public_key()
    encryptor: PayloadEncryptor = make_encryptor(public_key, bits, scheme_for(public).algorithm)
    return encryptor


# --- standalone ------------------------------------------------------------------------------------


def _standalone(request: SignRequest) -> SignedImage:
    if request.header_size is None or request.slot_size is None:
        raise UsageError(
            "outside a product, --header-size and --slot-size are needed (as imgtool needs them)",
            hint="give both, or run inside a product (a security-context.toml here or above, or --context)",
        )
    if request.security_counter == "auto":
        raise UsageError(
            "--security-counter auto counts the product's evidence: there is no product here",
            hint="give the counter as a number, or run inside a product",
        )
    key_file, password = request.key_file, request.key_password
    key: KeySource = None
    encryptor = None
    if request.encrypt or (request.encrypt is None and request.enc_key_file is not None):
        if request.enc_key_file is None:
            raise UsageError("--encrypt needs the boot loader's encryption key (--enc-key FILE) outside a product")
        key = _signing_key(key_file, password) if key_file else None
        enc_public = load_public_key_file(request.enc_key_file, password)
        encryptor = _encryptor(enc_public, request.encrypt_keylen or 128, key)
    elif key_file is not None:
        # a loader: the input is hashed in the background while the key file is read
        key = lambda: _signing_key(key_file, password)  # noqa: E731
    return _sign(
        request,
        key,
        encryptor,
        header_size=request.header_size,
        slot_size=request.slot_size,
        align=request.align or 1,
        erased_val=0xFF if request.erased_val is None else request.erased_val,
        max_sectors=request.max_sectors or DEFAULT_MAX_SECTORS,
        hash_algorithm=request.hash_algorithm,
        security_counter=request.security_counter,
        product=False,
    )


def _sign(
    request: SignRequest,
    key: KeySource,
    encryptor: PayloadEncryptor | None,
    *,
    header_size: int,
    slot_size: int,
    align: int,
    erased_val: int,
    max_sectors: int,
    hash_algorithm: str | None,
    security_counter: int | None,
    product: bool,
) -> SignedImage:
    return sign_image(
        request.source,
        request.destination,
        key,
        version=request.version,
        header_size=header_size,
        slot_size=slot_size,
        pad_header=request.pad_header,
        pad=request.pad,
        confirm=request.confirm,
        align=align,
        max_align=request.max_align,
        max_sectors=max_sectors,
        erased_val=erased_val,
        load_addr=request.load_addr,
        rom_fixed=request.rom_fixed,
        non_bootable=request.non_bootable,
        security_counter=security_counter,
        dependencies=request.dependencies,
        public_key_format=request.public_key_format,
        hash_algorithm=hash_algorithm,
        encryptor=encryptor,
        hex_addr=request.hex_addr,
        output_sha256=product,
        durable=product,
    )


# --- inside a product ------------------------------------------------------------------------------


def next_security_counter(product: Product) -> int:
    """One more than the highest security counter of the product's ``image.signed`` evidence (1 if none).

    The evidence chain is verified first: a counter is never derived from an edited log.
    """
    product.evidence.verify(product.evidence_public_keys())
    highest = 0
    for record in product.evidence.iter_records():
        if record.type == SIGNED_EVIDENCE_TYPE and isinstance(record.data, dict):
            counter = record.data.get("security_counter")
            if isinstance(counter, int) and not isinstance(counter, bool):
                highest = max(highest, counter)
    if highest >= 0xFFFFFFFF:
        raise EvidenceError("the highest security counter in the evidence is 0xffffffff: it cannot grow")
    return highest + 1


def _product_key(product: Product, request: SignRequest) -> SigningKey:
    from trustroot.keys._interface import KeyRole

    boot = product.context.model.boot
    if request.key_file is not None:
        return _signing_key(request.key_file, request.key_password)
    if boot.signature == "none":
        raise UsageError(
            f"{product.context.path}: [boot] signature = none: there is no firmware-signing key",
            provision="5.3-9",
            hint='set [boot] signature, e.g. "ecdsa-p256", and create the key',
        )
    info = product.keys.active(KeyRole.FIRMWARE_SIGNING)
    if info.algorithm.value != boot.signature:
        raise UsageError(
            f"[boot] signature is {boot.signature} but the active firmware-signing key "
            f"'{info.name}' is {info.algorithm.value}",
            hint="rotate the key to the context's algorithm, or change [boot] signature",
        )
    handle: KeyHandle = product.keys.unlock(info.name)
    return handle


def _product_encryptor(product: Product, request: SignRequest, key: SigningKey) -> PayloadEncryptor | None:
    from trustroot.keys._interface import KeyRole

    boot = product.context.model.boot
    wanted = (
        request.encrypt
        if request.encrypt is not None
        else (boot.encryption != "none" or request.enc_key_file is not None)
    )
    if not wanted:
        return None
    if request.enc_key_file is not None:
        enc_public = load_public_key_file(request.enc_key_file, request.key_password)
    else:
        info = product.keys.active(KeyRole.IMAGE_ENCRYPTION)
        from cryptography.hazmat.primitives import serialization

        enc_public = serialization.load_pem_public_key(info.public_pem.encode())
    return _encryptor(enc_public, request.encrypt_keylen or boot.encryption_key_bits, key)


def evidence_data(signed: SignedImage) -> dict[str, Any]:
    """The data of an ``image.signed`` record (ints, strings, bools, None: no floats)."""
    return {
        "file": str(signed.path) if signed.path else None,
        "sha256": signed.sha256,
        "hash_algorithm": signed.hash_algorithm,
        "hash": signed.digest.hex(),
        "version": str(signed.version),
        "security_counter": signed.security_counter,
        "dependencies": [{"image_id": d.image_id, "min_version": str(d.min_version)} for d in signed.dependencies],
        "key_id": signed.key_id,
        "algorithm": signed.algorithm,
        "encrypted": signed.encrypted,
        "size": signed.size,
    }


def _in_product(product: Product, request: SignRequest) -> SignedImage:
    boot = product.context.model.boot
    key = _product_key(product, request)
    encryptor = _product_encryptor(product, request, key)
    counter = request.security_counter
    if counter == "auto" or (counter is None and boot.anti_rollback):
        counter = next_security_counter(product)
    slot_size = request.slot_size or boot.slot_size
    signed = _sign(
        request,
        key,
        encryptor,
        header_size=request.header_size or boot.header_size,
        slot_size=slot_size,
        align=request.align or boot.align,
        erased_val=boot.erased_value if request.erased_val is None else request.erased_val,
        max_sectors=request.max_sectors or max(1, slot_size // boot.sector_size),
        hash_algorithm=request.hash_algorithm or boot.hash,
        security_counter=counter,
        product=True,
    )
    try:
        product.record(SIGNED_EVIDENCE_TYPE, request.destination.name, evidence_data(signed))
    except BaseException:  # no image without its evidence record
        request.destination.unlink(missing_ok=True)
        raise
    return signed


def sign_request(request: SignRequest, product: Product | None) -> SignedImage:
    """Sign as asked: with the product's defaults, key and evidence, or standalone like imgtool."""
    try:
        ImageVersion.parse(request.version)
    except ImageFormatError as exc:
        raise UsageError(f"--version: {exc.message}") from None
    if product is None:
        return _standalone(request)
    return _in_product(product, request)


# --- verification keys -----------------------------------------------------------------------------


def product_verification_keys(product: Product) -> list[PublicKeyTypes]:
    """Public keys of every firmware-signing key of the product that is not revoked (no unlock)."""
    from cryptography.hazmat.primitives import serialization

    from trustroot.keys._interface import KeyRole, KeyStatus

    return [
        serialization.load_pem_public_key(info.public_pem.encode())
        for info in product.keys.list()
        if info.role is KeyRole.FIRMWARE_SIGNING and info.status is not KeyStatus.REVOKED and info.public_pem
    ]


def product_decryption_key(product: Product) -> DecryptionKey:
    """The product's active image-encryption key, unlocked (asks for the store passphrase or PIN)."""
    from trustroot.keys._interface import KeyRole

    handle: DecryptionKey = product.keys.unlock(product.keys.active(KeyRole.IMAGE_ENCRYPTION).name)
    return handle


def decryption_key_file(path: Path, password: bytes | None) -> DecryptionKey:
    """A boot loader decryption key (P-256 or X25519) from a PEM file."""
    key: DecryptionKey = load_key_file(path, password)
    return key


def password_from_env(name: str | None) -> bytes | None:
    """The value of environment variable ``name`` (a PEM file's own password), None if no name."""
    if name is None:
        return None
    if name not in os.environ:
        raise UsageError(f"--password-env {name}: no such environment variable")
    return os.environ[name].encode()
