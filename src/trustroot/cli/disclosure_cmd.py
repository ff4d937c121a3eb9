"""``trustroot disclosure``: vulnerability reports received by the fleet service's intake.

List and show, acknowledge, triage (severity, actively exploited: starts the EU CRA Art. 14 clock),
record a corrective measure, record each CRA step sent (``report --step``), close, and list what is
overdue. Works on the store named by ``--database``.
"""

from __future__ import annotations

import dataclasses
import enum
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from trustroot.cli._common import ContextOpt, DatabaseOpt, JsonOpt, Output, QuietOpt, command, open_product_for_cli
from trustroot.fleet.service import product_service

if TYPE_CHECKING:
    from trustroot.fleet.disclosures import DisclosureView

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="Vulnerability reports: triage, acknowledge, close, CRA deadlines.")


def _json(value: Any) -> Any:
    from trustroot.fleet.disclosures import rfc3339

    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, tuple | list):
        return [_json(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: _json(getattr(value, field.name)) for field in dataclasses.fields(value)}
    return value.value if isinstance(value, enum.Enum) else value


def _data(view: DisclosureView) -> dict[str, Any]:
    data: dict[str, Any] = _json(view)
    return data


def _line(view: DisclosureView) -> str:
    flag = " [red]ACTIVELY EXPLOITED[/red]" if view.actively_exploited else ""
    late = f" [red]OVERDUE: {', '.join(o.value for o in view.overdue)}[/red]" if view.overdue else ""
    summary = escape(view.summary)  # the reporter's text: never Rich markup
    return f"{view.id}  {view.state.value:<12} {view.severity or '-':<8} {summary}{flag}{late}"


_STEP_NAMES: dict[str, str] = {
    "early_warning": "early warning",
    "notification": "notification",
    "final_report": "final report",
}


def _detail(view: DisclosureView) -> str:
    from trustroot.fleet.disclosures import Obligation, rfc3339

    acknowledged = f"acknowledged {rfc3339(view.acknowledged_at)}" if view.acknowledged_at else "not acknowledged"
    late = " [red]OVERDUE[/red]" if Obligation.ACKNOWLEDGE in view.overdue else ""
    lines = [
        _line(view),
        f"  received {rfc3339(view.received_at)}; acknowledge by {rfc3339(view.acknowledge_due)}: {acknowledged}{late}",
    ]
    for step in view.cra_clock:
        name = _STEP_NAMES.get(step.step.value, step.step.value)
        due = rfc3339(step.due) or "not yet due (no corrective measure recorded)"
        sent = f"sent {rfc3339(step.sent_at)}" if step.sent_at else "not sent"
        flag = " [red]OVERDUE[/red]" if step.overdue else ""
        lines.append(f"  CRA {name:<13} due {due}: {sent}{flag}")
    if view.cra_clock:
        lines.append(f"  (as of {rfc3339(view.as_of)}; CRA Art. 14(2), from the intake time)")
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


@command(app, "show")
def show(
    report: Annotated[str, typer.Argument(metavar="ID", help="The report's tracking id (VD-...).")],
    context: ContextOpt = None,
    database: DatabaseOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Show one report with its deadlines and, if actively exploited, its CRA Art. 14 clock (overdue steps flagged).

    Example: trustroot disclosure show VD-0123456789ABCDEF
    """
    from trustroot.fleet.disclosures import get_disclosure

    out = Output.of(json_flag=json_, quiet=quiet)
    with product_service(open_product_for_cli(context), database) as service:
        view = get_disclosure(service, report)
    out.result(_detail(view), _data(view))
    return 0


_STEPS: dict[str, str] = {"early-warning": "early_warning", "notification": "notification", "final": "final_report"}


@command(app, "report")
def report_sent(
    report: Annotated[str, typer.Argument(metavar="ID", help="The report's tracking id (VD-...).")],
    step: Annotated[str, typer.Option("--step", help="early-warning, notification or final.")],
    at: Annotated[
        str | None, typer.Option("--at", help="When it was sent (RFC 3339 with a time zone; default: now).")
    ] = None,
    context: ContextOpt = None,
    database: DatabaseOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Record that a CRA Art. 14 step of an actively exploited vulnerability was sent to the CSIRT / ENISA.

    Example: trustroot disclosure report VD-0123456789ABCDEF --step early-warning
    """
    from trustroot.errors import UsageError
    from trustroot.fleet.disclosures import Obligation, record_submission

    out = Output.of(json_flag=json_, quiet=quiet)
    if step not in _STEPS:
        raise UsageError(f"--step {step!r}: use early-warning, notification or final")
    when = _aware_time(at, "--at")
    product = open_product_for_cli(context)
    with product_service(product, database) as service:
        view = record_submission(service, report, Obligation(_STEPS[step]), sent_at=when, actor=product.actor)
    out.result(_detail(view), _data(view))
    return 0


def _aware_time(text: str | None, option: str) -> datetime | None:
    from trustroot.errors import UsageError

    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} {text!r}: not an RFC 3339 time") from None
    if when.tzinfo is None:
        raise UsageError(f"{option} {text!r}: name the time zone (e.g. ...Z)")
    return when


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
    from trustroot.fleet.disclosures import record_corrective_measure

    out = Output.of(json_flag=json_, quiet=quiet)
    when = _aware_time(at, "--at")
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
