"""Tables of the fleet store (SQLAlchemy 2 typed declarative), portable between SQLite and PostgreSQL.

The core tables live here; the schema is made by the Alembic revisions in ``store/migrations``
(never by ``create_all`` outside tests), and a test keeps models and migrations equal::

    batches          one row per imported production batch (its signed manifest's SHA-256, factory)
      └── devices    one row per device: serial, certificate (fingerprint UNIQUE), status, last check-in
            ├── device_commands   commands queued for a device (factory_reset, ...) and their state
            └── alerts            monitoring findings with their evidence (monitoring: fleet/alerts.py)
    audit            the fleet's evidence chain: one evidence record per row (trustroot.evidence format)

**Adding tables for a feature.** Put the feature's models in ONE module of its own (for example
``trustroot/fleet/store/releases.py``, or ``models.py`` inside the feature's package), deriving from
:class:`Base` and using :class:`UTCDateTime` for times, and add that module's dotted name to
:data:`MODEL_MODULES`. :func:`load_models` imports them all, so Alembic and the schema test see every
table. Then write the Alembic revision (see :mod:`trustroot.fleet.store.migrate`).

Conventions: times are timezone-aware UTC datetimes (a naive one is refused when written); constraint
and index names follow :data:`NAMING_CONVENTION` (Alembic needs stable names to alter them later,
SQLite batch mode included); a closed set of values is a short string with a named CHECK constraint,
its Python spelling a :class:`enum.StrEnum`.
"""

from __future__ import annotations

import enum
import importlib
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "MODEL_MODULES",
    "NAMING_CONVENTION",
    "Alert",
    "AlertSeverity",
    "AuditRecord",
    "Base",
    "Batch",
    "CommandState",
    "Device",
    "DeviceCommand",
    "DeviceStatus",
    "UTCDateTime",
    "load_models",
]

#: Names of constraints and indexes, the same on SQLite and PostgreSQL.
NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Every module that defines fleet tables. A feature adds its module here (see the module docstring).
MODEL_MODULES: tuple[str, ...] = (
    "trustroot.fleet.store.models",
    "trustroot.fleet.releases.models",
    "trustroot.fleet.operators_models",
    "trustroot.fleet.ownership_models",
    "trustroot.fleet.intake_limit",
    "trustroot.fleet.telemetry_models",
    "trustroot.fleet.console_models",
)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL stores ``timestamp with time zone``; SQLite has no time zones, so the value is stored
    as UTC and read back with ``tzinfo=UTC``. Writing a naive datetime raises ``ValueError``: the
    clock must say which time it means.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} written to the fleet store; use an aware one")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Base of every fleet table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


def _one_of(column: str, values: type[enum.StrEnum]) -> CheckConstraint:
    allowed = ", ".join(f"'{member.value}'" for member in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=f"{column}_valid")


class DeviceStatus(enum.StrEnum):
    """Whether a device may talk to the fleet."""

    ACTIVE = "active"
    REVOKED = "revoked"


class CommandState(enum.StrEnum):
    """Life of a queued device command: queued, then delivered at a check-in, then acknowledged."""

    QUEUED = "queued"
    DELIVERED = "delivered"
    ACKNOWLEDGED = "acknowledged"
    FAILED = "failed"
    CANCELLED = "cancelled"


class AlertSeverity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Batch(Base):
    """A production batch imported from its signed, closed manifest (``trustroot fleet import-batch``)."""

    __tablename__ = "batches"

    #: The batch id the manifest names.
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    #: SHA-256 (hex) of the manifest file as imported: the same manifest imports once.
    manifest_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    factory: Mapped[str] = mapped_column(String(128))
    device_count: Mapped[int] = mapped_column(Integer)
    imported_at: Mapped[datetime]

    devices: Mapped[list[Device]] = relationship(back_populates="batch")


class Device(Base):
    """A device the fleet knows; only these may talk to the service."""

    __tablename__ = "devices"
    __table_args__ = (
        _one_of("status", DeviceStatus),
        Index(None, "batch_id"),
        Index(None, "group_name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(128), unique=True)
    #: SHA-256 (lowercase hex) of the DER device certificate: how a TLS client is looked up.
    certificate_fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    certificate_pem: Mapped[str] = mapped_column(Text)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"))
    factory: Mapped[str] = mapped_column(String(128))
    model: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default=DeviceStatus.ACTIVE.value)
    registered_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    last_checkin_at: Mapped[datetime | None]
    #: What the device reported at its last check-in.
    reported_version: Mapped[str | None] = mapped_column(String(64))
    security_counter: Mapped[int | None] = mapped_column(BigInteger)
    health: Mapped[dict[str, Any] | None]
    #: Rollout group and update channel.
    group_name: Mapped[str] = mapped_column(String(64), default="default", server_default=text("'default'"))
    channel: Mapped[str] = mapped_column(String(64), default="stable", server_default=text("'stable'"))

    batch: Mapped[Batch] = relationship(back_populates="devices")


class DeviceCommand(Base):
    """A command queued for one device, delivered at its next check-in (factory_reset, reboot, ...)."""

    __tablename__ = "device_commands"
    __table_args__ = (
        _one_of("state", CommandState),
        Index(None, "device_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    #: What to do: ``factory_reset``, ``reboot``, ... (the feature that queues it defines it).
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any] | None]
    state: Mapped[str] = mapped_column(String(16), default=CommandState.QUEUED.value)
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    #: What the device answered (a signed receipt, an error).
    result: Mapped[dict[str, Any] | None]


class Alert(Base):
    """A monitoring finding, with the evidence behind it (:mod:`trustroot.fleet.alerts`).

    ``device_id`` is NULL for a fleet-wide finding (and after the device row is gone; ``serial``
    keeps its name). ``observed_at`` is the time of the telemetry that raised it (the device's
    clock); ``created_at`` when the service raised it.
    """

    __tablename__ = "alerts"
    __table_args__ = (
        _one_of("severity", AlertSeverity),
        Index(None, "device_id"),
        Index(None, "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(String(1024))
    data: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    serial: Mapped[str | None] = mapped_column(String(128))
    score: Mapped[float | None] = mapped_column(Float)
    rule: Mapped[str | None] = mapped_column(String(256))
    observed_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(256))


class AuditRecord(Base):
    """One evidence record of the fleet's audit chain (the format of :mod:`trustroot.evidence`).

    Rows are written only by :class:`trustroot.fleet.store.audit.AuditLog`. ``data`` holds the
    canonical JSON text of the record's data; ``seq`` and ``hash`` are unique, so two writers can
    never both extend the same head (the chain cannot fork even if the lock were bypassed).
    """

    __tablename__ = "audit"
    __table_args__ = (
        Index(None, "type"),
        Index(None, "subject"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    v: Mapped[int] = mapped_column(Integer)
    time: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(256))
    type: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(1024))
    data: Mapped[str] = mapped_column(Text)
    prev: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


def load_models() -> MetaData:
    """Import every module of :data:`MODEL_MODULES` and return the metadata holding all fleet tables."""
    for name in MODEL_MODULES:
        importlib.import_module(name)
    return Base.metadata
