"""Vulnerability disclosure intake and handling (EN 303 645 guideline 2; EU CRA Article 14 clock).

A report arrives at the public intake (:func:`receive`), gets a tracking id and an acknowledgement
deadline (``product.disclosure.acknowledge_within_days`` after intake), and is then handled by
operators with the ``disclosure`` scope::

    received ──acknowledge──▶ acknowledged ──triage──▶ triaged ──close──▶ closed (final)
        └────────────────────────triage────────────────────▲    (triage acknowledges too)

Triage sets a severity and the "actively exploited" flag. For an actively exploited vulnerability
the EU CRA Article 14 clock runs FROM THE INTAKE TIME (when the manufacturer became aware)::

    early warning    due intake + 24 h
    notification     due intake + 72 h
    final report     due 14 days after a corrective or mitigating measure is available
                     (:func:`record_corrective_measure` stores that time; until then not due)

:func:`record_submission` notes when each was sent; :func:`overdue` lists what is past due and not
sent (and unacknowledged reports past their acknowledgement deadline). Once set, the actively
exploited flag cannot be cleared: the clock started.

Views (:class:`DisclosureView`, what the API and the CLI show) carry the CRA clock as of the
service's clock: ``cra_clock`` lists each step with its rule (:data:`CRA_RULES`), due and sent
times and an ``overdue`` flag, and ``overdue`` names every missed deadline.

Evidence: ``disclosure.received`` carries only the tracking id (nothing of the reporter);
``disclosure.changed`` carries the change, the state, severity, flag and every due and sent time as
an RFC 3339 string (``2026-03-01T12:00:00Z``), plus ``cra_clock`` and ``overdue`` as of the change
(``as_of``), so the assessment reads the whole clock from evidence, without the service's tables.

Errors: :class:`DisclosureNotFound` (a :class:`~trustroot.errors.StateError`) for an unknown id,
:class:`~trustroot.errors.StateError` for a step the report's state does not allow.
"""

from __future__ import annotations

import dataclasses
import enum
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from trustroot.errors import DisclosureNotFound, StateError
from trustroot.evidence import JSONValue
from trustroot.fleet.operators_models import Disclosure, DisclosureSeverity, DisclosureState
from trustroot.fleet.service import FleetService
from trustroot.fleet.store.audit import SERVICE_ACTOR, record

__all__ = [
    "CRA_RULES",
    "EARLY_WARNING_WITHIN",
    "FINAL_REPORT_WITHIN",
    "NOTIFICATION_WITHIN",
    "CraStep",
    "DisclosureNotFound",
    "DisclosureReport",
    "DisclosureView",
    "Obligation",
    "OverdueItem",
    "Resolution",
    "acknowledge",
    "close",
    "get_disclosure",
    "list_disclosures",
    "overdue",
    "receive",
    "record_corrective_measure",
    "record_submission",
    "rfc3339",
    "triage",
]

#: CRA Art. 14(2)(a): early warning within 24 hours of becoming aware.
EARLY_WARNING_WITHIN: Final = timedelta(hours=24)
#: CRA Art. 14(2)(b): vulnerability notification within 72 hours of becoming aware.
NOTIFICATION_WITHIN: Final = timedelta(hours=72)
#: CRA Art. 14(2)(c): final report within 14 days after a corrective or mitigating measure is available.
FINAL_REPORT_WITHIN: Final = timedelta(days=14)
_DEFAULT_ACKNOWLEDGE_DAYS: Final = 5
_MAX_LIST: Final = 1000


class Resolution(enum.StrEnum):
    """How a report was closed."""

    FIXED = "fixed"
    MITIGATED = "mitigated"
    DUPLICATE = "duplicate"
    NOT_A_VULNERABILITY = "not-a-vulnerability"
    WONT_FIX = "wont-fix"


class Obligation(enum.StrEnum):
    """A deadline a report can miss."""

    ACKNOWLEDGE = "acknowledge"
    EARLY_WARNING = "early_warning"
    NOTIFICATION = "notification"
    FINAL_REPORT = "final_report"


_Text = Annotated[str, Field(min_length=1)]


class DisclosureReport(BaseModel):
    """What a reporter sends to the intake (validated; unknown fields refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    summary: Annotated[str, Field(min_length=1, max_length=200, description="One line: what is vulnerable.")]
    details: Annotated[
        str, Field(min_length=1, max_length=60_000, description="How to reproduce, impact, proof of concept.")
    ]
    affected_versions: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=50, description="Firmware or product versions affected, if known."
    )
    reporter_contact: Annotated[str, Field(min_length=3, max_length=256)] | None = Field(
        default=None, description="How to reach the reporter (optional; never published or put in evidence)."
    )


#: The CRA Art. 14(2) step of each obligation, and the rule its deadline follows.
CRA_RULES: Final[dict[Obligation, str]] = {
    Obligation.EARLY_WARNING: "CRA Art. 14(2)(a): early warning within 24 hours of becoming aware (intake)",
    Obligation.NOTIFICATION: "CRA Art. 14(2)(b): vulnerability notification within 72 hours of becoming aware (intake)",
    Obligation.FINAL_REPORT: "CRA Art. 14(2)(c): final report no later than 14 days after a corrective or "
    "mitigating measure is available (not due before one is)",
}


@dataclass(frozen=True)
class CraStep:
    """One step of the CRA Art. 14(2) clock of an actively exploited vulnerability, as of the view's time."""

    step: Obligation
    rule: str
    due: datetime | None
    sent_at: datetime | None
    overdue: bool


@dataclass(frozen=True)
class DisclosureView:
    """A report as operators see it."""

    id: str
    state: DisclosureState
    summary: str
    details: str
    affected_versions: tuple[str, ...]
    reporter_contact: str | None
    received_at: datetime
    acknowledge_due: datetime
    acknowledged_at: datetime | None
    triaged_at: datetime | None
    severity: DisclosureSeverity | None
    actively_exploited: bool
    early_warning_due: datetime | None
    early_warning_at: datetime | None
    notification_due: datetime | None
    notification_at: datetime | None
    corrective_measure_at: datetime | None
    final_report_due: datetime | None
    final_report_at: datetime | None
    closed_at: datetime | None
    resolution: Resolution | None
    #: The CRA Art. 14(2) steps (empty unless actively exploited), each flagged overdue as of ``as_of``.
    cra_clock: tuple[CraStep, ...] = ()
    #: Every deadline missed as of ``as_of`` (acknowledgement and CRA steps), earliest first.
    overdue: tuple[Obligation, ...] = ()
    #: The time the overdue flags were computed at.
    as_of: datetime | None = None

    @classmethod
    def of(cls, row: Disclosure, now: datetime | None = None) -> DisclosureView:
        """The view of ``row``; with ``now``, its CRA clock and overdue flags as of then."""
        view = cls._plain(row)
        if now is None:
            return view
        missed = _missed(view, now)
        late = {item.obligation for item in missed}
        clock = tuple(
            CraStep(step=step, rule=rule, due=due, sent_at=sent, overdue=step in late)
            for step, rule, due, sent in _cra_steps(view)
        )
        return dataclasses.replace(view, cra_clock=clock, overdue=tuple(item.obligation for item in missed), as_of=now)

    @classmethod
    def _plain(cls, row: Disclosure) -> DisclosureView:
        return cls(
            id=row.id,
            state=DisclosureState(row.state),
            summary=row.summary,
            details=row.details,
            affected_versions=tuple(row.affected_versions),
            reporter_contact=row.reporter_contact,
            received_at=row.received_at,
            acknowledge_due=row.acknowledge_due,
            acknowledged_at=row.acknowledged_at,
            triaged_at=row.triaged_at,
            severity=DisclosureSeverity(row.severity) if row.severity else None,
            actively_exploited=row.actively_exploited,
            early_warning_due=row.early_warning_due,
            early_warning_at=row.early_warning_at,
            notification_due=row.notification_due,
            notification_at=row.notification_at,
            corrective_measure_at=row.corrective_measure_at,
            final_report_due=row.final_report_due,
            final_report_at=row.final_report_at,
            closed_at=row.closed_at,
            resolution=Resolution(row.resolution) if row.resolution else None,
        )


@dataclass(frozen=True)
class OverdueItem:
    """One deadline a report has missed."""

    id: str
    obligation: Obligation
    due: datetime


def rfc3339(moment: datetime | None) -> str | None:
    """``moment`` as an RFC 3339 UTC string with seconds (``2026-03-01T12:00:00Z``), or None."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _acknowledge_days(service: FleetService) -> int:
    disclosure = service.context.product.disclosure
    return disclosure.acknowledge_within_days if disclosure is not None else _DEFAULT_ACKNOWLEDGE_DAYS


def receive(service: FleetService, report: DisclosureReport) -> DisclosureView:
    """Store a report from the public intake; its tracking id and acknowledgement deadline are in the result."""
    now = service.clock()
    row = Disclosure(
        id="VD-" + secrets.token_hex(8).upper(),
        summary=report.summary,
        details=report.details,
        affected_versions=list(report.affected_versions),
        reporter_contact=report.reporter_contact,
        state=DisclosureState.RECEIVED.value,
        received_at=now,
        acknowledge_due=now + timedelta(days=_acknowledge_days(service)),
        actively_exploited=False,
    )
    with service.store.transaction() as session:
        session.add(row)
        session.flush()
        record(service, "disclosure.received", row.id, {"id": row.id}, SERVICE_ACTOR, session=session)
    return DisclosureView.of(row, now)


def _load(session: Session, disclosure_id: str) -> Disclosure:
    row = session.get(Disclosure, disclosure_id)
    if row is None:
        raise DisclosureNotFound(f"no vulnerability report {disclosure_id!r}")
    return row


def _open(session: Session, disclosure_id: str) -> Disclosure:
    row = _load(session, disclosure_id)
    if row.state == DisclosureState.CLOSED.value:
        raise StateError(f"vulnerability report {disclosure_id} is closed ({row.resolution}); it cannot change")
    return row


def _changed(service: FleetService, session: Session, row: Disclosure, change: str, actor: str) -> DisclosureView:
    view = DisclosureView.of(row, service.clock())
    data: dict[str, JSONValue] = {
        "id": row.id,
        "change": change,
        "state": row.state,
        "severity": row.severity,
        "actively_exploited": row.actively_exploited,
        "received_at": rfc3339(row.received_at),
        "acknowledge_due": rfc3339(row.acknowledge_due),
        "acknowledged_at": rfc3339(row.acknowledged_at),
        "early_warning_due": rfc3339(row.early_warning_due),
        "early_warning_at": rfc3339(row.early_warning_at),
        "notification_due": rfc3339(row.notification_due),
        "notification_at": rfc3339(row.notification_at),
        "corrective_measure_at": rfc3339(row.corrective_measure_at),
        "final_report_due": rfc3339(row.final_report_due),
        "final_report_at": rfc3339(row.final_report_at),
        "resolution": row.resolution,
        # the CRA Art. 14(2) clock as of this change: each step's rule, due and sent times, overdue flag
        "as_of": rfc3339(view.as_of),
        "cra_clock": [
            {
                "step": step.step.value,
                "rule": step.rule,
                "due": rfc3339(step.due),
                "sent_at": rfc3339(step.sent_at),
                "overdue": step.overdue,
            }
            for step in view.cra_clock
        ],
        "overdue": [obligation.value for obligation in view.overdue],
    }
    record(service, "disclosure.changed", row.id, data, actor, session=session)
    return view


def get_disclosure(service: FleetService, disclosure_id: str) -> DisclosureView:
    """One report; :class:`DisclosureNotFound` if there is none."""
    with service.store.transaction() as session:
        return DisclosureView.of(_load(session, disclosure_id), service.clock())


def list_disclosures(
    service: FleetService, *, state: DisclosureState | None = None, limit: int = 100, offset: int = 0
) -> list[DisclosureView]:
    """Reports, newest first (optionally only those in ``state``)."""
    query = select(Disclosure).order_by(Disclosure.received_at.desc(), Disclosure.id)
    if state is not None:
        query = query.where(Disclosure.state == state.value)
    query = query.limit(max(1, min(limit, _MAX_LIST))).offset(max(0, offset))
    now = service.clock()
    with service.store.transaction() as session:
        return [DisclosureView.of(row, now) for row in session.scalars(query)]


def acknowledge(service: FleetService, disclosure_id: str, *, actor: str) -> DisclosureView:
    """Acknowledge a received report (repeating it on an acknowledged one is refused)."""
    with service.store.transaction() as session:
        row = _open(session, disclosure_id)
        if row.acknowledged_at is not None:
            raise StateError(f"vulnerability report {disclosure_id} was acknowledged already")
        row.acknowledged_at = service.clock()
        row.state = DisclosureState.ACKNOWLEDGED.value
        return _changed(service, session, row, "acknowledged", actor)


def triage(
    service: FleetService,
    disclosure_id: str,
    *,
    severity: DisclosureSeverity,
    actively_exploited: bool,
    actor: str,
) -> DisclosureView:
    """Set severity and the actively exploited flag (acknowledges, too); starts the CRA clock when exploited."""
    now = service.clock()
    with service.store.transaction() as session:
        row = _open(session, disclosure_id)
        if row.actively_exploited and not actively_exploited:
            raise StateError(
                f"vulnerability report {disclosure_id} is marked actively exploited; the CRA Art. 14 clock "
                "started and the mark cannot be cleared"
            )
        if row.acknowledged_at is None:
            row.acknowledged_at = now
        row.triaged_at = now
        row.severity = severity.value
        row.state = DisclosureState.TRIAGED.value
        if actively_exploited and not row.actively_exploited:
            row.actively_exploited = True
            row.early_warning_due = row.received_at + EARLY_WARNING_WITHIN
            row.notification_due = row.received_at + NOTIFICATION_WITHIN
            if row.corrective_measure_at is not None:
                row.final_report_due = row.corrective_measure_at + FINAL_REPORT_WITHIN
        return _changed(service, session, row, "triaged", actor)


def record_corrective_measure(
    service: FleetService, disclosure_id: str, *, available_at: datetime | None = None, actor: str
) -> DisclosureView:
    """Note when a corrective or mitigating measure became available (default: now); sets the final report due."""
    at = available_at or service.clock()
    if at.tzinfo is None:
        raise StateError("the corrective measure's time must name its time zone")
    with service.store.transaction() as session:
        row = _load(session, disclosure_id)
        row.corrective_measure_at = at
        if row.actively_exploited:
            row.final_report_due = at + FINAL_REPORT_WITHIN
        return _changed(service, session, row, "corrective_measure", actor)


def record_submission(
    service: FleetService,
    disclosure_id: str,
    obligation: Obligation,
    *,
    sent_at: datetime | None = None,
    actor: str,
) -> DisclosureView:
    """Note that the early warning, notification or final report for an exploited vulnerability was sent."""
    at = sent_at or service.clock()
    with service.store.transaction() as session:
        row = _load(session, disclosure_id)
        if not row.actively_exploited:
            raise StateError(f"vulnerability report {disclosure_id} is not marked actively exploited: nothing is due")
        if obligation is Obligation.EARLY_WARNING:
            row.early_warning_at = at
        elif obligation is Obligation.NOTIFICATION:
            row.notification_at = at
        elif obligation is Obligation.FINAL_REPORT:
            row.final_report_at = at
        else:
            raise StateError(f"{obligation.value} is not a CRA Article 14 submission")
        return _changed(service, session, row, f"{obligation.value}_sent", actor)


def close(service: FleetService, disclosure_id: str, resolution: Resolution, *, actor: str) -> DisclosureView:
    """Close a report with ``resolution`` (final). The CRA submissions stay due if they are not sent."""
    with service.store.transaction() as session:
        row = _open(session, disclosure_id)
        now = service.clock()
        if row.acknowledged_at is None:
            row.acknowledged_at = now
        row.closed_at = now
        row.resolution = resolution.value
        row.state = DisclosureState.CLOSED.value
        return _changed(service, session, row, "closed", actor)


def _cra_steps(view: DisclosureView) -> list[tuple[Obligation, str, datetime | None, datetime | None]]:
    if not view.actively_exploited:
        return []
    return [
        (Obligation.EARLY_WARNING, CRA_RULES[Obligation.EARLY_WARNING], view.early_warning_due, view.early_warning_at),
        (Obligation.NOTIFICATION, CRA_RULES[Obligation.NOTIFICATION], view.notification_due, view.notification_at),
        (Obligation.FINAL_REPORT, CRA_RULES[Obligation.FINAL_REPORT], view.final_report_due, view.final_report_at),
    ]


def _missed(view: DisclosureView, now: datetime) -> list[OverdueItem]:
    checks: list[tuple[Obligation, datetime | None, datetime | None]] = [
        (step, due, sent) for step, _rule, due, sent in _cra_steps(view)
    ]
    if view.state is not DisclosureState.CLOSED:
        checks.insert(0, (Obligation.ACKNOWLEDGE, view.acknowledge_due, view.acknowledged_at))
    found = [
        OverdueItem(id=view.id, obligation=obligation, due=due)
        for obligation, due, done in checks
        if due is not None and done is None and due <= now
    ]
    return sorted(found, key=lambda item: item.due)


def overdue(service: FleetService, *, now: datetime | None = None) -> list[OverdueItem]:
    """Every missed deadline, earliest first."""
    moment = now or service.clock()
    query = select(Disclosure).where((Disclosure.acknowledged_at.is_(None)) | (Disclosure.actively_exploited.is_(True)))
    with service.store.transaction() as session:
        views = [DisclosureView.of(row) for row in session.scalars(query)]
    found = [item for view in views for item in _missed(view, moment)]
    return sorted(found, key=lambda item: (item.due, item.id, item.obligation.value))
