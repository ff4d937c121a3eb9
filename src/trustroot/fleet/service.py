"""FleetService: what every route of the fleet API depends on.

It holds the store, the product's Security Context and key store (for TUF timestamps, data keys,
receipts), the PKI directory (CA certificates and CRL for client authentication) and the clock.
One instance lives in ``app.state.fleet``; routes reach it through :func:`get_service`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection

from trustroot.context.schema import SecurityContext
from trustroot.fleet.config import FleetConfig
from trustroot.fleet.store.db import Store

if TYPE_CHECKING:
    from trustroot.keys.store import KeyStore

__all__ = ["FleetService", "get_service"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class FleetService:
    """The fleet service's state, shared by every route and worker thread."""

    store: Store
    config: FleetConfig
    context: SecurityContext
    pki_dir: Path
    keys: KeyStore | None = None
    clock: Callable[[], datetime] = _utcnow
    #: Components later capabilities attach (release repository, rollout engine, ...), by name.
    parts: dict[str, Any] = field(default_factory=dict)


def get_service(connection: HTTPConnection) -> FleetService:
    """FastAPI dependency: the service of the application handling this request."""
    service: FleetService = connection.app.state.fleet
    return service
