"""Personal data past its retention is deleted by the running service (provision 5.8-3), once, with evidence.

The retention is the Security Context's (``retention_days`` of each ``[[data.personal]]`` category:
voice 7 days, home address 30 days here); the in-process service's clock is moved past it. Then:
the service's own :class:`~trustroot.fleet.retention.RetentionMaintenance` thread deletes what
expired and nothing else, leaves one ``data.deleted`` record per purge that deleted something and
none for the purges that found nothing; several purgers on one store (threads of separate services,
each with its own connection pool, as worker processes have) delete each row once and record once;
and ``trustroot serve --retention-interval`` runs the purge in the served process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from service_fixtures import InProcess, copy_product, database_url, in_process, migrate, service_for
from sqlalchemy import func, select, update
from test_ownership import call, claimed, with_categories

from trustroot.evidence import EvidenceRecord
from trustroot.fleet.ownership_models import PersonalDatum
from trustroot.fleet.retention import RetentionMaintenance
from trustroot.fleet.service import FleetService
from trustroot.fleet.store.audit import AuditLog, audit_log
from trustroot.fleet.store.db import Store, make_engine

pytest_plugins = ["service_fixtures"]
pytestmark = pytest.mark.integration

WAIT_S = 15.0
PURGERS = 4


@pytest.fixture(scope="module")
def retention_product(product_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_product(product_template, tmp_path_factory.mktemp("retention") / "acme")


@pytest.fixture
def app(retention_product: Path, migrated_store_url: str) -> Iterator[InProcess]:
    with in_process(retention_product, migrated_store_url) as running:
        with_categories(running)
        yield running


def store_both(app: InProcess) -> None:
    owner = claimed(app)
    base = f"/api/v1/owners/me/devices/{app.device.serial}/data"
    for category, value in (("voice", "hello"), ("home-address", "1 Secret Lane")):
        answer = call(app, "PUT", f"{base}/{category}", json={"value": value}, headers=owner.headers)
        assert answer.status_code == 200, answer.text


def retention_records(service: FleetService) -> list[EvidenceRecord]:
    return [
        r for r in audit_log(service).iter_records() if r.type == "data.deleted" and r.data["reason"] == "retention"
    ]


def categories_left(service: FleetService) -> list[str]:
    with service.store.transaction() as session:
        return sorted(session.scalars(select(PersonalDatum.category)))


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"not within {WAIT_S} s: {what}"
        time.sleep(0.05)


def test_the_service_purges_what_passed_its_retention_once_with_evidence(app: InProcess) -> None:
    store_both(app)
    purger = RetentionMaintenance(app.service, interval_s=0.05)
    purger.start()
    try:
        time.sleep(0.3)  # several ticks: nothing has expired
        assert categories_left(app.service) == ["home-address", "voice"]
        assert retention_records(app.service) == []

        app.now[0] += timedelta(days=7, seconds=1)  # voice: 7 days
        wait_for(lambda: categories_left(app.service) == ["home-address"], "voice deleted at day 7")
        time.sleep(0.3)  # more ticks find nothing and record nothing
        [first] = retention_records(app.service)
        assert first.data["categories"] == {"voice": 1} and first.data["rows_deleted"] == 1
        assert first.actor == "service" and "hello" not in str(first.data)

        app.now[0] += timedelta(days=23)  # home address: 30 days
        wait_for(lambda: categories_left(app.service) == [], "the address deleted at day 30")
        time.sleep(0.2)
        assert [r.data["categories"] for r in retention_records(app.service)] == [{"voice": 1}, {"home-address": 1}]
        assert purger.deleted == 2
    finally:
        purger.stop()
    audit_log(app.service).verify({})


def test_purgers_of_several_workers_delete_each_row_once_and_record_once(app: InProcess) -> None:
    store_both(app)
    moved = app.now[0] + timedelta(days=31)
    services = [
        FleetService(
            store=Store(make_engine(app.url)),
            config=app.service.config,
            context=app.service.context,
            pki_dir=app.service.pki_dir,
            keys=app.service.keys,
            clock=lambda: moved,
        )
        for _ in range(PURGERS)
    ]
    counts: list[int | None] = [None] * PURGERS
    barrier = threading.Barrier(PURGERS)

    def purge(index: int) -> None:
        barrier.wait(timeout=10)
        counts[index] = RetentionMaintenance(services[index]).tick()

    threads = [threading.Thread(target=purge, args=(i,)) for i in range(PURGERS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        for service in services:
            service.store.dispose()
    assert sorted(c for c in counts if c is not None) == [0] * (PURGERS - 1) + [2], counts
    [record] = retention_records(app.service)
    assert record.data["categories"] == {"home-address": 1, "voice": 1}
    assert categories_left(app.service) == []


def test_trustroot_serve_runs_the_purge(product_template: Path, tmp_path: Path) -> None:
    product_dir = copy_product(product_template, tmp_path / "acme")
    url = migrate(database_url(product_dir))
    with in_process(product_dir, url) as app:
        with_categories(app)
        store_both(app)
    store = Store(make_engine(url))
    try:
        with store.transaction() as session:  # the voice clip's retention ran out a second ago
            session.execute(
                update(PersonalDatum)
                .where(PersonalDatum.category == "voice")
                .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
        running = service_for(product_dir, args=("--retention-interval", "0.2"))
        try:

            def purged() -> bool:
                with store.transaction() as session:
                    return session.scalar(select(func.count()).select_from(PersonalDatum)) == 1

            wait_for(purged, "the served process purges the expired row")
        finally:
            running.stop()
        with store.transaction() as session:
            assert list(session.scalars(select(PersonalDatum.category))) == ["home-address"]
        deleted = [r for r in AuditLog(store).iter_records() if r.type == "data.deleted"]
        assert [(r.data["reason"], r.data["categories"]) for r in deleted] == [("retention", {"voice": 1})]
    finally:
        store.dispose()


def test_the_retention_interval_is_bounded() -> None:
    from trustroot.errors import UsageError
    from trustroot.fleet.server import ServeSettings

    for wrong in (0.0, -1.0, 86401.0):
        with pytest.raises(UsageError, match="--retention-interval"):
            ServeSettings(context=".", app_factory="x:y", retention_interval_s=wrong)
