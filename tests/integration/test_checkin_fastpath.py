"""The check-in's fast path, as an attacker would probe it: the verdict kept per TLS connection, group commit.

A kept-alive mutual-TLS connection is simulated in process the way the uvicorn hook makes it: the
application is wrapped in :class:`~trustroot.fleet.uvicorn_tls.TlsScopeApp` with one ``tls``
extension (and so one connection memo) for every request of the "connection". Forwarded mode is
off, as in a default ``trustroot serve``.

    kept verdict          validated once per connection: later requests do no chain/CRL work
    CRL refresh           a device revoked while its connection stays open: refused at its next request
    store revocation      revoked in the fleet store mid-connection: refused at its next check-in
    other certificate     a different certificate on a connection with a verdict: validated afresh
    out of validity       a kept verdict is not used past the certificate's notAfter
    group commit          concurrent check-ins share transactions, each answered after its commit;
                          commands, an active rollout, a lower counter or a revoked row go the full path
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from service_fixtures import (
    DeviceCredentials,
    InProcess,
    copy_product,
    foreign_device,
    in_process,
    issue_device,
    next_serial_number,
    register_device,
    revoke_device,
)
from sqlalchemy import select, update

from trustroot.fleet import auth
from trustroot.fleet.checkin_writer import CheckinWrite, checkin_writer, write_batch
from trustroot.fleet.releases.models import Release, Rollout
from trustroot.fleet.store.models import Alert, Device, DeviceCommand
from trustroot.fleet.uvicorn_tls import CONNECTION_MEMO, ConnectionMemo, TlsScopeApp

pytest_plugins = ["service_fixtures"]
pytestmark = pytest.mark.integration

REPORT = {"firmware_version": "1.2.0", "security_counter": 5}


def _pem(device: DeviceCredentials) -> str:
    return device.certificate.public_bytes(serialization.Encoding.PEM).decode()


class Connection:
    """One simulated keep-alive mutual-TLS connection of ``device`` to the in-process application."""

    def __init__(self, running: InProcess, device: DeviceCredentials) -> None:
        self.memo = ConnectionMemo()
        self.extension: dict[str, Any] = {
            CONNECTION_MEMO: self.memo,
            "server_cert": None,
            "client_cert_chain": [_pem(device)],
            "client_cert_name": None,
            "client_cert_error": None,
            "tls_version": 0x0304,
            "cipher_suite": 0x1301,
        }
        self.app = TlsScopeApp(running.app, self.extension)

    async def post(self, report: dict[str, Any] = REPORT) -> httpx.Response:
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            return await client.post("/api/v1/device/check-in", json=report)

    def check_in(self, report: dict[str, Any] = REPORT) -> httpx.Response:
        return asyncio.run(self.post(report))


@pytest.fixture(scope="module")
def fastpath_product(product_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_product(product_template, tmp_path_factory.mktemp("fastpath") / "acme")


@pytest.fixture
def running(fastpath_product: Path, sqlite_store: str) -> Iterator[InProcess]:
    with in_process(fastpath_product, sqlite_store) as app:
        # forwarded mode off: devices are judged by their (simulated) TLS certificate only
        app.service.config = dataclasses.replace(app.service.config, forwarded_cert_secret=None)
        yield app


@pytest.fixture
def running_on_both(fastpath_product: Path, migrated_store_url: str) -> Iterator[InProcess]:
    """As ``running``, on SQLite and on PostgreSQL."""
    with in_process(fastpath_product, migrated_store_url) as app:
        app.service.config = dataclasses.replace(app.service.config, forwarded_cert_secret=None)
        yield app


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every chain validation the device authentication does (the serial of the certificate)."""
    seen: list[str] = []
    real = auth.authenticate_certificate

    def counting(cert: Any, trust: Any, **kwargs: Any) -> auth.DeviceIdentity:
        seen.append(str(cert.serial_number))
        return real(cert, trust, **kwargs)

    monkeypatch.setattr(auth, "authenticate_certificate", counting)
    return seen


def _assert_401(response: httpx.Response, reason: str) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["provision"] == "5.5-1"
    assert reason in response.json()["message"]
    assert "www-authenticate" in response.headers


def test_the_chain_is_validated_once_per_connection(running: InProcess, validations: list[str]) -> None:
    connection = Connection(running, running.device)
    for _ in range(3):
        response = connection.check_in()
        assert response.status_code == 200, response.text
        assert response.json()["device_id"] == running.device.serial
    assert len(validations) == 1
    assert Connection(running, running.device).check_in().status_code == 200  # a new connection: validated again
    assert len(validations) == 2


def test_a_device_revoked_by_a_crl_refresh_is_refused_at_its_next_request(
    running: InProcess, fastpath_product: Path, validations: list[str]
) -> None:
    victim = issue_device(fastpath_product, next_serial_number())
    register_device(running.url, victim)
    running.now[0] = datetime.now(UTC)
    kept_alive = Connection(running, victim)
    bystander = Connection(running, running.device)
    assert kept_alive.check_in().status_code == 200
    assert bystander.check_in().status_code == 200

    revoke_device(fastpath_product, victim)  # the issuing CA publishes a new CRL

    _assert_401(kept_alive.check_in(), "revoked")
    _assert_401(kept_alive.check_in(), "revoked")  # a refusal is never kept as a verdict
    assert bystander.check_in().status_code == 200  # other devices: validated against the new CRL, served
    assert len(validations) == 5


def test_a_device_revoked_in_the_store_is_refused_at_its_next_check_in(running: InProcess) -> None:
    connection = Connection(running, running.device)
    assert connection.check_in().status_code == 200
    with running.service.store.transaction() as session:
        session.execute(update(Device).where(Device.serial == running.device.serial).values(status="revoked"))
    _assert_401(connection.check_in(), "is revoked")
    _assert_401(connection.check_in({"security_counter": "not a number"}), "is revoked")  # not a 422
    with running.service.store.transaction() as session:
        row = session.scalars(select(Device).where(Device.serial == running.device.serial)).one()
        assert row.reported_version == REPORT["firmware_version"]  # the refused check-in stored nothing
        assert row.last_checkin_at is not None


def test_another_certificate_on_a_connection_is_validated_afresh(
    running: InProcess, fastpath_product: Path, tmp_path: Path, validations: list[str]
) -> None:
    connection = Connection(running, running.device)
    assert connection.check_in().status_code == 200
    # same serial, same profile, another CA: the kept verdict must not carry over to it
    impostor = foreign_device(tmp_path, running.device.serial)
    connection.extension["client_cert_chain"] = [_pem(impostor)]
    _assert_401(connection.check_in(), "refused")
    # a genuine but unregistered certificate on the same connection: refused by the store check
    stranger = issue_device(fastpath_product, next_serial_number())
    connection.extension["client_cert_chain"] = [_pem(stranger)]
    _assert_401(connection.check_in(), "not registered")
    assert len(validations) == 3


def test_a_kept_verdict_ends_with_the_certificates_validity(running: InProcess) -> None:
    connection = Connection(running, running.device)
    assert connection.check_in().status_code == 200
    running.now[0] = running.device.certificate.not_valid_after_utc + timedelta(seconds=1)
    _assert_401(connection.check_in(), "refused")


def test_no_certificate_on_the_connection_is_401(running: InProcess) -> None:
    connection = Connection(running, running.device)
    connection.extension["client_cert_chain"] = []
    _assert_401(connection.check_in(), "no client certificate")


# ------------------------------------------------------------------------------------------ group commit


def _devices(running: InProcess, product_dir: Path, count: int) -> list[DeviceCredentials]:
    devices = []
    for _ in range(count):
        device = issue_device(product_dir, next_serial_number())
        register_device(running.url, device)
        devices.append(device)
    running.now[0] = datetime.now(UTC)  # the service's clock, after the certificates' notBefore
    return devices


def test_concurrent_check_ins_share_transactions_and_are_answered_after_commit(
    running: InProcess, fastpath_product: Path
) -> None:
    devices = _devices(running, fastpath_product, 24)
    connections = [Connection(running, device) for device in devices]

    async def everyone() -> list[httpx.Response]:
        return list(await asyncio.gather(*(c.post({**REPORT, "security_counter": 9}) for c in connections)))

    responses = asyncio.run(everyone())
    assert [r.status_code for r in responses] == [200] * len(devices)
    writer = checkin_writer(running.service)
    assert writer.written == len(devices)
    assert writer.batches < len(devices)  # some check-ins shared a transaction
    with running.service.store.transaction() as session:
        rows = {
            d.serial: d for d in session.scalars(select(Device).where(Device.serial.in_([d.serial for d in devices])))
        }
    for device, response in zip(devices, responses, strict=True):
        assert rows[device.serial].security_counter == 9
        assert rows[device.serial].last_checkin_at == running.now[0]
        assert response.json()["server_time"].startswith(running.now[0].isoformat()[:19])


def _write(running: InProcess, device: DeviceCredentials, counter: int) -> CheckinWrite:
    with running.service.store.transaction() as session:
        row = session.scalars(select(Device).where(Device.serial == device.serial)).one()
    return CheckinWrite(
        device_id=row.id,
        fingerprint=row.certificate_fingerprint,
        serial=row.serial,
        firmware_version="2.0.0",
        security_counter=counter,
        health={"uptime_s": 5},
        now=running.now[0],
    )


def test_the_batch_sends_everything_but_a_plain_report_to_the_full_path(
    running_on_both: InProcess, fastpath_product: Path
) -> None:
    running = running_on_both
    plain, commanded, revoked, rolled_back = _devices(running, fastpath_product, 4)
    writes = [_write(running, d, 5) for d in (plain, commanded, revoked, rolled_back)]
    with running.service.store.transaction() as session:
        session.add(
            DeviceCommand(device_id=writes[1].device_id, kind="reboot", payload=None, created_at=running.now[0])
        )
        session.execute(update(Device).where(Device.id == writes[2].device_id).values(status="revoked"))
        session.execute(update(Device).where(Device.id == writes[3].device_id).values(security_counter=9))
    with running.service.store.engine.begin() as connection:
        assert write_batch(connection, writes) == [True, False, False, False]
    with running.service.store.transaction() as session:
        rows = {r.id: r for r in session.scalars(select(Device))}
        assert (rows[writes[0].device_id].reported_version, rows[writes[0].device_id].health) == (
            "2.0.0",
            {"uptime_s": 5},
        )
        assert rows[writes[2].device_id].reported_version is None  # revoked: not written
        assert rows[writes[3].device_id].security_counter == 9  # lower counter: left to the full path's alert

    # the full path then raises the rollback alert and refuses the revoked device
    rolled = Connection(running, rolled_back)
    assert rolled.check_in({**REPORT, "security_counter": 3}).status_code == 200
    with running.service.store.transaction() as session:
        assert [a.kind for a in session.scalars(select(Alert))] == ["security_counter_decreased"]
    _assert_401(Connection(running, revoked).check_in(), "is revoked")
    assert Connection(running, commanded).check_in().json()["commands"][0]["kind"] == "reboot"


def test_an_active_rollout_in_the_devices_channel_goes_to_the_rollout_engine(
    running: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    def offer_for(service: Any, device: Device, reported_counter: int) -> dict[str, Any] | None:
        asked.append(device.serial)
        return {"version": "1.3.0"}

    monkeypatch.setattr("trustroot.fleet.rollouts.offer_for", offer_for)
    connection = Connection(running, running.device)
    assert connection.check_in().json()["offer"] is None  # no active rollout: the engine has nothing to offer
    now = running.now[0]
    with running.service.store.transaction() as session:
        device = session.scalars(select(Device).where(Device.serial == running.device.serial)).one()
        release = Release(
            channel=device.channel,
            name="acme",
            version="1.3.0",
            security_counter=6,
            sha256="0" * 64,
            size=1,
            target_path=f"{device.channel}/acme-1.3.0.img",
            published_at=now,
            published_by="test",
        )
        session.add(release)
        session.flush()
        session.add(
            Rollout(
                release_id=release.id,
                channel=device.channel,
                group_name=None,
                state="active",
                stages=[{"percent": 100.0, "min_hours": 0.0}],
                stage_index=0,
                stage_started_at=now,
                failure_threshold=0.1,
                min_sample=10,
                created_at=now,
                created_by="test",
                updated_at=now,
            )
        )
    assert connection.check_in().json()["offer"] == {"version": "1.3.0"}
    assert asked == [running.device.serial]


def test_a_failing_batch_falls_back_to_the_full_path_and_the_writer_lives_on(
    running: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trustroot.fleet import checkin_writer as writer_module

    real = writer_module.write_batch
    failures: list[int] = []

    def failing_once(connection: Any, writes: list[CheckinWrite]) -> list[bool]:
        if not failures:
            failures.append(len(writes))
            raise RuntimeError("simulated fault in the batch")
        return real(connection, writes)

    monkeypatch.setattr(writer_module, "write_batch", failing_once)
    connection = Connection(running, running.device)
    first = connection.check_in({**REPORT, "security_counter": 6})
    assert first.status_code == 200, first.text  # answered by the full path
    assert connection.check_in({**REPORT, "security_counter": 7}).status_code == 200  # the writer is alive
    assert failures == [1]
    assert checkin_writer(running.service).written == 1
    with running.service.store.transaction() as session:
        assert session.scalars(select(Device.security_counter).where(Device.serial == running.device.serial)).one() == 7
