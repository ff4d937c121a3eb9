"""trustroot's own IoT checks: the problems no engine finds (placeholder until the checks land).

The gate calls :func:`run_tree` on every tree it scans (a source tree, a root file system, an
unpacked archive or image) and :func:`run_blob` on every raw blob or chunk nothing could unpack.
"""

from __future__ import annotations

from pathlib import Path

from trustroot.scan.findings import Finding

__all__ = ["run_blob", "run_tree"]


def run_tree(root: Path) -> list[Finding]:
    """Findings of the own checks over the tree ``root`` (paths relative to ``root``)."""
    del root
    return []


def run_blob(path: Path) -> list[Finding]:
    """Findings of the own checks over the raw blob ``path`` (locations with byte offsets)."""
    del path
    return []
