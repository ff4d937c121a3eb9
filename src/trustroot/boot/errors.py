"""Errors of the boot model: BootError and FlashError live in trustroot.errors; InvalidImageError here.

::

    TrustrootError
    └── BootError                  a boot-model operation was refused (layout, trailer, protocol order)
        ├── FlashError             misuse of the simulated flash: write to unerased memory,
        │                          misaligned or out-of-bounds access, erase not on a sector boundary
        └── InvalidImageError      an image failed verification (hash, key, signature, format,
                                   security counter); ``reason`` says which check

    BaseException
    └── PowerCut                   the simulated power went away (trustroot.boot.flash); not an error
                                   of the code under test, so nothing may catch it by accident

A power cut is deliberately *not* a :class:`~trustroot.errors.TrustrootError` nor even an
:class:`Exception`: the boot manager treats any exception of an injected verifier as a refusal
(fail closed), and such a handler must never swallow the loss of power.
"""

from __future__ import annotations

from trustroot.errors import BootError, FlashError

__all__ = ["BootError", "FlashError", "InvalidImageError"]


class InvalidImageError(BootError):
    """An image failed verification; ``reason`` is a short machine-friendly cause."""

    def __init__(self, message: str, *, reason: str, provision: str | None = "5.7-1") -> None:
        super().__init__(message, provision=provision)
        self.reason = reason
