"""Evidence of a scan run inside a product: a stored SARIF copy and one ``scan.completed`` per target.

The SARIF log is kept under ``.trustroot/scans/<UTC time>-<digest prefix>.sarif`` (written
atomically). Each target gets a ``scan.completed`` record naming the target (the context's
``[[code_quality.targets]]`` name when the path is one of them), the SARIF digest and copy, the
counts per severity, the engines that ran, and the newest modification time of the files covered,
so the assessment can tell a scan of old sources from a current one.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from trustroot._fsutil import atomic_write
from trustroot.scan.gate import ScanResult

if TYPE_CHECKING:
    from trustroot.product import Product

__all__ = ["SCAN_EVIDENCE_TYPE", "RecordedScan", "record_scan", "target_name"]

SCAN_EVIDENCE_TYPE: Final = "scan.completed"
_SLUG: Final = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class RecordedScan:
    """Where the SARIF copy went, its digest, and the target names recorded."""

    sarif_path: Path
    sha256: str
    targets: tuple[str, ...]


def target_name(product: Product, given: str) -> str:
    """The context's name for the target at ``given``, else a slug of the path."""
    resolved = (Path.cwd() / given).resolve()
    for target in product.context.model.code_quality.targets:
        if (product.root / target.path).resolve() == resolved:
            return target.name
    slug = _SLUG.sub("-", Path(given).name.lower()).strip("-")
    return (slug or "target")[:63]


def _utc(timestamp: float) -> str | None:
    if not timestamp:
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_scan(product: Product, result: ScanResult, sarif: bytes) -> RecordedScan:
    """Store ``sarif`` under the product's ``scans/`` and append one evidence record per target."""
    digest = hashlib.sha256(sarif).hexdigest()
    stamp = result.started.strftime("%Y%m%dT%H%M%SZ")
    path = product.state_dir / "scans" / f"{stamp}-{digest[:16]}.sarif"
    atomic_write(path, sarif)
    names: list[str] = []
    items: list[tuple[str, str, dict[str, Any]]] = []
    for target in result.targets:
        name = target_name(product, target.given)
        names.append(name)
        data: dict[str, Any] = {
            "target": name,
            "path": target.given,
            "kind": target.kind,
            "sarif_sha256": digest,
            "sarif_path": path.relative_to(product.state_dir).as_posix(),
            "counts": result.counts(target.given),
            "suppressed": sum(1 for m, _ in result.suppressed if result.target_of.get(id(m)) == target.given),
            "fail_on": result.fail_on.value,
            "passed": not any(result.target_of.get(id(m)) == target.given for m in result.failing),
            "files": target.files,
            "newest_mtime": _utc(target.newest_mtime),
            "engines": {n: o.status for n, o in target.outcomes.items()},
            "versions": {n: v for n, v in result.versions.items() if v is not None},
        }
        items.append((SCAN_EVIDENCE_TYPE, name, data))
    product.evidence.append_many(items, product.actor)
    return RecordedScan(path, digest, tuple(names))
