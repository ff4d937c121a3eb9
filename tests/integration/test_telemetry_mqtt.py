"""Telemetry over a real Mosquitto broker: mutual TLS, the per-device topic ACL, ingest workers at QoS 1."""

from __future__ import annotations

import json
import random
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from mosquitto import Broker, start_broker
from paho.mqtt.enums import CallbackAPIVersion
from service_fixtures import (
    DeviceCredentials,
    copy_product,
    foreign_device,
    issue_device,
    migrate,
    open_test_product,
    register_device,
)
from sqlalchemy import func, select

from trustroot.fleet.config import FleetConfig, sqlite_url
from trustroot.fleet.mqtt_ingest import MqttIngestWorker
from trustroot.fleet.service import FleetService
from trustroot.fleet.store.db import Store, make_engine
from trustroot.fleet.store.models import Alert
from trustroot.fleet.telemetry import TelemetryIngest
from trustroot.fleet.telemetry_models import TelemetryPointRow
from trustroot.monitor.synthetic import SyntheticDevice
from trustroot.product import Product

pytestmark = pytest.mark.integration

NOT_AUTHORIZED = 0x87
#: PUBACK reason codes of an accepted publish: success, and "no matching subscribers" (none listening yet).
ACCEPTED = {0x00, 0x10}


class Fleet:
    def __init__(self, product: Product, product_dir: Path, url: str, broker: Broker) -> None:
        self.product, self.product_dir, self.url, self.broker = product, product_dir, url, broker
        self.devices = [issue_device(product_dir, n, product=product) for n in (1, 2)]
        for device in self.devices:
            register_device(url, device)

    def service(self) -> FleetService:
        return FleetService(
            store=Store(make_engine(self.url)),
            config=FleetConfig(database_url=self.url, state_dir=self.product.state_dir),
            context=self.product.context.model,
            pki_dir=self.product.pki_dir,
            clock=lambda: datetime.now(UTC),
        )

    def worker(self, service: FleetService, name: str) -> MqttIngestWorker:
        files = self.broker.files
        return MqttIngestWorker(
            service,
            TelemetryIngest(service),
            host="127.0.0.1",
            port=files.port,
            ca=files.ca,
            cert=files.ingest_cert,
            key=files.ingest_key,
            client_id=name,
        )

    def count(self, table: type[TelemetryPointRow] | type[Alert] = TelemetryPointRow) -> int:
        store = Store(make_engine(self.url))
        try:
            with store.transaction() as session:
                return int(session.scalar(select(func.count()).select_from(table)) or 0)
        finally:
            store.dispose()


@pytest.fixture(scope="module")
def fleet(product_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    product_dir = copy_product(product_template, tmp_path_factory.mktemp("mqtt") / "acme")
    product = open_test_product(product_dir)
    url = migrate(sqlite_url(product_dir / "fleet.sqlite"))
    broker = start_broker(product)
    try:
        yield Fleet(product, product_dir, url, broker)
    finally:
        broker.stop()


def publish(broker: Broker, device: DeviceCredentials, topic: str, payloads: list[bytes]) -> list[int]:
    """Publish at QoS 1 as ``device`` (MQTT 5) and return each PUBACK's reason code."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dev-{device.serial}", protocol=mqtt.MQTTv5)
    client.tls_set_context(broker.client_context(device.cert_path, device.key_path))
    codes: dict[int, int] = {}
    done = threading.Event()

    def on_publish(_c: object, _u: object, mid: int, reason: mqtt.ReasonCode, _p: object) -> None:
        codes[mid] = reason.value
        if len(codes) == len(payloads):
            done.set()

    client.on_publish = on_publish
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        mids = [client.publish(topic, payload, qos=1).mid for payload in payloads]
        assert done.wait(30), f"{len(codes)} of {len(payloads)} PUBACKs"
    finally:
        client.disconnect()
        client.loop_stop()
    return [codes[mid] for mid in mids]


def batch(stream: SyntheticDevice, count: int) -> bytes:
    return json.dumps({"points": [stream.point().to_json() for _ in range(count)]}).encode()


def test_broker_files_are_readable_by_the_broker_only_where_needed(fleet: Fleet) -> None:
    files = fleet.broker.files
    assert (files.directory / "server.key").stat().st_mode & 0o777 == 0o640
    assert files.ingest_key.stat().st_mode & 0o777 == 0o600
    config = files.config.read_text()
    for line in ("require_certificate true", "use_identity_as_username true", "tls_version tlsv1.2"):
        assert line in config
    assert "pattern write trustroot/%u/telemetry" in files.acl.read_text()
    assert "Opening ipv4 listen socket" in fleet.broker.log() or fleet.broker.process.poll() is None


def test_a_device_cannot_publish_on_another_device_s_topic(fleet: Fleet) -> None:
    first, second = fleet.devices
    stream = SyntheticDevice(second.serial, random.Random(1), datetime.now(UTC))
    codes = publish(fleet.broker, first, f"trustroot/{second.serial}/telemetry", [batch(stream, 1)])
    assert codes == [NOT_AUTHORIZED]
    assert publish(fleet.broker, first, f"trustroot/{first.serial}/commands", [b"{}"]) == [NOT_AUTHORIZED]
    assert set(publish(fleet.broker, first, f"trustroot/{first.serial}/telemetry", [batch(stream, 1)])) <= ACCEPTED


def test_no_certificate_or_a_foreign_one_is_refused_at_the_handshake(fleet: Fleet, tmp_path: Path) -> None:
    import socket

    for context in (
        fleet.broker.client_context(),
        fleet.broker.client_context(*_paths(foreign_device(tmp_path, fleet.devices[0].serial))),
    ):
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            with socket.create_connection(("127.0.0.1", fleet.broker.port), timeout=5) as raw:
                with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    tls.sendall(b"\x10\x00")  # TLS 1.3 reports a refused client certificate on first use
                    assert tls.recv(1) != b"", "the broker answered a client it should have refused"


def _paths(device: DeviceCredentials) -> tuple[Path, Path]:
    return device.cert_path, device.key_path


def test_an_unregistered_device_and_a_malformed_batch_are_refused(fleet: Fleet) -> None:
    stranger = issue_device(fleet.product_dir, 3, product=fleet.product)  # a valid certificate, not in the fleet
    service = fleet.service()
    # Runs before the two-worker test: the group's members keep their (persistent) sessions.
    worker = fleet.worker(service, "ingest-0")
    thread = threading.Thread(target=worker.run, kwargs={"max_seconds": 30})
    try:
        worker.start()
        thread.start()
        stream = SyntheticDevice(stranger.serial, random.Random(3), datetime.now(UTC))
        assert publish(fleet.broker, stranger, f"trustroot/{stranger.serial}/telemetry", [batch(stream, 2)]) == [0]
        device = fleet.devices[0]
        assert publish(fleet.broker, device, f"trustroot/{device.serial}/telemetry", [b'{"points": [{}]}']) == [0]
        for _ in range(100):
            if worker.stats.as_dict()["refused"] >= 2:
                break
            threading.Event().wait(0.1)
    finally:
        worker.stop()
        thread.join(30)
        service.store.dispose()
    assert worker.stats.as_dict()["refused"] == 2 and worker.stats.as_dict()["accepted"] == 0


def test_two_workers_share_the_stream_and_lose_nothing_at_qos_1(fleet: Fleet) -> None:
    services = [fleet.service(), fleet.service()]
    workers = [fleet.worker(service, f"ingest-{n}") for n, service in enumerate(services)]
    threads = []
    try:
        for worker in workers:
            worker.start()
            thread = threading.Thread(target=worker.run, kwargs={"max_seconds": 60})
            thread.start()
            threads.append(thread)
        before = fleet.count()
        messages, per_message = 400, 5
        for device in fleet.devices:
            stream = SyntheticDevice(device.serial, random.Random(device.serial), datetime.now(UTC))
            stream.seq = 10_000
            payloads = [batch(stream, per_message) for _ in range(messages // 2)]
            codes = publish(fleet.broker, device, f"trustroot/{device.serial}/telemetry", payloads)
            assert set(codes) == {0}
        expected = before + messages * per_message
        deadline = threading.Event()
        for _ in range(200):
            if fleet.count() >= expected:
                break
            deadline.wait(0.1)
    finally:
        for worker in workers:
            worker.stop()
        for thread in threads:
            thread.join(30)
        for service in services:
            service.store.dispose()
    assert fleet.count() == expected
    shares = [w.stats.as_dict()["messages"] for w in workers]
    assert sum(shares) == messages and all(share > 0 for share in shares), shares
    assert sum(w.stats.refused for w in workers) == 0


def retire(broker: Broker, client_id: str) -> None:
    """Forget a worker's persistent session (a clean-session connect under its id), as an operator would."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    files = broker.files
    client.tls_set_context(broker.client_context(files.ingest_cert, files.ingest_key))
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    client.disconnect()
    client.loop_stop()


def test_the_ingest_command_runs_a_worker(fleet: Fleet) -> None:
    for client_id in ("ingest-0", "ingest-1"):
        retire(fleet.broker, client_id)
    before = fleet.count()
    command = [
        sys.executable, "-m", "trustroot.cli", "monitor", "ingest", "--context", str(fleet.product_dir),
        "--broker", f"127.0.0.1:{fleet.broker.port}", "--broker-dir", str(fleet.broker.files.directory),
        "--database", fleet.url, "--client-id", "ingest-cli", "--max-seconds", "5", "--json",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        device = fleet.devices[1]
        stream = SyntheticDevice(device.serial, random.Random(9), datetime.now(UTC))
        stream.seq = 50_000
        payloads = [batch(stream, 3) for _ in range(20)]
        for _ in range(100):  # until the worker subscribed (then the PUBACK says a subscriber matched)
            if publish(fleet.broker, device, f"trustroot/{device.serial}/telemetry", payloads[:1]) == [0]:
                break
            threading.Event().wait(0.1)
        publish(fleet.broker, device, f"trustroot/{device.serial}/telemetry", payloads)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err.decode()
    stats = json.loads(out)
    assert (stats["accepted"], stats["duplicates"], stats["refused"]) == (60, 3, 0)  # the probe came twice
    assert fleet.count() - before == 60
