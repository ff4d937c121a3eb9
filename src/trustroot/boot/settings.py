"""Check a product's ``[boot]`` settings against the model: geometry, trailer, largest image.

``layout_for(boot)`` turns the Security Context's ``[boot]`` table into a :class:`BootLayout`
(two slots of ``slot_size`` bytes in ``sector_size`` sectors, then one counter sector), so the
product's own images can be run through :class:`~trustroot.boot.manager.BootManager` on its own
flash geometry. ``check_settings(boot)`` reports what that geometry implies::

    [boot] slot_size, sector_size, align, erased_value, upgrade_mode, test_boot, anti_rollback
       │
       ▼
    BootLayout ──► trailer size and sectors, largest image, swap compatibility
       │
       ▼
    SettingsReport(issues=[...])   e.g. "test_boot = true, but overwrite mode cannot revert"

The Security Context has one ``slot_size`` for both slots, so in swap mode the move sector of
swap-using-move comes out of the primary slot (MCUboot accepts equal slots; the largest image is
then one sector smaller than with a primary slot one sector larger).
"""

from __future__ import annotations

from dataclasses import dataclass

from trustroot.boot.errors import BootError
from trustroot.boot.flash import FlashGeometry
from trustroot.boot.slots import AreaSpec, BootLayout
from trustroot.context.schema import Boot

__all__ = ["SettingsReport", "check_settings", "layout_for"]


def layout_for(boot: Boot, *, max_img_sectors: int | None = None) -> BootLayout:
    """The layout the settings describe: primary, secondary, one counter sector.

    ``max_img_sectors`` is MCUboot's ``BOOT_MAX_IMG_SECTORS``; by default the slot's sector count
    (the smallest value MCUboot accepts, which keeps the trailer smallest).
    """
    count = boot.slot_size // boot.sector_size
    geometry = FlashGeometry.uniform(boot.sector_size, 2 * count + 1, align=boot.align, erased_value=boot.erased_value)
    return BootLayout(
        geometry,
        AreaSpec(0, count),
        AreaSpec(count, count),
        AreaSpec(2 * count, 1),
        max_img_sectors=max_img_sectors or count,
    )


@dataclass(frozen=True)
class SettingsReport:
    """What a ``[boot]`` table implies for the flash layout, and what is wrong with it."""

    upgrade_mode: str
    sectors_per_slot: int
    trailer_size: int
    trailer_sectors: int
    #: The largest image (header to the end of the TLVs) the slots take; 0 if none fits.
    max_image_size: int
    issues: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.issues


def check_settings(boot: Boot, *, image_size: int | None = None, max_img_sectors: int | None = None) -> SettingsReport:
    """Check ``boot`` (and, if given, an image of ``image_size`` bytes) against the model."""
    issues: list[str] = []
    try:
        layout = layout_for(boot, max_img_sectors=max_img_sectors)
    except BootError as exc:
        count = boot.slot_size // boot.sector_size
        return SettingsReport(boot.upgrade_mode, count, 0, 0, 0, (f"the slots cannot hold a trailer: {exc.message}",))
    mode = boot.upgrade_mode
    max_image = max(layout.max_image_size(mode), 0)
    if mode == "swap":
        problem = layout.swap_incompatibility()
        if problem is not None:
            issues.append(f"upgrade_mode = 'swap' cannot work: {problem}")
    elif boot.test_boot:
        issues.append("test_boot = true, but overwrite mode cannot revert: a bad update cannot be undone")
    if not boot.anti_rollback:
        issues.append("anti_rollback = false: a signed but older, vulnerable image would still boot")
    if boot.signature == "none":
        issues.append("signature = 'none': the boot loader cannot tell an authentic image from any other")
    if boot.encryption != "none":
        issues.append(f"encryption = {boot.encryption!r}: this model checks plaintext images only")
    if image_size is not None and image_size > max_image:
        issues.append(f"an image of {image_size} bytes exceeds the {max_image} bytes the slots take in {mode} mode")
    if boot.header_size >= max_image:
        issues.append(f"header_size {boot.header_size} leaves no room for a payload")
    return SettingsReport(
        upgrade_mode=mode,
        sectors_per_slot=layout.primary.count,
        trailer_size=layout.trailer("primary").trailer_size,
        trailer_sectors=layout.trailer_sectors("primary"),
        max_image_size=max_image,
        issues=tuple(issues),
    )
