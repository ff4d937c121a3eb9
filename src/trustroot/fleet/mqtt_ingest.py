"""The MQTT ingest worker: a shared subscription, QoS 1, acknowledged only after the store committed.

::

    connect (TLS, the ingest identity's certificate; clean_session False, so the broker keeps what
             arrives while the worker is away) and subscribe $share/ingest/trustroot/+/telemetry, QoS 1
    on_message (paho's network thread)      append to the pending list (no acknowledgement yet)
    worker loop, every FLUSH_INTERVAL_S or FLUSH_MESSAGES messages:
      ├─ device = the topic's serial (the broker's ACL binds it to the certificate's CN); it must be
      │  a registered, active device of the fleet (cached DEVICE_CACHE_S), else the message is refused
      ├─ parse_batch_json(payload); a malformed batch is refused (5.13-1)
      ├─ TelemetryIngest.ingest(every device's points of this round)    one transaction
      └─ PUBACK every message of the round (refused ones too: they will never become valid)
    A round whose transaction fails is retried (RETRIES, with backoff); if it still fails the worker
    stops without acknowledging, and the broker delivers those messages again (to another worker,
    or to this one when it reconnects): at-least-once, duplicates dropped by (device, seq).

Several workers share the load through the shared subscription (the broker hands each message to
one of them); each keeps its detectors' state in the store (see trustroot.fleet.telemetry).
"""

from __future__ import annotations

import logging
import re
import ssl
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from trustroot.errors import StateError, TrustrootError
from trustroot.fleet.broker import SHARED_SUBSCRIPTION
from trustroot.fleet.service import FleetService
from trustroot.fleet.store.models import Device, DeviceStatus
from trustroot.fleet.telemetry import DeviceBatch, TelemetryIngest
from trustroot.monitor.points import TelemetryPoint
from trustroot.monitor.wire import parse_batch_json

__all__ = ["FLUSH_INTERVAL_S", "FLUSH_MESSAGES", "IngestStats", "MqttIngestWorker"]

_log = logging.getLogger(__name__)

#: A round is stored at the latest after this many seconds, or this many messages.
FLUSH_INTERVAL_S: Final = 0.05
FLUSH_MESSAGES: Final = 1000
#: Attempts of a round's transaction before the worker gives up (unacknowledged) and stops.
RETRIES: Final = 5
#: Seconds a device's registration (id, channel, status) is cached.
DEVICE_CACHE_S: Final = 30.0
_TOPIC: Final = re.compile(r"^trustroot/([A-Za-z0-9._-]{1,128})/telemetry\Z")


@dataclass
class IngestStats:
    """Counts of one worker."""

    messages: int = 0
    accepted: int = 0
    duplicates: int = 0
    refused: int = 0
    alerts: int = 0
    rounds: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def as_dict(self) -> dict[str, int]:
        with self.lock:
            return {
                "messages": self.messages,
                "accepted": self.accepted,
                "duplicates": self.duplicates,
                "refused": self.refused,
                "alerts": self.alerts,
                "rounds": self.rounds,
            }


@dataclass(frozen=True)
class _Message:
    topic: str
    payload: bytes
    mid: int
    qos: int


class MqttIngestWorker:
    """One ingest worker (see the module docstring)."""

    def __init__(
        self,
        service: FleetService,
        ingest: TelemetryIngest,
        *,
        host: str,
        port: int,
        ca: Path,
        cert: Path,
        key: Path,
        client_id: str,
    ) -> None:
        self.service = service
        self.ingest = ingest
        self.stats = IngestStats()
        self._pending: list[_Message] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._devices: dict[str, tuple[float, int, str] | None] = {}
        self._host, self._port = host, port
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False, manual_ack=True)
        context = ssl.create_default_context(cafile=str(ca))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert, key)
        client.tls_set_context(context)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client = client

    # ------------------------------------------------------------------------------- paho thread

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            _log.error("broker refused the ingest worker: %s", reason)
            return
        client.subscribe(SHARED_SUBSCRIPTION, qos=1)

    def _on_subscribe(self, _client: mqtt.Client, _userdata: Any, _mid: int, reasons: Any, _props: Any) -> None:
        if all(not r.is_failure for r in reasons):
            self._subscribed.set()
        else:
            _log.error("the broker refused the subscription %s: %s", SHARED_SUBSCRIPTION, reasons)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self._pending.append(_Message(message.topic, bytes(message.payload), message.mid, message.qos))
            full = len(self._pending) >= FLUSH_MESSAGES
        if full:
            self._wake.set()

    # ------------------------------------------------------------------------------- worker loop

    def start(self, timeout_s: float = 30.0) -> None:
        """Connect and subscribe; :class:`StateError` if the broker does not accept within ``timeout_s``."""
        self.client.connect(self._host, self._port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(timeout_s):
            self.client.loop_stop()
            raise StateError(f"MQTT broker {self._host}:{self._port}: not subscribed within {timeout_s} s")

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run(self, *, max_seconds: float | None = None) -> IngestStats:
        """Store rounds until :meth:`stop` (or ``max_seconds``); then flush, disconnect, return the counts."""
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        try:
            while not self._stop.is_set() and (deadline is None or time.monotonic() < deadline):
                self._wake.wait(FLUSH_INTERVAL_S)
                self._wake.clear()
                self._round()
            self._round()
        finally:
            self.client.disconnect()
            self.client.loop_stop()
        return self.stats

    def _device(self, serial: str) -> tuple[int, str] | None:
        now = time.monotonic()
        cached = self._devices.get(serial)
        if cached is not None and now - cached[0] < DEVICE_CACHE_S:
            return cached[1], cached[2]
        with self.service.store.transaction() as session:
            row = session.execute(
                select(Device.id, Device.channel, Device.status).where(Device.serial == serial)
            ).first()
        if row is None or row.status != DeviceStatus.ACTIVE.value:
            self._devices.pop(serial, None)
            return None
        self._devices[serial] = (now, int(row.id), str(row.channel))
        if len(self._devices) > 200_000:
            self._devices.clear()
        return int(row.id), str(row.channel)

    def _round(self) -> None:
        with self._lock:
            messages, self._pending = self._pending, []
        if not messages:
            return
        points: dict[str, list[TelemetryPoint]] = defaultdict(list)
        ids: dict[str, int] = {}
        channels: dict[str, str] = {}
        refused = 0
        for message in messages:
            found = _TOPIC.match(message.topic)
            device = self._device(found.group(1)) if found else None
            if found is None or device is None:
                refused += 1
                _log.warning("MQTT message on %.80s refused: not a registered, active device's topic", message.topic)
                continue
            serial = found.group(1)
            try:
                parsed = parse_batch_json(message.payload, f"MQTT message on {message.topic}")
            except TrustrootError as exc:
                refused += 1
                _log.warning("%s", exc.message)
                continue
            points[serial].extend(parsed)
            ids[serial], channels[serial] = device
        batches = [DeviceBatch(ids[s], s, pts) for s, pts in points.items()]
        results = self._store(batches, channels) if batches else []
        for message in messages:
            self.client.ack(message.mid, message.qos)
        with self.stats.lock:
            self.stats.rounds += 1
            self.stats.messages += len(messages)
            self.stats.refused += refused
            for result in results:
                self.stats.accepted += result.accepted
                self.stats.duplicates += result.duplicates
                self.stats.alerts += len(result.alerts)

    def _store(self, batches: list[DeviceBatch], channels: dict[str, str]) -> list[Any]:
        delay = 0.1
        for attempt in range(RETRIES):
            try:
                return self.ingest.ingest(batches, channels=channels)
            except Exception as exc:
                if attempt + 1 == RETRIES:
                    raise StateError(f"the fleet store refused a telemetry round {RETRIES} times: {exc}") from exc
                _log.warning("telemetry round failed (%s); retrying in %.1f s", type(exc).__name__, delay)
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover
