"""Baselines: findings a team has looked at and accepted, each with a written reason.

A baseline is a JSON file::

    {"version": 1,
     "accepted": [{"fingerprint": "798|fw/etc/app.conf:3", "reason": "test fixture, not shipped",
                   "rule_id": "detect-secrets.secret-keyword"}]}

``fingerprint`` is a finding's :meth:`~trustroot.scan.findings.Finding.fingerprint` (shown by
``--format json`` and in SARIF's ``partialFingerprints``); ``rule_id`` is informative. An entry
without a reason, an unknown version, or a malformed file is refused
(:class:`~trustroot.errors.BaselineError`): an accepted risk must say why it was accepted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from trustroot.errors import BaselineError, UnreadableInputError
from trustroot.scan.config import DEFAULT_SCAN_LIMITS, ScanLimits

__all__ = ["BASELINE_VERSION", "Baseline", "load_baseline"]

BASELINE_VERSION: Final = 1
MAX_REASON_CHARS: Final = 2000
MAX_FINGERPRINT_CHARS: Final = 2000
MAX_ENTRIES: Final = 100_000


@dataclass(frozen=True)
class Baseline:
    """Accepted fingerprints and why each was accepted."""

    path: Path
    reasons: dict[str, str]

    def reason_for(self, fingerprints: set[str]) -> str | None:
        """The reason a finding with these fingerprints is accepted, or ``None``."""
        for fingerprint in sorted(fingerprints):
            reason = self.reasons.get(fingerprint)
            if reason is not None:
                return reason
        return None


def load_baseline(path: Path, limits: ScanLimits = DEFAULT_SCAN_LIMITS) -> Baseline:
    """Read and validate the baseline file ``path``."""
    try:
        size = path.stat().st_size
        if size > limits.max_baseline_bytes:
            raise BaselineError(f"--baseline {path}: {size} bytes, more than {limits.max_baseline_bytes}")
        document = json.loads(path.read_bytes())
    except OSError as exc:
        raise UnreadableInputError(f"--baseline {path}: cannot be read ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise BaselineError(f"--baseline {path}: not JSON ({exc})") from exc
    if not isinstance(document, dict) or document.get("version") != BASELINE_VERSION:
        raise BaselineError(f"--baseline {path}: not a version {BASELINE_VERSION} trustroot scan baseline")
    entries = document.get("accepted")
    if not isinstance(entries, list) or len(entries) > MAX_ENTRIES:
        raise BaselineError(f"--baseline {path}: 'accepted' must be a list of at most {MAX_ENTRIES} entries")
    reasons: dict[str, str] = {}
    for index, entry in enumerate(entries):
        where = f"--baseline {path}: accepted[{index}]"
        if not isinstance(entry, dict):
            raise BaselineError(f"{where} is not an object")
        fingerprint = entry.get("fingerprint")
        if not isinstance(fingerprint, str) or not fingerprint.strip() or len(fingerprint) > MAX_FINGERPRINT_CHARS:
            raise BaselineError(f"{where}: 'fingerprint' must be a non-empty string")
        reason = entry.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise BaselineError(
                f"{where} ({fingerprint}) has no reason",
                hint="every accepted finding needs a 'reason' saying why the risk is accepted",
            )
        if len(reason) > MAX_REASON_CHARS:
            raise BaselineError(f"{where}: reason longer than {MAX_REASON_CHARS} characters")
        reasons[fingerprint] = reason.strip()
    return Baseline(path=path, reasons=reasons)
