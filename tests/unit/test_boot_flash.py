"""The simulated flash (rules, op counter, torn writes) and the monotonic counter store."""

from __future__ import annotations

import pytest

from trustroot.boot import BootError, Flash, FlashArea, FlashCounterStore, FlashError, FlashGeometry, PowerCut


@pytest.fixture(params=[0xFF, 0x00], ids=["erased-ff", "erased-00"])
def erased(request: pytest.FixtureRequest) -> int:
    value: int = request.param
    return value


def test_geometry_validation() -> None:
    for bad in [
        lambda: FlashGeometry(()),
        lambda: FlashGeometry((512,), align=3),
        lambda: FlashGeometry((512,), erased_value=0x80),
        lambda: FlashGeometry((512, 100), align=8),
        lambda: FlashGeometry((0,)),
    ]:
        with pytest.raises(FlashError):
            bad()


def test_non_uniform_geometry_addresses() -> None:
    geometry = FlashGeometry((4096, 1024, 1024, 2048), align=4)
    assert geometry.size == 8192
    assert geometry.sector_offsets == (0, 4096, 5120, 6144)
    assert [geometry.sector_at(a) for a in (0, 4095, 4096, 5119, 5120, 6144, 8191)] == [0, 0, 1, 1, 2, 3, 3]
    with pytest.raises(FlashError):
        geometry.sector_at(8192)


def test_new_flash_is_erased_and_writes_need_erased_units(erased: int) -> None:
    flash = Flash(FlashGeometry.uniform(256, 4, align=4, erased_value=erased))
    assert flash.read(0, 1024) == bytes([erased]) * 1024
    flash.write(8, b"\x12\x34\x56\x78")
    assert flash.read(8, 4) == b"\x12\x34\x56\x78"
    assert flash.ops == 1
    with pytest.raises(FlashError, match="unerased"):
        flash.write(8, b"\x00\x00\x00\x00")
    # Writing the erased value leaves a unit erased: it may be written again (as on real NOR).
    flash.write(12, bytes([erased]) * 4)
    flash.write(12, b"abcd")
    flash.erase_sector(0)
    assert flash.is_erased(0, 256)
    flash.write(8, b"\x00\x00\x00\x00")


def test_misaligned_and_out_of_bounds_are_errors() -> None:
    flash = Flash(FlashGeometry.uniform(256, 2, align=8))
    for bad in [
        lambda: flash.write(4, bytes(8)),
        lambda: flash.write(0, bytes(4)),
        lambda: flash.write(512, bytes(8)),
        lambda: flash.write(-8, bytes(8)),
        lambda: flash.read(500, 20),
        lambda: flash.erase(8, 256),
        lambda: flash.erase(0, 300),
        lambda: flash.erase_sector(2),
    ]:
        with pytest.raises(FlashError):
            bad()
    assert flash.ops == 0
    flash.erase(0, 0)
    flash.write(0, b"")
    assert flash.ops == 0
    flash.erase(0, 512)
    assert flash.ops == 2


def test_each_unit_of_a_write_and_each_sector_erase_is_one_operation() -> None:
    flash = Flash(FlashGeometry.uniform(512, 2, align=16))
    flash.write(0, bytes(512))
    assert flash.ops == 32
    flash.erase(0, 1024)
    assert flash.ops == 34
    flash.reset_ops()
    assert flash.ops == 0


@pytest.mark.parametrize("allowed", [0, 1, 5, 7])
def test_a_cut_write_is_torn_at_a_unit_boundary(allowed: int, erased: int) -> None:
    flash = Flash(FlashGeometry.uniform(64, 1, align=4, erased_value=erased))
    flash.cut_power_after(allowed)
    data = bytes(range(1, 33))
    with pytest.raises(PowerCut) as info:
        flash.write(0, data)
    assert info.value.op == allowed + 1
    assert not flash.powered
    with pytest.raises(PowerCut):
        flash.read(0, 4)  # the device is dark until power comes back
    flash.power_on()
    assert flash.read(0, 32) == data[: 4 * allowed] + bytes([erased]) * (32 - 4 * allowed)
    assert flash.ops == allowed


def test_a_cut_erase_leaves_the_sector_as_it_was() -> None:
    flash = Flash(FlashGeometry.uniform(64, 2, align=4))
    flash.write(0, b"keep" * 32)
    flash.cut_power_after(1)
    with pytest.raises(PowerCut):
        flash.erase(0, 128)  # sector 0 erased, the cut comes before sector 1
    flash.power_on()
    assert flash.is_erased(0, 64)
    assert flash.read(64, 64) == b"keep" * 16


def test_a_cut_is_one_shot_and_can_be_cancelled() -> None:
    flash = Flash(FlashGeometry.uniform(64, 1, align=4))
    flash.cut_power_after(0)
    flash.cancel_power_cut()
    flash.write(0, bytes(4))
    with pytest.raises(FlashError):
        flash.cut_power_after(-1)


def test_snapshot_and_restore_count_no_operations() -> None:
    flash = Flash(FlashGeometry.uniform(64, 2, align=1))
    flash.write(3, b"xyz")
    image = flash.snapshot()
    flash.erase_sector(0)
    flash.cut_power_after(0)
    with pytest.raises(PowerCut):
        flash.write(0, b"a")
    ops = flash.ops
    flash.restore(image)
    assert flash.powered and flash.ops == ops
    assert flash.read(3, 3) == b"xyz"
    with pytest.raises(FlashError):
        flash.restore(image[:-1])


def test_flash_area_bounds_and_sectors() -> None:
    flash = Flash(FlashGeometry((1024, 512, 512, 2048, 512), align=8))
    area = FlashArea(flash, 1, 3, name="slot")
    assert (area.base, area.size, area.sector_offsets) == (1024, 3072, (0, 512, 1024))
    assert area.sector_index(1023) == 1 and area.sector_index(3071) == 2
    assert list(area.sectors_from(600)) == [1, 2]
    area.write(1024, b"12345678")
    assert flash.read(2048, 8) == b"12345678"
    with pytest.raises(FlashError):
        area.read(3070, 4)
    with pytest.raises(FlashError):
        area.erase_sector(3)
    with pytest.raises(FlashError):
        FlashArea(flash, 4, 2)
    area.erase_all()
    assert flash.is_erased(1024, 3072) and flash.ops == 4


# --------------------------------------------------------------------------- the counter store


def _store(align: int = 8, erased_value: int = 0xFF, sector: int = 256) -> tuple[Flash, FlashCounterStore]:
    flash = Flash(FlashGeometry.uniform(sector, 1, align=align, erased_value=erased_value))
    return flash, FlashCounterStore(FlashArea(flash, 0, 1))


def test_counter_goes_up_only(erased: int) -> None:
    flash, store = _store(erased_value=erased)
    assert store.read() == 0 and store.capacity == 32
    store.raise_to(3)
    assert store.read() == 3 and flash.ops == 3
    store.raise_to(3)
    assert flash.ops == 3
    with pytest.raises(BootError, match="cannot go down"):
        store.raise_to(2)
    store.raise_to(32)
    with pytest.raises(BootError, match="capacity"):
        store.raise_to(33)
    assert store.read() == 32


@pytest.mark.parametrize("allowed", range(6))
def test_counter_raise_cut_anywhere_lands_between_old_and_new(allowed: int) -> None:
    flash, store = _store(align=4)
    store.raise_to(2)
    flash.cut_power_after(allowed)
    try:
        store.raise_to(7)
    except PowerCut:
        flash.power_on()
    assert store.read() == min(2 + allowed, 7)
    store.raise_to(7)
    assert store.read() == 7
