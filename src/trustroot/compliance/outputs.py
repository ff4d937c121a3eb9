"""Writing an assessment's artefacts, keeping each run for trends, comparing with an earlier report.

::

    OUT/                              (and a copy in .trustroot/assessments/<YYYYmmddTHHMMSSZ>/)
      report.json  report.html  report.md  psti-statement.html
      security.txt                    RFC 9116 (absent when the context has no disclosure contact)
      sbom.cdx.json                   CycloneDX 1.5
      csaf/<tracking id>.json         CSAF 2.0 advisories of fixed or mitigated reports
      cra/<report id>-<step>.md       EU CRA Art. 14 notification drafts of steps not yet sent

Every file is written atomically; then one ``assessment.completed`` evidence record names the
report's SHA-256, the verdict counts and the gate's result.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from trustroot._fsutil import atomic_write
from trustroot.compliance.assess import Assessment, FailOn
from trustroot.compliance.csaf import advisories
from trustroot.compliance.render import render_html, render_markdown, render_psti
from trustroot.compliance.report_json import MAX_REPORT_BYTES, read_report, to_json
from trustroot.compliance.sbom import sbom
from trustroot.errors import TrustrootError, UsageError

if TYPE_CHECKING:
    from trustroot.product import Product

__all__ = ["HISTORY_DIR", "MAX_TRENDS", "Written", "compare_reports", "load_trends", "write_assessment"]

#: Where each run is kept, under the product's state directory.
HISTORY_DIR: Final = "assessments"
#: Earlier runs shown in the trends.
MAX_TRENDS: Final = 50
_RUN_NAME = re.compile(r"\d{8}T\d{6}Z(-\d+)?")


@dataclass
class Written:
    """What :func:`write_assessment` produced."""

    out_dir: Path
    history_dir: Path
    files: list[str]
    report: dict[str, Any]
    report_sha256: str
    changes: list[dict[str, str]] = field(default_factory=list)


def load_trends(history: Path) -> list[dict[str, Any]]:
    """Summaries of the earlier runs kept under ``history`` (oldest first, at most :data:`MAX_TRENDS`)."""
    if not history.is_dir():
        return []
    runs = sorted(p for p in history.iterdir() if p.is_dir() and _RUN_NAME.fullmatch(p.name))
    out = []
    for run in runs[-MAX_TRENDS:]:
        path = run / "report.json"
        if not path.is_file() or path.stat().st_size > MAX_REPORT_BYTES:
            continue
        try:
            document = read_report(path)
        except TrustrootError:
            continue
        summary = document.get("summary", {})
        out.append(
            {
                "generated_at": str(document.get("generated_at", run.name)),
                "verdicts": summary.get("verdicts", {}),
                "mandatory": summary.get("mandatory", {}),
            }
        )
    return out


def compare_reports(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, str]]:
    """Every provision whose verdict differs between ``old`` and ``new`` (added and removed ones too)."""
    before = {p["id"]: p["verdict"] for p in old["provisions"]}
    after = {p["id"]: p["verdict"] for p in new["provisions"]}
    changes = []
    for pid in list(after) + [p for p in before if p not in after]:
        was, now = before.get(pid, "absent"), after.get(pid, "absent")
        if was != now:
            changes.append({"id": pid, "old": was, "new": now})
    return changes


def _run_dir(history: Path, a: Assessment) -> Path:
    name = a.generated_at.strftime("%Y%m%dT%H%M%SZ")
    candidate, n = history / name, 1
    while candidate.exists():
        n += 1
        candidate = history / f"{name}-{n}"
    return candidate


def _batches(a: Assessment) -> list[str]:
    return sorted({str(s.data.get("batch")) for s in a.evidence.of_type("batch.closed") if s.data.get("batch")})


def write_assessment(
    product: Product,
    a: Assessment,
    *,
    out_dir: Path,
    fail_on: FailOn,
    compare: Path | None = None,
    signatory: str | None = None,
    place: str | None = None,
) -> Written:
    """Write every artefact of ``a`` into ``out_dir`` and the history, then record the evidence."""
    history = product.state_dir / HISTORY_DIR
    old = read_report(compare) if compare is not None else None
    if out_dir.resolve().is_relative_to(product.state_dir.resolve()):
        raise UsageError(f"--out {out_dir}: choose a directory outside {product.state_dir}")
    document = to_json(a, fail_on=fail_on, trends=load_trends(history))
    changes = compare_reports(old, document) if old is not None else []
    compare_name = compare.name if compare is not None else ""
    model = a.evidence.context.model
    disclosure = model.product.disclosure
    latest_declaration = max(a.declarations.valid.values(), key=lambda d: d.time, default=None)
    report_bytes = (json.dumps(document, indent=2, sort_keys=False, ensure_ascii=False) + "\n").encode()
    files: dict[str, bytes] = {
        "report.json": report_bytes,
        "report.html": render_html(document, changes=changes, compare_name=compare_name).encode(),
        "report.md": render_markdown(document, changes=changes, compare_name=compare_name).encode(),
        "psti-statement.html": render_psti(
            document,
            batches=_batches(a),
            contacts=list(disclosure.contact) if disclosure else [],
            policy=disclosure.policy_url if disclosure else None,
            signatory=signatory
            or (latest_declaration.by if latest_declaration else "[name and function of the signatory]"),
            place=place or model.product.manufacturer_address.splitlines()[-1],
            today=a.generated_at.date(),
        ).encode(),
        "sbom.cdx.json": (json.dumps(sbom(a), indent=2) + "\n").encode(),
    }
    if disclosure is not None:
        from trustroot.context.security_txt import security_txt

        files["security.txt"] = security_txt(model, now=a.generated_at).encode()
    for name, advisory in advisories(a).items():
        files[f"csaf/{name}"] = (json.dumps(advisory, indent=2) + "\n").encode()
    for report in document["disclosures"]:
        for step, text in report["drafts"].items():
            files[f"cra/{report['id']}-{step}.md"] = text.encode()
    run = _run_dir(history, a)
    for directory in (out_dir, run):
        for name, data in files.items():
            atomic_write(directory / name, data, mode=0o644)
    digest = hashlib.sha256(report_bytes).hexdigest()
    product.record(
        "assessment.completed",
        model.product.name,
        {
            "edition": a.catalogue.edition,
            "report_sha256": digest,
            "history": str(run.relative_to(product.state_dir)),
            "verdicts": document["summary"]["verdicts"],
            "mandatory": document["summary"]["mandatory"],
            "gate": document["summary"]["gate"],
            "files": sorted(files),
        },
    )
    return Written(out_dir, run, sorted(files), document, digest, changes)


def verdict_lines(changes: Sequence[dict[str, str]]) -> list[str]:
    """``5.1-1: pass -> fail`` lines for the CLI."""
    return [f"{c['id']}: {c['old']} -> {c['new']}" for c in changes]
