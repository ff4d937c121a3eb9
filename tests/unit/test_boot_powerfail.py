"""Power-fail safety of the boot flow: a cut after every flash operation, then a reboot.

For each scenario (an upgrade requested as a test, a permanent one, the revert of an unconfirmed
test image, the confirmation of a test image, an upgrade in overwrite mode) on each flash
configuration (sector layout x write alignment x erased value), the scenario is first run
without a cut to count its flash operations N (which must equal the count the algorithm's
description predicts, ``expected_ops``). Then, for every k in 0..N-1, the flash is reset to the
starting state, the power is cut after k operations, and the device reboots with no further
cut. Every case must end in exactly one of two reference states, "old" or "new" (images in both
slots, both trailers, the stored counter, no swap left half done), and the number of cases ending
in each is asserted exactly. Chains of random cuts (cuts during the recovery too) run over many
seeds on top.

A state is compared as a *view*: which image each slot holds (by hash of the image bytes), the
primary trailer's magic / copy_done / image_ok, whether the secondary requests an upgrade (and
which), whether a swap is left half done, and the stored counter. The swap-info byte is not part
of it: once copy_done is set nothing reads it, and a revert cut at the right moment legitimately
finishes as a permanent swap of the same images.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from test_boot_images import build_image, signing_key

from trustroot.boot import (
    BootLayout,
    BootManager,
    Flash,
    FlashArea,
    FlashCounterStore,
    ImageVerifier,
    PowerCut,
    VerifiedImage,
)
from trustroot.boot.trailer import Flag, Magic, read_state, read_status

OLD_COUNTER, NEW_COUNTER = 1, 3


def _payload(seed: bytes, size: int) -> bytes:
    out = b""
    while len(out) < size:
        out += hashlib.sha256(seed + len(out).to_bytes(4, "little")).digest()
    return out[:size]


# Ed25519 signatures are deterministic, so the images (and the operation counts) are the same every run.
KEY = signing_key("ed25519")
OLD = build_image(KEY, version="1.0.0", counter=OLD_COUNTER, payload=_payload(b"old", 700))
NEW = build_image(KEY, version="2.0.0", counter=NEW_COUNTER, payload=_payload(b"new", 1200))
NAMES = {hashlib.sha256(OLD).hexdigest(): "old", hashlib.sha256(NEW).hexdigest(): "new"}

_real_verifier = ImageVerifier([KEY.public_key()])


@functools.lru_cache(maxsize=64)
def _cached(image: bytes) -> VerifiedImage:
    return _real_verifier(image)


def verifier(image: bytes) -> VerifiedImage:
    """The real verifier, memoised per image (the same two images are checked thousands of times)."""
    return _cached(image)


# --------------------------------------------------------------------------- flash configurations

#: Sector layouts, each tried at two write alignments (4 and 16 at 512-byte sectors; 16 and 32 at
#: 4 KiB; 8 and 16 at 1 KiB: every alignment from 4 to 32, both trailer magics) and both erased values.
SWAP_LAYOUTS: dict[str, Callable[[int, int], BootLayout]] = {
    "uniform-512x8": lambda a, e: BootLayout.uniform(512, 8, align=a, erased_value=e),
    "uniform-4096x4": lambda a, e: BootLayout.uniform(4096, 4, align=a, erased_value=e),
    # A non-uniform device (boot loader sectors of several sizes) with equal 1 KiB-sector slots.
    "mixed-device-1024x6": lambda a, e: BootLayout.from_sectors(
        [1024] * 6, [1024] * 6, counter=[2048], before=[4096, 2048, 512, 512], align=a, erased_value=e
    ),
}
OVERWRITE_LAYOUTS: dict[str, Callable[[int, int], BootLayout]] = {
    "uniform-512x8": lambda a, e: BootLayout.uniform(512, 8, align=a, erased_value=e, mode="overwrite"),
    "uniform-4096x4": lambda a, e: BootLayout.uniform(4096, 4, align=a, erased_value=e, mode="overwrite"),
    # Non-uniform slots, different in the two slots: only overwrite mode can use them.
    "non-uniform-slots": lambda a, e: BootLayout.from_sectors(
        [512, 512, 1024, 2048], [2048, 1024, 1024], counter=[512], before=[2048], align=a, erased_value=e
    ),
}
ALIGNS = {
    "uniform-512x8": (4, 16),
    "uniform-4096x4": (16, 32),
    "mixed-device-1024x6": (8, 16),
    "non-uniform-slots": (8, 16),
}
ERASED = (0xFF, 0x00)
SWAP_SCENARIOS = ("upgrade-test", "upgrade-perm", "revert", "confirm")


def _configs(layouts: dict[str, Callable[[int, int], BootLayout]]) -> list[tuple[str, int, int]]:
    return [(name, a, e) for name in layouts for a in ALIGNS[name] for e in ERASED]


def _id(config: tuple[str, int, int]) -> str:
    return f"{config[0]}-align{config[1]}-erased{config[2]:02x}"


# --------------------------------------------------------------------------- expected operation counts


def _units(nbytes: int, align: int) -> int:
    return -(-nbytes // align)


@dataclass(frozen=True)
class Expected:
    """Operations of a scenario, and how many cut points must end in the old state."""

    ops: int
    old: int


def expected_ops(layout: BootLayout, mode: str, scenario: str) -> Expected:
    """The flash operations a scenario takes, from the algorithm's description (not the code).

    F: one flag or status entry (one unit); M: the magic (16 bytes padded to max_align);
    W: the 4-byte swap size; S: one sector copy; Tp / Ts: the sectors holding each trailer.
    """
    a = layout.geometry.align
    f, m, w = 1, _units(-(-16 // max(8, a)) * max(8, a), a), _units(4, a)
    tp, ts = layout.trailer_sectors("primary"), layout.trailer_sectors("secondary")
    raise_counter = NEW_COUNTER - OLD_COUNTER
    request_test, request_perm = f + m, 2 * f + m
    if mode == "overwrite":
        size = _units(len(NEW), a) * a
        primary_sizes = layout.geometry.sectors[layout.primary.first : layout.primary.first + layout.primary.count]
        offsets = [sum(primary_sizes[:i]) for i in range(len(primary_sizes))]
        erases = sum(1 for off in offsets if off < size) + tp
        ops = request_perm + erases + size // a + 2 * f + m + ts + raise_counter
        return Expected(ops, request_perm)
    sector = layout.sector_size
    last = _units(max(len(OLD), len(NEW)), sector)
    data = 3 * last * (1 + sector // a + f)  # per sector: a move, then two swap steps (erase, copy, status)
    init_test = tp + f + w + m + ts  # erase P trailer, swap info, swap size, magic, erase S trailer
    init_perm = init_test + f  # ... and image_ok
    if scenario == "upgrade-test":
        return Expected(request_test + init_test + data + f, request_test)
    if scenario == "upgrade-perm":
        return Expected(request_perm + init_perm + data + f + raise_counter, request_perm)
    if scenario == "revert":
        fixup = ts + f + w + m  # the secondary made to look like a permanent request
        ops = fixup + init_perm + data + f
        return Expected(ops, ops)
    assert scenario == "confirm"
    return Expected(f + raise_counter, 1)


# --------------------------------------------------------------------------- harness


@dataclass
class Device:
    layout: BootLayout
    mode: str
    flash: Flash

    @property
    def counter_area(self) -> FlashArea:
        return self.layout.counter_area(self.flash)

    def manager(self) -> BootManager:
        counter = FlashCounterStore(self.counter_area)
        return BootManager(self.flash, self.layout, verifier, counter, upgrade_mode=self.mode)  # type: ignore[arg-type]

    def view(self) -> tuple[object, ...]:
        slots = self.layout.open(self.flash)
        primary = read_state(slots.primary, self.layout.trailer("primary"))
        secondary = read_state(slots.secondary, self.layout.trailer("secondary"))
        in_progress = (
            primary.magic is Magic.GOOD
            and primary.copy_done is Flag.UNSET
            and secondary.magic is not Magic.GOOD
            and not read_status(slots.primary, self.layout.trailer("primary")).is_reset
        )
        pending = None
        if secondary.magic is Magic.GOOD:
            pending = {Flag.UNSET: "test", Flag.SET: "perm"}.get(secondary.image_ok, "bad")
        return (
            _identity(slots.primary),
            _identity(slots.secondary),
            primary.magic,
            primary.copy_done,
            primary.image_ok,
            pending,
            in_progress,
            FlashCounterStore(self.counter_area).read(),
        )


def _identity(area: FlashArea) -> str:
    """Which image the slot holds: a slot that starts with an image's bytes holds that image."""
    for name, image in (("new", NEW), ("old", OLD)):
        if area.read(0, len(image)) == image:
            return name
    return "empty" if area.is_erased(0, 32) else "other"


def make_device(layout: BootLayout, mode: str) -> tuple[Device, BootManager]:
    """A device whose factory image OLD has booted (counter 1) with NEW staged in the secondary."""
    device = Device(layout, mode, Flash(layout.geometry))
    layout.open(device.flash).write_image("primary", OLD)
    manager = device.manager()
    result = manager.boot()
    assert (result.outcome, result.stored_counter) == ("booted", OLD_COUNTER)
    manager.stage_image(NEW)
    return device, manager


@dataclass
class Scenario:
    """A starting point (flash contents + the running manager) and the action to cut."""

    device: Device
    start: bytes
    running: BootManager
    action: Callable[[BootManager], object]
    before_action: Callable[[BootManager], object] | None = None

    def prepare(self) -> BootManager:
        self.device.flash.restore(self.start)
        manager = copy.copy(self.running)
        if self.before_action is not None:
            self.before_action(manager)
        self.device.flash.reset_ops()
        return manager


def _upgrade(test: bool) -> Callable[[BootManager], object]:
    def action(manager: BootManager) -> None:
        manager.request_upgrade(test=test)
        manager.boot()

    return action


def _upgrade_then_boot(manager: BootManager) -> None:
    manager.request_upgrade(test=True)
    manager.boot()


def build_scenario(layout: BootLayout, mode: str, scenario: str) -> Scenario:
    device, manager = make_device(layout, mode)
    start = device.flash.snapshot()
    if scenario in ("upgrade-test", "upgrade-perm"):
        return Scenario(device, start, manager, _upgrade(scenario == "upgrade-test"))
    if scenario == "revert":
        _upgrade(test=True)(manager)
        return Scenario(device, device.flash.snapshot(), manager, BootManager.boot)
    assert scenario == "confirm"
    return Scenario(device, start, manager, BootManager.confirm, before_action=_upgrade_then_boot)


def reference_views(sc: Scenario) -> tuple[tuple[object, ...], tuple[object, ...], int]:
    """(view if the action never happened, view after the action completes, operations it takes)."""
    manager = sc.prepare()
    before = sc.device.view()
    sc.action(manager)
    ops = sc.device.flash.ops
    if sc.action is BootManager.confirm:
        manager.boot()  # a confirmed image's next boot changes nothing
        assert sc.device.flash.ops == ops
    after = sc.device.view()
    if sc.action is BootManager.boot:  # the revert: "old" is where it ends
        return after, after, ops
    if sc.action is BootManager.confirm:  # unconfirmed, the image under test is reverted at the next boot
        sc.prepare()
        sc.device.manager().boot()
        return sc.device.view(), after, ops
    return before, after, ops


def reboot_view(sc: Scenario) -> tuple[tuple[object, ...], str]:
    sc.device.flash.power_on()
    result = sc.device.manager().boot()
    assert result.image is not None, result
    view = sc.device.view()
    assert NAMES[result.image.sha256] == view[0], (result, view)
    return view, NAMES[result.image.sha256]


# --------------------------------------------------------------------------- the sweeps


def _sweep(layout: BootLayout, mode: str, scenario: str) -> None:
    sc = build_scenario(layout, mode, scenario)
    old_view, new_view, ops = reference_views(sc)
    expected = expected_ops(layout, mode, scenario)
    assert ops == expected.ops, f"{scenario}: {ops} flash operations, the algorithm says {expected.ops}"
    assert old_view != new_view or scenario == "revert"
    assert old_view[6] is False and new_view[6] is False
    outcomes = {"old": 0, "new": 0}
    tried = 0
    for k in range(ops):
        manager = sc.prepare()
        sc.device.flash.cut_power_after(k)
        with pytest.raises(PowerCut):
            sc.action(manager)
        tried += 1
        view, _ = reboot_view(sc)
        if view == old_view:
            outcomes["old"] += 1
        else:
            assert view == new_view, f"{scenario}, cut after {k} of {ops} operations: {view}"
            outcomes["new"] += 1
    assert tried == expected.ops
    assert outcomes == {"old": expected.old, "new": expected.ops - expected.old}


@pytest.mark.parametrize("config", _configs(SWAP_LAYOUTS), ids=_id)
@pytest.mark.parametrize("scenario", SWAP_SCENARIOS)
def test_swap_mode_survives_a_cut_after_every_operation(scenario: str, config: tuple[str, int, int]) -> None:
    name, align, erased = config
    _sweep(SWAP_LAYOUTS[name](align, erased), "swap", scenario)


@pytest.mark.parametrize("config", _configs(OVERWRITE_LAYOUTS), ids=_id)
def test_overwrite_mode_survives_a_cut_after_every_operation(config: tuple[str, int, int]) -> None:
    name, align, erased = config
    _sweep(OVERWRITE_LAYOUTS[name](align, erased), "overwrite", "upgrade-perm")


def _chain(sc: Scenario, rng: random.Random, ops: int) -> tuple[int, int]:
    """Cut the action at a random point, then keep cutting reboots at random until one completes."""
    manager = sc.prepare()
    first = rng.randrange(ops)
    sc.device.flash.cut_power_after(first)
    with pytest.raises(PowerCut):
        sc.action(manager)
    cuts = 1
    while True:
        sc.device.flash.power_on()
        if rng.random() < 0.7:
            sc.device.flash.cut_power_after(rng.randrange(ops))
        try:
            sc.device.manager().boot()
        except PowerCut:
            cuts += 1
            continue
        sc.device.flash.cancel_power_cut()
        return first, cuts


CHAIN_SEEDS = 12
#: Chains run on half of the configurations of each mode (erased 0xff for swap, 0x00 for overwrite).
CHAIN_CONFIGS = [("swap", config) for config in _configs(SWAP_LAYOUTS) if config[2] == 0xFF] + [
    ("overwrite", config) for config in _configs(OVERWRITE_LAYOUTS) if config[2] == 0x00
]


@pytest.mark.parametrize(("mode", "config"), CHAIN_CONFIGS, ids=lambda x: x if isinstance(x, str) else _id(x))
def test_chains_of_random_cuts_end_old_or_new(mode: str, config: tuple[str, int, int]) -> None:
    name, align, erased = config
    layout = (SWAP_LAYOUTS if mode == "swap" else OVERWRITE_LAYOUTS)[name](align, erased)
    scenarios = SWAP_SCENARIOS if mode == "swap" else ("upgrade-perm",)
    chains = cuts = 0
    for scenario in scenarios:
        sc = build_scenario(layout, mode, scenario)
        old_view, new_view, ops = reference_views(sc)
        expected = expected_ops(layout, mode, scenario)
        for seed in range(CHAIN_SEEDS):
            rng = random.Random(f"{_id(config)}/{scenario}/{seed}")
            first, chain_cuts = _chain(sc, rng, ops)
            view = sc.device.view()  # the state the boot that finally completed left
            chains += 1
            cuts += chain_cuts
            assert view == (old_view if first < expected.old else new_view), f"{scenario} seed {seed}: {view}"
    assert chains == CHAIN_SEEDS * len(scenarios)
    assert cuts > chains  # some chains were cut during the recovery too


#: Operations at the start of an action and of the recovery boot that touch trailers, not image data.
TRAILER_PHASE = 20


@pytest.mark.parametrize("config", [("uniform-512x8", 4, 0xFF), ("mixed-device-1024x6", 8, 0x00)], ids=_id)
@pytest.mark.parametrize("scenario", SWAP_SCENARIOS)
def test_two_cuts_in_the_trailer_phase(scenario: str, config: tuple[str, int, int]) -> None:
    """Every pair of cuts (k1 in the action, k2 in the recovery boot) among the first trailer writes.

    Single cuts never leave a torn trailer magic behind *and* interrupt the next boot's trailer
    set-up; this grid does (it is what makes the revert fix-up rewrite a bad magic, not only an
    unset one).
    """
    name, align, erased = config
    layout = SWAP_LAYOUTS[name](align, erased)
    sc = build_scenario(layout, "swap", scenario)
    old_view, new_view, ops = reference_views(sc)
    expected = expected_ops(layout, "swap", scenario)
    tried = 0
    for k1 in range(min(ops, TRAILER_PHASE)):
        for k2 in range(TRAILER_PHASE):
            manager = sc.prepare()
            sc.device.flash.cut_power_after(k1)
            with pytest.raises(PowerCut):
                sc.action(manager)
            sc.device.flash.power_on()
            sc.device.flash.cut_power_after(k2)
            with contextlib.suppress(PowerCut):
                sc.device.manager().boot()
            sc.device.flash.cancel_power_cut()
            view, _ = reboot_view(sc)
            tried += 1
            assert view == (old_view if k1 < expected.old else new_view), f"{scenario} k1={k1} k2={k2}: {view}"
    assert tried == min(ops, TRAILER_PHASE) * TRAILER_PHASE


def test_the_number_of_cut_points_is_what_the_algorithm_predicts() -> None:
    """The total over every sweep above, from ``expected_ops`` (each sweep asserts its own share)."""
    per_scenario: dict[str, int] = {}
    for name, align, erased in _configs(SWAP_LAYOUTS):
        for scenario in SWAP_SCENARIOS:
            n = expected_ops(SWAP_LAYOUTS[name](align, erased), "swap", scenario).ops
            per_scenario[scenario] = per_scenario.get(scenario, 0) + n
    for name, align, erased in _configs(OVERWRITE_LAYOUTS):
        n = expected_ops(OVERWRITE_LAYOUTS[name](align, erased), "overwrite", "upgrade-perm").ops
        per_scenario["overwrite"] = per_scenario.get("overwrite", 0) + n
    assert per_scenario == EXPECTED_CUT_POINTS
    assert sum(per_scenario.values()) == 28694


#: Cut points tried per scenario, summed over the 12 flash configurations of each mode.
EXPECTED_CUT_POINTS = {
    "upgrade-test": 8728,
    "upgrade-perm": 8776,
    "revert": 8764,
    "confirm": 36,
    "overwrite": 2390,
}  # 28694 in all
