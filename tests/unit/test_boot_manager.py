"""The boot manager's decision rules, its protocol checks, the layouts and the [boot] settings check."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from test_boot_images import build_image, signing_key

from trustroot.boot import (
    AreaSpec,
    BootError,
    BootLayout,
    BootManager,
    Flash,
    FlashCounterStore,
    FlashGeometry,
    ImageVerifier,
    InvalidImageError,
    PowerCut,
    VerifiedImage,
)
from trustroot.boot.settings import check_settings, layout_for
from trustroot.boot.trailer import Flag, Magic, SwapType, read_state, write_flag, write_magic, write_swap_info
from trustroot.context.schema import Boot

KEY = signing_key("ed25519")
VERIFY = ImageVerifier([KEY.public_key()])


def image(version: str, counter: int, size: int = 600, *, key: object = None) -> bytes:
    payload = (version.encode() * size)[:size]
    return build_image(key or KEY, version=version, counter=counter, payload=payload)  # type: ignore[arg-type]


V1, V2, V3 = image("1.0.0", 1), image("2.0.0", 2, 900), image("3.0.0", 3, 1200)


class Device:
    """A flash with a layout; ``manager()`` is one power-up of the boot loader."""

    def __init__(self, layout: BootLayout | None = None, mode: str = "swap") -> None:
        self.layout = layout or BootLayout.uniform(512, 8, align=8, mode="swap" if mode == "swap" else "overwrite")
        self.mode = mode
        self.flash = Flash(self.layout.geometry)
        self.slots = self.layout.open(self.flash)
        self.counter = FlashCounterStore(self.layout.counter_area(self.flash))

    def manager(self, verifier: object = VERIFY, clock: object = None) -> BootManager:
        return BootManager(
            self.flash,
            self.layout,
            verifier,  # type: ignore[arg-type]
            self.counter,
            upgrade_mode=self.mode,  # type: ignore[arg-type]
            clock=clock,  # type: ignore[arg-type]
        )

    def factory(self, first: bytes = V1) -> BootManager:
        self.slots.write_image("primary", first)
        manager = self.manager()
        result = manager.boot()
        assert result.outcome == "booted"
        return manager

    def corrupt(self, slot: str, offset: int) -> None:
        """Flip a byte as bit rot or an attacker with a programmer would (no erase needed)."""
        area = self.slots.primary if slot == "primary" else self.slots.secondary
        contents = bytearray(self.flash.snapshot())
        contents[area.base + offset] ^= 0xFF
        self.flash.restore(bytes(contents))

    def primary(self) -> object:
        return read_state(self.slots.primary, self.layout.trailer("primary"))

    def secondary(self) -> object:
        return read_state(self.slots.secondary, self.layout.trailer("secondary"))


def version(result: object) -> str:
    image = result.image  # type: ignore[attr-defined]
    return "none" if image is None else str(image.version)


# --------------------------------------------------------------------------- the happy paths


def test_a_factory_image_boots_and_counts_as_confirmed() -> None:
    device = Device()
    device.slots.write_image("primary", V1)
    at = datetime(2026, 11, 22, tzinfo=UTC)
    result = device.manager(clock=lambda: at).boot()
    assert (result.outcome, version(result), result.stored_counter, result.at) == ("booted", "1.0.0+0", 1, at)
    assert result.runs and not result.refused and result.image is not None and result.image.confirmed
    assert "security counter raised 0 -> 1" in result.notes


def test_test_upgrade_confirm_and_the_counter() -> None:
    device = Device()
    manager = device.factory()
    manager.stage_image(V2)
    manager.request_upgrade(test=True)
    assert device.secondary().magic is Magic.GOOD  # type: ignore[attr-defined]
    result = manager.boot()
    assert (result.outcome, version(result), result.stored_counter) == ("upgraded", "2.0.0+0", 1)
    assert result.image is not None and not result.image.confirmed
    primary = device.primary()
    assert (primary.magic, primary.swap_type, primary.copy_done, primary.image_ok) == (  # type: ignore[attr-defined]
        Magic.GOOD,
        SwapType.TEST,
        Flag.SET,
        Flag.UNSET,
    )
    manager.confirm()
    assert device.counter.read() == 2 and manager.running is not None and manager.running.confirmed
    manager.confirm()  # idempotent
    result = manager.boot()
    assert (result.outcome, version(result), result.stored_counter) == ("booted", "2.0.0+0", 2)


def test_an_unconfirmed_test_image_is_reverted_at_the_next_boot() -> None:
    device = Device()
    manager = device.factory()
    manager.stage_image(V3)
    manager.request_upgrade()
    assert manager.boot().outcome == "upgraded"
    result = manager.boot()
    assert (result.outcome, version(result), result.stored_counter) == ("reverted", "1.0.0+0", 1)
    assert result.image is not None and result.image.confirmed
    assert manager.boot().outcome == "booted"
    # The refused image is still in the secondary slot and may be tried again.
    manager.request_upgrade()
    assert version(manager.boot()) == "3.0.0+0"


def test_a_permanent_upgrade_raises_the_counter_at_once() -> None:
    device = Device()
    manager = device.factory()
    manager.stage_image(V3)
    manager.request_upgrade(test=False)
    result = manager.boot()
    assert (result.outcome, version(result), result.stored_counter) == ("upgraded", "3.0.0+0", 3)
    assert result.image is not None and result.image.confirmed
    assert manager.boot().outcome == "booted"


def test_overwrite_mode() -> None:
    device = Device(BootLayout.uniform(512, 8, align=4, mode="overwrite"), mode="overwrite")
    manager = device.factory()
    assert manager.upgrade_mode == "overwrite"
    manager.stage_image(V2)
    with pytest.raises(BootError, match="overwrite mode cannot test"):
        manager.request_upgrade(test=True)
    manager.request_upgrade(test=False)
    result = manager.boot()
    assert (result.outcome, version(result), result.stored_counter) == ("upgraded", "2.0.0+0", 2)
    assert device.secondary().magic is Magic.UNSET  # type: ignore[attr-defined]
    assert manager.boot().outcome == "booted"
    # A test request written by other software is installed permanently.
    manager.stage_image(V3)
    trailer = device.layout.trailer("secondary")
    write_swap_info(device.slots.secondary, trailer, SwapType.TEST)
    write_magic(device.slots.secondary, trailer)
    result = device.manager().boot()
    assert (result.outcome, version(result), result.stored_counter) == ("upgraded", "3.0.0+0", 3)
    assert any("installed permanently" in note for note in result.notes)


# --------------------------------------------------------------------------- refusals


def test_an_invalid_candidate_is_refused_erased_and_the_old_image_runs() -> None:
    device = Device()
    manager = device.factory()
    forged = image("9.0.0", 9, key=signing_key("ed25519", 1))
    manager.stage_image(forged)
    manager.request_upgrade()
    result = manager.boot()
    assert result.refused and result.outcome.startswith("refused: candidate refused:")
    assert (version(result), result.stored_counter) == ("1.0.0+0", 1)
    assert device.slots.secondary.is_erased(0, device.slots.secondary.size)
    assert manager.boot().outcome == "booted"


def test_a_rolled_back_candidate_is_refused() -> None:
    device = Device()
    manager = device.factory(V2)
    manager.stage_image(V1)
    manager.request_upgrade(test=False)
    result = manager.boot()
    assert "below the stored 2" in result.outcome
    assert (version(result), result.stored_counter) == ("2.0.0+0", 2)


def test_a_candidate_too_large_to_swap_is_refused() -> None:
    layout = BootLayout.from_sectors([512] * 6, [512] * 6, counter=[512], align=8)
    assert layout.max_image_size("swap") < layout.image_area("secondary")
    device = Device(layout)
    manager = device.factory()
    big = image("2.0.0", 2, layout.image_area("secondary") - 800)
    with pytest.raises(BootError, match="exceeds"):
        manager.stage_image(big)
    device.slots.write_image("secondary", big)
    manager.request_upgrade()
    result = manager.boot()
    assert "too many to swap" in result.outcome and version(result) == "1.0.0+0"


def test_an_image_larger_than_the_primary_slot_is_refused_in_overwrite_mode() -> None:
    layout = BootLayout.from_sectors([512, 512, 1024, 2048], [2048, 1024, 1024], counter=[512], align=8)
    device = Device(layout, mode="overwrite")
    manager = device.factory()
    big = image("2.0.0", 2, 2200)
    assert layout.image_area("primary") < len(big) <= layout.image_area("secondary")
    device.slots.write_image("secondary", big)  # written by other software, past stage_image's check
    manager.request_upgrade(test=False)
    result = manager.boot()
    assert "does not fit the primary slot" in result.outcome and version(result) == "1.0.0+0"
    # Nor can it rescue a damaged primary.
    device.slots.write_image("secondary", big)
    device.corrupt("primary", 0x300)
    assert device.manager().boot().outcome == "refused: no valid image"


def test_an_invalid_primary_is_recovered_from_a_valid_secondary() -> None:
    device = Device()
    manager = device.factory()
    manager.stage_image(V2)
    device.corrupt("primary", 0x400)  # bit rot in the payload
    result = device.manager().boot()
    assert (result.outcome, version(result), result.stored_counter) == ("recovered", "2.0.0+0", 2)
    assert any("primary slot" in note for note in result.notes)
    assert device.manager().boot().outcome == "booted"


def test_both_invalid_nothing_runs() -> None:
    device = Device()
    device.factory()
    device.corrupt("primary", 0x400)
    manager = device.manager()
    result = manager.boot()
    assert (result.outcome, result.image, result.runs) == ("refused: no valid image", None, False)
    assert result.stored_counter == 1
    for action in (manager.confirm, manager.request_upgrade, lambda: manager.stage_image(V2)):
        with pytest.raises(BootError, match="no image is running"):
            action()
    # An acceptable image in the secondary slot but below the counter does not rescue it either.
    device.slots.write_image("secondary", image("0.9.0", 0))
    assert device.manager().boot().outcome == "refused: no valid image"


def test_a_primary_below_the_stored_counter_does_not_boot() -> None:
    device = Device()
    device.factory(V3)
    device.slots.write_image("primary", V1)  # an attacker with a programmer
    result = device.manager().boot()
    assert result.outcome == "refused: no valid image" and result.stored_counter == 3
    assert any("below the stored 3" in note for note in result.notes)


def test_the_verifier_fails_closed_but_a_power_cut_is_not_swallowed() -> None:
    device = Device()
    device.slots.write_image("primary", V1)

    def broken(data: bytes) -> VerifiedImage:
        raise RuntimeError("crypto library fault")

    result = device.manager(broken).boot()
    assert result.outcome == "refused: no valid image" and "crypto library fault" in result.notes[0]

    def dark(data: bytes) -> VerifiedImage:
        raise PowerCut(1)

    with pytest.raises(PowerCut):
        device.manager(dark).boot()


def test_a_stuck_revert_keeps_the_image_under_test_unconfirmed() -> None:
    device = Device()
    manager = device.factory()
    manager.stage_image(V2)
    manager.request_upgrade()
    manager.boot()
    device.slots.secondary.erase_all()  # the old image is gone
    result = manager.boot()
    assert result.outcome.startswith("refused: cannot revert") and version(result) == "2.0.0+0"
    assert result.image is not None and not result.image.confirmed and result.stored_counter == 1
    manager.confirm()
    assert device.counter.read() == 2 and manager.boot().outcome == "booted"


def test_an_invalid_revert_target_is_refused_and_erased() -> None:
    device = Device()
    manager = device.factory()
    manager.stage_image(V2)
    manager.request_upgrade()
    manager.boot()
    device.corrupt("secondary", 0x400)
    result = manager.boot()
    assert result.outcome.startswith("refused: cannot revert") and version(result) == "2.0.0+0"
    assert device.slots.secondary.is_erased(0, 32)


def test_a_swap_set_up_before_a_reset_is_restarted_or_settled() -> None:
    device = Device()
    manager = device.factory()
    manager.stage_image(V2)
    manager.request_upgrade()
    # Cut just after the primary trailer was set up and the secondary trailer erased (no data moved).
    device.flash.reset_ops()
    device.flash.cut_power_after(1 + 1 + 1 + 2 + 1)  # erase P trailer, info, size, magic (2 units), erase S trailer
    with pytest.raises(PowerCut):
        device.manager().boot()
    device.flash.power_on()
    assert device.secondary().magic is Magic.UNSET  # type: ignore[attr-defined]
    cut = device.flash.snapshot()
    result = device.manager().boot()
    assert result.outcome == "upgraded" and any("restarting a test swap" in n for n in result.notes)
    # The same state, but the candidate went bad meanwhile: refused, and the primary trailer settled.
    device.flash.restore(cut)
    device.corrupt("secondary", 0x400)
    result = device.manager().boot()
    assert result.refused and version(result) == "1.0.0+0"
    primary = device.primary()
    assert (primary.image_ok, primary.copy_done) == (Flag.SET, Flag.SET)  # type: ignore[attr-defined]
    assert device.manager().boot().outcome == "booted"


def test_a_permanent_swap_set_up_before_a_reset_settles_the_same_way() -> None:
    device = Device()
    manager = device.factory()
    manager.stage_image(V2)
    manager.request_upgrade(test=False)
    device.flash.reset_ops()
    device.flash.cut_power_after(1 + 1 + 1 + 1 + 2 + 1)  # ... as above, and image_ok copied over
    with pytest.raises(PowerCut):
        device.manager().boot()
    device.flash.power_on()
    device.corrupt("secondary", 0x400)
    result = device.manager().boot()
    assert result.refused and version(result) == "1.0.0+0"
    primary = device.primary()
    assert (primary.image_ok, primary.copy_done) == (Flag.SET, Flag.SET)  # type: ignore[attr-defined]


def test_an_upgrade_over_a_malformed_primary_swaps_the_candidate_in() -> None:
    device = Device()
    manager = device.factory()
    manager.stage_image(V2)
    manager.request_upgrade()
    device.corrupt("primary", 12)  # the image size in the header: the primary no longer parses
    result = device.manager().boot()
    assert (result.outcome, version(result)) == ("upgraded", "2.0.0+0")


def test_a_device_with_an_empty_primary_installs_a_requested_image() -> None:
    device = Device()
    device.slots.write_image("secondary", V2)
    trailer = device.layout.trailer("secondary")
    write_swap_info(device.slots.secondary, trailer, SwapType.PERM)
    write_flag(device.slots.secondary, trailer, "image_ok")
    write_magic(device.slots.secondary, trailer)
    result = device.manager().boot()
    assert (result.outcome, version(result), result.stored_counter) == ("upgraded", "2.0.0+0", 2)


def test_an_interrupted_swap_is_resumed() -> None:
    device = Device()
    manager = device.factory()
    manager.stage_image(V2)
    manager.request_upgrade()
    device.flash.cut_power_after(300)
    with pytest.raises(PowerCut):
        device.manager().boot()
    device.flash.power_on()
    result = device.manager().boot()
    assert result.outcome == "upgraded" and version(result) == "2.0.0+0"
    assert any(note.startswith("resumed an interrupted test swap") for note in result.notes)


# --------------------------------------------------------------------------- protocol order


def test_the_running_firmware_must_follow_the_protocol() -> None:
    device = Device()
    device.slots.write_image("primary", V1)
    manager = device.manager()
    with pytest.raises(BootError, match="boot first"):
        manager.confirm()
    manager.boot()
    with pytest.raises(BootError, match="no image is staged"):
        manager.request_upgrade()
    with pytest.raises(BootError, match="exceeds"):
        manager.stage_image(b"\x00" * 10_000)
    manager.stage_image(V2)
    manager.request_upgrade(test=True)
    manager.request_upgrade(test=True)  # the same request again: nothing to do
    with pytest.raises(BootError, match="already requested"):
        manager.request_upgrade(test=False)
    manager.boot()
    with pytest.raises(BootError, match="unconfirmed"):
        manager.request_upgrade()
    with pytest.raises(BootError, match="unconfirmed"):
        manager.stage_image(V3)
    # A damaged image_ok cannot be confirmed.
    device.flash.write(device.slots.primary.base + device.layout.trailer("primary").image_ok_off, b"\x07" + b"\xff" * 7)
    with pytest.raises(BootError, match="damaged"):
        manager.confirm()


def test_a_torn_request_is_no_request_and_can_be_made_again() -> None:
    device = Device(BootLayout.uniform(512, 8, align=1))
    manager = device.factory()
    manager.stage_image(V2)
    device.flash.reset_ops()
    device.flash.cut_power_after(1 + 8)  # swap info, then half the magic
    with pytest.raises(PowerCut):
        manager.request_upgrade()
    device.flash.power_on()
    assert device.secondary().magic is Magic.BAD  # type: ignore[attr-defined]
    manager = device.manager()
    assert manager.boot().outcome == "booted"
    manager.request_upgrade()
    assert manager.boot().outcome == "upgraded"


def test_manager_refuses_bad_configurations() -> None:
    device = Device()
    with pytest.raises(BootError, match="neither"):
        BootManager(device.flash, device.layout, VERIFY, device.counter, upgrade_mode="xip")  # type: ignore[arg-type]
    uneven = BootLayout.from_sectors([512, 512, 1024, 2048], [2048, 1024, 1024], counter=[512], align=8)
    flash = Flash(uneven.geometry)
    counter = FlashCounterStore(uneven.counter_area(flash))
    with pytest.raises(BootError, match="cannot swap"):
        BootManager(flash, uneven, VERIFY, counter)
    BootManager(flash, uneven, VERIFY, counter, upgrade_mode="overwrite")
    with pytest.raises(BootError, match="geometry"):
        BootManager(Flash(FlashGeometry.uniform(512, 4)), device.layout, VERIFY, device.counter)


# --------------------------------------------------------------------------- layouts and settings


def test_layout_validation() -> None:
    geometry = FlashGeometry.uniform(512, 8)
    with pytest.raises(BootError, match="overlaps"):
        BootLayout(geometry, AreaSpec(0, 4), AreaSpec(3, 4))
    with pytest.raises(BootError, match="not on the device"):
        BootLayout(geometry, AreaSpec(0, 4), AreaSpec(4, 5))
    with pytest.raises(BootError, match="max_img_sectors"):
        BootLayout(geometry, AreaSpec(0, 4), AreaSpec(4, 4), max_img_sectors=3)
    with pytest.raises(BootError, match="does not fit"):
        BootLayout(FlashGeometry.uniform(128, 8, align=32), AreaSpec(0, 4), AreaSpec(4, 4))
    layout = BootLayout(geometry, AreaSpec(0, 4), AreaSpec(4, 4))
    with pytest.raises(BootError, match="no counter area"):
        layout.counter_area(Flash(geometry))
    with pytest.raises(BootError, match="geometry"):
        BootLayout.uniform(512, 4).counter_area(Flash(geometry))
    with pytest.raises(BootError, match="geometry"):
        layout.open(Flash(FlashGeometry.uniform(512, 9)))
    assert "same size" in (BootLayout.from_sectors([512, 1024], [512, 1024]).swap_incompatibility() or "")
    assert "needs" in (BootLayout.from_sectors([512] * 4, [512] * 2).swap_incompatibility() or "")
    with pytest.raises(BootError, match="does not fit"):
        layout.open(Flash(geometry)).write_image("primary", b"\x00" * 2048)


def test_settings_check() -> None:
    report = check_settings(Boot())
    assert report.ok and report.sectors_per_slot == 96 and report.trailer_sectors == 1
    assert report.max_image_size == (96 - 1 - 1) * 0x1000
    bad = check_settings(Boot(upgrade_mode="overwrite", anti_rollback=False, signature="none"), image_size=1 << 30)
    assert not bad.ok and len(bad.issues) == 4
    assert any("cannot revert" in issue for issue in bad.issues)
    assert check_settings(Boot(upgrade_mode="overwrite", test_boot=False)).ok
    tiny = check_settings(Boot(slot_size=0x1000, sector_size=0x1000))
    assert any("cannot work" in issue for issue in tiny.issues)
    assert check_settings(Boot(encryption="ecies-p256")).issues == (
        "encryption = 'ecies-p256': this model checks plaintext images only",
    )
    unfit = check_settings(Boot(slot_size=0x1000, sector_size=0x200, align=32), max_img_sectors=64)
    assert "cannot hold a trailer" in unfit.issues[0]


def test_a_products_settings_run_through_an_upgrade() -> None:
    settings = Boot(slot_size=0x4000, sector_size=0x1000, align=4, erased_value=0)
    layout = layout_for(settings)
    device = Device(layout)
    manager = device.factory()
    manager.stage_image(V3)
    manager.request_upgrade()
    assert manager.boot().outcome == "upgraded"
    assert manager.boot().outcome == "reverted"


def test_invalid_image_error_carries_a_reason() -> None:
    error = InvalidImageError("x", reason="hash")
    assert (error.reason, error.provision, str(error)) == ("hash", "5.7-1", "x (EN 303 645 provision 5.7-1)")
