"""Personal-data retention in the running service (EN 303 645 provision 5.8-3; guideline 8).

Each personal-data row carries ``expires_at`` = stored + the category's ``retention_days`` from the
Security Context (:mod:`trustroot.fleet.personal_data`). Every serving process runs a
:class:`RetentionMaintenance`: a daemon thread that every ``FleetLimits.retention_interval_s``
(default one hour; ``trustroot serve --retention-interval``) calls
:func:`~trustroot.fleet.personal_data.purge_expired` at the service's clock::

    purge_expired(service)
      ├─ lock       PostgreSQL pg_advisory_xact_lock(personal data) · SQLite BEGIN IMMEDIATE
      ├─ select     rows with expires_at <= now
      ├─ delete     them, and append ONE data.deleted record (reason "retention", counts per category)
      └─ commit     then the freed bytes are scrubbed (WAL checkpoint / VACUUM FULL)

Several workers and processes on one store are safe: the lock lets one purge at a time, and the
next one finds nothing left to delete and records nothing, so each expired row is deleted once and
each purge that deleted something leaves exactly one evidence record. A failure is logged and
retried at the next tick; it never stops the service.
"""

from __future__ import annotations

import logging
import threading
from typing import Final

from sqlalchemy.exc import SQLAlchemyError

from trustroot.errors import TrustrootError
from trustroot.fleet.personal_data import purge_expired
from trustroot.fleet.service import FleetService

__all__ = ["RETENTION_PART", "RetentionMaintenance"]

_log = logging.getLogger(__name__)

#: ``service.parts`` key of the serving process's :class:`RetentionMaintenance`.
RETENTION_PART: Final = "retention_maintenance"


class RetentionMaintenance:
    """Runs :func:`purge_expired` every ``interval_s`` seconds in a daemon thread (start/stop idempotent)."""

    def __init__(self, service: FleetService, *, interval_s: float | None = None) -> None:
        self._service = service
        self._interval_s = service.config.limits.retention_interval_s if interval_s is None else interval_s
        if self._interval_s <= 0:
            raise TrustrootError(f"the retention interval must be positive, got {self._interval_s}")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Rows deleted by this process since start.
        self.deleted = 0

    @property
    def interval_s(self) -> float:
        return self._interval_s

    def tick(self) -> int | None:
        """Purge once now; return the rows deleted, or ``None`` after a failure (logged, never raised)."""
        try:
            count = purge_expired(self._service)
        except (TrustrootError, OSError, SQLAlchemyError) as exc:
            _log.error("personal-data retention purge failed (retried in %.0f s): %s", self._interval_s, exc)
            return None
        if count:
            self.deleted += count
            _log.info("personal-data retention: %d expired row(s) deleted", count)
        return count

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="trustroot-retention", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        self.tick()
        while not self._stop.wait(self._interval_s):
            self.tick()
