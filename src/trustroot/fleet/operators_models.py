"""Tables of operators (API tokens with scopes) and vulnerability disclosures.

::

    operators      one row per operator: name, scopes, the token's public id and SHA-256 hash
                   (never the token), created / last used / revoked times
    disclosures    one row per vulnerability report received at the public intake: what was
                   reported, its triage (severity, actively exploited), acknowledgement, closure
                   and the EU CRA Article 14 clock (early warning, notification, final report)

The schema is made by Alembic revision ``0003`` (``store/migrations/versions/0003_operators_and_disclosures.py``).
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Boolean, CheckConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from trustroot.fleet.store.models import Base

__all__ = ["Disclosure", "DisclosureSeverity", "DisclosureState", "Operator"]


def _one_of(column: str, values: type[enum.StrEnum], *, nullable: bool = False) -> CheckConstraint:
    allowed = ", ".join(f"'{member.value}'" for member in values)
    condition = f"{column} IN ({allowed})"
    if nullable:
        condition = f"{column} IS NULL OR {condition}"
    return CheckConstraint(condition, name=f"{column}_valid")


class DisclosureState(enum.StrEnum):
    """Where a vulnerability report stands; ``closed`` is final."""

    RECEIVED = "received"
    ACKNOWLEDGED = "acknowledged"
    TRIAGED = "triaged"
    CLOSED = "closed"


class DisclosureSeverity(enum.StrEnum):
    """Severity an operator assigns at triage."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Operator(Base):
    """A person or system allowed to use the operator API, with a bearer token and scopes."""

    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    #: Comma-separated scopes, sorted (read, release, device-admin, disclosure).
    scopes: Mapped[str] = mapped_column(String(128))
    #: The token's public lookup id (the characters after ``tr_`` up to the first 12).
    token_id: Mapped[str] = mapped_column(String(32), unique=True)
    #: SHA-256 (hex) of the whole token; the token itself is never stored.
    token_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(256))
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class Disclosure(Base):
    """A vulnerability report from the public intake (EN 303 645 provision 5.2-1; EU CRA Art. 14)."""

    __tablename__ = "disclosures"
    __table_args__ = (
        _one_of("state", DisclosureState),
        _one_of("severity", DisclosureSeverity, nullable=True),
        Index(None, "state"),
    )

    #: The tracking id given to the reporter (``VD-`` + random).
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    summary: Mapped[str] = mapped_column(String(200))
    details: Mapped[str] = mapped_column(Text)
    affected_versions: Mapped[list[str]] = mapped_column(JSON)
    #: How to reach the reporter, if they gave it (personal data: never written to evidence).
    reporter_contact: Mapped[str | None] = mapped_column(String(256))
    state: Mapped[str] = mapped_column(String(16), default=DisclosureState.RECEIVED.value)
    received_at: Mapped[datetime]
    acknowledge_due: Mapped[datetime]
    acknowledged_at: Mapped[datetime | None]
    triaged_at: Mapped[datetime | None]
    severity: Mapped[str | None] = mapped_column(String(16))
    actively_exploited: Mapped[bool] = mapped_column(Boolean, default=False)
    #: CRA Art. 14 clock, set when the report is marked actively exploited (from ``received_at``).
    early_warning_due: Mapped[datetime | None]
    early_warning_at: Mapped[datetime | None]
    notification_due: Mapped[datetime | None]
    notification_at: Mapped[datetime | None]
    #: When a corrective or mitigating measure became available; the final report is due 14 days later.
    corrective_measure_at: Mapped[datetime | None]
    final_report_due: Mapped[datetime | None]
    final_report_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    resolution: Mapped[str | None] = mapped_column(String(32))
