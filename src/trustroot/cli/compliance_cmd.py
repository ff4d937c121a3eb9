"""``trustroot compliance``: the provision catalogue, the ICS and IXIT files, and ``trustroot declare``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from trustroot.cli._common import ContextOpt, FormatOpt, JsonOpt, Output, QuietOpt, command, open_product_for_cli
from trustroot.errors import UsageError

if TYPE_CHECKING:
    from trustroot.compliance.catalogue import Edition, Provision
    from trustroot.compliance.declarations import Declaration
    from trustroot.product import Product

__all__ = ["app", "declare"]

app = typer.Typer(no_args_is_help=True, help="EN 303 645 catalogue, ICS and IXIT files, signed declarations.")

EditionOpt = Annotated[
    str | None, typer.Option("--edition", help="EN 303 645 edition: 3.1.3 (default for a new ICS) or 2.1.1.")
]


def _edition(text: str | None) -> Edition | None:
    from trustroot.compliance.catalogue import EDITIONS

    if text is None:
        return None
    for edition in EDITIONS:
        if text == edition:
            return edition
    raise UsageError(f"--edition {text!r}: use one of {', '.join(EDITIONS)}")


def _declarations(product: Product) -> tuple[list[Declaration], list[tuple[int, str]]]:
    """The valid and refused declarations, after the evidence chain itself verifies."""
    from trustroot.compliance.declarations import verified_declarations

    product.evidence.verify(product.evidence_public_keys())
    name = product.context.model.product.name
    return verified_declarations(product.evidence.iter_records(), product.keys, product=name)


@command(app, "fill")
def fill(
    edition: EditionOpt = None,
    only: Annotated[str | None, typer.Option("--only", help="Fill only one file: ics or ixit.")] = None,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Create or refresh compliance/ics.toml and compliance/ixit.toml from what trustroot knows.

    Rows and entries you wrote (source = "user", or derived ones you edited) and every note are kept.

    Example: trustroot compliance fill --edition 3.1.3
    """
    from trustroot.compliance.ics_fill import fill_ics
    from trustroot.compliance.ixit_fill import fill_ixit

    if only not in (None, "ics", "ixit"):
        raise UsageError(f"--only {only!r}: use ics or ixit")
    out = Output.of(json_flag=json_, quiet=quiet)
    product = open_product_for_cli(context)
    result: dict[str, Any] = {}
    lines: list[str] = []
    if only in (None, "ics"):
        valid, refused = _declarations(product)
        report = fill_ics(product.context, valid, edition=_edition(edition))
        result["ics"] = {**report.as_dict(), "refused_declarations": [{"seq": s, "reason": r} for s, r in refused]}
        verb = "created" if report.created else "refreshed"
        lines.append(
            f"{verb} {report.path} (EN 303 645 V{report.edition}): {len(report.derived)} derived, "
            f"{len(report.declared)} declared, {len(report.kept) + len(report.adopted)} yours, "
            f"{len(report.pending)} pending"
        )
        lines += [f"  kept your edit of derived row {pid} (now source = user)" for pid in report.adopted]
        lines += [f"  [red]refused declaration[/red] (record {s}): {r}" for s, r in refused]
        if report.pending:
            lines.append(f"  pending: {' '.join(report.pending)}")
    if only in (None, "ixit"):
        ix = fill_ixit(product.context, product.keys.list())
        result["ixit"] = ix.as_dict()
        verb = "created" if ix.created else "refreshed"
        lines.append(
            f"{verb} {ix.path}: {len(ix.derived)} derived entries, {len(ix.kept) + len(ix.adopted)} yours, "
            f"{len(ix.dropped)} dropped; {len(ix.empty_tables)} tables to complete: {' '.join(ix.empty_tables)}"
        )
        lines += [f"  kept your edit of derived entry {label} (now source = user)" for label in ix.adopted]
    out.result("\n".join(lines), result)
    return 0


@command(app, "check")
def check(
    strict: Annotated[bool, typer.Option("--strict", help="Pending ICS rows fail the check too.")] = False,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
    fmt: FormatOpt = "text",
) -> int:
    """Validate compliance/ics.toml and ixit.toml: exit 0 valid, 1 with errors (or pending rows with --strict).

    Example: trustroot compliance check --strict
    """
    from trustroot.compliance.ics import ics_path, load_ics
    from trustroot.compliance.ixit import IXIT_TABLES, ixit_path, load_ixit
    from trustroot.context import find_context
    from trustroot.errors import ComplianceFileError

    out = Output.of(json_flag=json_, quiet=quiet, fmt=fmt)
    context_path = find_context(None, context)
    result: dict[str, Any] = {}
    lines: list[str] = []
    failed = False
    for name, path, loader in (("ics", ics_path(context_path), load_ics), ("ixit", ixit_path(context_path), load_ixit)):
        if not path.exists():
            raise UsageError(f"{path}: no such file", hint="create it with: trustroot compliance fill")
        try:
            loaded: Any = loader(path)
        except ComplianceFileError as error:
            failed = True
            result[name] = {
                "path": str(path),
                "errors": [{"key": k, "line": n, "message": m} for k, n, m in error.issues],
            }
            lines += [f"{path}:{n}: {k}: [red]{m}[/red]" for k, n, m in error.issues] or [f"[red]{error}[/red]"]
            continue
        if name == "ics":
            pending = loaded.pending()
            failed = failed or (strict and bool(pending))
            result[name] = {"path": str(path), "edition": loaded.edition, "pending": pending}
            lines.append(f"{path}: valid, EN 303 645 V{loaded.edition}, {len(pending)} pending row(s)")
        else:
            empty = [t.key for t in IXIT_TABLES.values() if not loaded.entries(t.key)]
            result[name] = {"path": str(path), "empty_tables": empty}
            lines.append(f"{path}: valid, {29 - len(empty)} of 29 tables filled")
    out.result("\n".join(lines), {**result, "ok": not failed})
    return 1 if failed else 0


def _provision_text(p: Provision) -> str:
    status = p.status.value + (f" C ({', '.join(map(str, p.conditions))})" if p.conditions else "")
    status += f" F ({', '.join(p.features)})" if p.features else ""
    return f"{p.id:<8} {status:<16} {p.title}"


def _provision_dict(p: Provision) -> dict[str, Any]:
    return {
        "id": p.id,
        "section": p.section,
        "guideline": p.guideline,
        "title": p.title,
        "text": p.text,
        "status": p.status.value,
        "conditions": list(p.conditions),
        "features": list(p.features),
        "v2_equivalent": list(p.v2_equivalent),
        "test_group": p.test_group,
        "test_units": [{"id": u.id, "kind": u.kind, "units": list(u.units)} for u in p.test_units],
        "ixit": list(p.ixit),
        "psti": list(p.psti),
        "cra": list(p.cra),
        "nistir": list(p.nistir),
    }


@command(app, "catalogue")
def catalogue(
    provision: Annotated[str | None, typer.Argument(help="One provision to show in full, e.g. 5.1-1.")] = None,
    edition: EditionOpt = None,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """List the provisions of an EN 303 645 edition, or show one with its test units and cross-references.

    Example: trustroot compliance catalogue 5.3-13 --edition 2.1.1
    """
    from trustroot.compliance.catalogue import load_catalogue

    del context  # the catalogue is the same for every product
    out = Output.of(json_flag=json_, quiet=quiet)
    cat = load_catalogue(_edition(edition) or "3.1.3")
    if provision is None:
        out.result("\n".join(_provision_text(p) for p in cat), [_provision_dict(p) for p in cat])
        return 0
    try:
        p = cat.get(provision)
    except KeyError:
        raise UsageError(f"{provision!r} is not a provision of EN 303 645 V{cat.edition}") from None
    units = ", ".join(f"{u.id} ({u.kind})" for u in p.test_units)
    ixit = ", ".join(f"{i}-{cat.ixit_tables[i]}" for i in p.ixit)
    text = "\n".join(
        [
            _provision_text(p),
            f"  {p.text}",
            f"  guideline {p.guideline}: {cat.guidelines[p.guideline]}",
            *(
                [f"  V2.1.1 equivalent: {', '.join(p.v2_equivalent) or 'none (new in V3)'}"]
                if cat.edition == "3.1.3"
                else []
            ),
            f"  TS 103 701 test group {p.test_group}: {units}",
            f"  IXIT: {ixit}",
            f"  UK PSTI Schedule 1: {', '.join(p.psti) or '-'}; EU CRA Annex I: {', '.join(p.cra) or '-'}; "
            f"NISTIR 8259A: {', '.join(p.nistir) or '-'}",
        ]
    )
    out.result(text, _provision_dict(p))
    return 0


@command(app, "declarations")
def declarations(context: ContextOpt = None, quiet: QuietOpt = False, json_: JsonOpt = False) -> int:
    """List the signed declarations in the evidence log, each verified: exit 1 if any is refused.

    Example: trustroot compliance declarations --json
    """
    out = Output.of(json_flag=json_, quiet=quiet)
    valid, refused = _declarations(open_product_for_cli(context))
    lines = [
        f"{d.provision:<8} V{d.statement.edition}  by {d.statement.by:<12} {d.statement.signed_at}  "
        f"record {d.seq}  [green]signature OK[/green]"
        for d in valid
    ]
    lines += [f"[red]refused[/red] {reason}" for _seq, reason in refused]
    data = {
        "valid": [{**d.statement.model_dump(mode="json"), "record": d.record_hash, "seq": d.seq} for d in valid],
        "refused": [{"seq": s, "reason": r} for s, r in refused],
    }
    out.result("\n".join(lines) or "no declarations", data)
    return 1 if refused else 0


def declare(
    provision: Annotated[str, typer.Argument(help="The provision declared, e.g. 5.6-4A.")],
    by: Annotated[
        str, typer.Option("--by", help="Name of the declarer's key (trustroot keys create --role declarer).")
    ],
    justification: Annotated[str, typer.Option("--justification", help="Why the provision is met, in a sentence.")],
    edition: EditionOpt = None,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Sign a declaration for a provision no tool can check, with your declarer key, into the evidence log.

    Example: trustroot declare 5.6-4A --by alice --justification "No debug header is populated on the PCB"
    """
    from trustroot.compliance.declarations import declare as do_declare
    from trustroot.compliance.ics import ics_path, load_ics

    out = Output.of(json_flag=json_, quiet=quiet)
    product = open_product_for_cli(context)
    chosen = _edition(edition)
    if chosen is None:
        ics = ics_path(product.context.path)
        chosen = load_ics(ics).edition if ics.exists() else "3.1.3"
    made = do_declare(product, provision, by, justification, edition=chosen)
    out.result(
        f"declared {made.provision} (EN 303 645 V{made.statement.edition}) as {made.statement.by}, "
        f"record {made.seq} {made.record_hash[:16]}; run 'trustroot compliance fill' to update the ICS",
        {**made.statement.model_dump(mode="json"), "record": made.record_hash, "seq": made.seq},
    )
    return 0
