"""csaf/: CSAF 2.0 security advisories for disclosed vulnerabilities that were fixed or mitigated.

One ``csaf_security_advisory`` per report whose evidence shows a corrective measure (or a close as
fixed / mitigated). The fixing release is the first ``release.published`` at or after the corrective
measure; versions before it are ``known_affected`` (a ``vers:generic/<X`` range), the release
itself ``fixed``. Only what the evidence holds is published: the tracking id, severity, dates and
versions; never the reporter or the report's text (the service keeps those).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from trustroot import __version__
from trustroot.compliance.cra import Report, reports

if TYPE_CHECKING:
    from trustroot.compliance.assess import Assessment
    from trustroot.compliance.sources import EvidenceSet, Sourced

__all__ = ["advisories", "advisory_file_name"]

_FIXED_RESOLUTIONS: Final = frozenset({"fixed", "mitigated"})
_SAFE_NAME = re.compile(r"[^a-z0-9+\-]+")


def _date(moment: datetime | None) -> str:
    assert moment is not None  # noqa: S101  (callers pass a time)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def advisory_file_name(tracking_id: str) -> str:
    """CSAF's file name rule (section 5.1): lower case, runs of other characters as ``_``, ``.json``."""
    return _SAFE_NAME.sub("_", tracking_id.lower()) + ".json"


def _fix_release(ev: EvidenceSet, report: Report) -> Sourced | None:
    measure = report.at("corrective_measure_at") or report.at("closed_at")
    releases = ev.of_type("release.published")
    if measure is None:
        return releases[-1] if releases else None
    after = [r for r in releases if r.record.time[:19] >= measure.strftime("%Y-%m-%dT%H:%M:%S")]
    return after[0] if after else (releases[-1] if releases else None)


def _publisher(ev: EvidenceSet) -> dict[str, str]:
    product = ev.context.model.product
    disclosure = product.disclosure
    url = disclosure.canonical_url or disclosure.policy_url if disclosure else None
    namespace = "https://" + urlsplit(url).netloc if url else "https://invalid.example"
    return {"category": "vendor", "name": product.manufacturer, "namespace": namespace}


def _advisory(ev: EvidenceSet, report: Report, generated: datetime) -> dict[str, Any]:
    product = ev.context.model.product
    fix = _fix_release(ev, report)
    fixed_version = str(fix.data.get("version")) if fix is not None else None
    pid_fixed, pid_affected = "CSAFPID-0001", "CSAFPID-0002"
    versions: list[dict[str, Any]] = []
    status: dict[str, list[str]] = {}
    remediations: list[dict[str, Any]] = []
    if fixed_version:
        versions = [
            {
                "category": "product_version_range",
                "name": f"vers:generic/<{fixed_version}",
                "product": {"name": f"{product.name} < {fixed_version}", "product_id": pid_affected},
            },
            {
                "category": "product_version",
                "name": fixed_version,
                "product": {"name": f"{product.name} {fixed_version}", "product_id": pid_fixed},
            },
        ]
        status = {"fixed": [pid_fixed], "known_affected": [pid_affected]}
        remediations = [
            {
                "category": "vendor_fix",
                "details": f"Update to firmware {fixed_version} (delivered as a signed update over the air).",
                "product_ids": [pid_affected],
                "date": _date(report.at("corrective_measure_at") or generated),
            }
        ]
    initial = report.at("corrective_measure_at") or report.at("closed_at") or generated
    severity = report.severity or "unrated"
    vulnerability: dict[str, Any] = {
        "ids": [{"system_name": f"{product.manufacturer} vulnerability report", "text": report.id}],
        "notes": [
            {
                "category": "summary",
                "title": "Summary",
                "text": f"A vulnerability reported to {product.manufacturer} ({report.id}), triaged as {severity}"
                + (", actively exploited" if report.actively_exploited else "")
                + (f", is fixed in firmware {fixed_version}." if fixed_version else ", is mitigated."),
            }
        ],
        "discovery_date": _date(report.received_at),
    }
    if status:
        vulnerability["product_status"] = status
        vulnerability["remediations"] = remediations
    if report.actively_exploited:
        vulnerability["threats"] = [
            {"category": "exploit_status", "details": "Actively exploited (reported under EU CRA Article 14)."}
        ]
    tree_product = {"category": "product_name", "name": product.name, "branches": versions} if versions else None
    branches = (
        [{"category": "vendor", "name": product.manufacturer, "branches": [tree_product]}] if tree_product else []
    )
    document: dict[str, Any] = {
        "document": {
            "category": "csaf_security_advisory",
            "csaf_version": "2.0",
            "lang": "en",
            "publisher": _publisher(ev),
            "title": f"{product.name}: vulnerability {report.id} fixed",
            "tracking": {
                "id": report.id,
                "status": "final",
                "version": "1",
                "initial_release_date": _date(initial),
                "current_release_date": _date(generated),
                "revision_history": [{"date": _date(initial), "number": "1", "summary": "Initial release."}],
                "generator": {"engine": {"name": "trustroot", "version": __version__}, "date": _date(generated)},
            },
            "notes": [
                {
                    "category": "legal_disclaimer",
                    "title": "Terms of use",
                    "text": f"Published by {product.manufacturer} under its vulnerability disclosure policy.",
                }
            ],
        },
        "vulnerabilities": [vulnerability],
    }
    if branches:
        document["product_tree"] = {"branches": branches}
    return document


def advisories(a: Assessment) -> dict[str, dict[str, Any]]:
    """File name -> CSAF document, one per fixed or mitigated report."""
    ev = a.evidence
    out: dict[str, dict[str, Any]] = {}
    for report in reports(ev):
        if report.resolution in _FIXED_RESOLUTIONS or report.at("corrective_measure_at") is not None:
            out[advisory_file_name(report.id)] = _advisory(ev, report, a.generated_at)
    return out
