"""``trustroot assess``: the EN 303 645 assessment and its artefacts (a release gate)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trustroot.cli._common import ContextOpt, DatabaseOpt, FormatOpt, JsonOpt, Output, QuietOpt, open_product_for_cli

#: Longest --signatory or --place accepted, in characters.
MAX_STATEMENT_TEXT = 200
_MARK = {"pass": "green", "fail": "red", "inconclusive": "yellow", "declared": "blue", "not_applicable": "dim"}


def assess(
    out: Annotated[
        Path | None, typer.Option("--out", metavar="DIR", help="Where to write the artefacts (default: ./assessment).")
    ] = None,
    fail_on: Annotated[
        str, typer.Option("--fail-on", help="Exit 1 when a mandatory (or also a recommended) provision fails.")
    ] = "mandatory",
    compare: Annotated[
        Path | None, typer.Option("--compare", metavar="OLD.json", help="An earlier report.json: print what changed.")
    ] = None,
    fleet_evidence: Annotated[
        Path | None,
        typer.Option("--fleet-evidence", metavar="FILE", help="The fleet's audit chain exported as JSONL."),
    ] = None,
    database: DatabaseOpt = None,
    signatory: Annotated[
        str | None, typer.Option("--signatory", help="Name and function of who signs the PSTI statement.")
    ] = None,
    place: Annotated[str | None, typer.Option("--place", help="Place of issue of the PSTI statement.")] = None,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
    fmt: FormatOpt = "text",
) -> int:
    """Assess the product against ETSI EN 303 645 V2.1.1 from its evidence; write the reports.

    Verifies the evidence log (and the fleet's audit chain) first: a broken chain stops with exit 2.
    Writes report.json/html/md, psti-statement.html, security.txt, sbom.cdx.json, csaf/ and cra/
    drafts into --out and keeps a copy under .trustroot/assessments/. Exit 1 when a mandatory provision
    is fail or inconclusive (with --fail-on recommended: any provision), else 0.

    Example: trustroot assess --out build/assessment --fleet-evidence fleet-audit.jsonl
    """
    from rich.markup import escape

    from trustroot.compliance.assess import assess as run_assessment
    from trustroot.compliance.outputs import verdict_lines, write_assessment
    from trustroot.errors import UsageError

    output = Output.of(json_flag=json_, quiet=quiet, fmt=fmt)
    if fail_on not in ("mandatory", "recommended"):
        raise UsageError(f"--fail-on {fail_on!r}: use mandatory or recommended")
    for name, value in (("--signatory", signatory), ("--place", place)):
        if value is not None and (
            not value.strip() or len(value) > MAX_STATEMENT_TEXT or any(ord(c) < 32 or c == "\x7f" for c in value)
        ):
            raise UsageError(f"{name}: one line of 1 to {MAX_STATEMENT_TEXT} printable characters")
    product = open_product_for_cli(context)
    now = product.clock()
    assessment = run_assessment(product, now=now, fleet_evidence=fleet_evidence, database=database)
    out_dir = out if out is not None else Path.cwd() / "assessment"
    written = write_assessment(
        product,
        assessment,
        out_dir=out_dir,
        fail_on="recommended" if fail_on == "recommended" else "mandatory",
        compare=compare,
        signatory=signatory,
        place=place,
    )
    summary = written.report["summary"]
    gate = summary["gate"]
    overdue = [f"{d['id']} {step}" for d in written.report["disclosures"] for step in d["overdue"]]
    if output.json:
        output.result(
            "",
            {
                "out": str(written.out_dir),
                "history": str(written.history_dir),
                "files": written.files,
                "report_sha256": written.report_sha256,
                "summary": summary,
                "changes": written.changes,
                "cra_overdue": overdue,
            },
        )
    else:
        lines = []
        if not output.quiet:
            for p in written.report["provisions"]:
                colour = _MARK[p["verdict"]]
                lines.append(
                    f"{p['id']:<8} {p['status']:<14} [{colour}]{p['verdict']:<14}[/{colour}] {escape(p['reason'][:90])}"
                )
        counts = ", ".join(f"{v} {n}" for v, n in summary["verdicts"].items())
        lines.append(
            f"\n{counts} (mandatory: {summary['mandatory']['fail']} fail, "
            f"{summary['mandatory']['inconclusive']} inconclusive)"
        )
        for item in overdue:
            lines.append(f"[red]CRA Art. 14 overdue: {item}[/red] (draft in {escape(str(written.out_dir / 'cra'))})")
        if compare is not None:
            changed = verdict_lines(written.changes)
            lines.append(f"changes since {escape(str(compare))}: {len(changed) or 'none'}")
            lines += [f"  {line}" for line in changed]
        state = "[green]passed[/green]" if gate["passed"] else f"[red]blocked[/red] by {', '.join(gate['blocking'])}"
        lines.append(f"release gate (fail on {gate['fail_on']}): {state}")
        lines.append(f"wrote {len(written.files)} files to {escape(str(written.out_dir))}")
        output.result("\n".join(lines), None)
    return 0 if gate["passed"] else 1
