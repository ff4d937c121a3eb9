"""The disclosure intake's rate limit is kept in the store: it slides, stays small, and is shared.

On both stores: the window slides by the minute and Retry-After says when one more report is
admitted; rows past the window are pruned; concurrent admissions from separate connection pools
(as worker processes have) never pass the limit. Then two ``trustroot serve`` processes on one
PostgreSQL database: reports to either count against one limit per client address.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from postgres import PostgresServer
from service_fixtures import RunningService, copy_product, service_for, start_service
from sqlalchemy import func, select

from trustroot.fleet.intake_limit import BUCKET_S, IntakeCounter, admit, client_key, tracked_clients
from trustroot.fleet.store.db import Store, make_engine

pytest_plugins = ["service_fixtures"]
pytestmark = pytest.mark.integration

REPORT = {"summary": "Debug UART open", "details": "115200 8N1 gives a root shell."}
T0 = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)
THREADS = 8


@pytest.fixture
def store(migrated_store_url: str) -> Store:
    made = Store(make_engine(migrated_store_url))
    yield made  # type: ignore[misc]
    made.dispose()


def test_the_window_slides_and_retry_after_says_when(store: Store) -> None:
    assert admit(store, "192.0.2.1", 3, T0) is None
    assert admit(store, "192.0.2.1", 3, T0 + timedelta(minutes=10)) is None
    assert admit(store, "192.0.2.1", 3, T0 + timedelta(minutes=20)) is None
    at = T0 + timedelta(minutes=30)
    wait = admit(store, "192.0.2.1", 3, at)
    # the first report's minute (12:00) leaves the window at 13:00: 29 min 30 s after 12:30:30
    assert wait == 29 * 60 + 30
    assert admit(store, "198.51.100.9", 3, at) is None  # another client is not affected
    assert admit(store, "192.0.2.1", 3, at + timedelta(seconds=wait - 1)) is not None
    assert admit(store, "192.0.2.1", 3, at + timedelta(seconds=wait)) is None
    assert admit(store, "192.0.2.1", 3, at + timedelta(seconds=wait)) is not None  # refused ones do not count


def test_rows_past_the_window_are_pruned(store: Store) -> None:
    for n in range(50):
        assert admit(store, f"10.0.0.{n}", 2, T0) is None
    assert tracked_clients(store) == 50
    assert admit(store, "10.0.1.1", 2, T0 + timedelta(hours=1, seconds=BUCKET_S)) is None
    assert tracked_clients(store) == 1
    with store.transaction() as session:
        assert session.scalar(select(func.count()).select_from(IntakeCounter)) == 1


def test_client_keys() -> None:
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_key(None) == "unknown"
    assert len(client_key("x" * 500)) == 64


def test_concurrent_admissions_never_pass_the_limit(migrated_store_url: str) -> None:
    stores = [Store(make_engine(migrated_store_url)) for _ in range(THREADS)]
    admitted: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(THREADS)

    def client(store: Store) -> None:
        barrier.wait(timeout=10)
        for _ in range(3):
            verdict = admit(store, "203.0.113.5", 10, T0) is None
            with lock:
                admitted.append(verdict)

    threads = [threading.Thread(target=client, args=(s,)) for s in stores]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        for made in stores:
            made.dispose()
    assert len(admitted) == THREADS * 3 and admitted.count(True) == 10


def _post(running: RunningService) -> httpx.Response:
    with running.client() as client:
        return client.post("/api/v1/disclosures", json=REPORT)


def test_two_server_processes_on_one_postgresql_share_the_limit(
    product_template: Path, tmp_path: Path, postgres_server: PostgresServer
) -> None:
    product_dir = copy_product(product_template, tmp_path / "acme")
    database = postgres_server.create_database()
    url = postgres_server.url(database)
    first = service_for(product_dir, database=url)
    second: RunningService | None = None
    try:
        second = start_service(product_dir, first.device, args=("--database", url))
        limit = 10  # FleetLimits.disclosure_per_ip_per_hour
        answers = [_post(first if n % 2 else second).status_code for n in range(limit)]
        assert answers == [201] * limit
        for running in (first, second):
            refused = _post(running)
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"] == "rate_limited"
            assert 1 <= int(refused.headers["retry-after"]) <= 3600
            assert refused.json()["retry_after_s"] == int(refused.headers["retry-after"])
    finally:
        if second is not None:
            second.stop()
        first.stop()
        postgres_server.drop_database_later(database)
