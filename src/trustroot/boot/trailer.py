"""The image trailer at the end of each slot, laid out per write alignment as MCUboot does.

Offsets count back from the end of the slot. ``align`` is the flash write alignment
(MCUboot's *min-write-size*); ``max_align`` is MCUboot's ``BOOT_MAX_ALIGN``: 8, or the write
alignment when that is larger (MCUboot allows 8 to 32 for swap modes). No encryption keys
(this model does not decrypt images)::

    status_off ──► ┌──────────────────────────────────────────────────────────────┐
                   │ swap status: max_img_sectors x 3 entries x align bytes       │
                   │   [move idx 1..max]        1 entry per sector  (op MOVE)     │
                   │   [swap idx 1..max]        2 entries per sector (op SWAP)    │
                   │   each entry: 1 byte = state (1 or 2), then erased padding   │
                   ├──────────────────────────────────────────────────────────────┤
                   │ swap size   u32 little-endian, padded to max_align           │
                   │ swap info   1 byte: image number << 4 | swap type, padded    │
                   │ copy done   1 byte: 0x01 = set, erased = unset, padded       │
                   │ image ok    1 byte: 0x01 = set, erased = unset, padded       │
                   │ [erased padding to max_align]                                │
                   │ MAGIC       16 bytes (the last 16 bytes of the slot)         │
    slot end  ──►  └──────────────────────────────────────────────────────────────┘

MAGIC is ``77 c2 95 f3 60 d2 ef 7f 35 52 50 0f 2c b6 79 80`` when ``max_align`` is 8, else the
alignment as a little-endian u16 followed by ``2d e1 5d 29 41 0b 8d 77 67 9c 11 0f 1f 8a``.

Decoding (as bootutil does): a field that reads all-erased is *unset*; a flag that reads 0x01
is *set* and anything else *bad*; a magic is *good* only when it matches exactly, else *bad*
(a torn or foreign magic). A swap type outside 1..4 reads as NONE.

The magic is the commit record of every trailer this package writes: it is written last, so a
cut before it leaves a trailer that does not count (unset or bad), never a half-valid one.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

from trustroot.boot.errors import BootError
from trustroot.boot.flash import FlashArea

__all__ = [
    "FLAG_SET",
    "MAGIC_SIZE",
    "STATUS_STATES",
    "Flag",
    "Magic",
    "StatusOp",
    "StatusPosition",
    "SwapType",
    "TrailerLayout",
    "TrailerState",
    "read_state",
    "read_status",
    "scramble",
    "write_flag",
    "write_magic",
    "write_status",
    "write_swap_info",
    "write_swap_size",
]

MAGIC_SIZE = 16
_MAGIC_ALIGN8 = bytes.fromhex("77c295f360d2ef7f3552500f2cb67980")
_MAGIC_PATTERN = bytes.fromhex("2de15d29410b8d77679c110f1f8a")
#: The value a set flag holds (MCUboot's ``BOOT_FLAG_SET``).
FLAG_SET = 0x01
#: Status entries per sector index for swap-using-move: one for the move, two for the swap.
STATUS_STATES = 3
_MOVE_STATES = 1
_SWAP_STATES = 2


class Magic(enum.Enum):
    GOOD = "good"
    UNSET = "unset"
    BAD = "bad"


class Flag(enum.Enum):
    SET = "set"
    UNSET = "unset"
    BAD = "bad"


class SwapType(enum.IntEnum):
    """MCUboot's swap types (the low nibble of the swap-info byte)."""

    NONE = 1
    TEST = 2
    PERM = 3
    REVERT = 4
    FAIL = 5
    PANIC = 0xFF


class StatusOp(enum.IntEnum):
    """Phase of a swap-using-move operation recorded in the status entries."""

    MOVE = 1
    SWAP = 2


@dataclass(frozen=True)
class StatusPosition:
    """Where a swap resumes: ``op`` and the 1-based sector index and state *still to do*."""

    op: StatusOp = StatusOp.MOVE
    idx: int = 1
    state: int = 1

    @property
    def is_reset(self) -> bool:
        """No status entry written: nothing to resume."""
        return self.op is StatusOp.MOVE and self.idx == 1 and self.state == 1


def _align_up(value: int, align: int) -> int:
    return -(-value // align) * align


def _align_down(value: int, align: int) -> int:
    return value // align * align


@dataclass(frozen=True)
class TrailerLayout:
    """Offsets of the trailer fields in a slot of ``area_size`` bytes (computed once)."""

    area_size: int
    align: int
    max_img_sectors: int
    #: MCUboot's BOOT_MAX_ALIGN: the size of one trailer field.
    max_align: int = field(init=False, compare=False)
    magic: bytes = field(init=False, compare=False, repr=False)
    magic_align_size: int = field(init=False, compare=False, repr=False)
    magic_off: int = field(init=False, compare=False, repr=False)
    image_ok_off: int = field(init=False, compare=False, repr=False)
    copy_done_off: int = field(init=False, compare=False, repr=False)
    swap_info_off: int = field(init=False, compare=False, repr=False)
    swap_size_off: int = field(init=False, compare=False, repr=False)
    #: Bytes of the trailer after the status entries.
    info_size: int = field(init=False, compare=False, repr=False)
    status_entries: int = field(init=False, compare=False, repr=False)
    status_size: int = field(init=False, compare=False, repr=False)
    trailer_size: int = field(init=False, compare=False, repr=False)
    status_off: int = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_img_sectors <= 0:
            raise BootError("max_img_sectors must be positive")
        max_align = max(8, self.align)
        magic_off = self.area_size - MAGIC_SIZE
        image_ok_off = _align_down(magic_off, max_align) - max_align
        magic_align_size = _align_up(MAGIC_SIZE, max_align)
        status_entries = self.max_img_sectors * STATUS_STATES
        info_size = 4 * max_align + magic_align_size
        trailer_size = status_entries * self.align + info_size
        values = {
            "max_align": max_align,
            "magic": _MAGIC_ALIGN8 if max_align == 8 else struct.pack("<H", max_align) + _MAGIC_PATTERN,
            "magic_align_size": magic_align_size,
            "magic_off": magic_off,
            "image_ok_off": image_ok_off,
            "copy_done_off": image_ok_off - max_align,
            "swap_info_off": image_ok_off - 2 * max_align,
            "swap_size_off": image_ok_off - 3 * max_align,
            "info_size": info_size,
            "status_entries": status_entries,
            "status_size": status_entries * self.align,
            "trailer_size": trailer_size,
            "status_off": self.area_size - trailer_size,
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)
        if trailer_size > self.area_size:
            raise BootError(
                f"the image trailer ({trailer_size} bytes) does not fit in a slot of {self.area_size} bytes"
            )

    def status_entry_off(self, position: StatusPosition) -> int:
        """Offset of the entry that records ``position`` as done."""
        if not 1 <= position.idx <= self.max_img_sectors:
            raise BootError(f"status index {position.idx} outside 1..{self.max_img_sectors}")
        if position.op is StatusOp.MOVE:
            return self.status_off + (position.idx - 1) * self.align
        base = self.status_off + self.max_img_sectors * _MOVE_STATES * self.align
        return base + ((position.idx - 1) * _SWAP_STATES + (position.state - 1)) * self.align

    def fields(self) -> list[tuple[str, int, int]]:
        """``(name, offset, size)`` of every field, in address order (for docs and reports)."""
        return [
            ("swap status", self.status_off, self.status_size),
            ("swap size", self.swap_size_off, 4),
            ("swap info", self.swap_info_off, 1),
            ("copy done", self.copy_done_off, 1),
            ("image ok", self.image_ok_off, 1),
            ("magic", self.magic_off, MAGIC_SIZE),
        ]


@dataclass(frozen=True)
class TrailerState:
    """The decoded trailer of one slot."""

    magic: Magic
    swap_type: SwapType
    image_num: int
    copy_done: Flag
    image_ok: Flag
    #: The swap size field, or None while erased.
    swap_size: int | None

    def __str__(self) -> str:
        return (
            f"magic={self.magic.value} swap_type={self.swap_type.name} copy_done={self.copy_done.value} "
            f"image_ok={self.image_ok.value} swap_size={self.swap_size}"
        )


def _flag(value: int, erased: int) -> Flag:
    if value == erased:
        return Flag.UNSET
    return Flag.SET if value == FLAG_SET else Flag.BAD


def read_state(area: FlashArea, layout: TrailerLayout) -> TrailerState:
    """Decode the trailer of ``area`` (works on any contents, including after a power cut)."""
    base = layout.swap_size_off
    info = area.read(base, area.size - base)
    erased = area.erased_value
    magic_bytes = info[layout.magic_off - base :]
    if magic_bytes == bytes([erased]) * MAGIC_SIZE:
        magic = Magic.UNSET
    else:
        magic = Magic.GOOD if magic_bytes == layout.magic else Magic.BAD
    swap_type, image_num = SwapType.NONE, 0
    swap_info = info[layout.swap_info_off - base]
    if swap_info != erased and SwapType.TEST <= swap_info & 0x0F <= SwapType.REVERT:
        swap_type, image_num = SwapType(swap_info & 0x0F), swap_info >> 4
    size_bytes = info[:4]
    swap_size = None if size_bytes == bytes([erased]) * 4 else int(struct.unpack("<I", size_bytes)[0])
    return TrailerState(
        magic=magic,
        swap_type=swap_type,
        image_num=image_num,
        copy_done=_flag(info[layout.copy_done_off - base], erased),
        image_ok=_flag(info[layout.image_ok_off - base], erased),
        swap_size=swap_size,
    )


def _write_field(area: FlashArea, offset: int, value: bytes) -> None:
    """Write ``value`` padded with the erased value to whole units (bootutil's boot_write_trailer)."""
    length = _align_up(len(value), area.align)
    area.write(offset, value + bytes([area.erased_value]) * (length - len(value)))


def write_magic(area: FlashArea, layout: TrailerLayout) -> None:
    """Write the magic (the trailer's commit record), padded in front to ``max_align``."""
    block = layout.magic_align_size
    pad = bytes([area.erased_value]) * (block - MAGIC_SIZE)
    area.write(area.size - block, pad + layout.magic)


def write_flag(area: FlashArea, layout: TrailerLayout, name: str) -> None:
    """Set ``image_ok`` or ``copy_done``."""
    offsets = {"image_ok": layout.image_ok_off, "copy_done": layout.copy_done_off}
    if name not in offsets:
        raise BootError(f"no trailer flag {name!r}")
    _write_field(area, offsets[name], bytes([FLAG_SET]))


def write_swap_info(area: FlashArea, layout: TrailerLayout, swap_type: SwapType, image_num: int = 0) -> None:
    if not 0 <= image_num < 0x0F or not SwapType.TEST <= swap_type <= SwapType.REVERT:
        raise BootError(f"cannot record swap type {swap_type!r} for image {image_num}")
    _write_field(area, layout.swap_info_off, bytes([image_num << 4 | swap_type]))


def write_swap_size(area: FlashArea, layout: TrailerLayout, size: int) -> None:
    _write_field(area, layout.swap_size_off, struct.pack("<I", size))


def write_status(area: FlashArea, layout: TrailerLayout, position: StatusPosition) -> None:
    """Record ``position`` as done: one unit whose first byte is the state."""
    _write_field(area, layout.status_entry_off(position), bytes([position.state]))


def read_status(area: FlashArea, layout: TrailerLayout) -> StatusPosition:
    """Where an interrupted swap resumes: after the last status entry written (bootutil's rule).

    As bootutil does, only the first byte of each entry is looked at.
    """
    entries = area.read(layout.status_off, layout.status_size)[:: layout.align]
    found = len(entries.rstrip(bytes([area.erased_value])))
    if found == 0:
        return StatusPosition()
    move_entries = layout.max_img_sectors * _MOVE_STATES
    if found < move_entries:
        return StatusPosition(StatusOp.MOVE, found // _MOVE_STATES + 1, found % _MOVE_STATES + 1)
    rest = found - move_entries
    return StatusPosition(StatusOp.SWAP, rest // _SWAP_STATES + 1, rest % _SWAP_STATES + 1)


def scramble(area: FlashArea, layout: TrailerLayout) -> None:
    """Erase every sector that holds a byte of the trailer (bootutil's trailer scramble)."""
    for index in area.sectors_from(layout.status_off):
        area.erase_sector(index)
