"""A/B image slots as directories on a Linux-class device, switched by one atomic pointer.

Layout (in the agent's state directory)::

    slots/a/image.bin   the signed MCUboot image            slots/b/image.bin
    slots/a/meta.json   {"version", "security_counter",      slots/b/meta.json
                         "sha256", "size"}
    slots/boot.json     {"format": "trustroot.agent-slots/1", "active": "a" | "b",
                         "trial": null | "a" | "b", "counter_floor": n}

The protocol is MCUboot's test-boot, on files (every step one atomic rename, fsync'd)::

    stage(image)    write the inactive slot: image.bin first, meta.json (with its SHA-256) last;
                    a slot whose meta is missing or does not match its image is empty
    begin_trial()   boot.json: trial = the inactive slot (the next boot runs it once)
    confirm()       boot.json: active = trial, trial = null, counter_floor = max(floor, its counter)
    revert()        boot.json: trial = null (the active slot, last known good, runs again)

A restart while a trial is pending is a test boot that was never confirmed: :meth:`Slots.recover`
reverts it, as MCUboot does after a reset without confirmation. The active slot therefore always
holds an image that was verified and confirmed, whatever moment a kill or power cut hits.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from trustroot._fsutil import atomic_write, fsync_dir, read_bounded
from trustroot.errors import AgentStateError

__all__ = ["BOOT_FILE", "BootState", "SlotImage", "Slots"]

BOOT_FILE: Final = "boot.json"
_FORMAT: Final = "trustroot.agent-slots/1"
_IMAGE: Final = "image.bin"
_META: Final = "meta.json"
SlotName = Literal["a", "b"]


@dataclass(frozen=True)
class SlotImage:
    """What a slot holds (from its meta file, checked against the image)."""

    slot: SlotName
    version: str
    security_counter: int
    sha256: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "security_counter": self.security_counter,
            "sha256": self.sha256,
            "size": self.size,
        }


@dataclass(frozen=True)
class BootState:
    active: SlotName
    trial: SlotName | None
    counter_floor: int


def _other(slot: SlotName) -> SlotName:
    return "b" if slot == "a" else "a"


class Slots:
    """The two slots of one device (module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._boot_path = self.directory / BOOT_FILE

    # -- reading ------------------------------------------------------------------------------------

    def exists(self) -> bool:
        return self._boot_path.exists()

    def boot(self) -> BootState:
        raw = read_bounded(self._boot_path, 4096, what="slot pointer")
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise AgentStateError(f"{self._boot_path} is not JSON ({exc})") from exc
        if (
            not isinstance(doc, dict)
            or doc.get("format") != _FORMAT
            or doc.get("active") not in ("a", "b")
            or doc.get("trial") not in (None, "a", "b")
            or doc.get("trial") == doc.get("active")
            or type(doc.get("counter_floor")) is not int
        ):
            raise AgentStateError(f"{self._boot_path}: not a {_FORMAT} slot pointer")
        return BootState(active=doc["active"], trial=doc["trial"], counter_floor=doc["counter_floor"])

    def image(self, slot: SlotName, *, check_hash: bool = True) -> SlotImage | None:
        """The slot's image, or None when the slot is empty or half-written."""
        meta_path = self.directory / slot / _META
        image_path = self.directory / slot / _IMAGE
        if not meta_path.exists() or not image_path.exists():
            return None
        try:
            doc = json.loads(read_bounded(meta_path, 4096, what="slot meta"))
            found = SlotImage(
                slot=slot,
                version=str(doc["version"]),
                security_counter=int(doc["security_counter"]),
                sha256=str(doc["sha256"]),
                size=int(doc["size"]),
            )
        except (ValueError, KeyError, TypeError):
            return None
        if check_hash and (
            image_path.stat().st_size != found.size
            or hashlib.sha256(image_path.read_bytes()).hexdigest() != found.sha256
        ):
            return None
        return found

    def image_path(self, slot: SlotName) -> Path:
        return self.directory / slot / _IMAGE

    def active(self) -> SlotImage:
        """The last-known-good image (the confirmed, active slot)."""
        state = self.boot()
        found = self.image(state.active)
        if found is None:
            raise AgentStateError(f"{self.directory}: the active slot {state.active} holds no valid image")
        return found

    # -- writing ------------------------------------------------------------------------------------

    def _write_boot(self, state: BootState) -> None:
        doc = {"format": _FORMAT, "active": state.active, "trial": state.trial, "counter_floor": state.counter_floor}
        atomic_write(self._boot_path, json.dumps(doc, sort_keys=True).encode(), mode=0o600)

    def initialise(self, data: bytes, version: str, security_counter: int) -> SlotImage:
        """Put the factory image in slot a and make it active (only on a device with no slots yet)."""
        if self.exists():
            raise AgentStateError(f"{self.directory} has slots already")
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        image = self._write_slot("a", data, version, security_counter)
        self._write_boot(BootState(active="a", trial=None, counter_floor=security_counter))
        return image

    def _write_slot(self, slot: SlotName, data: bytes, version: str, security_counter: int) -> SlotImage:
        folder = self.directory / slot
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True, mode=0o700)
        fsync_dir(self.directory)
        found = SlotImage(
            slot=slot,
            version=version,
            security_counter=security_counter,
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
        )
        atomic_write(folder / _IMAGE, data, mode=0o600)
        atomic_write(folder / _META, json.dumps(found.to_json(), sort_keys=True).encode(), mode=0o600)
        return found

    def stage(self, data: bytes, version: str, security_counter: int) -> SlotImage:
        """Write a verified image into the inactive slot (refused while a trial is pending)."""
        state = self.boot()
        if state.trial is not None:
            raise AgentStateError(f"{self.directory}: slot {state.trial} is on trial; confirm or revert it first")
        return self._write_slot(_other(state.active), data, version, security_counter)

    def begin_trial(self) -> SlotImage:
        """Mark the staged inactive slot for a test boot; return its image."""
        state = self.boot()
        slot = _other(state.active)
        staged = self.image(slot)
        if staged is None:
            raise AgentStateError(f"{self.directory}: slot {slot} holds no valid image to test")
        self._write_boot(BootState(active=state.active, trial=slot, counter_floor=state.counter_floor))
        return staged

    def confirm(self) -> SlotImage:
        """Make the slot on trial the active one and raise the counter floor to its counter."""
        state = self.boot()
        if state.trial is None:
            raise AgentStateError(f"{self.directory}: no slot is on trial")
        trial = self.image(state.trial)
        if trial is None:
            raise AgentStateError(f"{self.directory}: the slot on trial ({state.trial}) no longer holds its image")
        floor = max(state.counter_floor, trial.security_counter)
        self._write_boot(BootState(active=state.trial, trial=None, counter_floor=floor))
        return trial

    def revert(self) -> SlotImage:
        """Abandon the trial: the active slot (last known good) runs."""
        state = self.boot()
        if state.trial is not None:
            self._write_boot(BootState(active=state.active, trial=None, counter_floor=state.counter_floor))
        return self.active()

    def recover(self) -> SlotImage | None:
        """At start: revert a trial that was never confirmed; return the abandoned image, if any."""
        state = self.boot()
        if state.trial is None:
            return None
        abandoned = self.image(state.trial, check_hash=False)
        self.revert()
        return abandoned

    def wipe_inactive(self) -> None:
        """Remove the inactive slot's content (nothing to keep after a factory reset)."""
        state = self.boot()
        folder = self.directory / _other(state.active)
        if state.trial is None and folder.exists():
            shutil.rmtree(folder)
            fsync_dir(self.directory)
