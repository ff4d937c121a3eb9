"""Property tests of the boot manager: random lives of a device, with power cuts anywhere.

A device is driven through random sequences of: stage an image (valid ones with counters 0..4,
one signed by a foreign key, one with a flipped byte), request an upgrade (test or permanent),
confirm, and boot; any of these may lose power after a random number of flash operations. In
every life:

- no invalid image ever runs (every running image is one of the validly signed ones);
- the stored counter never goes down, no running image has a counter below the counter stored
  when its boot began, and the counter never exceeds the largest counter of a confirmed image;
- every boot that completes runs the old image or the new one (the one running before, the one
  it replaced, or the one staged), and something always runs;
- no boot ever needs to recover the primary slot from the secondary one (no life here damages the
  primary, so a recovery would mean an interrupted swap or copy lost data).
"""

from __future__ import annotations

import functools
import hashlib

from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from trustroot.boot import (
    BootError,
    BootLayout,
    BootManager,
    Flash,
    FlashCounterStore,
    ImageVerifier,
    PowerCut,
    VerifiedImage,
)
from trustroot.image.sign import sign_image_bytes

_KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
_FOREIGN = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(2, 34)))
_VERIFIER = ImageVerifier([_KEY.public_key()])


def _image(key: ed25519.Ed25519PrivateKey, counter: int, size: int) -> bytes:
    payload = hashlib.sha256(f"{counter}/{size}".encode()).digest() * (size // 32)
    return sign_image_bytes(
        bytes(0x100) + payload, key, version=f"{counter}.{size % 7}.0", header_size=0x100, security_counter=counter
    )


VALID = [_image(_KEY, counter, 256 + 320 * counter) for counter in range(5)]
_flipped = bytearray(VALID[3])
_flipped[0x180] ^= 0x10
INVALID = [_image(_FOREIGN, 4, 600), bytes(_flipped)]
POOL = VALID + INVALID
COUNTER_OF = {hashlib.sha256(image).hexdigest(): counter for counter, image in enumerate(VALID)}


@functools.lru_cache(maxsize=16)
def _verify(image: bytes) -> VerifiedImage:
    return _VERIFIER(image)


def verifier(image: bytes) -> VerifiedImage:
    return _verify(image)


#: Most steps keep their power; one in three loses it after 0..1000 flash operations (an update
#: here takes 300 to 900).
CUT = st.one_of(st.none(), st.none(), st.integers(min_value=0, max_value=1000))
LAYOUTS = {
    ("swap", 8): BootLayout.uniform(512, 8, align=8),
    ("swap", 16): BootLayout.uniform(512, 8, align=16, erased_value=0x00),
    ("overwrite", 4): BootLayout.from_sectors([512, 512, 1024, 2048], [2048, 1024, 1024], counter=[512], align=4),
    ("overwrite", 16): BootLayout.uniform(1024, 4, align=16, erased_value=0x00, mode="overwrite"),
}


def _sha(image: bytes) -> str:
    return hashlib.sha256(image).hexdigest()


class DeviceLife(RuleBasedStateMachine):
    """One device: its flash, the boot manager of the current power-up, and what the test knows."""

    def __init__(self) -> None:
        super().__init__()
        self.manager: BootManager | None = None

    @initialize(config=st.sampled_from(sorted(LAYOUTS)), factory=st.integers(min_value=0, max_value=2))
    def make_device(self, config: tuple[str, int], factory: int) -> None:
        self.mode, _ = config
        self.layout = LAYOUTS[config]
        self.flash = Flash(self.layout.geometry)
        self.layout.open(self.flash).write_image("primary", VALID[factory])
        self.counter = FlashCounterStore(self.layout.counter_area(self.flash))
        self.running = _sha(VALID[factory])
        self.previous: str | None = None
        self.staged: str | None = None
        self.confirmed_max = factory  # a factory image counts as confirmed
        self.seen_counter = 0

    def _arm(self, cut: int | None) -> None:
        if cut is not None:
            self.flash.cut_power_after(cut)

    def _lost_power(self) -> None:
        self.flash.power_on()
        self.manager = None

    # -- the boot loader ----------------------------------------------------------------------

    @rule(cut=CUT)
    def boot(self, cut: int | None) -> None:
        stored = self.counter.read()
        manager = BootManager(self.flash, self.layout, verifier, self.counter, upgrade_mode=self.mode)  # type: ignore[arg-type]
        self._arm(cut)
        try:
            result = manager.boot()
        except PowerCut:
            self._lost_power()
            return
        self.flash.cancel_power_cut()
        assert result.image is not None, result  # something always runs
        assert result.outcome != "recovered", "a swap or copy lost the image it was moving"
        booted = result.image.sha256
        assert booted in COUNTER_OF, "an invalid image runs"
        assert booted in {self.running, self.previous, self.staged}, "neither the old image nor the new one"
        assert result.image.security_counter >= stored, "a rolled-back image runs"
        if result.outcome == "reverted":
            self.confirmed_max = max(self.confirmed_max, result.image.security_counter)
        if booted != self.running:
            self.previous, self.running = self.running, booted
        self.manager = manager

    # -- the running firmware -----------------------------------------------------------------

    @precondition(lambda self: self.manager is not None)
    @rule(index=st.integers(min_value=0, max_value=len(POOL) - 1), test=st.booleans(), cut=CUT)
    def install(self, index: int, test: bool, cut: int | None) -> None:
        """Confirm, stage, request and reboot: a whole update, the reboot possibly cut."""
        assert self.manager is not None and self.manager.running is not None
        self.confirmed_max = max(self.confirmed_max, self.manager.running.security_counter)
        self.manager.confirm()
        if POOL[index] in VALID and len(POOL[index]) > self.layout.max_image_size(self.mode):  # pragma: no cover
            return
        self.manager.stage_image(POOL[index])
        self.staged = _sha(POOL[index])
        try:
            self.manager.request_upgrade(test=test)
        except BootError:
            assert test and self.mode == "overwrite"
            self.manager.request_upgrade(test=False)
            test = False
        if not test and self.staged in COUNTER_OF:
            self.confirmed_max = max(self.confirmed_max, COUNTER_OF[self.staged])
        self.boot(cut)

    @precondition(lambda self: self.manager is not None)
    @rule(index=st.integers(min_value=0, max_value=len(POOL) - 1), cut=CUT)
    def stage(self, index: int, cut: int | None) -> None:
        assert self.manager is not None
        self._arm(cut)
        try:
            self.manager.stage_image(POOL[index])
        except BootError:
            self.flash.cancel_power_cut()
            return
        except PowerCut:
            self._lost_power()
        self.flash.cancel_power_cut()
        self.staged = _sha(POOL[index])

    @precondition(lambda self: self.manager is not None)
    @rule(test=st.booleans(), cut=CUT)
    def request(self, test: bool, cut: int | None) -> None:
        assert self.manager is not None
        if not test and self.staged in COUNTER_OF:
            # A permanent request confirms the staged image in advance.
            self.confirmed_max = max(self.confirmed_max, COUNTER_OF[self.staged])
        self._arm(cut)
        try:
            self.manager.request_upgrade(test=test)
        except BootError:
            pass
        except PowerCut:
            self._lost_power()
        self.flash.cancel_power_cut()

    @precondition(lambda self: self.manager is not None)
    @rule(cut=CUT)
    def confirm(self, cut: int | None) -> None:
        assert self.manager is not None and self.manager.running is not None
        self.confirmed_max = max(self.confirmed_max, self.manager.running.security_counter)
        self._arm(cut)
        try:
            self.manager.confirm()
        except PowerCut:
            self._lost_power()
        self.flash.cancel_power_cut()

    # -- what holds after every step ----------------------------------------------------------

    @invariant()
    def the_counter_only_rises_and_only_for_confirmed_images(self) -> None:
        if not hasattr(self, "counter"):
            return
        value = self.counter.read()
        assert value >= self.seen_counter, "the stored counter went down"
        assert value <= self.confirmed_max, "the counter was raised for an unconfirmed image"
        self.seen_counter = value


DeviceLife.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestDeviceLife = DeviceLife.TestCase
