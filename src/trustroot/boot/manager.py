"""The reference secure boot manager: MCUboot's decisions over the simulated flash.

One :class:`BootManager` stands for the boot loader plus the bootutil calls the running firmware
makes. :meth:`BootManager.boot` is one reset: it keeps nothing in memory from an earlier call,
so a power cut at any flash operation followed by another ``boot()`` is exactly a device that
lost power and came back. What the running firmware may do afterwards is protocol-checked:
``stage_image`` (download a candidate into the secondary slot), ``request_upgrade``
(bootutil's ``boot_set_pending``) and ``confirm`` (``boot_set_confirmed``).

Swap algorithm: **swap-using-move** (MCUboot's ``MCUBOOT_SWAP_USING_MOVE``), one sector at a
time, with its swap status kept in the primary slot's trailer::

    move phase   for i = last .. 1:   erase P[i]; copy P[i-1] -> P[i];   status MOVE i
    swap phase   for i = 1 .. last:   erase P[i-1]; copy S[i-1] -> P[i-1]; status SWAP i.1
                                      erase S[i-1]; copy P[i] -> S[i-1];   status SWAP i.2
    (before the first move: erase the primary trailer, write swap info, image_ok (if the
     secondary's is set), swap size and the magic (commit); then erase the secondary trailer)

Overwrite mode (``MCUBOOT_OVERWRITE_ONLY``) erases the primary image sectors and trailer,
copies the secondary image over, writes the primary trailer (image_ok, copy_done, magic last)
and erases the secondary trailer; it cannot revert.

One boot, in order::

    1. resume   primary magic good, copy_done unset, secondary magic not good, and a status
                entry written  ->  finish the interrupted swap (type from the swap info)
    2. decide   secondary magic good: image_ok unset -> TEST, set -> PERM;
                else primary magic good, image_ok unset, copy_done set -> REVERT; else NONE
    3. check    for TEST / PERM / REVERT the secondary image must verify (hash, key, signature),
                have a security counter >= the stored one and fit the swap; if not, the
                secondary slot is erased and the primary boots ("refused: <reason>")
    4. act      swap (or copy, in overwrite mode); mark copy_done, and image_ok for PERM/REVERT
    5. verify   the primary image, always (same checks as 3); if it fails and the secondary
                holds an acceptable image, copy that one over ("recovered"); if neither is
                acceptable, nothing runs ("refused: no valid image")
    6. counter  raise the stored counter to the primary image's counter only when that image is
                confirmed (image_ok set, or no trailer at all: a factory image) — never for an
                image under test, so a revert always stays possible; ``confirm`` raises it too

Where this model deliberately departs from bootutil (each makes it stricter or power-fail safer;
the tests that need them are in ``tests/unit/test_boot_powerfail.py``):

- every trailer is committed by writing its magic last (bootutil's ``boot_set_pending`` writes
  the magic first), so a request cut by a power loss is no request at all;
- the revert fix-up rewrites a secondary trailer whose magic is *bad* (torn), not only an unset
  one, so a torn fix-up cannot turn a revert into keeping the image under test;
- a stuck revert (the old image is gone) keeps the image under test unconfirmed instead of
  erasing the primary trailer (which would make it count as confirmed and raise the counter);
- a refused candidate in a swap whose status was initialised settles the primary trailer
  (image_ok and copy_done set) so the next boot does not look for that swap again;
- ``request_upgrade`` and ``stage_image`` are refused while the running image is unconfirmed
  (the secondary slot then holds the only way back).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from trustroot import _mcuboot
from trustroot._mcuboot import ImageFormatError, ImageVersion
from trustroot.boot.counter import CounterStore
from trustroot.boot.errors import BootError, InvalidImageError
from trustroot.boot.flash import Flash, FlashArea
from trustroot.boot.slots import BootLayout, UpgradeMode
from trustroot.boot.trailer import (
    Flag,
    Magic,
    StatusOp,
    StatusPosition,
    SwapType,
    TrailerState,
    read_state,
    read_status,
    scramble,
    write_flag,
    write_magic,
    write_status,
    write_swap_info,
    write_swap_size,
)
from trustroot.boot.validate import Verifier

__all__ = ["OUTCOMES", "BootManager", "BootResult", "RunningImage"]

#: The outcome words; a refusal is ``"refused: <reason>"``.
OUTCOMES = ("booted", "upgraded", "reverted", "recovered", "refused")
_SLOT = Literal["primary", "secondary"]


@dataclass(frozen=True)
class RunningImage:
    """The image the boot handed control to."""

    version: ImageVersion
    security_counter: int
    #: Bytes from the header to the end of the TLV area.
    size: int
    #: SHA-256 (hex) of those bytes: the image's identity.
    sha256: str
    #: Whether the image is confirmed (image_ok set, or a factory image without trailer).
    confirmed: bool


@dataclass(frozen=True)
class BootResult:
    """What one boot did.

    ``outcome`` is ``"booted"``, ``"upgraded"``, ``"reverted"``, ``"recovered"`` or
    ``"refused: <reason>"``. A refused *candidate* leaves the old image running (``image`` set);
    when no image is acceptable, ``image`` is None and nothing runs.
    """

    outcome: str
    image: RunningImage | None
    #: The stored security counter when the boot ended.
    stored_counter: int
    notes: tuple[str, ...] = ()
    at: datetime | None = None

    @property
    def runs(self) -> bool:
        return self.image is not None

    @property
    def refused(self) -> bool:
        return self.outcome.startswith("refused")


@functools.lru_cache(maxsize=32)
def _image_extent(data: bytes) -> int | str:
    """Bytes from the header to the end of the TLV area, or why the slot holds no well-formed image.

    A pure function of the slot contents, memoised: a power-cut sweep boots the same few images
    thousands of times.
    """
    try:
        return _mcuboot.parse_image(data, strict_tail=False).tlv_end
    except ImageFormatError as exc:
        return str(exc)


@dataclass(frozen=True)
class _Checked:
    image: bytes
    version: ImageVersion
    security_counter: int


class BootManager:
    """MCUboot's boot flow over a simulated flash; see the module docstring."""

    def __init__(
        self,
        flash: Flash,
        layout: BootLayout,
        verifier: Verifier,
        counter_store: CounterStore,
        *,
        upgrade_mode: UpgradeMode = "swap",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if upgrade_mode not in ("swap", "overwrite"):
            raise BootError(f"upgrade mode {upgrade_mode!r} is neither 'swap' nor 'overwrite'")
        if upgrade_mode == "swap":
            problem = layout.swap_incompatibility()
            if problem is not None:
                raise BootError(f"these slots cannot swap: {problem}", hint="use upgrade_mode='overwrite'")
        self._slots = layout.open(flash)
        self._layout = layout
        self._verifier = verifier
        self._counter = counter_store
        self._mode: UpgradeMode = upgrade_mode
        self._clock = clock
        self._tp = layout.trailer("primary")
        self._ts = layout.trailer("secondary")
        self._max_image = layout.max_image_size(upgrade_mode)
        self._image_area = {"primary": layout.image_area("primary"), "secondary": layout.image_area("secondary")}
        self._first_trailer = self._slots.primary.sector_count - layout.trailer_sectors("primary")
        self._running: RunningImage | None = None

    # -- inspection ---------------------------------------------------------------------------

    @property
    def upgrade_mode(self) -> UpgradeMode:
        return self._mode

    @property
    def running(self) -> RunningImage | None:
        """The image the last ``boot()`` started, None before a boot or after a failed one."""
        return self._running

    def trailers(self) -> tuple[TrailerState, TrailerState]:
        """The decoded (primary, secondary) trailers."""
        return read_state(self._slots.primary, self._tp), read_state(self._slots.secondary, self._ts)

    # -- the boot -------------------------------------------------------------------------------

    def boot(self) -> BootResult:
        """One reset: finish or start what the trailers ask for, then verify and start the primary."""
        self._running = None
        notes: list[str] = []
        stored = self._counter.read()
        if self._mode == "swap":
            outcome, refusal = self._swap_phase(stored, notes)
        else:
            outcome, refusal = self._overwrite_phase(stored, notes)

        try:
            checked = self._inspect("primary", stored)
        except InvalidImageError as primary_fault:
            notes.append(f"primary slot: {primary_fault.message}")
            try:
                candidate = self._inspect("secondary", stored)
            except InvalidImageError as secondary_fault:
                notes.append(f"secondary slot: {secondary_fault.message}")
                return self._result("refused: no valid image", None, notes)
            self._copy_over(candidate)
            try:
                checked = self._inspect("primary", stored)
            except InvalidImageError as fault:  # pragma: no cover  (a copy of a verified image)
                notes.append(f"primary slot after recovery: {fault.message}")
                return self._result("refused: no valid image", None, notes)
            outcome = "recovered"
            notes.append("copied the secondary image over the invalid primary")

        primary = read_state(self._slots.primary, self._tp)
        confirmed = primary.magic is not Magic.GOOD or primary.image_ok is Flag.SET
        if confirmed and checked.security_counter > stored:
            self._counter.raise_to(checked.security_counter)
            notes.append(f"security counter raised {stored} -> {checked.security_counter}")
        self._running = RunningImage(
            version=checked.version,
            security_counter=checked.security_counter,
            size=len(checked.image),
            sha256=hashlib.sha256(checked.image).hexdigest(),
            confirmed=confirmed,
        )
        if refusal is not None and outcome == "booted":
            outcome = f"refused: {refusal}"
        return self._result(outcome, self._running, notes)

    def _result(self, outcome: str, image: RunningImage | None, notes: list[str]) -> BootResult:
        at = self._clock() if self._clock is not None else None
        return BootResult(outcome, image, self._counter.read(), tuple(notes), at)

    def _area(self, slot: _SLOT) -> FlashArea:
        return self._slots.primary if slot == "primary" else self._slots.secondary

    def _slot_empty(self, slot: _SLOT) -> bool:
        return self._area(slot).is_erased(0, _mcuboot.IMAGE_HEADER_SIZE)

    def _inspect(self, slot: _SLOT, stored: int) -> _Checked:
        """The slot's image if it is acceptable to boot; InvalidImageError naming why not."""
        area = self._area(slot)
        if self._slot_empty(slot):
            raise InvalidImageError(f"the {slot} slot holds no image", reason="empty")
        data = area.read(0, self._image_area[slot])
        extent = _image_extent(data)
        if isinstance(extent, str):
            raise InvalidImageError(f"the {slot} image is malformed: {extent}", reason="format")
        room = self._image_area["primary"]
        if extent > room:
            raise InvalidImageError(
                f"the {slot} image ({extent} bytes) does not fit the primary slot ({room} bytes)", reason="size"
            )
        image = data[:extent]
        try:
            verified = self._verifier(image)
        except InvalidImageError:
            raise
        except Exception as exc:  # fail closed: any fault of the verifier is a refusal
            raise InvalidImageError(f"the {slot} image does not verify: {exc}", reason="verify") from exc
        if verified.security_counter < stored:
            raise InvalidImageError(
                f"the {slot} image's security counter {verified.security_counter} is below the stored {stored}",
                reason="rollback",
            )
        return _Checked(image, verified.version, verified.security_counter)

    def _extent_or_zero(self, slot: _SLOT) -> int:
        """The image size in ``slot`` as its header says, 0 if there is no readable image."""
        if self._slot_empty(slot):
            return 0
        extent = _image_extent(self._area(slot).read(0, self._image_area[slot]))
        return 0 if isinstance(extent, str) else extent

    def _refuse_candidate(self, *, settle_primary: bool) -> None:
        """Erase a refused secondary image; settle a primary trailer set up for a swap not done."""
        if not self._slot_empty("secondary"):
            self._slots.secondary.erase_all()
        if settle_primary:
            state = read_state(self._slots.primary, self._tp)
            if state.image_ok is Flag.UNSET:
                write_flag(self._slots.primary, self._tp, "image_ok")
            write_flag(self._slots.primary, self._tp, "copy_done")  # unset, or the swap was not pending

    # -- swap mode ----------------------------------------------------------------------------

    @staticmethod
    def _decide(primary: TrailerState, secondary: TrailerState) -> SwapType:
        """bootutil's swap table (boot_swap_type_multi), rows in order."""
        if secondary.magic is Magic.GOOD and secondary.image_ok is Flag.UNSET:
            return SwapType.TEST
        if secondary.magic is Magic.GOOD and secondary.image_ok is Flag.SET:
            return SwapType.PERM
        if primary.magic is Magic.GOOD and primary.image_ok is Flag.UNSET and primary.copy_done is Flag.SET:
            return SwapType.REVERT
        return SwapType.NONE

    def _swap_phase(self, stored: int, notes: list[str]) -> tuple[str, str | None]:
        primary, secondary = self.trailers()
        in_primary = (
            primary.magic is Magic.GOOD and primary.copy_done is Flag.UNSET and secondary.magic is not Magic.GOOD
        )
        position = read_status(self._slots.primary, self._tp) if in_primary else StatusPosition()
        if not position.is_reset:
            swap_type = primary.swap_type
            if primary.swap_size is None:  # pragma: no cover  (written before the magic)
                raise BootError("an interrupted swap has no swap size in the primary trailer")
            notes.append(
                f"resumed an interrupted {swap_type.name.lower()} swap at "
                f"{position.op.name.lower()} {position.idx}.{position.state}"
            )
            self._swap(swap_type, position, primary.swap_size, status_in_primary=True)
            self._finish(swap_type)
            return ("reverted" if swap_type is SwapType.REVERT else "upgraded"), None

        if in_primary and primary.swap_type is not SwapType.NONE:
            swap_type = primary.swap_type
            notes.append(f"restarting a {swap_type.name.lower()} swap set up before the last reset")
        else:
            in_primary = False
            swap_type = self._decide(primary, secondary)
        if swap_type is SwapType.NONE:
            return "booted", None

        what = "cannot revert" if swap_type is SwapType.REVERT else "candidate refused"
        try:
            candidate = self._inspect("secondary", stored)
            swap_size = self._swap_size(candidate)
        except InvalidImageError as exc:
            self._refuse_candidate(settle_primary=in_primary)
            notes.append(f"{what}: {exc.message}")
            return "booted", f"{what}: {exc.message}"
        self._swap(swap_type, StatusPosition(), swap_size, status_in_primary=in_primary)
        self._finish(swap_type)
        return ("reverted" if swap_type is SwapType.REVERT else "upgraded"), None

    def _swap_size(self, candidate: _Checked) -> int:
        """Bytes to swap: the larger of the two images; InvalidImageError if the move cannot fit."""
        swap_size = max(len(candidate.image), self._extent_or_zero("primary"))
        if self._last_index(swap_size) >= self._first_trailer:
            raise InvalidImageError(
                f"{swap_size} bytes are too many to swap (at most {self._max_image})", reason="size"
            )
        return swap_size

    def _last_index(self, swap_size: int) -> int:
        """How many sectors hold ``swap_size`` bytes (at least one), bootutil's find_last_idx."""
        return max(1, -(-swap_size // self._layout.sector_size))

    def _copy_sector(self, src: FlashArea, src_index: int, dst: FlashArea, dst_index: int) -> None:
        size = src.sector_sizes[src_index]
        dst.write(dst.sector_offsets[dst_index], src.read(src.sector_offsets[src_index], size))

    def _swap(self, swap_type: SwapType, position: StatusPosition, swap_size: int, *, status_in_primary: bool) -> None:
        primary, secondary = self._slots.primary, self._slots.secondary
        last = self._last_index(swap_size)
        if position.is_reset and swap_type is SwapType.REVERT:
            self._fixup_revert(swap_size)
        index, state = position.idx, position.state
        if position.op is StatusOp.MOVE:
            for sector in range(last, 0, -1):
                if sector <= last - index + 1:
                    if index == 1:
                        if not status_in_primary:
                            scramble(primary, self._tp)
                            self._status_init(swap_type, swap_size)
                        scramble(secondary, self._ts)
                    primary.erase_sector(sector)
                    self._copy_sector(primary, sector - 1, primary, sector)
                    write_status(primary, self._tp, StatusPosition(StatusOp.MOVE, index, 1))
                    index += 1
            index, state = 1, 1
        for sector in range(1, last + 1):
            if sector < index:
                continue
            if sector > index or state == 1:
                primary.erase_sector(sector - 1)
                self._copy_sector(secondary, sector - 1, primary, sector - 1)
                write_status(primary, self._tp, StatusPosition(StatusOp.SWAP, sector, 1))
            secondary.erase_sector(sector - 1)
            self._copy_sector(primary, sector, secondary, sector - 1)
            write_status(primary, self._tp, StatusPosition(StatusOp.SWAP, sector, 2))

    def _status_init(self, swap_type: SwapType, swap_size: int) -> None:
        """Set up the primary trailer for a swap; the magic, written last, commits it."""
        primary = self._slots.primary
        secondary = read_state(self._slots.secondary, self._ts)
        write_swap_info(primary, self._tp, swap_type)
        if secondary.image_ok is Flag.SET:
            write_flag(primary, self._tp, "image_ok")
        write_swap_size(primary, self._tp, swap_size)
        write_magic(primary, self._tp)

    def _fixup_revert(self, swap_size: int) -> None:
        """Make a revert look like a permanent upgrade until the primary status is set up.

        Between erasing the primary trailer and writing its magic, only the secondary trailer
        says what is going on; bootutil writes it only when its magic is unset, this model also
        when it is bad (a torn earlier fix-up).
        """
        secondary = self._slots.secondary
        # A revert is only decided, or restarted, while the secondary magic is not good.
        if read_state(secondary, self._ts).magic is not Magic.GOOD:  # pragma: no branch
            scramble(secondary, self._ts)
            write_flag(secondary, self._ts, "image_ok")
            write_swap_size(secondary, self._ts, swap_size)
            write_magic(secondary, self._ts)

    def _finish(self, swap_type: SwapType) -> None:
        """After the data moved: image_ok for PERM / REVERT, then copy_done."""
        primary = self._slots.primary
        state = read_state(primary, self._tp)
        # The status set-up already copied image_ok from the secondary for PERM and REVERT (the
        # revert fix-up sets it there); bootutil sets it here again, so does the model.
        if swap_type in (SwapType.PERM, SwapType.REVERT) and state.image_ok is Flag.UNSET:  # pragma: no cover
            write_flag(primary, self._tp, "image_ok")
        write_flag(primary, self._tp, "copy_done")  # unset: a swap only runs while it is

    # -- overwrite mode and recovery --------------------------------------------------------------

    def _overwrite_phase(self, stored: int, notes: list[str]) -> tuple[str, str | None]:
        primary, secondary = self.trailers()
        swap_type = self._decide(primary, secondary)
        if swap_type not in (SwapType.TEST, SwapType.PERM):
            return "booted", None
        if swap_type is SwapType.TEST:
            notes.append("test request installed permanently (overwrite mode cannot revert)")
        try:
            candidate = self._inspect("secondary", stored)
        except InvalidImageError as exc:
            self._refuse_candidate(settle_primary=False)
            notes.append(f"candidate refused: {exc.message}")
            return "booted", f"candidate refused: {exc.message}"
        self._copy_over(candidate)
        return "upgraded", None

    def _copy_over(self, candidate: _Checked) -> None:
        """Overwrite the primary with the secondary image (MCUboot's boot_copy_image)."""
        primary, secondary = self._slots.primary, self._slots.secondary
        size = len(candidate.image) + (-len(candidate.image) % primary.align)
        first_trailer = primary.sector_index(self._tp.status_off)
        for index, offset in enumerate(primary.sector_offsets):
            if offset < size or index >= first_trailer:
                primary.erase_sector(index)
        primary.write(0, secondary.read(0, size))
        write_flag(primary, self._tp, "image_ok")
        write_flag(primary, self._tp, "copy_done")
        write_magic(primary, self._tp)
        scramble(secondary, self._ts)

    # -- what the running firmware may do ---------------------------------------------------------

    def _require_running(self, action: str) -> RunningImage:
        if self._running is None:
            raise BootError(f"cannot {action}: no image is running (boot first)")
        return self._running

    def stage_image(self, image: bytes) -> None:
        """Write a candidate image into the secondary slot (what a download does)."""
        running = self._require_running("stage an image")
        if not running.confirmed:
            raise BootError(
                "cannot stage an image while the running image is unconfirmed: "
                "the secondary slot holds the image to revert to",
                hint="confirm() the running image first",
            )
        if len(image) > self._max_image:
            raise BootError(f"an image of {len(image)} bytes exceeds the {self._max_image} bytes the slots allow")
        self._slots.write_image("secondary", image)

    def request_upgrade(self, *, test: bool = True) -> None:
        """Ask the next boot to install the secondary image (bootutil's ``boot_set_pending``).

        ``test=True`` boots it once and reverts unless it confirms itself; ``test=False`` makes
        it permanent at once. The secondary trailer is written swap info, image_ok (permanent
        only), then the magic, which commits the request.
        """
        running = self._require_running("request an upgrade")
        if test and self._mode == "overwrite":
            raise BootError(
                "overwrite mode cannot test an image (there is nothing to revert to)",
                hint="request_upgrade(test=False), or use upgrade_mode='swap'",
            )
        if not running.confirmed:
            raise BootError("cannot request an upgrade while the running image is unconfirmed", hint="confirm() first")
        if self._slot_empty("secondary"):
            raise BootError("no image is staged in the secondary slot")
        secondary = self._slots.secondary
        state = read_state(secondary, self._ts)
        wanted = SwapType.TEST if test else SwapType.PERM
        if state.magic is Magic.GOOD:
            pending = {Flag.UNSET: SwapType.TEST, Flag.SET: SwapType.PERM}.get(state.image_ok)
            if pending is wanted:
                return
            raise BootError(f"an upgrade is already requested ({state})")
        if not secondary.is_erased(self._ts.status_off, self._ts.trailer_size):
            scramble(secondary, self._ts)
        write_swap_info(secondary, self._ts, wanted)
        if not test:
            write_flag(secondary, self._ts, "image_ok")
        write_magic(secondary, self._ts)

    def confirm(self) -> None:
        """The running image declares itself good (bootutil's ``boot_set_confirmed``).

        Sets image_ok in the primary trailer (if it has one) and raises the stored security
        counter to the image's counter.
        """
        running = self._require_running("confirm")
        primary = self._slots.primary
        state = read_state(primary, self._tp)
        if state.magic is Magic.GOOD:
            if state.image_ok is Flag.BAD:
                raise BootError(f"the primary trailer's image_ok is damaged ({state})")
            if state.image_ok is Flag.UNSET:
                write_flag(primary, self._tp, "image_ok")
        if running.security_counter > self._counter.read():
            self._counter.raise_to(running.security_counter)
        self._running = replace(running, confirmed=True)
