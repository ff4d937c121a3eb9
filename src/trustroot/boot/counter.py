"""The monotonic security counter the boot loader keeps (MCUboot's hardware rollback protection).

:class:`FlashCounterStore` keeps the counter in its own sectors of the simulated flash, as a
*thermometer code*, the way one-time-programmable fuses count: value ``v`` is ``v`` programmed
write units from the start of the area, the rest still erased::

    unit:   0    1    2    3    4    5    …    capacity-1
          ├────┼────┼────┼────┼────┼────┼─ … ─┼────┤
          │ ## │ ## │ ## │    │    │    │     │    │      value 3
          └────┴────┴────┴────┴────┴────┴─ … ─┴────┘
          programmed (not erased)  │ erased

Why this shape:

- it can only go up: raising programs more units; nothing in this class ever erases the area;
- it is power-cut safe: raising from ``a`` to ``b`` writes units ``a..b-1`` in ascending order,
  so a cut leaves some value in ``a..b`` (never below ``a``, never a gap), and the boot manager
  simply raises again at the next boot;
- reading needs no checksum: the value is one past the highest programmed unit.

The capacity is the number of write units in the area (e.g. 512 values for a 4 KiB sector at
alignment 8); a real product would keep the counter in OTP fuses or a secure element, and a
counter value beyond the capacity is refused rather than wrapped.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from trustroot.boot.errors import BootError
from trustroot.boot.flash import FlashArea

__all__ = ["CounterStore", "FlashCounterStore"]


@runtime_checkable
class CounterStore(Protocol):
    """A monotonic counter: read it, or raise it (never lower it)."""

    def read(self) -> int: ...

    def raise_to(self, value: int) -> None:
        """Make the counter ``value``; refuse a lower value, do nothing for the same one."""
        ...


class FlashCounterStore:
    """The security counter as a thermometer code in a dedicated flash area."""

    def __init__(self, area: FlashArea) -> None:
        self._area = area
        self._unit = area.align
        self._programmed = bytes([area.erased_value ^ 0xFF]) * self._unit

    @property
    def capacity(self) -> int:
        """The largest value the area can hold."""
        return self._area.size // self._unit

    def read(self) -> int:
        """One past the highest programmed unit (a gap could only read higher, never lower)."""
        data = self._area.read(0, self._area.size).rstrip(bytes([self._area.erased_value]))
        return -(-len(data) // self._unit)

    def raise_to(self, value: int) -> None:
        current = self.read()
        if value < current:
            raise BootError(f"the security counter cannot go down (stored {current}, asked {value})")
        if value > self.capacity:
            raise BootError(f"security counter {value} exceeds the store's capacity ({self.capacity})")
        if value > current:
            self._area.write(current * self._unit, self._programmed * (value - current))
