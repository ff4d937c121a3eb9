"""The MCUboot image format: a pure codec shared by ``trustroot.image`` and ``trustroot.boot``.

No keys, no hashing, no files of its own: constants, frozen value types that cannot hold an
invalid value, and a strict parser over bytes (or a seekable stream, never holding the payload).
The facts follow MCUboot's ``bootutil/image.h`` and imgtool 2.5.0 (``imgtool/image.py``); all
integers are little-endian::

    offset 0          header_size         +img_size             +protect_tlv_size
    ┌────────────────┬───────────────────┬─────────────────────┬──────────────────────┬──────────────────┐
    │ header (32 B)  │ payload           │ protected TLV area  │ TLV area             │ erased fill      │
    │ + header pad   │ (AES-CTR when     │ info 0x6908 │ TLVs  │ info 0x6907 │ TLVs   │ + image trailer  │
    │ to header_size │  encrypted)       │ (SEC_CNT, DEP, ...) │ (hash, key, sig, enc)│ (--pad, mutable) │
    └────────────────┴───────────────────┴─────────────────────┴──────────────────────┴──────────────────┘
    ◄────────── hashed: SHA-256/384/512 over the PLAINTEXT; the signature signs that hash ──────────►│
                                                                 (header + payload + protected area)

    header      u32 magic 0x96f3b83d │ u32 load_addr │ u16 hdr_size │ u16 protect_tlv_size │ u32 img_size
                u32 flags │ u8 major │ u8 minor │ u16 revision │ u32 build │ u32 pad1
    TLV info    u16 magic (0x6908 protected, 0x6907 not) │ u16 total size of the area, info included
    TLV         u16 type │ u16 length │ value
    trailer     ... │ swap_size │ swap_info │ copy_done │ image_ok │ (pad) │ 16-byte boot magic
                (one max_align-sized slot each; the magic ends the slot)

``ih_protect_tlv_size`` equals the protected area's own total (0 when there is none). The last
byte of the TLV area is the last byte the boot loader checks; what follows is erased flash up to
the trailer, which the boot loader itself writes (so it is outside the hash, by design).

Errors (move into ``trustroot.errors`` when the hierarchy there grows an image branch)::

    TrustrootError
    └── ImageError                    an image refused
        ├── ImageFormatError          not an MCUboot image, or malformed (parse_image)
        └── ImageVerificationError    hash, signature, key or counter refused (verify_image)
"""

from __future__ import annotations

import enum
import re
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO, Final

from trustroot.errors import ImageError, ImageFormatError, ImageVerificationError

__all__ = [
    "ALLOWED_ENCRYPTION_PAIRS",
    "BOOT_MAGIC",
    "BOOT_MAGIC_LARGE_ALIGN_SUFFIX",
    "DEFAULT_MAX_SECTORS",
    "DEPENDENCY_SIZE",
    "ENC_TLV_TYPES",
    "FLAGS",
    "HASH_SIZES",
    "HASH_TLV_TYPES",
    "IMAGE_F_COMPRESSED_ARM_THUMB",
    "IMAGE_F_COMPRESSED_LZMA1",
    "IMAGE_F_COMPRESSED_LZMA2",
    "IMAGE_F_ENCRYPTED_AES128",
    "IMAGE_F_ENCRYPTED_AES256",
    "IMAGE_F_NON_BOOTABLE",
    "IMAGE_F_PIC",
    "IMAGE_F_RAM_LOAD",
    "IMAGE_F_ROM_FIXED",
    "IMAGE_HEADER_SIZE",
    "IMAGE_MAGIC",
    "SIGNATURE_TLV_TYPES",
    "TLV_HEADER_SIZE",
    "TLV_INFO_MAGIC",
    "TLV_INFO_SIZE",
    "TLV_PROT_INFO_MAGIC",
    "UNPROTECTED_ALLOWED",
    "VALID_ALIGNS",
    "VALID_MAX_ALIGNS",
    "Dependency",
    "ImageError",
    "ImageFormatError",
    "ImageHeader",
    "ImageLayout",
    "ImageVerificationError",
    "ImageVersion",
    "Tlv",
    "TlvType",
    "Trailer",
    "align_up",
    "boot_magic",
    "encode_tlv",
    "encode_tlv_area",
    "flag_names",
    "image_ok_offset",
    "parse_image",
    "parse_image_stream",
    "tlv_name",
    "trailer_bytes",
    "trailer_size",
]

#: Signature / encryption pairs MCUboot's boot loader and imgtool accept together.
ALLOWED_ENCRYPTION_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {("ecdsa-p256", "ecies-p256"), ("ed25519", "ecies-x25519")}
)

# --- errors ----------------------------------------------------------------------------------------


# --- constants -------------------------------------------------------------------------------------

IMAGE_MAGIC: Final = 0x96F3B83D
IMAGE_HEADER_SIZE: Final = 32
TLV_INFO_MAGIC: Final = 0x6907
TLV_PROT_INFO_MAGIC: Final = 0x6908
TLV_INFO_SIZE: Final = 4
TLV_HEADER_SIZE: Final = 4
#: Size of a DEPENDENCY TLV value: u8 image id, 3 bytes (flags, pad), then the 8-byte version.
DEPENDENCY_SIZE: Final = 12
#: imgtool's default number of sectors the swap status area is sized for (``--max-sectors``).
DEFAULT_MAX_SECTORS: Final = 128
VALID_ALIGNS: Final = (1, 2, 4, 8, 16, 32)
VALID_MAX_ALIGNS: Final = (8, 16, 32)

IMAGE_F_PIC: Final = 0x00000001
IMAGE_F_ENCRYPTED_AES128: Final = 0x00000004
IMAGE_F_ENCRYPTED_AES256: Final = 0x00000008
IMAGE_F_NON_BOOTABLE: Final = 0x00000010
IMAGE_F_RAM_LOAD: Final = 0x00000020
IMAGE_F_ROM_FIXED: Final = 0x00000100
IMAGE_F_COMPRESSED_LZMA1: Final = 0x00000200
IMAGE_F_COMPRESSED_LZMA2: Final = 0x00000400
IMAGE_F_COMPRESSED_ARM_THUMB: Final = 0x00000800
#: Header flag names, for ``info`` output.
FLAGS: Final = {
    "PIC": IMAGE_F_PIC,
    "ENCRYPTED_AES128": IMAGE_F_ENCRYPTED_AES128,
    "ENCRYPTED_AES256": IMAGE_F_ENCRYPTED_AES256,
    "NON_BOOTABLE": IMAGE_F_NON_BOOTABLE,
    "RAM_LOAD": IMAGE_F_RAM_LOAD,
    "ROM_FIXED": IMAGE_F_ROM_FIXED,
    "COMPRESSED_LZMA1": IMAGE_F_COMPRESSED_LZMA1,
    "COMPRESSED_LZMA2": IMAGE_F_COMPRESSED_LZMA2,
    "COMPRESSED_ARM_THUMB": IMAGE_F_COMPRESSED_ARM_THUMB,
}

#: The 16-byte magic that ends an image trailer when the maximum flash alignment is 8.
BOOT_MAGIC: Final = bytes.fromhex("77c295f360d2ef7f3552500f2cb67980")
#: The last 14 bytes of the trailer magic for a maximum alignment of 16 or 32; the first two
#: bytes are that alignment (u16).
BOOT_MAGIC_LARGE_ALIGN_SUFFIX: Final = bytes.fromhex("2de15d29410b8d77679c110f1f8a")
_MAGIC_SIZE = 16


class TlvType(enum.IntEnum):
    """TLV type ids (``IMAGE_TLV_*``)."""

    KEYHASH = 0x01
    PUBKEY = 0x02
    SHA256 = 0x10
    SHA384 = 0x11
    SHA512 = 0x12
    RSA2048_PSS = 0x20
    ECDSA_SIG = 0x22
    RSA3072_PSS = 0x23
    ED25519 = 0x24
    SIG_PURE = 0x25
    ENC_RSA2048 = 0x30
    ENC_KW = 0x31
    ENC_EC256 = 0x32
    ENC_X25519 = 0x33
    ENC_X25519_SHA512 = 0x34
    DEPENDENCY = 0x40
    SEC_CNT = 0x50
    BOOT_RECORD = 0x60
    DECOMP_SIZE = 0x70
    DECOMP_SHA = 0x71
    DECOMP_SIGNATURE = 0x72
    COMP_DEC_SIZE = 0x73
    UUID_VID = 0x74
    UUID_CID = 0x75


#: Hash TLV type -> hashlib name.
HASH_TLV_TYPES: Final = {TlvType.SHA256: "sha256", TlvType.SHA384: "sha384", TlvType.SHA512: "sha512"}
#: hashlib name -> digest size.
HASH_SIZES: Final = {"sha256": 32, "sha384": 48, "sha512": 64}
SIGNATURE_TLV_TYPES: Final = frozenset({TlvType.RSA2048_PSS, TlvType.ECDSA_SIG, TlvType.RSA3072_PSS, TlvType.ED25519})
ENC_TLV_TYPES: Final = frozenset(
    {TlvType.ENC_RSA2048, TlvType.ENC_KW, TlvType.ENC_EC256, TlvType.ENC_X25519, TlvType.ENC_X25519_SHA512}
)
#: The only TLVs allowed outside the protected area (MCUboot's ``MCUBOOT_USE_TLV_ALLOW_LIST``);
#: they are also the ones that can never be protected (they depend on the hash, or are key
#: material the hash cannot cover).
UNPROTECTED_ALLOWED: Final = frozenset(
    {TlvType.KEYHASH, TlvType.PUBKEY, TlvType.SIG_PURE, *HASH_TLV_TYPES, *SIGNATURE_TLV_TYPES, *ENC_TLV_TYPES}
)
#: TLVs that may appear at most once in an image.
_SINGLETONS: Final = frozenset(
    {
        TlvType.SEC_CNT,
        TlvType.BOOT_RECORD,
        TlvType.DECOMP_SIZE,
        TlvType.DECOMP_SHA,
        TlvType.DECOMP_SIGNATURE,
        TlvType.COMP_DEC_SIZE,
        TlvType.UUID_VID,
        TlvType.UUID_CID,
        TlvType.SIG_PURE,
    }
)
_FIXED_LENGTHS: Final[dict[int, tuple[int, ...]]] = {
    TlvType.SEC_CNT: (4,),
    TlvType.DEPENDENCY: (DEPENDENCY_SIZE,),
    TlvType.SHA256: (32,),
    TlvType.SHA384: (48,),
    TlvType.SHA512: (64,),
    TlvType.KEYHASH: (32, 48, 64),
    TlvType.DECOMP_SHA: (32, 48, 64),
    TlvType.ED25519: (64,),
    TlvType.RSA2048_PSS: (256,),
    TlvType.RSA3072_PSS: (384,),
    TlvType.SIG_PURE: (1,),
    TlvType.UUID_VID: (16,),
    TlvType.UUID_CID: (16,),
    TlvType.DECOMP_SIZE: (4,),
    TlvType.COMP_DEC_SIZE: (4,),
}
_NOT_EMPTY: Final = frozenset({*ENC_TLV_TYPES, TlvType.PUBKEY, TlvType.BOOT_RECORD})
#: An ECDSA signature TLV is DER: at most 128 bytes (MCUboot's buffer), at least a minimal SEQUENCE.
_ECDSA_SIG_LENGTHS: Final = (8, 128)

_U8, _U16, _U32 = 0xFF, 0xFFFF, 0xFFFFFFFF
_HEADER = struct.Struct("<IIHHIIBBHII")
_TLV_INFO = struct.Struct("<HH")
_TLV = struct.Struct("<HH")
_DEPENDENCY = struct.Struct("<BB2xBBHI")
_VERSION_RE = re.compile(r"(0|[1-9]\d{0,9})(?:\.(0|[1-9]\d{0,9})(?:\.(0|[1-9]\d{0,9})(?:\+(0|[1-9]\d{0,9}))?)?)?")
_SCAN_CHUNK = 1 << 20


def tlv_name(tlv_type: int) -> str:
    """``KEYHASH`` for 0x01, ``0x00a0`` for a type without a name."""
    try:
        return TlvType(tlv_type).name
    except ValueError:
        return f"0x{tlv_type:04x}"


def flag_names(flags: int) -> list[str]:
    """Names of the header flags set in ``flags`` (unknown bits as ``0x...``)."""
    names = [name for name, bit in FLAGS.items() if flags & bit]
    unknown = flags & ~sum(FLAGS.values())
    if unknown:
        names.append(f"0x{unknown:08x}")
    return names


def align_up(value: int, align: int) -> int:
    """``value`` rounded up to a multiple of ``align`` (a power of two)."""
    return (value + align - 1) & ~(align - 1)


def _check_range(name: str, value: object, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise ImageFormatError(f"{name} {value!r} is outside 0..{high}")


# --- value types -----------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class ImageVersion:
    """``major.minor.revision+build``: 0-255, 0-255, 0-65535, 0-4294967295."""

    major: int
    minor: int = 0
    revision: int = 0
    build: int = 0

    def __post_init__(self) -> None:
        _check_range("version major", self.major, _U8)
        _check_range("version minor", self.minor, _U8)
        _check_range("version revision", self.revision, _U16)
        _check_range("version build", self.build, _U32)

    @classmethod
    def parse(cls, text: str) -> ImageVersion:
        """Parse ``X.Y.Z[+B]`` (imgtool's grammar: later parts optional, no leading zeros)."""
        match = _VERSION_RE.fullmatch(text.strip())
        if match is None:
            raise ImageFormatError(f"version {text!r}: expected MAJOR.MINOR.REVISION[+BUILD], e.g. 1.2.3+4")
        return cls(*(int(part) if part is not None else 0 for part in match.groups()))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.revision}+{self.build}"

    def pack(self) -> bytes:
        return struct.pack("<BBHI", self.major, self.minor, self.revision, self.build)


@dataclass(frozen=True)
class Dependency:
    """A DEPENDENCY TLV: the image ``image_id`` must be at least ``min_version``."""

    image_id: int
    min_version: ImageVersion
    #: Byte 1 of the value (MCUboot's dependency flags; imgtool 2.5.0 writes 0).
    flags: int = 0

    def __post_init__(self) -> None:
        _check_range("dependency image id", self.image_id, _U8)
        _check_range("dependency flags", self.flags, _U8)

    def pack(self) -> bytes:
        v = self.min_version
        return _DEPENDENCY.pack(self.image_id, self.flags, v.major, v.minor, v.revision, v.build)

    @classmethod
    def unpack(cls, value: bytes) -> Dependency:
        if len(value) != DEPENDENCY_SIZE:
            raise ImageFormatError(f"DEPENDENCY TLV of {len(value)} bytes, expected {DEPENDENCY_SIZE}")
        image_id, flags, major, minor, revision, build = _DEPENDENCY.unpack(value)
        return cls(image_id, ImageVersion(major, minor, revision, build), flags)


@dataclass(frozen=True)
class ImageHeader:
    """The 32-byte image header. The magic is implied: a header with another cannot be built."""

    load_addr: int
    header_size: int
    protect_tlv_size: int
    img_size: int
    flags: int
    version: ImageVersion
    pad1: int = 0

    def __post_init__(self) -> None:
        _check_range("load address", self.load_addr, _U32)
        _check_range("header size", self.header_size, _U16)
        _check_range("protected TLV size", self.protect_tlv_size, _U16)
        _check_range("image size", self.img_size, _U32)
        _check_range("flags", self.flags, _U32)
        _check_range("pad1", self.pad1, _U32)
        if self.header_size < IMAGE_HEADER_SIZE:
            raise ImageFormatError(
                f"header size {self.header_size} is smaller than the {IMAGE_HEADER_SIZE}-byte header"
            )
        if self.protect_tlv_size and self.protect_tlv_size < TLV_INFO_SIZE:
            raise ImageFormatError(f"protected TLV size {self.protect_tlv_size} is smaller than its 4-byte info")

    @property
    def encrypted(self) -> bool:
        return bool(self.flags & (IMAGE_F_ENCRYPTED_AES128 | IMAGE_F_ENCRYPTED_AES256))

    @property
    def aes_key_bits(self) -> int | None:
        """128 or 256 for an encrypted image, else None."""
        if self.flags & IMAGE_F_ENCRYPTED_AES256:
            return 256
        if self.flags & IMAGE_F_ENCRYPTED_AES128:
            return 128
        return None

    def pack(self) -> bytes:
        v = self.version
        return _HEADER.pack(
            IMAGE_MAGIC,
            self.load_addr,
            self.header_size,
            self.protect_tlv_size,
            self.img_size,
            self.flags,
            v.major,
            v.minor,
            v.revision,
            v.build,
            self.pad1,
        )

    @classmethod
    def unpack(cls, data: bytes) -> ImageHeader:
        if len(data) < IMAGE_HEADER_SIZE:
            raise ImageFormatError(f"truncated: {len(data)} bytes, shorter than the {IMAGE_HEADER_SIZE}-byte header")
        magic, load, hdr, prot, size, flags, major, minor, rev, build, pad1 = _HEADER.unpack_from(data)
        if magic != IMAGE_MAGIC:
            raise ImageFormatError(
                f"bad header magic 0x{magic:08x} (expected 0x{IMAGE_MAGIC:08x}): not an MCUboot image"
            )
        return cls(load, hdr, prot, size, flags, ImageVersion(major, minor, rev, build), pad1)


@dataclass(frozen=True)
class Tlv:
    """One TLV: ``offset`` is where its 4-byte TLV header starts in the image."""

    type: int
    value: bytes = field(repr=False)
    offset: int
    protected: bool

    @property
    def name(self) -> str:
        return tlv_name(self.type)

    @property
    def size(self) -> int:
        """Bytes the TLV takes in the image (header + value)."""
        return TLV_HEADER_SIZE + len(self.value)

    @property
    def value_offset(self) -> int:
        return self.offset + TLV_HEADER_SIZE


@dataclass(frozen=True)
class Trailer:
    """The image trailer found at the end of a padded image (or of a slot)."""

    #: Where the bytes after the TLV area start (erased fill, then the trailer).
    offset: int
    #: The maximum flash alignment the magic encodes (8, 16 or 32).
    max_align: int
    #: The ``image_ok`` byte (0x01 when confirmed; the erased value when not).
    image_ok: int
    #: The value of the erased fill between the TLV area and the trailer (None if there is none).
    erased_value: int | None


@dataclass(frozen=True)
class ImageLayout:
    """Where everything of one image is. TLV content is UNVERIFIED until ``verify_image`` passes."""

    header: ImageHeader
    protected_tlvs: tuple[Tlv, ...]
    tlvs: tuple[Tlv, ...]
    #: The unprotected area's own total (info included).
    unprotected_size: int
    #: Length of the file or buffer parsed.
    file_size: int
    trailer: Trailer | None = None

    @property
    def payload_offset(self) -> int:
        return self.header.header_size

    @property
    def payload_size(self) -> int:
        return self.header.img_size

    @property
    def protected_offset(self) -> int:
        return self.header.header_size + self.header.img_size

    @property
    def protected_size(self) -> int:
        return self.header.protect_tlv_size

    @property
    def unprotected_offset(self) -> int:
        return self.protected_offset + self.protected_size

    @property
    def tlv_end(self) -> int:
        """One past the last byte of the TLV area: the end of the image proper."""
        return self.unprotected_offset + self.unprotected_size

    @property
    def hashed_size(self) -> int:
        """Header + payload + protected TLV area: what the hash covers, from offset 0."""
        return self.unprotected_offset

    @property
    def hash_range(self) -> tuple[int, int]:
        return (0, self.hashed_size)

    @property
    def all_tlvs(self) -> tuple[Tlv, ...]:
        return self.protected_tlvs + self.tlvs

    def find(self, tlv_type: int) -> tuple[Tlv, ...]:
        """Every TLV of ``tlv_type``, protected first, in image order."""
        return tuple(t for t in self.all_tlvs if t.type == tlv_type)

    @property
    def hash_tlv(self) -> Tlv | None:
        return next((t for t in self.tlvs if t.type in HASH_TLV_TYPES), None)

    @property
    def enc_tlv(self) -> Tlv | None:
        return next((t for t in self.tlvs if t.type in ENC_TLV_TYPES), None)

    @property
    def security_counter(self) -> int | None:
        """The SEC_CNT value (unverified), or None."""
        found = self.find(TlvType.SEC_CNT)
        return int.from_bytes(found[0].value, "little") if found else None

    @property
    def dependencies(self) -> tuple[Dependency, ...]:
        """The DEPENDENCY TLVs (unverified), in image order."""
        return tuple(Dependency.unpack(t.value) for t in self.find(TlvType.DEPENDENCY))


# --- encoding helpers (used to build images) ---------------------------------------------------------


def encode_tlv(tlv_type: int, value: bytes) -> bytes:
    """One TLV: type, length, value."""
    _check_range("TLV type", tlv_type, _U16)
    if len(value) > _U16:
        raise ImageFormatError(f"{tlv_name(tlv_type)} TLV of {len(value)} bytes exceeds 65535")
    return _TLV.pack(tlv_type, len(value)) + value


def encode_tlv_area(entries: Iterable[tuple[int, bytes]], *, protected: bool) -> bytes:
    """A TLV area with its info header; empty bytes when there are no entries (as imgtool)."""
    body = b"".join(encode_tlv(t, v) for t, v in entries)
    if not body:
        return b""
    total = TLV_INFO_SIZE + len(body)
    if total > _U16:
        raise ImageFormatError(f"TLV area of {total} bytes exceeds 65535")
    return _TLV_INFO.pack(TLV_PROT_INFO_MAGIC if protected else TLV_INFO_MAGIC, total) + body


def boot_magic(max_align: int) -> bytes:
    """The 16-byte trailer magic for ``max_align`` (8: the classic magic; 16, 32: the aligned one)."""
    if max_align not in VALID_MAX_ALIGNS:
        raise ImageFormatError(f"maximum alignment {max_align} is not one of {VALID_MAX_ALIGNS}")
    if max_align == 8:
        return BOOT_MAGIC
    return max_align.to_bytes(2, "little") + BOOT_MAGIC_LARGE_ALIGN_SUFFIX


def trailer_size(
    align: int,
    max_align: int,
    *,
    max_sectors: int = DEFAULT_MAX_SECTORS,
    encrypted: bool = False,
    overwrite_only: bool = False,
) -> int:
    """Bytes the image trailer takes at the end of a slot (imgtool's ``_trailer_size``).

    Swap status (``max_sectors`` x 3 x ``align``), two encryption key slots when encrypted,
    four flag slots (``max_align`` each) and the magic (rounded up to ``max_align``).
    """
    if align not in VALID_ALIGNS:
        raise ImageFormatError(f"alignment {align} is not one of {VALID_ALIGNS}")
    magic = align_up(_MAGIC_SIZE, max_align)
    boot_magic(max_align)  # validates max_align
    if overwrite_only:
        return max_align * 2 + magic
    size = max_sectors * 3 * align
    if encrypted:
        size += align_up(16, max_align) * 2
    return size + max_align * 4 + magic


def image_ok_offset(max_align: int) -> int:
    """Offset of the ``image_ok`` byte from the END of the slot (negative)."""
    return -(align_up(_MAGIC_SIZE, max_align) + max_align)


def trailer_bytes(size: int, max_align: int, *, confirm: bool, erased_val: int) -> bytes:
    """The last ``size`` bytes of a padded slot: erased, ``image_ok`` = 1 if ``confirm``, the magic."""
    magic = boot_magic(max_align)
    if size < -image_ok_offset(max_align):
        raise ImageFormatError(f"trailer of {size} bytes is too small for the flags and the magic")
    out = bytearray([erased_val]) * (size - len(magic)) + magic
    if confirm:
        out[image_ok_offset(max_align)] = 0x01
    return bytes(out)


# --- parsing ---------------------------------------------------------------------------------------

_Reader = Callable[[int, int], bytes]


def _tlv_checks(tlv_type: int, length: int, offset: int, *, protected: bool) -> None:
    def where() -> str:
        return f"{tlv_name(tlv_type)} TLV at offset 0x{offset:x}"

    if protected and tlv_type in UNPROTECTED_ALLOWED:
        raise ImageFormatError(f"{where()} stands in the protected area, where it cannot be")
    if not protected and tlv_type not in UNPROTECTED_ALLOWED:
        raise ImageFormatError(
            f"{where()} must be in the protected area (only hash, key, signature and encryption TLVs "
            "may be unprotected)"
        )
    allowed = _FIXED_LENGTHS.get(tlv_type)
    if allowed is not None and length not in allowed:
        raise ImageFormatError(f"{where()} has {length} bytes, expected {' or '.join(map(str, allowed))}")
    if tlv_type == TlvType.ECDSA_SIG and not _ECDSA_SIG_LENGTHS[0] <= length <= _ECDSA_SIG_LENGTHS[1]:
        raise ImageFormatError(
            f"{where()} has {length} bytes, outside {_ECDSA_SIG_LENGTHS[0]}..{_ECDSA_SIG_LENGTHS[1]}"
        )
    if length == 0 and tlv_type in _NOT_EMPTY:
        raise ImageFormatError(f"{where()} is empty")


def _walk(read: _Reader, start: int, total: int, *, protected: bool) -> tuple[Tlv, ...]:
    """The TLVs of one area of ``total`` bytes (info included) that begins at ``start``."""
    end = start + total
    area = read(start + TLV_INFO_SIZE, total - TLV_INFO_SIZE)
    found: list[Tlv] = []
    pos = 0
    while pos < len(area):
        offset = start + TLV_INFO_SIZE + pos
        if len(area) - pos < TLV_HEADER_SIZE:
            raise ImageFormatError(f"{len(area) - pos} stray bytes at offset 0x{offset:x} end the TLV area")
        tlv_type, length = _TLV.unpack_from(area, pos)
        if pos + TLV_HEADER_SIZE + length > len(area):
            raise ImageFormatError(
                f"{tlv_name(tlv_type)} TLV at offset 0x{offset:x} ({length} bytes) overruns its area, "
                f"which ends at 0x{end:x}"
            )
        _tlv_checks(tlv_type, length, offset, protected=protected)
        value = bytes(area[pos + TLV_HEADER_SIZE : pos + TLV_HEADER_SIZE + length])
        found.append(Tlv(tlv_type, value, offset, protected))
        pos += TLV_HEADER_SIZE + length
    return tuple(found)


def _check_duplicates(tlvs: tuple[Tlv, ...]) -> None:
    seen: set[int] = set()
    hashes = [t for t in tlvs if t.type in HASH_TLV_TYPES]
    encs = [t for t in tlvs if t.type in ENC_TLV_TYPES]
    for group, what in ((hashes, "hash"), (encs, "encryption key")):
        if len(group) > 1:
            raise ImageFormatError(f"{len(group)} {what} TLVs (at 0x{group[1].offset:x}); an image has one at most")
    for tlv in tlvs:
        if tlv.type in _SINGLETONS:
            if tlv.type in seen:
                raise ImageFormatError(f"duplicate {tlv.name} TLV at offset 0x{tlv.offset:x}")
            seen.add(tlv.type)


def _read_info(read: _Reader, offset: int, size: int, what: str) -> tuple[int, int]:
    if offset + TLV_INFO_SIZE > size:
        raise ImageFormatError(
            f"truncated: the {what} at offset 0x{offset:x} lies beyond the end of the image ({size} bytes)"
        )
    magic, total = _TLV_INFO.unpack(read(offset, TLV_INFO_SIZE))
    return magic, total


def _parse_areas(read: _Reader, header: ImageHeader, size: int) -> tuple[tuple[Tlv, ...], tuple[Tlv, ...], int]:
    off = header.header_size + header.img_size
    if off > size:
        raise ImageFormatError(
            f"truncated: header size 0x{header.header_size:x} + image size 0x{header.img_size:x} "
            f"exceed the {size} bytes there are"
        )
    protected: tuple[Tlv, ...] = ()
    magic, total = _read_info(read, off, size, "TLV area")
    if magic == TLV_PROT_INFO_MAGIC:
        if header.protect_tlv_size == 0:
            raise ImageFormatError(f"protected TLV area at 0x{off:x}, but the header declares none")
        if total != header.protect_tlv_size:
            raise ImageFormatError(f"protected TLV area says {total} bytes, the header says {header.protect_tlv_size}")
        if off + total > size:
            raise ImageFormatError(f"truncated: the protected TLV area ends at 0x{off + total:x}, beyond the image")
        protected = _walk(read, off, total, protected=True)
        off += total
        magic, total = _read_info(read, off, size, "TLV area")
    elif header.protect_tlv_size:
        raise ImageFormatError(
            f"the header declares {header.protect_tlv_size} bytes of protected TLVs, "
            f"but offset 0x{off:x} holds magic 0x{magic:04x}, not 0x{TLV_PROT_INFO_MAGIC:04x}"
        )
    if magic != TLV_INFO_MAGIC:
        raise ImageFormatError(
            f"bad TLV info magic 0x{magic:04x} at offset 0x{off:x} (expected 0x{TLV_INFO_MAGIC:04x})"
        )
    if total < TLV_INFO_SIZE:
        raise ImageFormatError(f"TLV area at 0x{off:x} says {total} bytes, less than its own info")
    if off + total > size:
        raise ImageFormatError(f"truncated: the TLV area ends at 0x{off + total:x}, beyond the image ({size} bytes)")
    return protected, _walk(read, off, total, protected=False), total


def _find_trailer(read: _Reader, start: int, size: int) -> tuple[int, bytes] | None:
    """(max_align, magic) if the last 16 bytes after ``start`` are a trailer magic."""
    if size - start < _MAGIC_SIZE:
        return None
    last = read(size - _MAGIC_SIZE, _MAGIC_SIZE)
    if last == BOOT_MAGIC:
        return 8, last
    if last[2:] == BOOT_MAGIC_LARGE_ALIGN_SUFFIX:
        max_align = int.from_bytes(last[:2], "little")
        if max_align in VALID_MAX_ALIGNS[1:]:
            return max_align, last
    return None


def _check_fill(read: _Reader, start: int, end: int) -> int | None:
    """The erased value filling [start, end) (0xff or 0x00), None if empty; refuse anything else."""
    if start >= end:
        return None
    first = read(start, 1)[0]
    if first not in (0x00, 0xFF):
        raise ImageFormatError(f"unexpected byte 0x{first:02x} at offset 0x{start:x} after the TLV area")
    block = bytes([first]) * min(_SCAN_CHUNK, end - start)
    pos = start
    while pos < end:
        n = min(_SCAN_CHUNK, end - pos)
        chunk = read(pos, n)
        if chunk != block[:n]:
            bad = next(i for i, b in enumerate(chunk) if b != first)
            raise ImageFormatError(
                f"unexpected byte 0x{chunk[bad]:02x} at offset 0x{pos + bad:x} in the erased fill after the TLV area"
            )
        pos += n
    return first


def _parse_tail(read: _Reader, start: int, size: int, *, strict: bool) -> Trailer | None:
    found = _find_trailer(read, start, size)
    if found is None:
        if strict and size > start:
            raise ImageFormatError(
                f"{size - start} trailing bytes after the TLV area (which ends at 0x{start:x}) "
                "are neither an image trailer nor nothing"
            )
        return None
    max_align, _ = found
    flags_start = size + image_ok_offset(max_align) - 3 * max_align
    if flags_start < start:
        if strict:
            raise ImageFormatError(f"the {size - start} bytes after the TLV area are too few for an image trailer")
        return None
    erased = _check_fill(read, start, flags_start) if strict else None
    image_ok = read(size + image_ok_offset(max_align), 1)[0]
    return Trailer(offset=start, max_align=max_align, image_ok=image_ok, erased_value=erased)


def _parse(read: _Reader, size: int, *, strict_tail: bool) -> ImageLayout:
    if size == 0:
        raise ImageFormatError("empty: 0 bytes")
    header = ImageHeader.unpack(read(0, min(size, IMAGE_HEADER_SIZE)))
    if header.header_size > size:
        raise ImageFormatError(
            f"truncated: the header size 0x{header.header_size:x} exceeds the {size} bytes there are"
        )
    if header.flags & IMAGE_F_ENCRYPTED_AES128 and header.flags & IMAGE_F_ENCRYPTED_AES256:
        raise ImageFormatError("the header flags say both AES-128 and AES-256 encryption")
    protected, tlvs, unprotected_size = _parse_areas(read, header, size)
    _check_duplicates(protected + tlvs)
    if header.encrypted and not any(t.type in ENC_TLV_TYPES for t in tlvs):
        raise ImageFormatError("the header flags say encrypted, but there is no encryption key TLV")
    tlv_end = header.header_size + header.img_size + header.protect_tlv_size + unprotected_size
    trailer = _parse_tail(read, tlv_end, size, strict=strict_tail)
    return ImageLayout(header, protected, tlvs, unprotected_size, size, trailer)


def parse_image(data: bytes | bytearray | memoryview, *, strict_tail: bool = True) -> ImageLayout:
    """Parse an image held in memory; raise :class:`ImageFormatError` naming the first fault.

    Every size and offset is bounded by the buffer; the TLV areas must be exactly consistent
    with the header. With ``strict_tail`` (the default, for image files), what follows the TLV
    area must be nothing, or erased fill (all 0xff or all 0x00) ending in an image trailer
    (``--pad``); without it (a slot read from flash), the tail is not examined.
    """
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else data

    def read(offset: int, length: int) -> bytes:
        return bytes(view[offset : offset + length])

    return _parse(read, len(view), strict_tail=strict_tail)


def parse_image_stream(stream: BinaryIO, *, strict_tail: bool = True) -> ImageLayout:
    """Parse an image from a seekable binary stream, reading the header, TLV areas and tail only.

    The payload is never read, so memory stays flat whatever the image size. The stream's
    position is undefined afterwards.
    """
    size = stream.seek(0, 2)

    def read(offset: int, length: int) -> bytes:
        stream.seek(offset)
        data = stream.read(length)
        if len(data) != length:  # the file shrank under us
            raise ImageFormatError(f"truncated: cannot read {length} bytes at offset 0x{offset:x}")
        return data

    return _parse(read, size, strict_tail=strict_tail)
