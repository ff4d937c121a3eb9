"""Tampering and rollback against the boot manager with the real verifier (boot/validate.py).

- Every single-byte change of a signed image (header and its padding, payload, protected and
  unprotected TLV areas), two changes per byte (the lowest bit, and all bits), is refused: as a
  candidate in the secondary slot (the old image keeps running, the counter does not move, the
  candidate is erased) and as the image in the primary slot (nothing runs). N of N, counted.
- An anti-rollback grid: stored counter 0..4 x candidate counter 0..4, with versions that go the
  other way, as a candidate and as a primary image: 0 violations, the counter unchanged by every
  refusal and raised only by a confirmation.
"""

from __future__ import annotations

import functools
import hashlib

import pytest
from test_boot_images import build_image, signing_key

from trustroot import _mcuboot
from trustroot.boot import BootLayout, BootManager, Flash, FlashCounterStore, ImageVerifier

KEY = signing_key("ed25519")
VERIFY = ImageVerifier([KEY.public_key()])
PAYLOAD = bytes(hashlib.sha256(i.to_bytes(2, "little")).digest()[0] for i in range(1024))
RUNNING = build_image(KEY, version="1.0.0", counter=1, payload=PAYLOAD[:512])
CANDIDATE = build_image(KEY, version="2.0.0", counter=2, payload=PAYLOAD)
LAYOUT = BootLayout.uniform(512, 8, align=8)


@functools.lru_cache(maxsize=8)
def _verify_known(image: bytes) -> object:
    return VERIFY(image)


def verifier(image: bytes) -> object:
    """The real verifier; only the two untampered images are memoised."""
    if image in (RUNNING, CANDIDATE):
        return _verify_known(image)
    return VERIFY(image)


def _manager(flash: Flash) -> BootManager:
    counter = FlashCounterStore(LAYOUT.counter_area(flash))
    return BootManager(flash, LAYOUT, verifier, counter)  # type: ignore[arg-type]


def test_the_tampered_image_is_small_and_has_every_area() -> None:
    layout = _mcuboot.parse_image(CANDIDATE)
    assert layout.payload_size == 1024 <= 8 * 1024
    assert layout.header.header_size == 0x200 and layout.protected_size > 0 and layout.unprotected_size > 0
    assert (
        layout.tlv_end == len(CANDIDATE) == 1692
    )  # 0x200 + 1024 + 12 (SEC_CNT area) + 144 (SHA256, KEYHASH, ED25519 area)


def _changes(image: bytes) -> list[tuple[int, int]]:
    return [(offset, mask) for offset in range(len(image)) for mask in (0x01, 0xFF)]


def _regions(image: bytes) -> dict[str, range]:
    layout = _mcuboot.parse_image(image)
    return {
        "header": range(0, layout.header.header_size),
        "payload": range(layout.payload_offset, layout.protected_offset),
        "protected TLVs": range(layout.protected_offset, layout.unprotected_offset),
        "unprotected TLVs": range(layout.unprotected_offset, layout.tlv_end),
    }


def test_every_single_byte_change_of_a_candidate_is_refused() -> None:
    flash = Flash(LAYOUT.geometry)
    slots = LAYOUT.open(flash)
    slots.write_image("primary", RUNNING)
    manager = _manager(flash)
    manager.boot()
    manager.stage_image(CANDIDATE)
    manager.request_upgrade(test=True)
    start = flash.snapshot()
    base = slots.secondary.base
    refused: dict[str, int] = dict.fromkeys(_regions(CANDIDATE), 0)
    changes = _changes(CANDIDATE)
    for offset, mask in changes:
        contents = bytearray(start)
        contents[base + offset] ^= mask
        flash.restore(bytes(contents))
        result = _manager(flash).boot()
        assert result.refused, (offset, mask, result)
        assert result.image is not None and result.image.sha256 == hashlib.sha256(RUNNING).hexdigest()
        assert result.stored_counter == 1, (offset, mask)
        assert slots.secondary.is_erased(0, 32)
        refused[next(name for name, span in _regions(CANDIDATE).items() if offset in span)] += 1
    regions = _regions(CANDIDATE)
    assert refused == {name: 2 * len(span) for name, span in regions.items()}
    assert sum(refused.values()) == len(changes) == 3384
    # And the untampered candidate is accepted by the same set-up.
    flash.restore(start)
    assert _manager(flash).boot().outcome == "upgraded"


def test_every_single_byte_change_of_the_primary_image_stops_the_boot() -> None:
    flash = Flash(LAYOUT.geometry)
    slots = LAYOUT.open(flash)
    slots.write_image("primary", CANDIDATE)
    assert _manager(flash).boot().outcome == "booted"
    start = flash.snapshot()
    refused = 0
    changes = _changes(CANDIDATE)
    for offset, mask in changes:
        contents = bytearray(start)
        contents[offset] ^= mask
        flash.restore(bytes(contents))
        result = _manager(flash).boot()
        assert (result.outcome, result.image, result.stored_counter) == ("refused: no valid image", None, 2)
        refused += 1
    assert refused == len(changes) == 3384


COUNTERS = range(5)


@functools.cache
def _grid_image(version: str, counter: int) -> bytes:
    return build_image(KEY, version=version, counter=counter, payload=PAYLOAD[:300])


def _version_for(counter: int) -> str:
    """Versions run against the counters: a newer version may carry an older counter."""
    return f"{9 - 2 * counter}.{counter}.0"


@pytest.mark.parametrize("stored", COUNTERS)
def test_anti_rollback_grid(stored: int) -> None:
    violations = refusals = accepted = 0
    for candidate_counter in COUNTERS:
        for test in (True, False):
            flash = Flash(LAYOUT.geometry)
            slots = LAYOUT.open(flash)
            slots.write_image("primary", _grid_image("1.0.0", stored))
            manager = _manager(flash)
            assert manager.boot().stored_counter == stored  # the factory image sets the counter
            manager.stage_image(_grid_image(_version_for(candidate_counter), candidate_counter))
            manager.request_upgrade(test=test)
            result = manager.boot()
            assert result.image is not None
            if candidate_counter < stored:
                refusals += 1
                violations += result.image.security_counter != stored or not result.refused
                violations += result.stored_counter != stored
                continue
            accepted += 1
            violations += result.outcome != "upgraded" or result.image.security_counter != candidate_counter
            # A test image leaves the counter alone until it is confirmed; a permanent one raises it.
            violations += result.stored_counter != (stored if test else candidate_counter)
            manager.confirm()
            violations += manager.boot().stored_counter != candidate_counter

    # The same images put in the primary slot directly (a programmer, an attacker): below the
    # stored counter nothing runs, and nothing changes the counter.
    for candidate_counter in COUNTERS:
        flash = Flash(LAYOUT.geometry)
        slots = LAYOUT.open(flash)
        counter = FlashCounterStore(LAYOUT.counter_area(flash))
        counter.raise_to(stored)
        slots.write_image("primary", _grid_image(_version_for(candidate_counter), candidate_counter))
        result = _manager(flash).boot()
        if candidate_counter < stored:
            violations += result.runs or result.stored_counter != stored
        else:
            violations += not result.runs or result.stored_counter != candidate_counter
    assert violations == 0
    assert refusals == 2 * stored and accepted == 2 * (len(COUNTERS) - stored)
