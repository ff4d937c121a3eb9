"""Alerts to a webhook: POSTed as JSON by a background thread, retried with backoff, never blocking ingest.

::

    AlertWebhook(url).send(alert)      puts the alert in a bounded queue and returns at once; when the
                                       queue is full the OLDEST waiting alert is dropped (and counted):
                                       the newest findings matter most, and ingest never waits
    sender thread                      POST url  {"alert": {...}}  (Content-Type: application/json)
                                       2xx: done; anything else, a timeout or a refused connection:
                                       retried up to MAX_ATTEMPTS times, waiting base * 2^n seconds
                                       with full jitter (capped at MAX_DELAY_S), then dropped (counted)

The URL must be https, or http to a loopback address (a receiver on the same host). The service
reads it from the environment variable ``TRUSTROOT_ALERT_WEBHOOK``; ``trustroot monitor ingest``
takes ``--webhook URL``. Every alert is also stored and in the audit chain: the webhook is a
notification, not the record.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

import httpx

from trustroot.errors import UsageError

__all__ = [
    "MAX_ATTEMPTS",
    "MAX_DELAY_S",
    "MAX_PENDING",
    "WEBHOOK_ENV",
    "AlertWebhook",
    "WebhookStats",
    "check_webhook_url",
]

_log = logging.getLogger(__name__)

#: Environment variable naming the service's alert webhook.
WEBHOOK_ENV: Final = "TRUSTROOT_ALERT_WEBHOOK"
#: Alerts waiting at most; attempts per alert; the first and the longest wait between attempts.
MAX_PENDING: Final = 1000
MAX_ATTEMPTS: Final = 5
BASE_DELAY_S: Final = 0.5
MAX_DELAY_S: Final = 30.0
#: Deadline of one POST, in seconds.
TIMEOUT_S: Final = 5.0
_STOP: Final = object()


def check_webhook_url(url: str) -> str:
    """``url`` if it is an https URL, or an http URL to a loopback host; else :class:`UsageError`."""
    parts = urlsplit(url)
    if len(url) > 2000 or not parts.hostname or parts.scheme not in {"https", "http"}:
        raise UsageError(f"webhook {url[:100]!r}: expected an https:// URL", provision="5.5-1")
    if parts.scheme == "http":
        host = parts.hostname
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise UsageError(
                f"webhook {url[:100]!r}: plain http only to a loopback receiver; use https", provision="5.5-1"
            )
    return url


@dataclass
class WebhookStats:
    """What the sender did so far."""

    delivered: int = 0
    retried: int = 0
    dropped_full: int = 0
    dropped_failed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class AlertWebhook:
    """See the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        max_pending: int = MAX_PENDING,
        max_attempts: int = MAX_ATTEMPTS,
        base_delay_s: float = BASE_DELAY_S,
        max_delay_s: float = MAX_DELAY_S,
        timeout_s: float = TIMEOUT_S,
        verify: str | bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = check_webhook_url(url)
        self.stats = WebhookStats()
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_pending)
        self._attempts = max_attempts
        self._base = base_delay_s
        self._cap = max_delay_s
        self._timeout = timeout_s
        self._verify = verify
        self._sleep = sleep
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-webhook", daemon=True)
        self._thread.start()

    def send(self, alert: dict[str, object]) -> None:
        """Queue ``alert`` for delivery; never blocks (drops the oldest waiting one when full)."""
        while True:
            try:
                self._queue.put_nowait({"alert": alert})
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()
                    with self.stats.lock:
                        self.stats.dropped_full += 1
                    _log.warning("alert webhook queue full: the oldest waiting alert was dropped")
            else:
                return

    def pending(self) -> int:
        return self._queue.qsize()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop after what is queued was tried (waiting at most ``timeout_s``)."""
        self._stopping.set()
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=timeout_s)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        with httpx.Client(timeout=self._timeout, verify=self._verify) as client:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    return
                self._deliver(client, item)

    def _deliver(self, client: httpx.Client, payload: object) -> None:
        for attempt in range(self._attempts):
            try:
                answer = client.post(self.url, json=payload)
                if answer.is_success:
                    with self.stats.lock:
                        self.stats.delivered += 1
                    return
                why = f"HTTP {answer.status_code}"
            except httpx.HTTPError as exc:
                why = type(exc).__name__
            if attempt + 1 == self._attempts or self._stopping.is_set():
                break
            with self.stats.lock:
                self.stats.retried += 1
            delay = random.uniform(0, min(self._cap, self._base * 2**attempt))  # noqa: S311 - jitter
            _log.info("alert webhook: %s; retrying in %.2f s", why, delay)
            self._sleep(delay)
        with self.stats.lock:
            self.stats.dropped_failed += 1
        _log.warning("alert webhook: an alert could not be delivered after %d attempts", self._attempts)
