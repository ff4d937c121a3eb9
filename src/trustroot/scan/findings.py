"""The one findings model every engine and check of the scanning gate reports into."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final

__all__ = ["SEVERITY_ORDER", "Finding", "Location", "Severity"]


class Severity(enum.StrEnum):
    """How bad a finding is. ``inventory`` is a fact worth listing, not a defect (flawfinder's hits)."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"
    INVENTORY = "inventory"


#: Rank used by ``--fail-on`` and sorting: higher is worse.
SEVERITY_ORDER: Final = {
    Severity.INVENTORY: 0,
    Severity.INFO: 1,
    Severity.LOW: 2,
    Severity.MEDIUM: 3,
    Severity.HIGH: 4,
}


@dataclass(frozen=True, slots=True)
class Location:
    """Where a finding is.

    ``path`` is relative to the scanned root, ``/``-separated. A member of an archive or of an
    unpacked image is ``<archive path>/<member path>`` with ``container`` set to the archive's own
    path. A text file has ``line`` (1-based, 0 when unknown); a blob has ``byte_offset`` and
    ``byte_length``.
    """

    path: str
    line: int = 0
    column: int = 0
    byte_offset: int | None = None
    byte_length: int | None = None
    container: str | None = None


@dataclass(slots=True)
class Finding:
    """One problem (or inventory item) found by an engine or one of trustroot's own checks.

    ``rule_id`` is stable across runs (``trustroot.private-key``, ``cppcheck.nullPointer``);
    ``snippet`` is the evidence with every secret masked (never the secret itself); ``engines`` lists
    every engine that reported it once duplicates are merged.
    """

    rule_id: str
    title: str
    severity: Severity
    location: Location
    cwe: tuple[int, ...] = ()
    provisions: tuple[str, ...] = ()
    guideline: int | None = None
    snippet: str = ""
    engines: list[str] = field(default_factory=list)
    message: str = ""

    def fingerprint(self) -> str:
        """Identity of the finding for baselines and merging: rule family, CWE set and location."""
        loc = self.location
        where = f"{loc.path}:{loc.line}" if loc.byte_offset is None else f"{loc.path}@{loc.byte_offset}"
        cwe = ",".join(str(c) for c in sorted(self.cwe))
        return f"{cwe or self.rule_id}|{where}"
