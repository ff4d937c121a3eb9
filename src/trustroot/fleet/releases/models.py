"""Tables of releases and staged rollouts (on the fleet store's :class:`~trustroot.fleet.store.models.Base`).

::

    releases             one row per published release (mirrors its TUF target; the TUF metadata is
      │                  what devices trust, this row is what operators and rollouts refer to)
      └── rollouts       a staged rollout of one release to a channel (and optionally one device group)
            ├── rollout_offers    one row per device offered the release: when, at which stage, and the
            │                     latest install result it reported
            └── install_results   every install result devices reported (history; rollout may be NULL
                                  when a device reports a release it was not offered by a rollout)

The schema is made by Alembic revision ``0002`` (``store/migrations/versions/0002_releases_and_rollouts.py``).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from trustroot.fleet.store.models import Base

__all__ = [
    "InstallOutcome",
    "InstallResult",
    "Release",
    "Rollout",
    "RolloutOffer",
    "RolloutState",
]


class RolloutState(enum.StrEnum):
    """Where a rollout stands. ``aborted`` and ``superseded`` are final."""

    ACTIVE = "active"
    PAUSED = "paused"
    ABORTED = "aborted"
    #: A newer rollout on the same channel and group took over.
    SUPERSEDED = "superseded"


class InstallOutcome(enum.StrEnum):
    OK = "ok"
    FAILED = "failed"


def _one_of(column: str, values: type[enum.StrEnum]) -> CheckConstraint:
    allowed = ", ".join(f"'{member.value}'" for member in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=f"{column}_valid")


class Release(Base):
    """A release published in the TUF repository (``trustroot release publish``)."""

    __tablename__ = "releases"
    __table_args__ = (
        UniqueConstraint("channel", "version"),
        Index(None, "channel", "security_counter"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    security_counter: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    #: The TUF target path, ``<channel>/<name>-<version>.img``.
    target_path: Mapped[str] = mapped_column(String(255), unique=True)
    published_at: Mapped[datetime]
    published_by: Mapped[str] = mapped_column(String(256))
    #: The product's declared end of security updates at publication (ISO date; 5.3-13).
    support_period_end: Mapped[str | None] = mapped_column(String(10))


class Rollout(Base):
    """A staged rollout of one release: stages by percentage, cohorts by a stable hash, auto-pause."""

    __tablename__ = "rollouts"
    __table_args__ = (
        _one_of("state", RolloutState),
        Index(None, "channel", "state"),
        Index(None, "release_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"))
    channel: Mapped[str] = mapped_column(String(64))
    #: Only devices of this group (``devices.group_name``); NULL: every device of the channel.
    group_name: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    #: The stages, as the context gave them at the start: ``[{"percent": 1.0, "min_hours": 24.0}, ...]``.
    stages: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    stage_index: Mapped[int] = mapped_column(Integer)
    stage_started_at: Mapped[datetime]
    failure_threshold: Mapped[float] = mapped_column(Float)
    min_sample: Mapped[int] = mapped_column(Integer)
    #: Devices offered / reporting success / reporting failure, over the whole rollout.
    offered_count: Mapped[int] = mapped_column(Integer, default=0)
    succeeded_count: Mapped[int] = mapped_column(Integer, default=0)
    failed_count: Mapped[int] = mapped_column(Integer, default=0)
    #: The counts when the failure window last restarted (start, or the last resume).
    window_offered_base: Mapped[int] = mapped_column(Integer, default=0)
    window_failed_base: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(256))
    updated_at: Mapped[datetime]


class RolloutOffer(Base):
    """One device offered a rollout's release, and the latest result it reported."""

    __tablename__ = "rollout_offers"
    __table_args__ = (
        UniqueConstraint("rollout_id", "device_id"),
        Index(None, "device_id"),
        CheckConstraint("result IS NULL OR result IN ('ok', 'failed')", name="result_valid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollouts.id", ondelete="CASCADE"))
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    stage_index: Mapped[int] = mapped_column(Integer)
    offered_at: Mapped[datetime]
    #: The security counter the device reported when it was offered the release.
    reported_counter: Mapped[int] = mapped_column(BigInteger)
    result: Mapped[str | None] = mapped_column(String(8))
    result_at: Mapped[datetime | None]


class InstallResult(Base):
    """An install result a device reported (every report is kept)."""

    __tablename__ = "install_results"
    __table_args__ = (
        Index(None, "device_id"),
        Index(None, "release_id"),
        Index(None, "rollout_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"))
    rollout_id: Mapped[int | None] = mapped_column(ForeignKey("rollouts.id", ondelete="SET NULL"))
    ok: Mapped[bool] = mapped_column(Boolean)
    detail: Mapped[str | None] = mapped_column(String(1024))
    reported_at: Mapped[datetime]
