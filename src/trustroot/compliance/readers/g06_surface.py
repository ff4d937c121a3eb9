"""Guidelines 6 and 13: minimise exposed attack surface; validate input data (scan evidence)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from trustroot.compliance.readers import reader, scan_unit, unit
from trustroot.compliance.verdicts import UnitResult, Verdict

if TYPE_CHECKING:
    from trustroot.compliance.sources import EvidenceSet

_FIRMWARE = ("rootfs", "image")


@reader("5.6-1")
def unused_interfaces(ev: EvidenceSet) -> list[UnitResult]:
    return [scan_unit(ev, "5.6-1", 1, "No unneeded network service is started", kinds=_FIRMWARE)]


@reader("5.6-2")
def minimal_disclosure(ev: EvidenceSet) -> list[UnitResult]:
    return [
        scan_unit(ev, "5.6-2", 1, "No service discloses security information without authentication", kinds=_FIRMWARE)
    ]


@reader("5.6-4")
def debug_interfaces(ev: EvidenceSet) -> list[UnitResult]:
    return [scan_unit(ev, "5.6-4", 1, "No debug shell or interface is started in software", kinds=_FIRMWARE)]


@reader("5.6-5")
def only_needed_services(ev: EvidenceSet) -> list[UnitResult]:
    return [
        scan_unit(ev, "5.6-5", 1, "Only the services the product needs are enabled", kinds=_FIRMWARE, also=("5.6-1",))
    ]


@reader("5.6-7")
def least_privilege(ev: EvidenceSet) -> list[UnitResult]:
    return [scan_unit(ev, "5.6-7", 1, "Binaries are hardened and services run unprivileged", kinds=_FIRMWARE)]


@reader("5.6-9")
def secure_development(ev: EvidenceSet) -> list[UnitResult]:
    p = "5.6-9"
    targets = ev.context.model.code_quality.targets
    title = "The scanning gate covers the product's code"
    if not targets:
        units = [
            unit(
                p,
                1,
                title,
                Verdict.FAIL,
                "no [[code_quality.targets]]: nothing is scanned",
                [ev.setting("code_quality")],
            )
        ]
    else:
        units = [
            unit(
                p,
                1,
                title,
                Verdict.PASS,
                f"{len(targets)} target(s); the gate fails on {ev.context.model.code_quality.fail_on} and above",
                [ev.setting("code_quality", "targets")],
            )
        ]
    units.append(scan_unit(ev, p, 2, "Every target has a current scan", judge_findings=False))
    return units


@reader("5.13-1")
def input_validation(ev: EvidenceSet) -> list[UnitResult]:
    return [scan_unit(ev, "5.13-1", 1, "No input-validation weakness (CWE-20, 78, 120, 787 ...) in the code")]
