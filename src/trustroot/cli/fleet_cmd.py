"""``trustroot fleet``: the fleet store: migrate it, import batches, list devices, verify and export the audit chain.

Every command works on the store named by ``--database`` (default: the product's
``.trustroot/fleet.sqlite``), migrated to the newest schema when opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from trustroot.cli._common import (
    ContextOpt,
    DatabaseOpt,
    FormatOpt,
    JsonOpt,
    Output,
    QuietOpt,
    command,
    open_product_for_cli,
)
from trustroot.fleet.service import database_url_for, product_service

if TYPE_CHECKING:
    pass

__all__ = ["app", "audit_app"]

app = typer.Typer(no_args_is_help=True, help="The fleet store: schema, registered devices, audit chain.")
audit_app = typer.Typer(no_args_is_help=True, help="The fleet's hash-chained audit records.")
app.add_typer(audit_app, name="audit")


@command(app, "migrate")
def migrate(
    context: ContextOpt = None, database: DatabaseOpt = None, quiet: QuietOpt = False, json_: JsonOpt = False
) -> int:
    """Bring the fleet store's schema to this version's newest revision (safe to repeat).

    Example: trustroot fleet migrate --database postgresql+psycopg://fleet@db:5432/fleet
    """
    from trustroot.fleet.store.db import make_engine
    from trustroot.fleet.store.migrate import current_revision, head_revision, upgrade

    out = Output.of(json_flag=json_, quiet=quiet)
    engine = make_engine(database_url_for(open_product_for_cli(context), database))
    try:
        before = current_revision(engine)
        upgrade(engine)
        after = current_revision(engine)
    finally:
        engine.dispose()
    changed = before != after
    text = f"fleet store migrated from {before or 'an empty database'} to {after}" if changed else None
    out.result(
        text or f"fleet store already at the newest revision {after}",
        {"from": before, "to": after, "head": head_revision(), "changed": changed},
    )
    return 0


@command(app, "import-batch")
def import_batch(
    manifest: Annotated[Path, typer.Argument(help="The signed manifest of a closed batch (manifest-<batch>.json).")],
    context: ContextOpt = None,
    database: DatabaseOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Verify a closed batch's signed manifest and register its devices (once; repeating is harmless).

    Refused: a manifest not signed by the production-authority key or altered, another product's,
    or one listing a device the fleet has registered from another batch.
    Example: trustroot fleet import-batch .trustroot/production/batches/batch-3f9c/manifest-batch-3f9c.json
    """
    from trustroot._fsutil import read_bounded
    from trustroot.fleet.devices import import_batch as run
    from trustroot.provision.manifest import MAX_MANIFEST_BYTES

    out = Output.of(json_flag=json_, quiet=quiet)
    product = open_product_for_cli(context)
    data = read_bounded(manifest, MAX_MANIFEST_BYTES, what="batch manifest")
    with product_service(product, database) as service:
        result = run(service, data, actor=product.actor, source=str(manifest))
    if result.already_imported:
        text = f"batch {result.batch}: this manifest was imported already ({result.devices} devices); nothing to do"
    else:
        text = f"[green]batch {result.batch} imported[/green]: {result.devices} devices registered"
        if result.revoked:
            text += f" ({result.revoked} of them revoked at the factory)"
    out.result(
        text,
        {
            "batch": result.batch,
            "factory": result.factory,
            "manifest_sha256": result.manifest_sha256,
            "devices": result.devices,
            "revoked": result.revoked,
            "already_imported": result.already_imported,
            "audit_seq": result.record.seq if result.record is not None else None,
        },
    )
    return 0


@command(app, "devices")
def devices(
    context: ContextOpt = None,
    database: DatabaseOpt = None,
    status: Annotated[
        str | None, typer.Option("--status", help="Only devices in this status: active or revoked.")
    ] = None,
    batch: Annotated[str | None, typer.Option("--batch", help="Only devices of this batch.")] = None,
    group: Annotated[str | None, typer.Option("--group", help="Only devices of this rollout group.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="Show at most N devices.")] = 100,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip the first N devices.")] = 0,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
    fmt: FormatOpt = "text",
) -> int:
    """List the devices registered with the fleet, by serial.

    Example: trustroot fleet devices --status active --limit 20
    """
    from trustroot.errors import UsageError
    from trustroot.fleet.devices import count_devices, list_devices
    from trustroot.fleet.store.models import DeviceStatus

    out = Output.of(json_flag=json_, quiet=quiet, fmt=fmt)
    try:
        wanted = DeviceStatus(status) if status is not None else None
    except ValueError:
        raise UsageError(f"--status {status!r}: use active or revoked") from None
    product = open_product_for_cli(context)
    with product_service(product, database) as service:
        found = list_devices(service, status=wanted, batch=batch, group=group, limit=limit, offset=offset)
        total = count_devices(service, status=wanted, batch=batch, group=group)
    lines = [
        f"{d.serial:<24} {d.status:<8} {d.batch_id:<24} "
        f"{d.last_checkin_at.isoformat() if d.last_checkin_at else 'never checked in':<32} {d.reported_version or '-'}"
        for d in found
    ]
    lines.append(f"{len(found)} of {total} devices" if found else f"no devices (of {total})")
    out.result(
        "\n".join(lines),
        {
            "total": total,
            "devices": [
                {
                    "serial": d.serial,
                    "status": d.status,
                    "batch": d.batch_id,
                    "factory": d.factory,
                    "certificate_fingerprint": d.certificate_fingerprint,
                    "group": d.group_name,
                    "channel": d.channel,
                    "registered_at": d.registered_at.isoformat(),
                    "last_checkin_at": d.last_checkin_at.isoformat() if d.last_checkin_at else None,
                    "reported_version": d.reported_version,
                    "security_counter": d.security_counter,
                }
                for d in found
            ],
        },
    )
    return 0


@command(audit_app, "verify")
def audit_verify(
    context: ContextOpt = None,
    database: DatabaseOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
    fmt: FormatOpt = "text",
) -> int:
    """Check the audit chain and every signed checkpoint; report the last signed head.

    Exit 1 if a record was edited, removed or reordered, or a checkpoint does not verify.
    Example: trustroot fleet audit verify
    """
    from trustroot.fleet.store.audit import audit_log

    out = Output.of(json_flag=json_, quiet=quiet, fmt=fmt)
    product = open_product_for_cli(context)
    with product_service(product, database) as service:
        report = audit_log(service).verify(product.evidence_public_keys())
    signed = (
        f"last signed head seq {report.last_signed_seq} (hash {report.last_signed_hash[:12]}…)"
        if report.last_signed_hash
        else "no signed checkpoint yet"
    )
    out.result(
        f"[green]fleet audit chain OK[/green]: {report.records} records, {signed}, {report.unsigned_tail} after it",
        {
            "ok": True,
            "records": report.records,
            "head_seq": report.last_seq,
            "head_hash": report.head_hash,
            "last_signed_seq": report.last_signed_seq,
            "last_signed_hash": report.last_signed_hash,
            "checkpoints": report.checkpoints,
            "unsigned_tail": report.unsigned_tail,
        },
    )
    return 0


@command(app, "export-evidence")
def export_evidence(
    out_file: Annotated[Path, typer.Option("--out", metavar="FILE", help="Where to write the JSONL file.")],
    context: ContextOpt = None,
    database: DatabaseOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Export the fleet's hash-chained audit records as an evidence log (JSONL) and verify what was written.

    The file has the product evidence format (.trustroot/evidence.jsonl): 'trustroot evidence verify FILE'
    and the assessment read it as they read the product's own log. Written atomically; exit 1 if the
    chain in the store does not verify.
    Example: trustroot fleet export-evidence --out fleet-evidence.jsonl
    """
    from trustroot.evidence import EvidenceLog
    from trustroot.fleet.store.audit import audit_log

    out = Output.of(json_flag=json_, quiet=quiet)
    product = open_product_for_cli(context)
    with product_service(product, database) as service:
        count = audit_log(service).export_jsonl(out_file)
    report = EvidenceLog(out_file).verify(product.evidence_public_keys())
    signed = f"last signed head seq {report.last_signed_seq}" if report.last_signed_hash else "no signed checkpoint yet"
    out.result(
        f"[green]{count} audit records written to {out_file}[/green] and verified: head seq {report.last_seq}, "
        f"{signed}, {report.unsigned_tail} after it",
        {
            "records": count,
            "path": str(out_file),
            "head_seq": report.last_seq,
            "head_hash": report.head_hash,
            "last_signed_seq": report.last_signed_seq,
            "checkpoints": report.checkpoints,
            "unsigned_tail": report.unsigned_tail,
        },
    )
    return 0


@command(audit_app, "export")
def audit_export(
    out_file: Annotated[Path, typer.Option("--out", metavar="FILE", help="Where to write the JSONL file.")],
    context: ContextOpt = None,
    database: DatabaseOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Write the audit chain as an evidence log file (JSONL) for the assessment and offline verification.

    The file has the format of .trustroot/evidence.jsonl, one record per line; it is replaced atomically.
    Example: trustroot fleet audit export --out fleet-audit.jsonl
    """
    from trustroot.fleet.store.audit import audit_log

    out = Output.of(json_flag=json_, quiet=quiet)
    product = open_product_for_cli(context)
    with product_service(product, database) as service:
        count = audit_log(service).export_jsonl(out_file)
    out.result(f"{count} audit records written to {out_file}", {"records": count, "path": str(out_file)})
    return 0
