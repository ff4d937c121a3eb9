"""The agent's core: check in, update, report, send telemetry, wipe on command; resilient to outages.

One :class:`Agent` runs one device. It is an asyncio object: ``trustroot agent`` runs one in its
own process, the fleet simulator runs hundreds as coroutines of one process. All it needs is
injected: the device (:class:`~trustroot.agent.device.AgentDevice`), the clock, a random source,
a health check, a telemetry sampler and an observer of what it does.

Two loops share the device's connection to the service (mutual TLS, keep-alive)::

    check-in loop    POST /api/v1/device/check-in with the running version, counter, pending install
                     results and health; then handles the answer: commands (factory_reset: wipe the
                     context's personal-data categories, report), an update offer (install), and
                     sleeps the ``next_checkin_in_s`` the service chose (interval + jitter)
    telemetry loop   every telemetry interval: sample one point, queue it on disk (it is queued from
                     then on), send the queue's oldest records in batches (POST
                     /api/v1/device/telemetry), consume them when the service answers 202

After a failure (no connection, a 5xx, 503 from load shedding) a loop waits
:class:`~trustroot.agent.timing.Backoff` (capped exponential, full jitter, at least Retry-After)
and the device keeps running its last-known-good image; it says so in ``status.json`` and on the
local status endpoint.

An update (:meth:`Agent.install`): TUF fetch and verification (python-tuf ngclient, total download
deadline, refused below the device's counter floor), then the image's own signature under the
product's image keys and its security counter against the floor (5.3-7, 5.7-1), then staging into
the inactive slot, a test boot (the health check), confirm or revert; the result is kept in
``state.json`` before anything else happens and reported at the check-in that follows at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import random
import shutil
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import httpx

from trustroot._fsutil import fsync_dir
from trustroot.agent.device import AgentDevice
from trustroot.agent.queue import QueueLimits, TelemetryQueue
from trustroot.agent.slots import SlotImage
from trustroot.agent.state import AgentState, write_status
from trustroot.agent.telemetry import Sampler, TrafficCounters
from trustroot.agent.timing import Backoff, Clock, ScaledClock, parse_retry_after
from trustroot.agent.tuf_client import (
    ClientTls,
    DeadlineFetcher,
    UpdateClient,
    UpdateClientConfig,
    UpdateClientLimits,
    UpdateError,
    UpdateRefused,
)
from trustroot.errors import AgentError, ImageVerificationError
from trustroot.image.verify import verify_image

__all__ = [
    "CHECKIN_PATH",
    "LOCK_FILE",
    "RESET_REPORT_PATH",
    "TELEMETRY_PATH",
    "Agent",
    "AgentEvent",
    "AgentSettings",
    "HealthCheck",
    "lock_state",
    "wipe_personal_data",
]

_log = logging.getLogger(__name__)

CHECKIN_PATH: Final = "/api/v1/device/check-in"
TELEMETRY_PATH: Final = "/api/v1/device/telemetry"
#: Where the agent reports a completed (or failed) factory reset (trustroot.fleet.api.agent_reports).
RESET_REPORT_PATH: Final = "/api/v1/device/reports/reset"

#: A health check of a test boot: True when the image on trial works.
HealthCheck = Callable[[SlotImage], Awaitable[bool]]


@dataclass(frozen=True)
class AgentSettings:
    """Every knob of the agent, with safe defaults (durations in the product's seconds)."""

    telemetry_interval_s: float = 60.0
    #: Records per telemetry request at most (the wire format allows 1,000).
    batch_max: int = 500
    backoff_base_s: float = 2.0
    backoff_cap_s: float = 300.0
    jitter: bool = True
    #: Wall-clock timeout of one request.
    request_timeout_s: float = 30.0
    #: Wait before the first check-in (the simulator staggers boots with it).
    first_checkin_delay_s: float = 0.0
    queue: QueueLimits = field(default_factory=QueueLimits)
    update: UpdateClientLimits = field(default_factory=UpdateClientLimits)
    #: Send telemetry at all (off: points are neither sampled nor sent).
    telemetry: bool = True


@dataclass(frozen=True)
class AgentEvent:
    """What the agent did, for an observer (the simulator's figures, the CLI's log)."""

    kind: str  # request, install, reset, offline, online
    time: datetime
    elapsed: float
    detail: dict[str, Any] = field(default_factory=dict)


Observer = Callable[[AgentEvent], None]


def wipe_personal_data(data_dir: Path, categories: tuple[str, ...]) -> list[str]:
    """Erase the personal-data categories the context declares from the device; return those wiped.

    Each category is a directory under ``data_dir``; every file is overwritten with zeros and
    fsync'd before the directory is removed (a file system without copy-on-write then holds no
    old bytes). A category with nothing stored counts as wiped: after the call the device holds none.
    """
    wiped: list[str] = []
    for category in categories:
        folder = data_dir / category
        if folder.exists():
            for path in sorted(folder.rglob("*")):
                if path.is_file() and not path.is_symlink():
                    size = path.stat().st_size
                    with path.open("r+b") as handle:
                        handle.write(b"\x00" * size)
                        handle.flush()
                        os.fsync(handle.fileno())
            shutil.rmtree(folder)
            fsync_dir(data_dir)
        wiped.append(category)
    return wiped


#: The lock file one agent holds on its state directory while it runs.
LOCK_FILE: Final = "agent.lock"


def lock_state(state_dir: Path) -> int:
    """Take the state directory's lock without waiting; the fd to keep open. AgentError if another holds it.

    Two agents on one state directory would overwrite each other's state file: the second is refused.
    """
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AgentError(
            f"{state_dir} is in use by a running agent",
            hint="stop the agent first (its status says what it is doing: trustroot agent status)",
        ) from None
    return fd


async def _always_healthy(_image: SlotImage) -> bool:
    return True


class Agent:
    """One device's agent (module docstring)."""

    def __init__(
        self,
        device: AgentDevice,
        *,
        settings: AgentSettings | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        health_check: HealthCheck | None = None,
        sampler: Sampler | None = None,
        observer: Observer | None = None,
        downloads: Executor | None = None,
    ) -> None:
        self.device = device
        #: Where update downloads run (python-tuf is synchronous): the loop's default executor, or a
        #: pool shared by many agents (the simulator bounds concurrent downloads with it).
        self.downloads = downloads
        self.settings = settings or AgentSettings()
        self.clock: Clock = clock or ScaledClock()
        self.rng = rng or random.SystemRandom()
        self.health_check = health_check or _always_healthy
        self.sampler = sampler
        self.observer = observer
        self.counters = TrafficCounters()
        device.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.state = AgentState.load(device.state_dir)
        self.queue = TelemetryQueue(device.state_dir, self.settings.queue)
        self.slots = device.slots
        self.running: SlotImage = self.slots.active()
        self.online: bool | None = None
        self.offline_since: datetime | None = None
        self.last_error: str | None = None
        self.last_checkin: datetime | None = None
        self.message = "starting"
        self.status_url: str | None = None
        self.last_reset_receipt: dict[str, Any] | None = None
        self._ssl = device.ssl_context()
        self._client: httpx.AsyncClient | None = None
        self._checkin_now = asyncio.Event()
        self._lock = asyncio.Lock()

    # -- start and status ---------------------------------------------------------------------------

    def boot(self) -> None:
        """What a device does at power-on: finish or revert an interrupted install, count the boot."""
        abandoned = self.slots.recover()
        install = self.state.install
        active = self.slots.active()
        if install is not None:
            if abandoned is not None:
                status, error = "rolled_back", "restarted during the test boot before it was confirmed"
            elif active.version == install["version"]:
                status, error = "installed", None
            else:
                status, error = "failed", "the install was interrupted"
            self._result(install, status, error)
            self.state.install = None
        elif abandoned is not None:
            self._result(
                {"version": abandoned.version, "security_counter": abandoned.security_counter},
                "rolled_back",
                "restarted during the test boot",
            )
        self.state.boot_count += 1
        self.state.save()
        self.running = active
        self.write_status()

    def _result(self, install: dict[str, Any], status: str, error: str | None) -> None:
        self.state.results.append(
            {
                "version": install["version"],
                "security_counter": install["security_counter"],
                "status": status,
                "error": error[:500] if error else None,
            }
        )

    def status(self) -> dict[str, Any]:
        stats = self.queue.stats()
        return {
            "serial": self.device.serial,
            "online": self.online,
            "offline_since": self.offline_since.isoformat() if self.offline_since else None,
            "last_checkin": self.last_checkin.isoformat() if self.last_checkin else None,
            "last_error": self.last_error,
            "message": self.message,
            "running": {**self.running.to_json(), "slot": self.running.slot},
            "last_known_good": self._last_known_good(),
            "boot_count": self.state.boot_count,
            "telemetry_queue": {"pending": stats.pending, "delivered": stats.delivered, "dropped": stats.dropped},
            "pending_reports": len(self.state.results) + len(self.state.reports),
            "status_url": self.status_url,
            "time": self.clock.now().isoformat(),
        }

    def _last_known_good(self) -> str | None:
        found = self.slots.image(self.slots.boot().active, check_hash=False)  # no re-hash per status write
        return found.version if found is not None else None

    def write_status(self) -> None:
        write_status(self.device.state_dir, self.status())

    def _emit(self, kind: str, **detail: Any) -> None:
        if self.observer is not None:
            self.observer(AgentEvent(kind=kind, time=self.clock.now(), elapsed=self.clock.elapsed(), detail=detail))

    def _went_offline(self, error: str) -> None:
        self.last_error = error
        if self.online is not False:
            self.online = False
            self.offline_since = self.clock.now()
            self.message = (
                f"the service cannot be reached since {self.offline_since.isoformat(timespec='seconds')}; "
                f"running the last known good image {self.running.version}; telemetry is kept on the device"
            )
            self._emit("offline", error=error)
            self.write_status()

    def _went_online(self) -> None:
        if self.online is not True:
            self.online = True
            self.offline_since = None
            self.message = f"connected; running {self.running.version}"
            self._emit("online")
            self.write_status()

    # -- requests -----------------------------------------------------------------------------------

    async def _post(self, kind: str, path: str, body: dict[str, Any]) -> httpx.Response | None:
        """POST ``body``; None when the service could not be reached (the failure is recorded)."""
        if self._client is None:
            raise AgentError("the agent is not running (no connection to the service)")
        payload = json.dumps(body, separators=(",", ":")).encode()
        self._emit("request", request=kind)
        try:
            response = await self._client.post(path, content=payload, headers={"Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            self.counters.connection_attempts += 1
            self._emit("request_failed", request=kind, error=type(exc).__name__)
            self._went_offline(f"{kind}: {type(exc).__name__}: {exc}"[:300])
            return None
        self.counters.request(len(payload), len(response.content))
        if response.status_code < 500:
            self._went_online()  # the service answers (a check-in, telemetry or a report)
        return response

    def _retry_after(self, response: httpx.Response | None) -> float | None:
        if response is None or response.status_code not in (429, 503):
            return None
        return parse_retry_after(response.headers.get("retry-after"), self.clock.now())

    # -- check-in -----------------------------------------------------------------------------------

    def checkin_body(self) -> dict[str, Any]:
        return {
            "firmware_version": self.running.version,
            "security_counter": self.running.security_counter,
            "install_results": list(self.state.results[:16]),
            "health": {"uptime_s": int(self.clock.elapsed()), "boot_count": self.state.boot_count},
        }

    async def check_in(self) -> tuple[dict[str, Any] | None, float | None]:
        """One check-in: (the answer, or None on failure; the Retry-After if the service gave one)."""
        body = self.checkin_body()
        reported = len(body["install_results"])
        response = await self._post("checkin", "/api/v1/device/check-in", body)
        if response is None:
            return None, None
        if response.status_code != 200:
            self.last_error = f"check-in answered {response.status_code}"
            if response.status_code >= 500:
                self._went_offline(self.last_error)
            self._emit("checkin_refused", status=response.status_code)
            return None, self._retry_after(response)
        try:
            answer = response.json()
        except ValueError:
            return None, None
        if reported:
            self.state.results = self.state.results[reported:]
            await asyncio.to_thread(self.state.save)
        self.last_checkin = self.clock.now()
        self._went_online()
        return answer if isinstance(answer, dict) else None, None

    async def handle(self, answer: dict[str, Any]) -> None:
        """Act on a check-in answer: commands first, then an update offer."""
        for command in answer.get("commands") or []:
            if isinstance(command, dict) and type(command.get("id")) is int:
                await self.command(command)
        await self.flush_reports()
        offer = answer.get("offer")
        if (
            isinstance(offer, dict)
            and offer.get("version") != self.running.version
            and not any(r["version"] == offer.get("version") for r in self.state.results)
        ):
            await self.install(offer)

    # -- commands -----------------------------------------------------------------------------------

    async def command(self, command: dict[str, Any]) -> None:
        ident = command["id"]
        if ident in self.state.done_commands:
            return
        kind = command.get("kind")
        payload = command.get("payload") if isinstance(command.get("payload"), dict) else {}
        if kind == "factory_reset":
            await self.factory_reset(reason=str((payload or {}).get("reason", "service"))[:64], command_id=ident)
        else:
            self.state.reports.append(
                {"command_id": ident, "kind": str(kind)[:32], "status": "unsupported", "categories_wiped": []}
            )
        self.state.done_commands.append(ident)
        self.state.save()

    async def factory_reset(self, *, reason: str, command_id: int | None) -> list[str]:
        """Wipe the context's personal-data categories, remember the report (sent at once if online)."""
        categories = self.device.config.context.personal_data
        wiped = await asyncio.to_thread(wipe_personal_data, self.device.data_dir, categories)
        self.state.reports.append(
            {
                "command_id": command_id,
                "kind": "factory_reset",
                "status": "completed",
                "categories_wiped": wiped,
                "reason": reason,
                "time": self.clock.now().isoformat(),
            }
        )
        self.state.save()
        self.message = f"factory reset done ({reason}): personal data wiped ({', '.join(wiped) or 'none declared'})"
        self._emit("reset", command_id=command_id, categories=wiped)
        self.write_status()
        return wiped

    async def flush_reports(self) -> None:
        """Send the pending command reports; keep those the service did not take."""
        while self.state.reports:
            report = self.state.reports[0]
            body = {
                "command_id": report.get("command_id"),
                "status": report["status"],
                "categories_wiped": report.get("categories_wiped", []),
                "reason": report.get("reason"),
            }
            response = await self._post("report", RESET_REPORT_PATH, body)
            if response is None or response.status_code >= 500:
                return
            if response.status_code not in (200, 201):
                _log.warning("the service refused a reset report (%s): %s", response.status_code, response.text[:200])
            self.state.reports.pop(0)
            self.state.save()
            try:
                answer = response.json()
            except ValueError:
                answer = None
            self.last_reset_receipt = answer if isinstance(answer, dict) else None
            self._emit("reported", status=response.status_code, command_id=body["command_id"], answer=answer or {})

    # -- updates ------------------------------------------------------------------------------------

    def _update_client(self) -> UpdateClient:
        limits = self.settings.update
        client = httpx.Client(verify=self._ssl, follow_redirects=False, trust_env=False)
        fetcher = DeadlineFetcher(
            client,
            deadline_s=limits.metadata_deadline_s,
            gap_timeout_s=limits.gap_timeout_s,
            connect_timeout_s=limits.connect_timeout_s,
            chunk_size=limits.chunk_size,
        )
        tuf_dir = self.device.state_dir / "tuf"
        config = UpdateClientConfig(
            service_url=self.device.service_url,
            metadata_dir=tuf_dir / "metadata",
            targets_dir=tuf_dir / "targets",
            tls=ClientTls(ca_file=self.device.directory / "chain.pem"),
            limits=limits,
        )
        return UpdateClient(config, self.device.tuf_root, fetcher=fetcher)

    def _fetch_and_verify(self, target_path: str, floor: int) -> tuple[bytes, str, int]:
        """TUF download (verified against the signed metadata), then the image signature and counter."""
        with self._update_client() as client:
            downloaded = client.download(target_path, min_counter=floor)
        try:
            data = downloaded.path.read_bytes()
        finally:
            downloaded.path.unlink(missing_ok=True)
        try:
            verified = verify_image(data, keys=self.device.image_keys, min_counter=floor)
        except ImageVerificationError as exc:
            raise UpdateRefused(
                f"image {target_path} refused: {exc.message}", reason="image signature", provision="5.7-1"
            ) from exc
        version = str(verified.version)
        if version != downloaded.info.version or (verified.security_counter or 0) != downloaded.info.security_counter:
            raise UpdateRefused(
                f"image {target_path} says {version} counter {verified.security_counter}, the signed metadata "
                f"{downloaded.info.version} counter {downloaded.info.security_counter}",
                reason="metadata mismatch",
            )
        return data, version, verified.security_counter or 0

    async def install(self, offer: dict[str, Any]) -> str:
        """Fetch, verify, stage, test-boot and confirm or revert the offered release; return the status."""
        version = str(offer.get("version", ""))[:64]
        counter = offer.get("security_counter")
        target = offer.get("target_path")
        if not isinstance(target, str) or type(counter) is not int:
            return "ignored"
        floor = self.slots.boot().counter_floor
        install = {"version": version, "security_counter": counter}
        self._emit("install", phase="start", version=version)
        try:
            loop = asyncio.get_running_loop()
            data, real_version, real_counter = await loop.run_in_executor(
                self.downloads, self._fetch_and_verify, target, floor
            )
        except UpdateRefused as exc:
            self.counters.update_auth_failures += 1
            return self._finish(install, "rejected", str(exc))
        except UpdateError as exc:
            return self._finish(install, "failed", str(exc))
        return await self.install_verified(data, real_version, real_counter)

    async def install_verified(self, data: bytes, version: str, counter: int) -> str:
        """Stage a verified image, test-boot it, confirm or revert; the result is kept before anything else."""
        install = {"version": version, "security_counter": counter}
        self.state.install = install
        self.state.save()
        await asyncio.to_thread(self.slots.stage, data, version, counter)
        trial = await asyncio.to_thread(self.slots.begin_trial)
        self.running = trial  # the test boot: the new image runs once
        self.state.boot_count += 1
        self.state.save()
        error: str | None = None
        try:
            healthy = await self.health_check(trial)
        except Exception as exc:  # noqa: BLE001 - a crashing health check is an unhealthy image
            healthy, error = False, f"health check raised {type(exc).__name__}"
        if not healthy and error is None:
            error = "health check failed on the test boot"
        if healthy:
            self.running = await asyncio.to_thread(self.slots.confirm)
            status = "installed"
        else:
            self.running = await asyncio.to_thread(self.slots.revert)
            status = "rolled_back"
        self.state.install = None
        return self._finish(install, status, error)

    def _finish(self, install: dict[str, Any], status: str, error: str | None) -> str:
        self._result(install, status, error)
        self.state.save()
        self.message = f"update to {install['version']}: {status}" + (f" ({error})" if error else "")
        self._emit("install", phase="done", version=install["version"], status=status)
        self.write_status()
        self._checkin_now.set()  # report at once
        return status

    # -- telemetry ----------------------------------------------------------------------------------

    def sample(self) -> int | None:
        """Queue one telemetry point now; return its seq."""
        if self.sampler is None:
            return None
        interval = max(1, round(self.settings.telemetry_interval_s))
        point = self.sampler(self.clock.now(), interval, self.running.version, self.counters)
        return self.queue.append(point)

    async def sample_async(self) -> int | None:
        """:meth:`sample` with the durable append (fsync) in a thread: the event loop runs other devices meanwhile."""
        if self.sampler is None:
            return None
        interval = max(1, round(self.settings.telemetry_interval_s))
        point = self.sampler(self.clock.now(), interval, self.running.version, self.counters)
        return await asyncio.to_thread(self.queue.append, point)

    async def send_telemetry(self) -> tuple[bool, float | None]:
        """Send the queue's oldest records until it is empty; (all sent, Retry-After)."""
        while True:
            batch = self.queue.peek(self.settings.batch_max)
            if not batch:
                return True, None
            response = await self._post("telemetry", TELEMETRY_PATH, {"points": batch})
            if response is None:
                return False, None
            if response.status_code != 202:
                self.last_error = f"telemetry answered {response.status_code}"
                self._emit("telemetry_refused", status=response.status_code)
                return False, self._retry_after(response)
            await asyncio.to_thread(self.queue.ack, batch[-1]["seq"])  # fsync: off the event loop
            self._emit("telemetry_sent", points=len(batch))

    # -- loops --------------------------------------------------------------------------------------

    def _backoff(self) -> Backoff:
        s = self.settings
        return Backoff(base_s=s.backoff_base_s, cap_s=s.backoff_cap_s, jitter=s.jitter, rng=self.rng)

    async def _checkin_loop(self, stop: asyncio.Event) -> None:
        backoff = self._backoff()
        if await self.clock.sleep(self.settings.first_checkin_delay_s, stop):
            return
        while not stop.is_set():
            async with self._lock:
                answer, retry_after = await self.check_in()
                if answer is not None:
                    backoff.reset()
                    await self.handle(answer)
                    delay = float(answer.get("next_checkin_in_s", 3600))
                else:
                    delay = backoff.next_delay(retry_after)
            if self._checkin_now.is_set():
                self._checkin_now.clear()
                if answer is not None:
                    continue
            await self._wait(delay, stop)

    async def _wait(self, delay: float, stop: asyncio.Event) -> None:
        """Sleep ``delay`` (simulated) seconds, or less when stopped or asked to check in now."""
        waker = asyncio.ensure_future(self._checkin_now.wait())
        stopper = asyncio.ensure_future(stop.wait())
        sleeper = asyncio.ensure_future(self.clock.sleep(delay))
        try:
            await asyncio.wait({waker, stopper, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waker, stopper, sleeper):
                task.cancel()
        if self._checkin_now.is_set():
            self._checkin_now.clear()

    async def _telemetry_loop(self, stop: asyncio.Event) -> None:
        backoff = self._backoff()
        interval = self.settings.telemetry_interval_s
        next_sample = self.clock.elapsed() + self.rng.uniform(0, interval)
        next_send = 0.0
        while not stop.is_set():
            now = self.clock.elapsed()
            if now >= next_sample:
                await self.sample_async()
                next_sample += interval
                if next_sample < now:  # a long stall: do not sample a burst of back points
                    next_sample = now + interval
            if self.queue.stats().pending and now >= next_send:
                sent, retry_after = await self.send_telemetry()
                if sent:
                    backoff.reset()
                else:
                    next_send = self.clock.elapsed() + backoff.next_delay(retry_after)
            now = self.clock.elapsed()
            wake = next_sample if not self.queue.stats().pending else min(next_sample, max(next_send, now))
            if await self.clock.sleep(max(0.0, wake - now), stop):
                return

    async def run(self, stop: asyncio.Event, *, status_port: int | None = None) -> None:
        """Run until ``stop`` is set: boot, then the check-in and telemetry loops (and the status endpoint)."""
        lock = lock_state(self.device.state_dir)
        try:
            await self._run(stop, status_port)
        finally:
            os.close(lock)

    async def _run(self, stop: asyncio.Event, status_port: int | None) -> None:
        self.boot()
        server: asyncio.Server | None = None
        if status_port is not None:
            server = await asyncio.start_server(self._serve_status, "127.0.0.1", status_port)
            port = server.sockets[0].getsockname()[1]
            self.status_url = f"http://127.0.0.1:{port}/status"
            self.write_status()
        limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
        timeout = httpx.Timeout(self.settings.request_timeout_s)
        async with httpx.AsyncClient(
            base_url=self.device.service_url, verify=self._ssl, limits=limits, timeout=timeout, trust_env=False
        ) as client:
            self._client = client
            tasks = [asyncio.create_task(self._checkin_loop(stop))]
            if self.settings.telemetry and self.sampler is not None:
                tasks.append(asyncio.create_task(self._telemetry_loop(stop)))
            try:
                await asyncio.gather(*tasks)
            finally:
                for task in tasks:
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.gather(*tasks, return_exceptions=True)
                self._client = None
                self.queue.close()
                if server is not None:
                    server.close()
                    await server.wait_closed()
                self.write_status()

    async def _serve_status(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The local status endpoint: ``GET /status`` answers status.json's content; loopback only."""
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=5)
            parts = line.decode("latin-1", "replace").split()
            ok = len(parts) >= 2 and parts[0] == "GET" and parts[1] in ("/", "/status")
            body = json.dumps(self.status(), sort_keys=True).encode() if ok else b'{"error":"not found"}'
            head = "200 OK" if ok else "404 Not Found"
            writer.write(
                f"HTTP/1.1 {head}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeError):
            pass
        finally:
            writer.close()
