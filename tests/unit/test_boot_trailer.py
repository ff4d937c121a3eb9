"""The image trailer: offsets per write alignment (against MCUboot's facts), decoding, swap status."""

from __future__ import annotations

import pytest

from trustroot import _mcuboot
from trustroot.boot import BootError, Flash, FlashArea, FlashGeometry, PowerCut
from trustroot.boot.trailer import (
    Flag,
    Magic,
    StatusOp,
    StatusPosition,
    SwapType,
    TrailerLayout,
    read_state,
    read_status,
    scramble,
    write_flag,
    write_magic,
    write_status,
    write_swap_info,
    write_swap_size,
)

ALIGNS = (1, 2, 4, 8, 16, 32)


@pytest.mark.parametrize("align", ALIGNS)
def test_offsets_follow_mcuboot(align: int) -> None:
    size, sectors = 0x4000, 16
    layout = TrailerLayout(size, align, sectors)
    max_align = max(8, align)
    assert layout.max_align == max_align
    # bootutil: magic is the last 16 bytes; image_ok one max_align slot below the aligned magic, ...
    assert layout.magic_off == size - 16
    assert layout.image_ok_off == (size - 16) // max_align * max_align - max_align
    assert layout.copy_done_off == layout.image_ok_off - max_align
    assert layout.swap_info_off == layout.copy_done_off - max_align
    assert layout.swap_size_off == layout.swap_info_off - max_align
    assert layout.status_size == sectors * 3 * align
    # The shared codec (imgtool's sizing) agrees on the size, the magic and image_ok's place.
    assert layout.trailer_size == _mcuboot.trailer_size(align, max_align, max_sectors=sectors)
    assert layout.magic == _mcuboot.boot_magic(max_align)
    assert layout.image_ok_off - size == _mcuboot.image_ok_offset(max_align)
    assert layout.status_off == size - layout.trailer_size
    names = [name for name, _, _ in layout.fields()]
    assert names == ["swap status", "swap size", "swap info", "copy done", "image ok", "magic"]


def test_the_documented_align8_trailer() -> None:
    layout = TrailerLayout(0x1000, 8, 128)
    assert layout.magic == bytes.fromhex("77c295f360d2ef7f3552500f2cb67980")
    assert (layout.image_ok_off, layout.copy_done_off, layout.swap_info_off, layout.swap_size_off) == (
        0x1000 - 24,
        0x1000 - 32,
        0x1000 - 40,
        0x1000 - 48,
    )
    assert layout.trailer_size == 128 * 3 * 8 + 48
    assert TrailerLayout(0x1000, 16, 8).magic[:2] == b"\x10\x00"
    with pytest.raises(BootError):
        TrailerLayout(0x400, 8, 128)
    with pytest.raises(BootError):
        TrailerLayout(0x400, 8, 0)


def _area(align: int = 8, erased: int = 0xFF, sectors: int = 4, sector: int = 256) -> FlashArea:
    flash = Flash(FlashGeometry.uniform(sector, sectors, align=align, erased_value=erased))
    return FlashArea(flash, 0, sectors)


@pytest.mark.parametrize("align", ALIGNS)
@pytest.mark.parametrize("erased", [0xFF, 0x00])
def test_fields_round_trip(align: int, erased: int) -> None:
    area = _area(align, erased)
    layout = TrailerLayout(area.size, align, 4)
    blank = read_state(area, layout)
    assert (blank.magic, blank.swap_type, blank.copy_done, blank.image_ok, blank.swap_size) == (
        Magic.UNSET,
        SwapType.NONE,
        Flag.UNSET,
        Flag.UNSET,
        None,
    )
    write_swap_info(area, layout, SwapType.REVERT, 0)
    write_swap_size(area, layout, 0x1234)
    write_flag(area, layout, "copy_done")
    write_flag(area, layout, "image_ok")
    write_magic(area, layout)
    state = read_state(area, layout)
    assert (state.magic, state.swap_type, state.copy_done, state.image_ok, state.swap_size) == (
        Magic.GOOD,
        SwapType.REVERT,
        Flag.SET,
        Flag.SET,
        0x1234,
    )
    assert "magic=good" in str(state)
    with pytest.raises(BootError):
        write_flag(area, layout, "nonsense")
    with pytest.raises(BootError):
        write_swap_info(area, layout, SwapType.NONE)


@pytest.mark.parametrize("align", [1, 2, 4])
def test_a_torn_magic_reads_bad(align: int) -> None:
    area = _area(align)
    layout = TrailerLayout(area.size, align, 4)
    units = 16 // align
    for done in range(units + 1):
        area.erase_all()
        area.flash.cut_power_after(done)
        try:
            write_magic(area, layout)
        except PowerCut:
            area.flash.power_on()
        expected = Magic.UNSET if done == 0 else Magic.GOOD if done == units else Magic.BAD
        assert read_state(area, layout).magic is expected


def test_bad_values_decode_as_bootutil_does() -> None:
    area = _area(8)
    layout = TrailerLayout(area.size, 8, 4)
    area.write(layout.image_ok_off, b"\x02" + b"\xff" * 7)
    area.write(layout.swap_info_off, b"\x07" + b"\xff" * 7)  # swap type 7: out of range
    area.write(layout.magic_off, bytes(16))
    state = read_state(area, layout)
    assert (state.image_ok, state.swap_type, state.magic) == (Flag.BAD, SwapType.NONE, Magic.BAD)


@pytest.mark.parametrize("align", [1, 8, 16])
def test_status_entries_resume_where_swap_using_move_left_off(align: int) -> None:
    area = _area(align, sectors=8, sector=512)
    layout = TrailerLayout(area.size, align, 8)
    assert read_status(area, layout).is_reset
    last = 5
    done = [StatusPosition(StatusOp.MOVE, i, 1) for i in range(1, last + 1)]
    done += [StatusPosition(StatusOp.SWAP, i, s) for i in range(1, last + 1) for s in (1, 2)]
    expected_next = [StatusPosition(StatusOp.MOVE, i + 1, 1) for i in range(1, last + 1)]
    expected_next += [
        StatusPosition(StatusOp.SWAP, i + (s == 2), 2 if s == 1 else 1) for i in range(1, last + 1) for s in (1, 2)
    ]
    for position, resume in zip(done, expected_next, strict=True):
        write_status(area, layout, position)
        assert read_status(area, layout) == resume
    with pytest.raises(BootError):
        layout.status_entry_off(StatusPosition(StatusOp.SWAP, 9, 1))


def test_scramble_erases_every_sector_of_the_trailer_and_nothing_else() -> None:
    area = _area(32, sectors=6, sector=512)  # 6 x 3 x 32 + 160 = 736 bytes: two sectors
    layout = TrailerLayout(area.size, 32, 6)
    area.write(0, b"i" * 2048)
    area.write(2048, b"t" * 1024)
    area.flash.reset_ops()
    scramble(area, layout)
    assert area.flash.ops == 2
    assert area.read(0, 2048) == b"i" * 2048
    assert area.is_erased(2048, 1024)
