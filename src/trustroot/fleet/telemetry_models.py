"""Tables of telemetry monitoring (on the fleet store's :class:`~trustroot.fleet.store.models.Base`).

::

    devices
      └── telemetry_points   one row per (device, seq): the point as canonical JSON, its digest
    monitor_state            the detectors' serialised state: "device:<serial>" rows and the "fleet" row
    alerts                   (store/models.py) findings with their evidence; monitoring adds score,
                             rule, observed_at, serial and acknowledgement columns

The primary key (device_id, seq) is the duplicate filter of at-least-once transports: a point
delivered twice is stored once. ``digest`` (128 bits of SHA-256 over the canonical JSON) tells an
exact redelivery from a *different* point under a seq already used (a cloned device). The schema is
made by Alembic revision ``0005``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from trustroot.fleet.store.models import Base

__all__ = ["MonitorStateRow", "TelemetryPointRow"]


class TelemetryPointRow(Base):
    """One stored telemetry point."""

    __tablename__ = "telemetry_points"
    __table_args__ = (Index(None, "received_at"),)

    device_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    #: The point's own time (the device's clock) and when the service stored it.
    time: Mapped[datetime]
    received_at: Mapped[datetime]
    digest: Mapped[str] = mapped_column(String(32))
    #: The point's wire form as canonical JSON.
    data: Mapped[str] = mapped_column(Text)


class MonitorStateRow(Base):
    """The serialised state of one detector, shared by every ingest worker."""

    __tablename__ = "monitor_state"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    #: Raised by one on every write: a worker whose cached copy has another version reloads it.
    version: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]
