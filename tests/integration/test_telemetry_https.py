"""Telemetry over real HTTPS with device certificates, alerts in the API and the audit chain, the webhook."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from service_fixtures import (
    DeviceCredentials,
    RunningService,
    in_process,
    issue_device,
    next_serial_number,
    register_device,
)
from sqlalchemy import func, select

from trustroot.context.load import load_context
from trustroot.errors import UsageError
from trustroot.fleet.alerts_webhook import WEBHOOK_ENV, AlertWebhook
from trustroot.fleet.config import FleetConfig
from trustroot.fleet.operators import add_operator
from trustroot.fleet.service import FleetService
from trustroot.fleet.store.audit import AuditLog
from trustroot.fleet.store.db import Store, make_engine
from trustroot.fleet.store.models import Device
from trustroot.fleet.telemetry import DeviceBatch, TelemetryIngest, telemetry_ingest
from trustroot.fleet.telemetry_models import TelemetryPointRow
from trustroot.monitor.synthetic import SyntheticDevice

pytest_plugins = ["service_fixtures"]
pytestmark = pytest.mark.integration

PATH = "/api/v1/device/telemetry"


def batch(device: SyntheticDevice, count: int, attack: str | None = None) -> dict[str, object]:
    return {"points": [device.point(attack).to_json() for _ in range(count)]}  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tokens(service: RunningService, product_template: Path) -> dict[str, str]:
    store = Store(make_engine(service.database_url))
    try:
        writer = FleetService(
            store=store,
            config=FleetConfig(database_url=service.database_url, state_dir=service.product_dir / ".trustroot"),
            context=load_context(product_template / "security-context.toml").model,
            pki_dir=service.product_dir / ".trustroot" / "pki",
        )
        suffix = random.randrange(10**9)
        return {
            scope: add_operator(writer, f"monitor-{scope}-{suffix}", scope, actor="user:admin").token
            for scope in ("read", "device-admin")
        }
    finally:
        store.dispose()


def new_device(service: RunningService) -> DeviceCredentials:
    device = issue_device(service.product_dir, next_serial_number())
    register_device(service.database_url, device)
    return device


def test_batches_are_stored_once_and_duplicates_counted(service: RunningService) -> None:
    creds = new_device(service)
    stream = SyntheticDevice(creds.serial, random.Random(1), datetime.now(UTC))
    body = batch(stream, 50)
    with service.client(creds) as client:
        first = client.post(PATH, json=body)
        assert first.status_code == 202, first.text
        assert first.json() == {"accepted": 50, "duplicates": 0}
        again = client.post(PATH, json=body)
        assert again.json() == {"accepted": 0, "duplicates": 50}
    store = Store(make_engine(service.database_url))
    try:
        with store.transaction() as session:
            device_id = session.scalar(select(Device.id).where(Device.serial == creds.serial))
            stored = session.scalar(select(func.count()).where(TelemetryPointRow.device_id == device_id))
    finally:
        store.dispose()
    assert stored == 50


def test_no_certificate_is_refused_naming_the_provision(service: RunningService) -> None:
    stream = SyntheticDevice("X", random.Random(2), datetime.now(UTC))
    with service.client() as client:
        refused = client.post(PATH, json=batch(stream, 1))
    assert refused.status_code == 401
    assert refused.json()["provision"] == "5.5-1"


@pytest.mark.parametrize(
    ("change", "names"),
    [
        (lambda p: p.update(device="SOMEONE-ELSE"), "unknown field(s) device"),
        (lambda p: p.update(auth_failures=-1), "auth_failures"),
        (lambda p: p.update(bytes_out=True), "bytes_out"),
        (lambda p: p.update(cpu_percent=101), "cpu_percent"),
        (lambda p: p.update(time="2026-02-30T00:00:00Z"), "not a valid date"),
        (lambda p: p.update(firmware_version="1.0\n"), "firmware_version"),
        (lambda p: p.update(listening_ports=[0]), "listening_ports"),
        (lambda p: p.pop("seq"), "missing field(s) seq"),
    ],
)
def test_a_malformed_point_is_422_naming_it(service: RunningService, change: object, names: str) -> None:
    stream = SyntheticDevice("X", random.Random(3), datetime.now(UTC))
    body = batch(stream, 3)
    change(body["points"][1])  # type: ignore[index, operator]
    with service.client(service.device) as client:
        refused = client.post(PATH, json=body)
    assert refused.status_code == 422
    body = refused.json()
    assert body["error"] == "invalid_request" and body["provision"] == "5.13-1"
    assert "point 1" in body["message"] and names in body["message"]


def test_an_oversized_body_is_413(service: RunningService) -> None:
    with service.client(service.device) as client:
        refused = client.post(PATH, content=b'{"points": [' + b" " * (300 << 10) + b"]}")
    assert refused.status_code == 413


def test_an_attack_raises_an_alert_shown_in_the_api_and_the_audit_chain(
    service: RunningService, tokens: dict[str, str]
) -> None:
    creds = new_device(service)
    stream = SyntheticDevice(creds.serial, random.Random(4), datetime.now(UTC) - timedelta(hours=1))
    started = datetime.now(UTC) - timedelta(seconds=1)
    with service.client(creds) as client:
        assert client.post(PATH, json=batch(stream, 30)).json()["accepted"] == 30
        assert client.post(PATH, json=batch(stream, 1, "brute_force")).status_code == 202
    read = {"Authorization": f"Bearer {tokens['read']}"}
    admin = {"Authorization": f"Bearer {tokens['device-admin']}"}
    with service.client() as client:
        listed = client.get(
            "/api/v1/alerts", params={"device": creds.serial, "since": started.isoformat()}, headers=read
        )
        assert listed.status_code == 200, listed.text
        alerts = listed.json()["alerts"]
        assert [a["kind"] for a in alerts] == ["brute_force"]
        alert = alerts[0]
        assert alert["device"] == creds.serial and alert["severity"] == "warning" and not alert["acknowledged"]
        assert alert["rule"].startswith("telemetry.rules[0]: auth_failures")
        assert alert["evidence"]["point"]["seq"] == 30 and alert["evidence"]["point"]["auth_failures"] >= 20
        assert client.post(f"/api/v1/alerts/{alert['id']}/acknowledge", headers=read).status_code == 403
        acked = client.post(f"/api/v1/alerts/{alert['id']}/acknowledge", headers=admin)
        assert acked.status_code == 200 and acked.json()["acknowledged"] is True
        assert acked.json()["acknowledged_by"].startswith("operator:monitor-device-admin")
        assert client.post("/api/v1/alerts/999999999/acknowledge", headers=admin).status_code == 404
        assert client.get("/api/v1/alerts", headers=read, params={"since": "2026-01-01T00:00:00"}).status_code == 422
        assert client.get("/api/v1/alerts").status_code == 401
    with service.client(creds) as client:
        assert client.get("/api/v1/alerts").status_code == 401  # a device is no operator
    store = Store(make_engine(service.database_url))
    try:
        records = [r for r in AuditLog(store).iter_records() if r.type == "alert.raised" and r.subject == creds.serial]
    finally:
        store.dispose()
    assert len(records) == 1
    assert records[0].data["alert_id"] == alert["id"] and records[0].data["kind"] == "brute_force"


def test_a_clone_sending_from_a_second_address_is_alerted(service: RunningService, tokens: dict[str, str]) -> None:
    creds = new_device(service)
    stream = SyntheticDevice(creds.serial, random.Random(5), datetime.now(UTC) - timedelta(hours=1))
    clients = [
        service.client(creds, transport=httpx.HTTPTransport(verify=service.ssl_context(creds), local_address=a))
        for a in ("127.0.0.1", "127.0.0.2")
    ]
    try:
        for turn in range(6):
            assert clients[turn % 2].post(PATH, json=batch(stream, 2)).status_code == 202
    finally:
        for client in clients:
            client.close()
    with service.client() as client:
        alerts = client.get(
            "/api/v1/alerts", params={"device": creds.serial}, headers={"Authorization": f"Bearer {tokens['read']}"}
        ).json()["alerts"]
    clone = [a for a in alerts if a["kind"] == "cloned_device"]
    assert clone and set(clone[0]["evidence"]["sources"]) == {"127.0.0.1", "127.0.0.2"}


# ----------------------------------------------------------------------------------- the webhook


class Receiver:
    """A real HTTP server on loopback that fails the first ``failures`` requests with 500."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.received: list[dict[str, object]] = []
        self.attempts = 0
        self.event = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                owner.attempts += 1
                if owner.attempts <= owner.failures:
                    self.send_response(500)
                    self.end_headers()
                    return
                owner.received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()
                owner.event.set()

            def log_message(self, *_: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver(failures=2)
    yield found
    found.close()


def test_alerts_reach_the_webhook_after_retries(product_dir: Path, sqlite_store: str, receiver: Receiver) -> None:
    with in_process(product_dir, sqlite_store) as fleet:
        webhook = AlertWebhook(receiver.url, base_delay_s=0.05)
        ingest = TelemetryIngest(fleet.service, webhook=webhook)
        record = fleet.service.store.transaction
        with record() as session:
            device_id = session.scalar(select(Device.id).where(Device.serial == fleet.device.serial))
        assert device_id is not None
        stream = SyntheticDevice(fleet.device.serial, random.Random(6), datetime.now(UTC))
        result = ingest.ingest([DeviceBatch(device_id, fleet.device.serial, [stream.point("brute_force")])])
        assert result[0].accepted == 1
        assert receiver.event.wait(10)
        webhook.close()
    assert receiver.attempts == 3 and webhook.stats.retried == 2 and webhook.stats.delivered == 1
    alert = receiver.received[0]["alert"]
    assert alert["kind"] == "brute_force" and alert["device"] == fleet.device.serial  # type: ignore[index]
    assert alert["id"] == result[0].alerts[0].id  # type: ignore[index]


def test_a_dead_webhook_never_blocks_ingest(
    product_dir: Path, sqlite_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    webhook = AlertWebhook("http://127.0.0.1:9/hook", max_pending=2, base_delay_s=0.01, max_attempts=2)
    for index in range(10):
        webhook.send({"id": index})  # returns at once although nothing listens on port 9
    assert webhook.pending() <= 2
    webhook.close()
    assert webhook.stats.delivered == 0
    assert webhook.stats.dropped_full + webhook.stats.dropped_failed + webhook.pending() == 10
    with in_process(product_dir, sqlite_store) as fleet:
        monkeypatch.setenv(WEBHOOK_ENV, "http://198.51.100.1/hook")
        with pytest.raises(UsageError, match="loopback"):
            telemetry_ingest(fleet.service)
        monkeypatch.setenv(WEBHOOK_ENV, "http://127.0.0.1:9/hook")
        ingest = telemetry_ingest(fleet.service)
        assert ingest.webhook is not None and ingest.webhook.url == "http://127.0.0.1:9/hook"
        assert telemetry_ingest(fleet.service) is ingest
        ingest.webhook.close()


def test_points_go_to_the_certificate_s_device_only(service: RunningService) -> None:
    first, second = new_device(service), new_device(service)
    stream = SyntheticDevice(second.serial, random.Random(7), datetime.now(UTC))
    points = batch(stream, 3)
    with service.client(first) as client:
        assert client.post(PATH, json=points).json() == {"accepted": 3, "duplicates": 0}
    with service.client(second) as client:
        assert client.post(PATH, json=points).json() == {"accepted": 3, "duplicates": 0}  # its own seqs
    changed = {"points": [dict(p, bytes_out=p["bytes_out"] + 1) for p in points["points"]]}  # type: ignore[attr-defined]
    with service.client(first) as client:
        assert client.post(PATH, json=changed).json() == {"accepted": 0, "duplicates": 3}


def test_ingest_on_both_backends_dedupes_scores_and_shares_state(migrated_store_url: str, product_dir: Path) -> None:
    """The ingest itself on SQLite and PostgreSQL: two ingest objects (two workers) on one store."""
    from trustroot.context.schema import Telemetry
    from trustroot.fleet.store.models import Batch
    from trustroot.fleet.telemetry_models import MonitorStateRow

    store = Store(make_engine(migrated_store_url))
    now = datetime.now(UTC)
    try:
        with store.transaction() as session:
            session.add(Batch(id="b", manifest_sha256="0" * 64, factory="f", device_count=1, imported_at=now))
            session.add(
                Device(serial="DEV-1", certificate_fingerprint="a" * 64, certificate_pem="-", batch_id="b",
                       factory="f", registered_at=now)
            )  # fmt: skip
        with store.transaction() as session:
            device_id = session.scalar(select(Device.id).where(Device.serial == "DEV-1"))
        assert device_id is not None
        context = load_context(product_dir / "security-context.toml").model
        service = FleetService(
            store=store,
            config=FleetConfig(database_url=migrated_store_url, state_dir=product_dir / ".trustroot"),
            context=context.model_copy(update={"telemetry": Telemetry()}),
            pki_dir=product_dir / ".trustroot" / "pki",
        )
        first, second = TelemetryIngest(service), TelemetryIngest(service)
        stream = SyntheticDevice("DEV-1", random.Random(8), now - timedelta(hours=2))
        batch_one = [stream.point() for _ in range(30)]
        assert first.ingest([DeviceBatch(device_id, "DEV-1", batch_one)])[0].accepted == 30
        again = second.ingest([DeviceBatch(device_id, "DEV-1", [*batch_one[:10], stream.point()])])[0]
        assert (again.accepted, again.duplicates, again.alerts) == (1, 10, [])
        attacked = first.ingest([DeviceBatch(device_id, "DEV-1", [stream.point("exfiltration")])])[0]
        assert [a.kind for a in attacked.alerts] == ["exfiltration"]  # first's cache was stale: reloaded
        with store.transaction() as session:
            assert session.scalar(select(func.count()).select_from(TelemetryPointRow)) == 32
            state = session.get(MonitorStateRow, "device:DEV-1")
            assert state is not None and state.version == 3
            stored = session.scalars(select(TelemetryPointRow).where(TelemetryPointRow.seq == 0)).one()
            assert stored.time == batch_one[0].time and json.loads(stored.data)["seq"] == 0
    finally:
        store.dispose()
