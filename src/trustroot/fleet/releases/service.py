"""The release repository inside the running fleet service, and the upkeep the service runs.

The service serves the product's TUF repository (``<state_dir>/releases/tuf``) and keeps its online
metadata fresh. Every serving process may run :class:`ReleaseMaintenance`: a daemon thread that
every ``interval`` (default: :attr:`ExpiryPolicy.refresh_interval`, a quarter of the timestamp's
renewal window, e.g. 3 h for a 24 h timestamp) calls :func:`release_maintenance`::

    refresh_timestamp(repo, now)     re-sign timestamp (snapshot, targets) when half their life is gone
    rollouts.advance_due(service)    start the next stage of rollouts whose stage time has passed

Both are idempotent and safe from several workers at once (the repository lock, compare-and-set
updates in the store), so every worker may run its own. A failure is logged and retried at the
next tick; it never stops the service.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Final

from sqlalchemy.exc import SQLAlchemyError

from trustroot.errors import TrustrootError
from trustroot.fleet.releases.repository import REPOSITORY_SUBDIR, ExpiryPolicy, ReleaseRepository, refresh_timestamp
from trustroot.fleet.service import FleetService

__all__ = [
    "REPOSITORY_PART",
    "MaintenanceReport",
    "ReleaseMaintenance",
    "release_maintenance",
    "repository_dir",
    "service_repository",
]

_log = logging.getLogger(__name__)

#: ``service.parts`` key of the service's :class:`ReleaseRepository`.
REPOSITORY_PART: Final = "releases.repository"
#: ``service.parts`` key that overrides where the repository lies (tests); default under state_dir.
REPOSITORY_DIR_PART: Final = "releases.tuf_dir"


def repository_dir(service: FleetService) -> Path:
    """Where the service's TUF repository lies: ``<state_dir>/releases/tuf``."""
    override = service.parts.get(REPOSITORY_DIR_PART)
    if isinstance(override, Path):
        return override
    return service.config.state_dir / REPOSITORY_SUBDIR


def service_repository(service: FleetService) -> ReleaseRepository:
    """The service's repository, opened once (signing needs the service's key store)."""
    found = service.parts.get(REPOSITORY_PART)
    if isinstance(found, ReleaseRepository):
        return found
    if service.keys is None:
        raise TrustrootError("the fleet service has no key store: it cannot sign TUF timestamps")
    repo = ReleaseRepository.open(
        repository_dir(service), service.keys, ExpiryPolicy.from_context(service.context.update)
    )
    service.parts[REPOSITORY_PART] = repo
    return repo


@dataclass(frozen=True)
class MaintenanceReport:
    """What one maintenance tick did."""

    resigned: list[str] = field(default_factory=list)
    advanced_rollouts: list[int] = field(default_factory=list)


def release_maintenance(service: FleetService) -> MaintenanceReport:
    """One tick: refresh the TUF timestamp (if a repository exists) and advance due rollouts."""
    from trustroot.fleet.rollouts import advance_due

    resigned: list[str] = []
    if ReleaseRepository.exists(repository_dir(service)):
        resigned = refresh_timestamp(service_repository(service), service.clock())
    advanced = [view.id for view in advance_due(service)]
    return MaintenanceReport(resigned=resigned, advanced_rollouts=advanced)


class ReleaseMaintenance:
    """Runs :func:`release_maintenance` every ``interval`` in a daemon thread (start/stop idempotent)."""

    def __init__(self, service: FleetService, *, interval: timedelta | None = None) -> None:
        policy = ExpiryPolicy.from_context(service.context.update)
        self._service = service
        self._interval_s = (interval or policy.refresh_interval).total_seconds()
        if self._interval_s <= 0:
            raise TrustrootError("the release maintenance interval must be positive")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def interval_s(self) -> float:
        return self._interval_s

    def tick(self) -> MaintenanceReport | None:
        """Run once now; a failure is logged (and ``None`` returned), never raised."""
        try:
            report = release_maintenance(self._service)
        except (TrustrootError, OSError, SQLAlchemyError) as exc:
            _log.error("release maintenance failed (retried in %.0f s): %s", self._interval_s, exc)
            return None
        if report.resigned or report.advanced_rollouts:
            _log.info(
                "release maintenance: re-signed %s; advanced rollouts %s", report.resigned, report.advanced_rollouts
            )
        return report

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="trustroot-release-maintenance", daemon=True)
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
