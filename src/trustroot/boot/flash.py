"""A simulated NOR flash with an operation counter and injectable power cuts.

Geometry: a list of erase sectors (sizes may differ: uniform and non-uniform layouts), a write
alignment (the *unit*: 1, 2, 4, 8, 16 or 32 bytes) and the value of erased memory (0xff or 0x00)::

    address 0                                                              size
    ├── sector 0 ──┼── sector 1 ──┼──── sector 2 ────┼─ … ─┼── sector n-1 ──┤
    │u│u│u│u│u│u│u│ …                                        units of `align` bytes

Rules real flash imposes, enforced here (breaking one raises :class:`FlashError`, a bug of the
caller, never a simulated fault):

- erase works on whole sectors and sets every byte to the erased value;
- a write starts and ends on a unit boundary and may only program units that are fully erased
  (no second write to a unit without an erase in between);
- every access lies inside the device.

Power-cut model (the op counter). Each erase of one sector is **one operation**; a write of
``n`` units is **n operations**, one per unit, programmed in ascending address order. Reads are
free. :meth:`Flash.cut_power_after` arms a cut: after that many further operations the next one
raises :class:`PowerCut` *before it takes effect*, and the device stays dark (every access raises
``PowerCut``) until :meth:`Flash.power_on`. Hence:

- an interrupted erase leaves its sector exactly as it was (the erase did not start);
- an interrupted write is *torn*: units ``[0, j)`` are programmed, units ``[j, n)`` still erased,
  for every ``j`` in ``0..n-1``.

Why this is conservative: counting whole write calls (as MCUboot's simulator does) reaches only
"nothing written" or "all written"; counting units reaches every prefix of every write as well,
so every multi-unit field (a 16-byte trailer magic at alignment 4, a copied sector) can be seen
half-written by the next boot. What the model does not cover: a unit left half-programmed (bits
between erased and target) and a half-erased sector; the boot logic assumes, as MCUboot does, that
one unit and one sector erase are atomic, which is what the write/erase granularity of NOR flash
provides in practice.

A fast path keeps whole-sector copies cheap: a write that is not interrupted programs all its
units with one slice assignment and adds ``n`` to the counter.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

from trustroot.boot.errors import FlashError

__all__ = ["ALIGNMENTS", "Flash", "FlashArea", "FlashGeometry", "PowerCut"]

#: Write alignments the model accepts (MCUboot supports 1 to 32 bytes).
ALIGNMENTS = (1, 2, 4, 8, 16, 32)


class PowerCut(BaseException):
    """The simulated power went away during a flash operation.

    A :class:`BaseException` on purpose: code under test must not be able to catch it with
    ``except Exception`` (the boot manager fails closed on any verifier exception).
    """

    def __init__(self, op: int) -> None:
        super().__init__(f"power cut at flash operation {op}")
        #: 1-based number of the operation that did not happen.
        self.op = op


@dataclass(frozen=True)
class FlashGeometry:
    """Sector sizes (in address order), write alignment and erased value of one flash device."""

    sectors: tuple[int, ...]
    align: int = 8
    erased_value: int = 0xFF

    def __post_init__(self) -> None:
        if not self.sectors:
            raise FlashError("a flash device needs at least one sector")
        if self.align not in ALIGNMENTS:
            raise FlashError(f"write alignment {self.align} is not one of {ALIGNMENTS}")
        if self.erased_value not in (0x00, 0xFF):
            raise FlashError(f"erased value 0x{self.erased_value:02x} is neither 0x00 nor 0xff")
        for index, size in enumerate(self.sectors):
            if size <= 0 or size % self.align:
                raise FlashError(f"sector {index} size {size} is not a positive multiple of align {self.align}")

    @classmethod
    def uniform(cls, sector_size: int, count: int, *, align: int = 8, erased_value: int = 0xFF) -> FlashGeometry:
        """``count`` sectors of ``sector_size`` bytes."""
        return cls((sector_size,) * count, align=align, erased_value=erased_value)

    @property
    def size(self) -> int:
        return sum(self.sectors)

    @property
    def sector_offsets(self) -> tuple[int, ...]:
        """Start address of every sector."""
        return (0, *accumulate(self.sectors))[:-1]

    def sector_at(self, address: int) -> int:
        """Index of the sector holding ``address``."""
        if not 0 <= address < self.size:
            raise FlashError(f"address 0x{address:x} is outside the device (size 0x{self.size:x})")
        return bisect.bisect_right(self.sector_offsets, address) - 1


class Flash:
    """One simulated flash device; see the module docstring for the rules and the cut model."""

    def __init__(self, geometry: FlashGeometry) -> None:
        self._geometry = geometry
        self._offsets = geometry.sector_offsets
        self._erased = bytes([geometry.erased_value])
        self._data = bytearray(self._erased * geometry.size)
        self._ops = 0
        self._cut_after: int | None = None
        self._dark = False

    @property
    def geometry(self) -> FlashGeometry:
        return self._geometry

    # -- the op counter and the power -------------------------------------------------------

    @property
    def ops(self) -> int:
        """Operations completed since the device was made (or :meth:`reset_ops`)."""
        return self._ops

    def reset_ops(self) -> None:
        self._ops = 0

    def cut_power_after(self, operations: int) -> None:
        """Let ``operations`` more operations complete, then cut the power at the next one."""
        if operations < 0:
            raise FlashError("cannot cut power after a negative number of operations")
        self._cut_after = self._ops + operations

    def cancel_power_cut(self) -> None:
        self._cut_after = None

    @property
    def powered(self) -> bool:
        return not self._dark

    def power_on(self) -> None:
        """Restore power after a cut (the contents are what the cut left); disarms any cut."""
        self._dark = False
        self._cut_after = None

    def _check_power(self) -> None:
        if self._dark:
            raise PowerCut(self._ops + 1)

    def _allowance(self) -> int | None:
        """How many operations may still complete before the armed cut, or None if unarmed."""
        if self._cut_after is None:
            return None
        return max(self._cut_after - self._ops, 0)

    def _cut(self) -> PowerCut:
        self._dark = True
        self._cut_after = None
        return PowerCut(self._ops + 1)

    # -- snapshots (a programmer's view: no operations counted) -----------------------------

    def snapshot(self) -> bytes:
        """The whole contents, as a device programmer would dump them."""
        return bytes(self._data)

    def restore(self, contents: bytes) -> None:
        """Load ``contents`` as a programmer would (no operations counted, power restored)."""
        if len(contents) != len(self._data):
            raise FlashError(f"snapshot of {len(contents)} bytes for a device of {len(self._data)}")
        self._data[:] = contents
        self.power_on()

    # -- reads -------------------------------------------------------------------------------

    def _check_range(self, address: int, length: int) -> None:
        if address < 0 or length < 0 or address + length > len(self._data):
            raise FlashError(
                f"access of {length} bytes at 0x{address:x} is outside the device (size 0x{len(self._data):x})"
            )

    def read(self, address: int, length: int) -> bytes:
        self._check_power()
        self._check_range(address, length)
        return bytes(self._data[address : address + length])

    def is_erased(self, address: int, length: int) -> bool:
        """Whether every byte of the range holds the erased value."""
        self._check_power()
        self._check_range(address, length)
        return self._data.count(self._erased, address, address + length) == length

    # -- erase -------------------------------------------------------------------------------

    def erase_sector(self, index: int) -> None:
        """Erase one sector: one operation, atomic under the cut model."""
        self._check_power()
        if not 0 <= index < len(self._offsets):
            raise FlashError(f"no sector {index} (the device has {len(self._offsets)})")
        allowance = self._allowance()
        if allowance == 0:
            raise self._cut()
        start = self._offsets[index]
        size = self._geometry.sectors[index]
        self._data[start : start + size] = self._erased * size
        self._ops += 1

    def erase(self, address: int, length: int) -> None:
        """Erase whole sectors covering exactly ``[address, address + length)``, in address order."""
        self._check_power()
        self._check_range(address, length)
        if length == 0:
            return
        first = self._geometry.sector_at(address)
        last = self._geometry.sector_at(address + length - 1)
        end = self._offsets[last] + self._geometry.sectors[last]
        if self._offsets[first] != address or end != address + length:
            raise FlashError(f"erase of 0x{length:x} bytes at 0x{address:x} does not cover whole sectors")
        for index in range(first, last + 1):
            self.erase_sector(index)

    # -- write -------------------------------------------------------------------------------

    def _unit_erased(self, address: int) -> bool:
        align = self._geometry.align
        return self._data.count(self._erased, address, address + align) == align

    def write(self, address: int, data: bytes) -> None:
        """Program ``data`` (whole units, onto erased units only); one operation per unit."""
        self._check_power()
        align = self._geometry.align
        length = len(data)
        self._check_range(address, length)
        if address % align or length % align:
            raise FlashError(f"write of {length} bytes at 0x{address:x} is not aligned to {align} bytes")
        if length == 0:
            return
        if self._data.count(self._erased, address, address + length) != length:
            unit = next(u for u in range(address, address + length, align) if not self._unit_erased(u))
            raise FlashError(f"write to unerased flash at 0x{unit:x} (erase the sector first)")
        units = length // align
        allowance = self._allowance()
        if allowance is not None and allowance < units:
            done = allowance * align
            self._data[address : address + done] = data[:done]
            self._ops += allowance
            raise self._cut()
        self._data[address : address + length] = data
        self._ops += units


class FlashArea:
    """A run of whole sectors of one device (a slot, a counter area), addressed from 0."""

    def __init__(self, flash: Flash, first_sector: int, sector_count: int, *, name: str = "area") -> None:
        geometry = flash.geometry
        if sector_count <= 0 or first_sector < 0 or first_sector + sector_count > len(geometry.sectors):
            raise FlashError(
                f"{name}: sectors {first_sector}..{first_sector + sector_count - 1} are not all on the device"
            )
        self.flash = flash
        self.name = name
        self.first_sector = first_sector
        self.sector_sizes: tuple[int, ...] = geometry.sectors[first_sector : first_sector + sector_count]
        self.base = geometry.sector_offsets[first_sector]
        self.size = sum(self.sector_sizes)
        #: Offset of every sector from the start of the area.
        self.sector_offsets: tuple[int, ...] = (0, *accumulate(self.sector_sizes))[:-1]

    @property
    def align(self) -> int:
        return self.flash.geometry.align

    @property
    def erased_value(self) -> int:
        return self.flash.geometry.erased_value

    @property
    def sector_count(self) -> int:
        return len(self.sector_sizes)

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise FlashError(f"{self.name}: access of {length} bytes at 0x{offset:x} is outside the area")

    def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        return self.flash.read(self.base + offset, length)

    def is_erased(self, offset: int, length: int) -> bool:
        self._check(offset, length)
        return self.flash.is_erased(self.base + offset, length)

    def write(self, offset: int, data: bytes) -> None:
        self._check(offset, len(data))
        self.flash.write(self.base + offset, data)

    def erase_sector(self, index: int) -> None:
        if not 0 <= index < len(self.sector_sizes):
            raise FlashError(f"{self.name}: no sector {index}")
        self.flash.erase_sector(self.first_sector + index)

    def erase(self, offset: int, length: int) -> None:
        self._check(offset, length)
        self.flash.erase(self.base + offset, length)

    def erase_all(self) -> None:
        self.erase(0, self.size)

    def sector_index(self, offset: int) -> int:
        """Index (in the area) of the sector holding ``offset``."""
        self._check(offset, 1)
        return bisect.bisect_right(self.sector_offsets, offset) - 1

    def sectors_from(self, offset: int) -> Sequence[int]:
        """Indices of the sectors from the one holding ``offset`` to the end of the area."""
        return range(self.sector_index(offset), len(self.sector_sizes))
