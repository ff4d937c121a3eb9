"""The reference secure boot manager: MCUboot's boot flow over a simulated flash (guidelines 7, 9).

A model to reason about, and to test, what a device does at every reset: which image runs,
when an upgrade is installed or reverted, when the anti-rollback counter moves, and what a
power cut at any flash operation leaves behind. Modules, bottom up::

    flash.py     FlashGeometry, Flash (op counter, PowerCut), FlashArea
    trailer.py   the image trailer per write alignment: magic, swap info, flags, swap status
    slots.py     BootLayout (primary / secondary / counter areas), Slots
    counter.py   CounterStore, FlashCounterStore (a monotonic thermometer code)
    validate.py  ImageVerifier (bootutil's hash, key and signature checks), VerifiedImage
    manager.py   BootManager (boot, stage_image, request_upgrade, confirm), BootResult
    settings.py  check a product's [boot] settings against the model

``docs/boot.md`` describes the flow, the trailer and the power-fail guarantees.
"""

from __future__ import annotations

from trustroot.boot.counter import CounterStore, FlashCounterStore
from trustroot.boot.errors import BootError, FlashError, InvalidImageError
from trustroot.boot.flash import Flash, FlashArea, FlashGeometry, PowerCut
from trustroot.boot.manager import BootManager, BootResult, RunningImage
from trustroot.boot.slots import AreaSpec, BootLayout, Slots
from trustroot.boot.validate import ImageVerifier, VerifiedImage, Verifier

__all__ = [
    "AreaSpec",
    "BootError",
    "BootLayout",
    "BootManager",
    "BootResult",
    "CounterStore",
    "Flash",
    "FlashArea",
    "FlashCounterStore",
    "FlashError",
    "FlashGeometry",
    "ImageVerifier",
    "InvalidImageError",
    "PowerCut",
    "RunningImage",
    "Slots",
    "VerifiedImage",
    "Verifier",
]
