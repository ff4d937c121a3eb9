"""``trustroot evidence``: verify the hash chain, show records, sign a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from trustroot.cli._common import (
    ContextOpt,
    FormatOpt,
    JsonOpt,
    Output,
    QuietOpt,
    command,
    open_product_for_cli,
)

app = typer.Typer(no_args_is_help=True, help="The product's hash-chained evidence log.")


@command(app, "verify")
def verify(
    log_file: Annotated[
        Path | None,
        typer.Argument(
            metavar="[FILE]",
            help="An exported evidence log (e.g. from 'trustroot fleet export-evidence'); default: the product's.",
        ),
    ] = None,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
    fmt: FormatOpt = "text",
) -> int:
    """Check the chain and every signed checkpoint (with the product's evidence keys); report the last signed head.

    Exit 1 if a record was edited, removed or reordered, or a checkpoint does not verify.

    Example: trustroot evidence verify fleet-evidence.jsonl
    """
    from trustroot.errors import UnreadableInputError
    from trustroot.evidence import EvidenceLog

    out = Output.of(json_flag=json_, quiet=quiet, fmt=fmt)
    product = open_product_for_cli(context)
    if log_file is not None and not log_file.is_file():
        raise UnreadableInputError(f"{log_file}: no such evidence log file")
    log = product.evidence if log_file is None else EvidenceLog(log_file)
    report = log.verify(product.evidence_public_keys())
    which = "evidence log" if log_file is None else f"evidence log {escape(str(log_file))}"
    signed = (
        f"last signed head seq {report.last_signed_seq} (hash {report.last_signed_hash[:12]}…)"
        if report.last_signed_hash
        else "no signed checkpoint yet"
    )
    out.result(
        f"[green]{which} OK[/green]: {report.records} records, {signed}, {report.unsigned_tail} after it",
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


@command(app, "show")
def show(
    context: ContextOpt = None,
    tail: Annotated[int, typer.Option(min=1, max=100000, help="Show the last N records.")] = 20,
    record_type: Annotated[str | None, typer.Option("--type", help="Only records of this type.")] = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Show the last records of the evidence log.

    Example: trustroot evidence show --tail 5 --type key.created
    """
    from collections import deque

    out = Output.of(json_flag=json_, quiet=quiet)
    product = open_product_for_cli(context)
    records = deque(
        (r for r in product.evidence.iter_records() if record_type is None or r.type == record_type),
        maxlen=tail,
    )
    lines = [
        f"{r.seq:>6} {r.time} {r.type:<22} {r.subject}  {json.dumps(r.data, sort_keys=True)[:80]}" for r in records
    ]
    out.result("\n".join(lines) or "(no records)", [r.as_dict() for r in records])
    return 0


@command(app, "checkpoint")
def checkpoint(context: ContextOpt = None, quiet: QuietOpt = False, json_: JsonOpt = False) -> int:
    """Append a checkpoint signed with the evidence key now.

    Example: trustroot evidence checkpoint
    """
    out = Output.of(json_flag=json_, quiet=quiet)
    product = open_product_for_cli(context)
    record = product.evidence.checkpoint()
    out.result(f"checkpoint at seq {record.seq} signs head {str(record.data['head_hash'])[:12]}…", record.as_dict())
    return 0
