"""Device check-in: over real mutual TLS, and in process with an injected clock and a seeded RNG.

The in-process application is the one ``trustroot serve`` runs (:func:`trustroot.fleet.server.build_app`,
middleware included); the device authenticates through forwarded-certificate mode, i.e. the full
certificate validation of :mod:`trustroot.fleet.auth`, without a TLS listener. The persistence tests
run on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from service_fixtures import (
    InProcess,
    RunningService,
    copy_product,
    in_process,
    issue_device,
    next_serial_number,
    open_test_product,
    register_device,
)
from sqlalchemy import select

from trustroot.fleet import rollouts
from trustroot.fleet.service import FleetService
from trustroot.fleet.store.db import Store, make_engine
from trustroot.fleet.store.models import Alert, CommandState, Device, DeviceCommand

pytest_plugins = ["service_fixtures"]
pytestmark = pytest.mark.integration

REPORT = {
    "firmware_version": "1.4.2",
    "security_counter": 7,
    "install_results": [{"version": "1.4.2", "security_counter": 7, "status": "installed"}],
    "health": {"uptime_s": 3600, "cpu_percent": 12.5, "reset_reason": "power-on"},
}


def _device_row(url: str, serial: str) -> Device:
    store = Store(make_engine(url))
    try:
        with store.transaction() as session:
            return session.scalars(select(Device).where(Device.serial == serial)).one()
    finally:
        store.dispose()


# ------------------------------------------------------------------------------ over real mutual TLS


def test_a_device_checks_in_over_mutual_tls(service: RunningService) -> None:
    device = issue_device(service.product_dir, next_serial_number())
    register_device(service.database_url, device)
    with service.client(device) as client:
        response = client.post("/api/v1/device/check-in", json=REPORT)
    assert response.status_code == 200, response.text
    body = response.json()
    update = open_test_product(service.product_dir).context.model.update
    low, high = update.checkin_jitter_s
    assert update.checkin_interval_s + low <= body["next_checkin_in_s"] <= update.checkin_interval_s + high
    server_time = datetime.fromisoformat(body["server_time"])
    assert datetime.fromisoformat(body["next_checkin_at"]) == server_time + timedelta(seconds=body["next_checkin_in_s"])
    assert body["device_id"] == device.serial
    assert body["support_period_end"] is not None and body["end_of_life"] is None
    assert body["commands"] == []

    row = _device_row(service.database_url, device.serial)
    assert row.last_checkin_at == server_time
    assert (row.reported_version, row.security_counter) == ("1.4.2", 7)
    assert row.health == {"uptime_s": 3600, "cpu_percent": 12.5, "reset_reason": "power-on"}


# ------------------------------------------------------------------------------------------ in process


@pytest.fixture(scope="module")
def checkin_product(product_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_product(product_template, tmp_path_factory.mktemp("checkin") / "acme")


@pytest.fixture
def app(checkin_product: Path, migrated_store_url: str) -> Iterator[InProcess]:
    """In process, on SQLite and on PostgreSQL."""
    with in_process(checkin_product, migrated_store_url) as running:
        yield running


@pytest.fixture
def sqlite_app(checkin_product: Path, sqlite_store: str) -> Iterator[InProcess]:
    """In process, on SQLite only (for tests about the answer, not the store)."""
    with in_process(checkin_product, sqlite_store) as running:
        yield running


def test_the_jitter_is_uniform_in_the_configured_range_and_seeded(sqlite_app: InProcess) -> None:
    update = sqlite_app.service.context.update
    low, high = update.checkin_jitter_s
    delays = [sqlite_app.check_in(REPORT).json()["next_checkin_in_s"] - update.checkin_interval_s for _ in range(40)]
    assert all(low <= delay <= high for delay in delays)
    expected = random.Random(20240611)
    assert delays == [expected.randint(low, high) for _ in range(40)]  # the injected RNG, nothing else
    assert min(delays) < low + (high - low) / 4 and max(delays) > high - (high - low) / 4  # spread, not a constant


def test_every_check_in_after_the_support_period_carries_the_end_of_life_notice(
    checkin_product: Path, sqlite_store: str
) -> None:
    ended = date(2024, 3, 31)
    with in_process(checkin_product, sqlite_store, support_period_end=ended) as app:
        for _ in range(2):
            body = app.check_in(REPORT).json()
            assert body["support_period_end"] == "2024-03-31"
            assert body["end_of_life"] == {
                "support_ended_on": "2024-03-31",
                "message": "support ended on 2024-03-31: Acme Plug receives no more security updates",
                "provision": "5.3-13",
            }


def test_no_notice_on_the_last_day_of_support(checkin_product: Path, sqlite_store: str) -> None:
    today = datetime.now(UTC).date()
    with in_process(checkin_product, sqlite_store, support_period_end=today) as app:
        assert app.check_in(REPORT).json()["end_of_life"] is None
        app.now[0] += timedelta(days=1)  # the clock moves past the end: the notice appears
        assert app.check_in(REPORT).json()["end_of_life"]["support_ended_on"] == today.isoformat()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"device_id": "ACMEPL-99999999"}, "device_id"),  # the identity comes from the certificate only
        ({"security_counter": "7"}, "security_counter"),  # strict: no string-to-int coercion
        ({"security_counter": 2**32}, "security_counter"),
        ({"security_counter": True}, "security_counter"),
        ({"firmware_version": "x" * 65}, "firmware_version"),
        ({"firmware_version": "1.0\n"}, "firmware_version"),
        ({"install_results": [REPORT["install_results"][0]] * 17}, "install_results"),
        ({"health": {"cpu_percent": 101}}, "cpu_percent"),
        ({"health": {"disk": 1}}, "disk"),
    ],
)
def test_malformed_reports_are_refused(sqlite_app: InProcess, change: dict[str, Any], field: str) -> None:
    response = sqlite_app.check_in({**REPORT, **change})
    assert response.status_code == 422
    assert field in response.text


def test_an_oversized_body_is_413(sqlite_app: InProcess) -> None:
    limit = sqlite_app.service.config.limits.max_request_bytes
    report = {**REPORT, "padding": "x" * limit}
    assert sqlite_app.check_in(report).status_code == 413


def test_queued_commands_are_delivered_until_acknowledged(app: InProcess) -> None:
    store = app.service.store
    row = _device_row(app.url, app.device.serial)
    with store.transaction() as session:
        session.add(DeviceCommand(device_id=row.id, kind="reboot", payload={"delay_s": 5}, created_at=app.now[0]))
    first = app.check_in(REPORT).json()["commands"]
    assert [(c["kind"], c["payload"]) for c in first] == [("reboot", {"delay_s": 5})]
    with store.transaction() as session:
        command = session.get(DeviceCommand, first[0]["id"])
        assert command is not None and command.state == CommandState.DELIVERED.value
        assert command.delivered_at == app.now[0]
    assert app.check_in(REPORT).json()["commands"] == first  # not acknowledged yet: delivered again
    with store.transaction() as session:
        command = session.get(DeviceCommand, first[0]["id"])
        assert command is not None
        command.state = CommandState.ACKNOWLEDGED.value
    assert app.check_in(REPORT).json()["commands"] == []


def test_a_falling_security_counter_is_raised_as_a_critical_alert(app: InProcess) -> None:
    assert app.check_in(REPORT).status_code == 200
    assert app.check_in({**REPORT, "firmware_version": "1.0.0", "security_counter": 3}).status_code == 200
    with app.service.store.transaction() as session:
        alerts = session.scalars(select(Alert)).all()
        assert [(a.kind, a.severity, a.data) for a in alerts] == [
            ("security_counter_decreased", "critical", {"previous": 7, "reported": 3, "firmware_version": "1.0.0"})
        ]
    assert _device_row(app.url, app.device.serial).security_counter == 3  # what the device runs now


def test_the_offer_comes_from_the_rollout_engine(sqlite_app: InProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[Any, int]] = []

    def offer_for(service: FleetService, device: Any, reported_counter: int) -> dict[str, Any] | None:
        asked.append((device, reported_counter))
        return {"version": "1.5.0", "target": "acme-1.5.0.bin"}

    monkeypatch.setattr(rollouts, "offer_for", offer_for)
    assert sqlite_app.check_in(REPORT).json()["offer"] == {"version": "1.5.0", "target": "acme-1.5.0.bin"}
    device, counter = asked[0]
    assert (device.serial, counter) == (sqlite_app.device.serial, 7)
