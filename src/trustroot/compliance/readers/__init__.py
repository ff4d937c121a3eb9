"""Evidence readers: one per EN 303 645 V2.1.1 provision that a tool can check.

A reader is a pure function ``(EvidenceSet) -> list[UnitResult]``: one result per test unit (a check
in the spirit of the provision's ETSI TS 103 701 test group), each naming the evidence it rests on.
Readers look only at the verified evidence (records, the context and its lint, the latest scans);
a provision with no reader here can only be ``declared`` (signed by a person) or ``inconclusive``.

The modules group readers by guideline; each registers with :func:`reader`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from trustroot.compliance.verdicts import EvidenceRef, UnitResult, Verdict

if TYPE_CHECKING:
    from trustroot.compliance.sources import EvidenceSet

__all__ = ["READERS", "Reader", "inconclusive", "lint_unit", "reader", "scan_unit", "unit"]

Reader = Callable[["EvidenceSet"], list[UnitResult]]

#: Provision id (V2.1.1) -> its reader. Filled by the modules below when this package is imported.
READERS: dict[str, Reader] = {}


def reader(provision: str) -> Callable[[Reader], Reader]:
    """Register ``function`` as the reader of ``provision``."""

    def register(function: Reader) -> Reader:
        if provision in READERS:
            raise RuntimeError(f"two readers for provision {provision}")
        READERS[provision] = function
        return function

    return register


def unit(  # noqa: PLR0917  (the six parts of a unit result, always in this order)
    provision: str, number: int, title: str, verdict: Verdict, reason: str, evidence: Iterable[EvidenceRef] = ()
) -> UnitResult:
    """A test unit result named ``<provision>/<number>``."""
    return UnitResult(f"{provision}/{number}", title, verdict, reason, tuple(evidence))


def inconclusive(provision: str, number: int, title: str, reason: str) -> UnitResult:
    return unit(provision, number, title, Verdict.INCONCLUSIVE, reason)


def lint_unit(  # noqa: PLR0917  (as unit())
    ev: EvidenceSet,
    provision: str,
    number: int,
    title: str,
    ok_reason: str,
    settings: Iterable[tuple[str | int, ...]],
    *,
    lint_of: str | None = None,
) -> UnitResult:
    """Fail when the context's lint has an error for ``provision`` (or ``lint_of``); else pass on ``settings``."""
    errors = ev.lint_findings(lint_of or provision)
    if errors:
        return unit(
            provision,
            number,
            title,
            Verdict.FAIL,
            "; ".join(f"{f.key} (line {f.line}): {f.message}" for f in errors),
            [ev.lint_ref(f) for f in errors],
        )
    return unit(provision, number, title, Verdict.PASS, ok_reason, [ev.setting(*path) for path in settings])


def scan_unit(
    ev: EvidenceSet,
    provision: str,
    number: int,
    title: str,
    *,
    kinds: tuple[str, ...] = ("source", "rootfs", "image"),
    also: tuple[str, ...] = (),
    judge_findings: bool = True,
    rules: tuple[str, ...] = (),
) -> UnitResult:
    """Decide from the latest scans of the context's targets of ``kinds``.

    Fail when a usable scan has a finding of medium severity or above for ``provision`` (or one of
    ``also``, or whose rule id contains one of ``rules``); with ``judge_findings`` false only current
    scans are asked for. Inconclusive when there is no such target, one was never scanned or its
    scan is stale; pass otherwise.
    """
    scans = [s for s in ev.scans.values() if s.kind in kinds]
    if not scans:
        return inconclusive(
            provision, number, title, f"no scan target of kind {' or '.join(kinds)} in [[code_quality.targets]]"
        )
    missing = [s.target for s in scans if s.record is None]
    if missing:
        return inconclusive(provision, number, title, f"never scanned: {', '.join(missing)} (run trustroot scan)")
    stale = [s for s in scans if s.stale]
    if stale:
        return inconclusive(
            provision,
            number,
            title,
            "stale scan: " + "; ".join(s.stale_reason for s in stale),
        )
    refs: list[EvidenceRef] = []
    findings: list[str] = []
    for scan in scans:
        assert scan.record is not None  # noqa: S101  (checked above)
        hits = [f for p in (provision, *also) for f in scan.findings_for(p)] if judge_findings else []
        hits += [f for f in scan.findings if f.rank >= 3 and f not in hits and any(r in f.rule_id for r in rules)]
        refs.append(scan.record.ref(f"scan of {scan.target}: {len(hits)} finding(s) for {provision}"))
        findings += [f"{scan.target}: {f.rule_id} at {f.location} ({f.severity})" for f in hits]
    if findings:
        shown = "; ".join(findings[:5]) + (f"; and {len(findings) - 5} more" if len(findings) > 5 else "")
        return unit(provision, number, title, Verdict.FAIL, shown, refs)
    if not judge_findings:
        names = ", ".join(s.target for s in scans)
        return unit(provision, number, title, Verdict.PASS, f"current scans of {names} (none stale)", refs)
    return unit(
        provision,
        number,
        title,
        Verdict.PASS,
        f"the latest scans of {', '.join(s.target for s in scans)} found nothing of medium severity or above",
        refs,
    )


def _load_all() -> None:
    from trustroot.compliance.readers import (  # noqa: F401  (registration by import)
        g01_passwords,
        g02_disclosure,
        g03_updates,
        g04_credentials,
        g05_communication,
        g06_surface,
        g07_integrity_data,
    )


_load_all()
