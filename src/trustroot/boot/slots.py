"""Where the slots are: the primary slot (the image that runs), the secondary slot (the candidate
or the previous image) and, optionally, an area for the security counter, on one flash device.

The default layout for swap-using-move (what :meth:`BootLayout.uniform` builds)::

    sector:   0     1     …     n-1    n        n+1   …   2n     2n+1
            ├─────┴─────┴─ … ─┴──────┼──────┼─────┴─ … ─┴──────┼────────┤
            │ primary slot (n+1 sectors)    │ secondary slot    │counter │
            │ image …  │ spare │ trailer    │ image … │ trailer │ (OTP-  │
            │          │ (the move sector)  │         │         │  like) │

Swap-using-move shifts the primary image up by one sector before swapping, so the primary slot
needs one sector more than the largest image plus its trailer sectors; MCUboot accepts a primary
slot of the same size as the secondary or one sector larger, with identical, uniform sectors.
Overwrite mode copies the secondary over the primary and accepts any sector layout (non-uniform,
and different in the two slots).

The largest image a slot pair accepts::

    swap (move):  (primary sectors - 1 - trailer sectors) x sector size,
                  and no more than the secondary slot minus its trailer sectors
    overwrite:    each slot's size minus the sectors holding its trailer
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from trustroot.boot.errors import BootError
from trustroot.boot.flash import Flash, FlashArea, FlashGeometry
from trustroot.boot.trailer import TrailerLayout

__all__ = ["AreaSpec", "BootLayout", "Slots", "UpgradeMode"]

UpgradeMode = Literal["swap", "overwrite"]


@dataclass(frozen=True)
class AreaSpec:
    """A run of ``count`` sectors starting at sector ``first``."""

    first: int
    count: int

    @property
    def sectors(self) -> range:
        return range(self.first, self.first + self.count)


@dataclass(frozen=True)
class BootLayout:
    """The flash device and where the two slots (and the counter area) lie on it."""

    geometry: FlashGeometry
    primary: AreaSpec
    secondary: AreaSpec
    counter: AreaSpec | None = None
    #: MCUboot's BOOT_MAX_IMG_SECTORS (status entries); by default the primary slot's sector count.
    max_img_sectors: int = field(default=0)
    _trailers: dict[str, TrailerLayout] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.geometry.sectors)
        areas = [("primary", self.primary), ("secondary", self.secondary)]
        if self.counter is not None:
            areas.append(("counter", self.counter))
        used: set[int] = set()
        for name, spec in areas:
            if spec.count <= 0 or spec.first < 0 or spec.first + spec.count > n:
                raise BootError(f"the {name} area (sectors {spec.first}+{spec.count}) is not on the device")
            if used & set(spec.sectors):
                raise BootError(f"the {name} area overlaps another area")
            used |= set(spec.sectors)
        if self.max_img_sectors == 0:
            object.__setattr__(self, "max_img_sectors", self.primary.count)
        if self.max_img_sectors < max(self.primary.count, self.secondary.count):
            raise BootError(
                f"max_img_sectors {self.max_img_sectors} is below the slots' sector counts "
                f"({self.primary.count}, {self.secondary.count})"
            )
        # Both trailers must fit (TrailerLayout raises BootError otherwise).
        trailers = {
            "primary": TrailerLayout(self.slot_size("primary"), self.geometry.align, self.max_img_sectors),
            "secondary": TrailerLayout(self.slot_size("secondary"), self.geometry.align, self.max_img_sectors),
        }
        object.__setattr__(self, "_trailers", trailers)

    # -- construction helpers ---------------------------------------------------------------

    @classmethod
    def uniform(
        cls,
        sector_size: int,
        slot_sectors: int,
        *,
        align: int = 8,
        erased_value: int = 0xFF,
        mode: UpgradeMode = "swap",
        counter_sectors: int = 1,
    ) -> BootLayout:
        """Two slots of ``slot_sectors`` equal sectors (the primary one more in swap mode), then the counter."""
        primary = slot_sectors + (1 if mode == "swap" else 0)
        total = primary + slot_sectors + counter_sectors
        geometry = FlashGeometry.uniform(sector_size, total, align=align, erased_value=erased_value)
        return cls(
            geometry,
            AreaSpec(0, primary),
            AreaSpec(primary, slot_sectors),
            AreaSpec(primary + slot_sectors, counter_sectors) if counter_sectors else None,
        )

    @classmethod
    def from_sectors(
        cls,
        primary: list[int],
        secondary: list[int],
        *,
        counter: list[int] | None = None,
        before: list[int] | None = None,
        align: int = 8,
        erased_value: int = 0xFF,
    ) -> BootLayout:
        """A device made of ``before`` (e.g. the boot loader's sectors), the slots, then the counter."""
        head = list(before or [])
        tail = list(counter or [])
        geometry = FlashGeometry(tuple(head + primary + secondary + tail), align=align, erased_value=erased_value)
        start = len(head)
        return cls(
            geometry,
            AreaSpec(start, len(primary)),
            AreaSpec(start + len(primary), len(secondary)),
            AreaSpec(start + len(primary) + len(secondary), len(tail)) if tail else None,
        )

    # -- derived facts ------------------------------------------------------------------------

    def _sizes(self, spec: AreaSpec) -> tuple[int, ...]:
        return self.geometry.sectors[spec.first : spec.first + spec.count]

    def slot_size(self, slot: Literal["primary", "secondary"]) -> int:
        return sum(self._sizes(self.primary if slot == "primary" else self.secondary))

    def trailer(self, slot: Literal["primary", "secondary"]) -> TrailerLayout:
        return self._trailers[slot]

    def trailer_sectors(self, slot: Literal["primary", "secondary"]) -> int:
        """How many sectors at the end of the slot hold (part of) its trailer."""
        sizes = self._sizes(self.primary if slot == "primary" else self.secondary)
        need, count = self.trailer(slot).trailer_size, 0
        while need > 0:
            count += 1
            need -= sizes[-count]
        return count

    def image_area(self, slot: Literal["primary", "secondary"]) -> int:
        """Bytes before the first sector that holds the slot's trailer."""
        sizes = self._sizes(self.primary if slot == "primary" else self.secondary)
        return sum(sizes[: len(sizes) - self.trailer_sectors(slot)])

    def swap_incompatibility(self) -> str | None:
        """Why swap-using-move cannot run on these slots, or None (bootutil's boot_slots_compatible)."""
        pri, sec = self._sizes(self.primary), self._sizes(self.secondary)
        if len(pri) not in (len(sec), len(sec) + 1):
            return f"the primary slot has {len(pri)} sectors; swap-using-move needs {len(sec)} or {len(sec) + 1}"
        if len(set(pri) | set(sec)) != 1:
            return "swap-using-move needs every sector of both slots to have the same size"
        if self.max_image_size("swap") <= 0:
            return "the slots leave no room for an image once the move sector and trailer are set aside"
        return None

    @property
    def sector_size(self) -> int:
        """The (uniform) sector size of the primary slot; swap mode only."""
        return self._sizes(self.primary)[0]

    def max_image_size(self, mode: UpgradeMode) -> int:
        """The largest image (header to the end of the TLVs) the slot pair can take in ``mode``."""
        if mode == "swap":
            pri = self._sizes(self.primary)
            first_trailer = len(pri) - self.trailer_sectors("primary")
            return min((first_trailer - 1) * pri[0], self.image_area("secondary"))
        return min(self.image_area("primary"), self.image_area("secondary"))

    def open(self, flash: Flash) -> Slots:
        """The slots of this layout on ``flash`` (whose geometry must be this layout's)."""
        if flash.geometry != self.geometry:
            raise BootError("the flash device does not have this layout's geometry")
        return Slots(
            layout=self,
            primary=FlashArea(flash, self.primary.first, self.primary.count, name="primary slot"),
            secondary=FlashArea(flash, self.secondary.first, self.secondary.count, name="secondary slot"),
        )

    def counter_area(self, flash: Flash) -> FlashArea:
        if self.counter is None:
            raise BootError("this layout has no counter area")
        if flash.geometry != self.geometry:
            raise BootError("the flash device does not have this layout's geometry")
        return FlashArea(flash, self.counter.first, self.counter.count, name="counter area")


@dataclass(frozen=True)
class Slots:
    """The primary and secondary slots of a layout, opened on a flash device."""

    layout: BootLayout
    primary: FlashArea
    secondary: FlashArea

    def write_image(self, slot: Literal["primary", "secondary"], image: bytes) -> None:
        """Erase the slot and program ``image`` from offset 0 (a factory programmer or a download).

        The image is padded with the erased value to whole write units; it must fit below the
        slot's trailer sectors.
        """
        area = self.primary if slot == "primary" else self.secondary
        limit = self.layout.image_area(slot)
        if len(image) > limit:
            raise BootError(f"an image of {len(image)} bytes does not fit the {slot} slot ({limit} bytes)")
        area.erase_all()
        padded = image + bytes([area.erased_value]) * (-len(image) % area.align)
        area.write(0, padded)
