"""FleetService: what every route of the fleet API depends on.

It holds the store, the product's Security Context and key store (for TUF timestamps, data keys,
receipts), the PKI directory (CA certificates and CRL for client authentication) and the clock.
One instance lives in ``app.state.fleet``; routes reach it through :func:`get_service`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
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
    from trustroot.product import Product

__all__ = ["FleetService", "database_url_for", "get_service", "product_service"]


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


def database_url_for(product: Product, database: str | None) -> str:
    """``database`` if given, else the product's embedded store (``.trustroot/fleet.sqlite``)."""
    from trustroot.fleet.config import sqlite_url

    return database or sqlite_url(product.state_dir / "fleet.sqlite")


@contextlib.contextmanager
def product_service(product: Product, database: str | None) -> Iterator[FleetService]:
    """The fleet service of ``product`` over its (migrated) store, without a network; disposed afterwards.

    What the operator commands (fleet, release, rollout, operator, disclosure) work through.
    """
    from trustroot.fleet.store.migrate import open_store

    url = database_url_for(product, database)
    store = open_store(url)
    try:
        yield FleetService(
            store=store,
            config=FleetConfig(database_url=url, state_dir=product.state_dir),
            context=product.context.model,
            pki_dir=product.pki_dir,
            keys=product.keys,
            clock=product.clock,
        )
    finally:
        store.dispose()
