"""Every limit of the scanning gate in one frozen object, with safe defaults.

A caller tightens or loosens one with ``dataclasses.replace(DEFAULT_SCAN_LIMITS, ...)``; the tests
use small limits so that a bomb is refused after a few megabytes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_SCAN_LIMITS", "ScanLimits"]

_MIB = 1024 * 1024


@dataclass(frozen=True)
class ScanLimits:
    """Bounds on what the gate unpacks and how long its engines may run.

    ``max_unpacked_bytes`` counts the bytes actually written while unpacking one archive or image
    (headers are not trusted); ``max_ratio`` refuses an archive whose unpacked size exceeds its own
    size by that factor once ``ratio_floor_bytes`` have been written (a zip bomb).
    """

    max_members: int = 200_000
    max_unpacked_bytes: int = 4096 * _MIB
    max_member_bytes: int = 1024 * _MIB
    max_ratio: int = 250
    ratio_floor_bytes: int = 64 * _MIB
    max_name_length: int = 4096
    engine_timeout: float = 1800.0
    unpack_timeout: float = 1800.0
    unblob_depth: int = 5
    max_findings_per_engine: int = 20_000
    max_snippet_chars: int = 200
    max_baseline_bytes: int = 8 * _MIB
    max_targets: int = 50


DEFAULT_SCAN_LIMITS = ScanLimits()
