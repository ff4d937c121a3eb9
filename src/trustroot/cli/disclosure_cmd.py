"""``trustroot disclosure``: vulnerability reports received by the fleet service's intake.

List, acknowledge, triage (severity, actively exploited: starts the EU CRA Art. 14 clock), record a
corrective measure, close, and list what is overdue. Works on the store named by ``--database``.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from trustroot.cli._common import ContextOpt, DatabaseOpt, JsonOpt, Output, QuietOpt, command, open_product_for_cli
from trustroot.fleet.service import product_service

if TYPE_CHECKING:
    from trustroot.fleet.disclosures import DisclosureView

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="Vulnerability reports: triage, acknowledge, close, CRA deadlines.")


def _data(view: DisclosureView) -> dict[str, Any]:
    from trustroot.fleet.disclosures import rfc3339

    data: dict[str, Any] = {}
    for key, value in view.__dict__.items():
        if isinstance(value, datetime):
            data[key] = rfc3339(value)
        elif isinstance(value, tuple):
            data[key] = list(value)
        else:
            data[key] = value.value if hasattr(value, "value") else value
    return data


def _line(view: DisclosureView) -> str:
    flag = " [red]ACTIVELY EXPLOITED[/red]" if view.actively_exploited else ""
    return f"{view.id}  {view.state.value:<12} {view.severity or '-':<8} {view.summary}{flag}"


def _detail(view: DisclosureView) -> str:
    from trustroot.fleet.disclosures import rfc3339

    lines = [_line(view), f"  acknowledge by {rfc3339(view.acknowledge_due)}"]
    if view.actively_exploited:
        lines += [
            f"  CRA early warning due {rfc3339(view.early_warning_due)} (sent {rfc3339(view.early_warning_at)})",
            f"  CRA notification due  {rfc3339(view.notification_due)} (sent {rfc3339(view.notification_at)})",
            f"  CRA final report due  {rfc3339(view.final_report_due) or 'when a fix is available + 14 days'}",
        ]
    return "\n".join(lines)


@command(app, "list")
def list_(
    context: ContextOpt = None,
    database: DatabaseOpt = None,
    state: Annotated[str | None, typer.Option("--state", help="received, acknowledged, triaged or closed.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 100,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """List reports, newest first.

    Example: trustroot disclosure list --state received
    """
    from trustroot.errors import UsageError
    from trustroot.fleet.disclosures import list_disclosures
    from trustroot.fleet.operators_models import DisclosureState

    out = Output.of(json_flag=json_, quiet=quiet)
    try:
        wanted = DisclosureState(state) if state else None
    except ValueError:
        raise UsageError(f"--state {state!r}: use received, acknowledged, triaged or closed") from None
    with product_service(open_product_for_cli(context), database) as service:
        found = list_disclosures(service, state=wanted, limit=limit)
    out.result("\n".join(_line(v) for v in found) or "no reports", [_data(v) for v in found])
    return 0


@command(app, "overdue")
def overdue(
    context: ContextOpt = None, database: DatabaseOpt = None, quiet: QuietOpt = False, json_: JsonOpt = False
) -> int:
    """List missed deadlines (acknowledgement; CRA early warning, notification, final report). Exit 1 if any.

    Example: trustroot disclosure overdue
    """
    from trustroot.fleet.disclosures import overdue as find
    from trustroot.fleet.disclosures import rfc3339

    out = Output.of(json_flag=json_, quiet=quiet)
    with product_service(open_product_for_cli(context), database) as service:
        found = find(service)
    out.result(
        "\n".join(f"{i.id}  {i.obligation.value:<14} due {rfc3339(i.due)}" for i in found) or "nothing overdue",
        [{"id": i.id, "obligation": i.obligation.value, "due": rfc3339(i.due)} for i in found],
    )
    return 1 if found else 0


@command(app, "acknowledge")
def acknowledge(
    report: Annotated[str, typer.Argument(metavar="ID", help="The report's tracking id (VD-...).")],
    context: ContextOpt = None,
    database: DatabaseOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Acknowledge a report. Example: trustroot disclosure acknowledge VD-0123456789ABCDEF"""
    from trustroot.fleet.disclosures import acknowledge as run

    out = Output.of(json_flag=json_, quiet=quiet)
    product = open_product_for_cli(context)
    with product_service(product, database) as service:
        view = run(service, report, actor=product.actor)
    out.result(_detail(view), _data(view))
    return 0


@command(app, "triage")
def triage(
    report: Annotated[str, typer.Argument(metavar="ID", help="The report's tracking id (VD-...).")],
    severity: Annotated[str, typer.Option("--severity", help="low, medium, high or critical.")],
    actively_exploited: Annotated[
        bool, typer.Option("--actively-exploited", help="Known to be exploited: starts the CRA Art. 14 clock.")
    ] = False,
    context: ContextOpt = None,
    database: DatabaseOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Set a report's severity and whether it is actively exploited.

    Example: trustroot disclosure triage VD-0123456789ABCDEF --severity high --actively-exploited
    """
    from trustroot.errors import UsageError
    from trustroot.fleet.disclosures import triage as run
    from trustroot.fleet.operators_models import DisclosureSeverity

    out = Output.of(json_flag=json_, quiet=quiet)
    try:
        level = DisclosureSeverity(severity)
    except ValueError:
        raise UsageError(f"--severity {severity!r}: use low, medium, high or critical") from None
    product = open_product_for_cli(context)
    with product_service(product, database) as service:
        view = run(service, report, severity=level, actively_exploited=actively_exploited, actor=product.actor)
    out.result(_detail(view), _data(view))
    return 0


@command(app, "fixed")
def fixed(
    report: Annotated[str, typer.Argument(metavar="ID", help="The report's tracking id (VD-...).")],
    at: Annotated[
        str | None, typer.Option("--at", help="When the fix became available (RFC 3339; default: now).")
    ] = None,
    context: ContextOpt = None,
    database: DatabaseOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Record that a corrective measure is available (the CRA final report is due 14 days later).

    Example: trustroot disclosure fixed VD-0123456789ABCDEF --at 2026-03-04T00:00:00Z
    """
    from trustroot.errors import UsageError
    from trustroot.fleet.disclosures import record_corrective_measure

    out = Output.of(json_flag=json_, quiet=quiet)
    try:
        when = datetime.fromisoformat(at) if at else None
    except ValueError:
        raise UsageError(f"--at {at!r}: not an RFC 3339 time") from None
    if when is not None and when.tzinfo is None:
        raise UsageError(f"--at {at!r}: name the time zone (e.g. ...Z)")
    product = open_product_for_cli(context)
    with product_service(product, database) as service:
        view = record_corrective_measure(service, report, available_at=when, actor=product.actor)
    out.result(_detail(view), _data(view))
    return 0


@command(app, "close")
def close(
    report: Annotated[str, typer.Argument(metavar="ID", help="The report's tracking id (VD-...).")],
    resolution: Annotated[
        str,
        typer.Option("--resolution", help="fixed, mitigated, duplicate, not-a-vulnerability or wont-fix."),
    ],
    context: ContextOpt = None,
    database: DatabaseOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Close a report (final). Example: trustroot disclosure close VD-0123456789ABCDEF --resolution fixed"""
    from trustroot.errors import UsageError
    from trustroot.fleet.disclosures import Resolution
    from trustroot.fleet.disclosures import close as run

    out = Output.of(json_flag=json_, quiet=quiet)
    try:
        how = Resolution(resolution)
    except ValueError:
        raise UsageError(f"--resolution {resolution!r}: use {', '.join(r.value for r in Resolution)}") from None
    product = open_product_for_cli(context)
    with product_service(product, database) as service:
        view = run(service, report, how, actor=product.actor)
    out.result(_detail(view), _data(view))
    return 0
