"""report.json: the assessment as versioned JSON (schema ``trustroot.assessment/1``).

The JSON Schema ships in the package (``compliance/schemas/assessment-1.schema.json``) and is
documented field by field in docs/assessment.md. :func:`read_report` refuses any other major
version, so ``--compare`` never diffs what it does not understand.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from trustroot import __version__
from trustroot.compliance.assess import SCHEMA, Assessment, FailOn
from trustroot.errors import UnreadableInputError, UsageError
from trustroot.evidence import format_time

__all__ = ["MAX_REPORT_BYTES", "json_schema", "read_report", "to_json"]

#: Largest earlier report read back (--compare, trends).
MAX_REPORT_BYTES: Final = 32 << 20

if TYPE_CHECKING:
    from collections.abc import Sequence


def json_schema() -> dict[str, Any]:
    """The shipped JSON Schema of report.json."""
    text = resources.files("trustroot.compliance").joinpath("schemas", "assessment-1.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def to_json(a: Assessment, *, fail_on: FailOn, trends: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The report.json document of ``a``."""
    ev = a.evidence
    model = ev.context.model
    product = model.product
    blocking = a.blocking(fail_on)
    return {
        "schema": SCHEMA,
        "generated_at": format_time(a.generated_at),
        "tool": {"name": "trustroot", "version": __version__},
        "standard": {
            "name": "ETSI EN 303 645",
            "edition": a.catalogue.edition,
            "test_specification": "ETSI TS 103 701",
        },
        "product": {
            "name": product.name,
            "manufacturer": product.manufacturer,
            "manufacturer_address": product.manufacturer_address,
            "model": product.model,
            "product_type": product.product_type,
            "hardware_versions": list(product.hardware_versions),
            "support_period_end": product.support_period_end.isoformat() if product.support_period_end else None,
        },
        "evidence": {
            "context": {"source": ev.context_source, "sha256": ev.context_sha256},
            "chains": [c.as_dict() for c in ev.chains],
            "fleet": ev.fleet_source,
            "scans": [
                {
                    "target": s.target,
                    "path": s.path,
                    "kind": s.kind,
                    "record": s.record.ref().as_dict() if s.record else None,
                    "report": s.report_path,
                    "stale": s.stale,
                    "stale_reason": s.stale_reason or None,
                    "counts": s.counts,
                    "findings": len(s.findings),
                }
                for s in ev.scans.values()
            ],
        },
        "summary": {
            "verdicts": a.counts(),
            "mandatory": a.counts(mandatory=True),
            "recommended": a.counts(mandatory=False),
            "tool_checked": len(a.tool_checked),
            "gate": {"fail_on": fail_on, "passed": not blocking, "blocking": [p.id for p in blocking]},
        },
        "guidelines": a.guideline_summary(),
        "provisions": [p.as_dict() for p in a.provisions],
        "lint": [f.as_dict() for f in ev.lint],
        "declarations": {
            "valid": [d.as_dict() for d in a.declarations.valid.values()],
            "refused": [{"seq": seq, "reason": reason} for seq, reason in a.declarations.refused],
        },
        "disclosures": a.disclosures,
        "trends": list(trends),
    }


def read_report(path: Path) -> dict[str, Any]:
    """An earlier report.json, checked to be of this schema's major version."""
    try:
        raw = Path(path).read_bytes()[: MAX_REPORT_BYTES + 1]
    except OSError as exc:
        raise UnreadableInputError(f"{path}: cannot be read ({exc.strerror})") from exc
    if len(raw) > MAX_REPORT_BYTES:
        raise UsageError(f"{path}: larger than {MAX_REPORT_BYTES} bytes; not an assessment report")
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise UsageError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        found = document.get("schema") if isinstance(document, dict) else None
        raise UsageError(f"{path}: schema {found!r} is not {SCHEMA!r}; this trustroot reads only its own reports")
    provisions = document.get("provisions")
    if not isinstance(provisions, list) or not all(
        isinstance(p, dict) and isinstance(p.get("id"), str) and isinstance(p.get("verdict"), str) for p in provisions
    ):
        raise UsageError(f"{path}: its provisions list is malformed")
    return document
