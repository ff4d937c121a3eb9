"""The fleet simulator: N real agents as coroutines of one process, against a real service, on a fast clock.

Scenarios (simulated seconds; the clock runs K times faster than the wall, K = ``time_scale``)::

    steady       devices boot over the first minute, check in and send telemetry for 5 minutes
    outage       steady for 300 s, the service is killed (SIGKILL) for 120 s and started again on the
                 same port, then 120 s more: how the fleet comes back (backoff with full jitter)
    rollout      a new release is rolled out (stages advanced to 50 %); a share of devices fail its
                 health check on the test boot and roll back; the service must pause the rollout itself
    compromised  from 60 s, labelled attacks start on 10 % of the devices (sim_behaviour.ATTACKS); the monitor's
                 alerts are read back from GET /api/v1/alerts
    deletion     owners claim a quarter of the devices, store personal data, then delete it; each device
                 gets the factory reset at its next check-in, wipes, and reports (signed receipts)
    life         the demo's story in one run: the fleet boots, a staged rollout starts (a fifth of the
                 devices fail the new image's health check), one device is compromised from 60 s and
                 one owner deletes their data at 90 s; it lasts until that device's next check-in

Figures (:class:`SimReport`; the issue's definitions)::

    reconnect_peak_ratio  largest count of agent requests in a 5-s bin during the 60 s after the service
                          returns / mean per-bin count over the steady phase (outage only)
    rollout_paused        the rollout's state is "paused" at the end (rollout only)
    detection_rate        share of attacked devices with an alert within 60 s of their attack's start
    false_alarm_rate      share of never-attacked devices with any alert during the run
    detection_latency_s   mean seconds from attack start to the first alert, over detected devices
    lost_messages         telemetry records queued by the agents and neither acknowledged by the service
                          nor still queued at the end (after a final drain)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import random
import ssl
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from trustroot.agent import sim_fleet
from trustroot.agent.core import Agent, AgentEvent, AgentSettings
from trustroot.agent.device import AgentDevice, enroll
from trustroot.agent.queue import QueueLimits
from trustroot.agent.sim_behaviour import ATTACKS, Behaviour
from trustroot.agent.slots import SlotImage
from trustroot.agent.timing import ScaledClock
from trustroot.errors import AgentError, UsageError
from trustroot.product import ROOT_CA_CERT, Product

__all__ = [
    "BIN_S",
    "SCENARIOS",
    "Plan",
    "SimFleet",
    "SimReport",
    "Simulation",
    "default_time_scale",
    "prepare_fleet",
]

_log = logging.getLogger(__name__)

#: Width of a request-count bin (simulated seconds).
BIN_S: Final = 5.0
#: Window after the service's return in which the reconnect peak is looked for.
RECONNECT_WINDOW_S: Final = 60.0
#: An alert counts as a detection within this many simulated seconds of the attack's start.
DETECTION_WINDOW_S: Final = 60.0
#: Wall seconds a scenario aims at by default (the default time scale follows from it).
DEFAULT_WALL_S: Final = 60.0
MAX_DEVICES: Final = 10_000
_DRAIN_WALL_S: Final = 20.0
#: Wall seconds the agents get to stop by themselves before they are cancelled.
_STOP_WALL_S: Final = 2.0
#: Update downloads in flight at once across the simulated fleet.
_DOWNLOADS: Final = 8
#: Threads for the agents' blocking work (TUF downloads, slot writes).
_THREADS: Final = 32


@dataclass(frozen=True)
class Plan:
    """A scenario's shape, in simulated seconds."""

    name: str
    duration_s: float
    telemetry_interval_s: float
    telemetry: bool = True
    boot_spread_s: float = 60.0
    outage_at_s: float | None = None
    outage_s: float = 0.0
    attack_at_s: float | None = None
    attack_spread_s: float = 30.0
    attacked_share: float = 0.10
    failing_share: float = 0.30
    delete_at_s: float | None = None
    owned_share: float = 0.25
    #: A rollout of a new release starts with the run (the rollout scenario; the life one).
    rollout: bool = False
    #: Exactly this many devices attacked / owned (instead of the shares), when set.
    attacked_count: int | None = None
    owned_count: int | None = None


SCENARIOS: Final[dict[str, Plan]] = {
    "steady": Plan("steady", duration_s=300, telemetry_interval_s=60),
    "outage": Plan("outage", duration_s=540, telemetry_interval_s=60, outage_at_s=300, outage_s=120),
    "rollout": Plan("rollout", duration_s=300, telemetry_interval_s=300, rollout=True),
    "compromised": Plan("compromised", duration_s=150, telemetry_interval_s=30, attack_at_s=60, attack_spread_s=20),
    "deletion": Plan("deletion", duration_s=4500, telemetry_interval_s=600, telemetry=False, delete_at_s=120),
    "life": Plan(
        "life",
        duration_s=240,
        telemetry_interval_s=30,
        boot_spread_s=30,
        attack_at_s=60,
        attack_spread_s=10,
        attacked_count=1,
        failing_share=0.20,
        delete_at_s=90,
        owned_count=1,
        rollout=True,
    ),
}


def canonical_json(value: object) -> bytes:
    """Canonical JSON (sorted keys, no spaces, UTF-8): how the service hashes a receipt."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def default_time_scale(scenario: str) -> float:
    """K so that the scenario's simulated time passes in about :data:`DEFAULT_WALL_S` wall seconds."""
    return max(1.0, SCENARIOS[scenario].duration_s / DEFAULT_WALL_S)


@dataclass
class SimReport:
    """What a run measured (``figures`` is the --json object)."""

    figures: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Recorder:
    """Collects the agents' events."""

    requests: list[float] = field(default_factory=list)
    events: Counter[str] = field(default_factory=Counter)
    installs: Counter[str] = field(default_factory=Counter)
    reports: list[dict[str, Any]] = field(default_factory=list)
    install_starts: list[float] = field(default_factory=list)
    install_times: list[float] = field(default_factory=list)

    def __call__(self, event: AgentEvent) -> None:
        self.events[event.kind] += 1
        if event.kind == "request":
            self.requests.append(event.elapsed)
        elif event.kind == "install" and event.detail.get("phase") == "done":
            self.installs[str(event.detail.get("status"))] += 1
            self.install_times.append(event.elapsed)
        elif event.kind == "install":
            self.install_starts.append(event.elapsed)
        elif event.kind == "reported":
            self.reports.append(event.detail)


def _bins(times: list[float], start: float, end: float) -> list[int]:
    count = max(0, math.floor((end - start) / BIN_S))
    bins = [0] * count
    for moment in times:
        index = math.floor((moment - start) / BIN_S)
        if 0 <= index < count:
            bins[index] += 1
    return bins


def reconnect_peak_ratio(times: list[float], steady: tuple[float, float], returned_at: float) -> float | None:
    """The issue's definition over request times (simulated seconds)."""
    steady_bins = _bins(times, *steady)
    after = _bins(times, returned_at, returned_at + RECONNECT_WINDOW_S)
    if not steady_bins or not after:
        return None
    mean = statistics.fmean(steady_bins)
    return round(max(after) / mean, 3) if mean > 0 else None


@dataclass
class SimFleet:
    """Provisioned simulated devices and what the simulator needs to drive their fleet."""

    product: Product
    admin: sim_fleet.FleetAdmin
    devices: list[sim_fleet.ProvisionedDevice]
    workdir: Path
    name: str
    token: str
    setup_s: float
    #: Releases published after the factory image (each rollout run publishes one more).
    releases: int = 0


def prepare_fleet(
    product: Product,
    count: int,
    workdir: Path,
    *,
    admin_for: Callable[[Product], sim_fleet.FleetAdmin] = sim_fleet.CliFleetAdmin,
    scratch: bool = True,
) -> SimFleet:
    """A scratch copy of ``product`` (unless ``scratch`` is off), ``count`` devices, the factory release."""
    started = time.monotonic()
    product = sim_fleet.scratch_product(product, workdir / "product") if scratch else product
    images = workdir / "images"
    images.mkdir(parents=True, exist_ok=True)
    admin = admin_for(product)
    name = f"sim-{hashlib.sha256(str(time.time_ns()).encode()).hexdigest()[:8]}"
    factory = sim_fleet.signed_image(product, "1.0.0", 1)
    sim_fleet.publish(admin, factory, name, images)
    devices = sim_fleet.provision(product, admin, count, workdir / "fleet", factory)
    token = admin.operator_token("read,release,device-admin")
    return SimFleet(
        product=product,
        admin=admin,
        devices=devices,
        workdir=workdir,
        name=name,
        token=token,
        setup_s=time.monotonic() - started,
    )


@dataclass
class _Run:
    """What one run holds while it goes."""

    devices: list[sim_fleet.ProvisionedDevice]
    url: str
    token: str
    service: sim_fleet.ServiceProcess | None
    workdir: Path
    clock: ScaledClock = field(default_factory=ScaledClock)
    operator: httpx.AsyncClient = field(default_factory=httpx.AsyncClient)
    agents: list[Agent] = field(default_factory=list)
    clones: list[Agent] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    attacked: dict[str, tuple[str, float]] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)
    owned: list[sim_fleet.ProvisionedDevice] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)
    #: Update downloads of all agents, at most :data:`_DOWNLOADS` at once (as a CDN would bound them).
    downloads: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=_DOWNLOADS))


class Simulation:
    """One run of one scenario (module docstring)."""

    def __init__(
        self,
        product: Product,
        *,
        devices: int,
        scenario: str,
        time_scale: float | None = None,
        url: str | None = None,
        jitter: bool = True,
        seed: int | None = None,
        workdir: Path | None = None,
        progress: Callable[[str], None] | None = None,
        admin: Callable[[Product], sim_fleet.FleetAdmin] = sim_fleet.CliFleetAdmin,
        rollout_release: int | None = None,
        service_env: Mapping[str, str] | None = None,
    ) -> None:
        """``rollout_release``: roll out this published release instead of publishing a new one;
        ``service_env``: added to the environment of the ``trustroot serve`` the run starts."""
        if scenario not in SCENARIOS:
            raise UsageError(f"--scenario {scenario!r}: use one of {', '.join(SCENARIOS)}")
        if not 1 <= devices <= MAX_DEVICES:
            raise UsageError(f"--devices {devices}: use 1 to {MAX_DEVICES}")
        if url is not None and scenario == "outage":
            raise UsageError("the outage scenario stops and restarts the service: run it without --url")
        self.product = product
        self.n = devices
        self.plan = SCENARIOS[scenario]
        self.scale = time_scale or default_time_scale(scenario)
        if not 0 < self.scale <= 10_000:
            raise UsageError(f"--time-scale {self.scale}: use a value above 0 and at most 10000")
        self.url = url
        self.jitter = jitter
        self.rng = random.Random(seed)  # noqa: S311 - simulated choices, not security
        self.workdir = workdir
        self.progress = progress or (lambda _text: None)
        self.recorder = _Recorder()
        self.admin_for = admin
        self.rollout_release = rollout_release
        self.service_env = dict(service_env or {})
        self._ca = ""

    # -- set-up -------------------------------------------------------------------------------------

    def run(self, fleet: SimFleet | None = None) -> SimReport:
        """Run the scenario, on ``fleet`` if given (prepared by :func:`prepare_fleet`), else on a new one."""
        if fleet is not None:
            return self._run_on(fleet)
        if self.workdir is not None:
            return self._run_on(self.prepare(self.workdir))
        with tempfile.TemporaryDirectory(prefix="trustroot-sim-") as scratch:
            return self._run_on(self.prepare(Path(scratch)))

    def prepare(self, workdir: Path) -> SimFleet:
        self.progress(f"provisioning {self.n} devices (factory flow, scratch batch)")
        return prepare_fleet(self.product, self.n, workdir, admin_for=self.admin_for, scratch=self.url is None)

    def _run_on(self, fleet: SimFleet) -> SimReport:
        if len(fleet.devices) != self.n:
            raise UsageError(f"the prepared fleet has {len(fleet.devices)} devices, not {self.n}")
        release_id = self.rollout_release if self.plan.rollout else None
        if self.plan.rollout and release_id is None:
            fleet.releases += 1
            image = sim_fleet.signed_image(fleet.product, f"1.{fleet.releases}.0", 1 + fleet.releases)
            release_id = sim_fleet.publish(fleet.admin, image, fleet.name, fleet.workdir / "images")
        self._ca = str(fleet.product.pki_dir / ROOT_CA_CERT)
        service = None
        if self.url is None:
            service = sim_fleet.ServiceProcess(fleet.product, fleet.workdir, max_inflight=256, env=self.service_env)
            service.start()
        url = self.url or (service.url if service else "")
        try:
            self.progress(f"service at {url}; running {self.plan.name} at time scale {self.scale:g}")
            run = _Run(devices=fleet.devices, url=url, token=fleet.token, service=service, workdir=fleet.workdir)
            report = asyncio.run(self._simulate(run, release_id))
        finally:
            if service is not None:
                service.stop()
        report.figures["setup_wall_s"] = round(fleet.setup_s, 2)
        return report

    # -- the run ------------------------------------------------------------------------------------

    def _choose(self, run: _Run) -> None:
        """Which devices are attacked (and when), fail the new image's health check, or are owned."""
        plan = self.plan
        order = list(range(self.n))
        self.rng.shuffle(order)
        if plan.attack_at_s is not None:
            count = plan.attacked_count or max(len(ATTACKS), round(self.n * plan.attacked_share))
            for rank, index in enumerate(order[:count]):
                start = plan.attack_at_s + self.rng.uniform(0, plan.attack_spread_s)
                run.attacked[run.devices[index].serial] = (ATTACKS[rank % len(ATTACKS)], start)
        run.failing = {run.devices[i].serial for i in order[: round(self.n * plan.failing_share)]}
        if plan.delete_at_s is not None:
            owners = plan.owned_count or round(self.n * plan.owned_share)
            # from the order's tail: not the attacked devices (its head) while there are others
            run.owned = [run.devices[i] for i in order[len(order) - owners :]] if owners > 0 else []

    async def _simulate(self, run: _Run, release_id: int | None) -> SimReport:
        plan = self.plan
        # update downloads (python-tuf is synchronous) run in threads: enough of them for a fleet
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=_THREADS))
        run.clock = ScaledClock(scale=self.scale)
        run.operator = httpx.AsyncClient(
            base_url=run.url,
            verify=ssl.create_default_context(cafile=self._ca),
            timeout=30.0,
            headers={"Authorization": f"Bearer {run.token}"},
        )
        rollout_id = await self._start_rollout(run.operator, release_id) if release_id is not None else None
        self._choose(run)
        run.agents = [
            self._agent(d, run, run.attacked.get(d.serial), failing=d.serial in run.failing) for d in run.devices
        ]
        if run.owned:
            for agent in run.agents:
                self._plant_personal_data(agent)
        run.clock.restart()  # simulated second 0: every agent is ready
        wall_start = time.monotonic()
        started_at = datetime.now(UTC)
        tasks = [asyncio.create_task(agent.run(run.stop)) for agent in run.agents]
        pending = 0
        try:
            await self._drive(run)
            end = max(plan.duration_s, run.result.get("settle_until", 0.0))
            await run.clock.sleep(max(0.0, end - run.clock.elapsed()))
            run.result["simulated_end_s"] = round(run.clock.elapsed(), 1)
            drain_start = time.monotonic()
            pending = await self._drain(run.agents + run.clones)
            run.result["drain_wall_s"] = round(time.monotonic() - drain_start, 2)
        finally:
            await self._stop(run, tasks)
        run.downloads.shutdown(wait=False, cancel_futures=True)
        figures = self._figures(run, time.monotonic() - wall_start, pending)
        details: dict[str, Any] = {"events": dict(self.recorder.events), **run.result}
        if plan.telemetry:
            details["telemetry"] = run.result.pop("telemetry", {})
        if rollout_id is not None:
            answer = await run.operator.get(f"/api/v1/rollouts/{rollout_id}")
            view = answer.json() if answer.status_code == 200 else {}
            figures["rollout_paused"] = view.get("state") == "paused"
            details["rollout"] = {
                key: view.get(key) for key in ("state", "offered", "succeeded", "failed", "failure_share", "reason")
            }
            details["installs"] = dict(self.recorder.installs)
            details["install_window_s"] = [
                round(min(self.recorder.install_starts, default=0), 1),
                round(max(self.recorder.install_times, default=0), 1),
            ]
        if run.attacked:
            figures.update(await self._detection(run, started_at))
            details["detections"] = run.result.pop("detections", {})
        if run.owned:
            details["deletion"] = self._deletion_figures(run)
            figures["deletion_completed"] = details["deletion"]["completed_share"]
        await run.operator.aclose()
        return SimReport(figures=figures, details=details)

    async def _stop(self, run: _Run, tasks: list[asyncio.Task[None]]) -> None:
        """Stop every agent; record the errors any of them ended with."""
        run.stop.set()
        stop_start = time.monotonic()
        everything = [*tasks, *run.tasks]
        _done, lingering = await asyncio.wait(everything, timeout=_STOP_WALL_S)
        for task in lingering:  # closing hundreds of TLS connections politely takes a while: enough
            task.cancel()
        outcomes = await asyncio.gather(*everything, return_exceptions=True)
        run.result["stop_wall_s"] = round(time.monotonic() - stop_start, 2)
        errors = Counter(
            f"{type(e).__name__}: {e}"[:200]
            for e in outcomes
            if isinstance(e, BaseException) and not isinstance(e, asyncio.CancelledError)
        )
        if errors:
            run.result["agent_errors"] = dict(errors)

    def _figures(self, run: _Run, wall_s: float, pending: int) -> dict[str, Any]:
        plan = self.plan
        figures: dict[str, Any] = {
            "scenario": plan.name,
            "devices": self.n,
            "time_scale": round(self.scale, 3),
            "jitter": self.jitter,
            "simulated_s": round(run.clock.elapsed(), 1),
            "wall_s": round(wall_s, 2),
            "requests": len(self.recorder.requests),
            "reconnect_peak_ratio": None,
            "rollout_paused": None,
            "detection_rate": None,
            "false_alarm_rate": None,
            "detection_latency_s": None,
            "lost_messages": None,
        }
        if plan.telemetry:
            queued = sum(a.queue.stats().next_seq - 1 for a in run.agents + run.clones)
            delivered = sum(a.queue.stats().delivered for a in run.agents + run.clones)
            figures["lost_messages"] = queued - delivered - pending
            run.result["telemetry"] = {"queued": queued, "delivered": delivered, "pending_at_end": pending}
        if plan.outage_at_s is not None and "returned_at" in run.result:
            steady = (plan.boot_spread_s, plan.outage_at_s)
            figures["reconnect_peak_ratio"] = reconnect_peak_ratio(
                self.recorder.requests, steady, run.result["returned_at"]
            )
        return figures

    def _agent(
        self,
        device: sim_fleet.ProvisionedDevice,
        run: _Run,
        attack: tuple[str, float] | None,
        *,
        failing: bool,
        state_dir: Path | None = None,
    ) -> Agent:
        plan = self.plan
        clock = run.clock
        loaded = AgentDevice.load(device.directory, sim_fleet.DEVICE_SECRET, service_url=run.url, state_dir=state_dir)
        rng = random.Random(self.rng.getrandbits(64))  # noqa: S311 - simulated behaviour, not security
        settings = AgentSettings(
            telemetry_interval_s=plan.telemetry_interval_s,
            telemetry=plan.telemetry,
            jitter=self.jitter,
            backoff_base_s=2.0,
            backoff_cap_s=120.0,
            first_checkin_delay_s=rng.uniform(0, plan.boot_spread_s),
            queue=QueueLimits(max_records=5_000),
            request_timeout_s=60.0,
        )
        behaviour = Behaviour(
            rng=rng,
            clock_elapsed=clock.elapsed,
            attack=attack[0] if attack and attack[0] != "cloned_device" else None,
            attack_at=attack[1] if attack else None,
        )

        async def health(image: SlotImage) -> bool:
            await clock.sleep(2.0)  # the test boot takes a moment
            return not (failing and image.version != "1.0.0+0")  # a failing device fails every new image

        return Agent(
            loaded,
            downloads=run.downloads,
            settings=settings,
            clock=clock,
            rng=rng,
            health_check=health,
            sampler=behaviour,
            observer=self.recorder,
        )

    # -- scenario drivers ---------------------------------------------------------------------------

    async def _start_rollout(self, operator: httpx.AsyncClient, release_id: int) -> int:
        answer = await operator.post("/api/v1/rollouts", json={"release_id": release_id})
        if answer.status_code not in (200, 201):
            raise AgentError(f"the rollout did not start: {answer.status_code} {answer.text[:200]}")
        view = answer.json()
        while view.get("percent", 100) < 50 and view.get("state") == "active":
            answer = await operator.post(f"/api/v1/rollouts/{view['id']}/advance")
            if answer.status_code != 200:
                break
            view = answer.json()
        return int(view["id"])

    async def _drive(self, run: _Run) -> None:
        """The scenario's events at their simulated times: outage, clones, owners deleting."""
        plan, clock = self.plan, run.clock
        if plan.outage_at_s is not None and run.service is not None:
            await clock.sleep(plan.outage_at_s - clock.elapsed())
            await asyncio.to_thread(run.service.kill)
            run.result["outage_at"] = round(clock.elapsed(), 1)
            self.progress(f"service killed at {run.result['outage_at']} s (simulated)")
            # start again early by the time a start takes, so that the service is back when planned
            restart_at = plan.outage_at_s + plan.outage_s - run.service.start_wall_s * clock.scale
            await clock.sleep(restart_at - clock.elapsed())
            await asyncio.to_thread(run.service.start)
            run.result["returned_at"] = clock.elapsed()
            run.result["settle_until"] = clock.elapsed() + RECONNECT_WINDOW_S + 60
            self.progress(f"service back at {run.result['returned_at']:.1f} s (simulated)")
        by_serial = {d.serial: d for d in run.devices}
        clones = sorted((start, serial) for serial, (kind, start) in run.attacked.items() if kind == "cloned_device")
        for start, serial in clones:
            await clock.sleep(start - clock.elapsed())
            clone = self._clone(by_serial[serial], run)
            run.clones.append(clone)
            run.tasks.append(asyncio.create_task(clone.run(run.stop)))
        if plan.delete_at_s is not None and run.owned:
            await clock.sleep(plan.delete_at_s - clock.elapsed())
            run.result["receipts"] = await self._owners_delete(run)
            update = self.product.context.model.update
            # every device checks in once more after the last deletion: its reset arrives then
            run.result["deleted_by_s"] = round(clock.elapsed(), 1)
            run.result["settle_until"] = clock.elapsed() + update.checkin_interval_s + update.checkin_jitter_s[1] + 60

    def _clone(self, device: sim_fleet.ProvisionedDevice, run: _Run) -> Agent:
        """The device's identity copied onto a second host: its own state, the same key and certificate."""
        state = run.workdir / "clones" / device.serial
        trust = device.directory / "trust"
        enroll(
            device.directory,
            tuf_root=(trust / "tuf-root.json").read_bytes(),
            image_keys_pem=(trust / "image-keys.pem").read_bytes(),
            factory_image=(device.directory / "agent" / "slots" / "a" / "image.bin").read_bytes(),
            state_dir=state,
        )
        return self._agent(device, run, None, failing=False, state_dir=state)

    def _plant_personal_data(self, agent: Agent) -> None:
        for category in agent.device.config.context.personal_data:
            folder = agent.device.data_dir / category
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "value").write_bytes(f"{category} of {agent.device.serial}".encode())

    async def _owners_delete(self, run: _Run) -> dict[str, str]:
        """Each owner registers, claims its device, stores personal data and deletes it: serial -> receipt hash."""
        receipts: dict[str, str] = {}
        gate = asyncio.Semaphore(16)
        category = next((c.name for c in self.product.context.model.data.personal if c.in_service), None)

        async def one(device: sim_fleet.ProvisionedDevice) -> None:
            async with (
                gate,
                httpx.AsyncClient(
                    base_url=run.url, verify=ssl.create_default_context(cafile=self._ca), timeout=30.0
                ) as client,
            ):
                public = (
                    Ed25519PrivateKey.generate()
                    .public_key()
                    .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
                )
                made = await client.post("/api/v1/owners", json={"public_key": public.hex()})
                if made.status_code != 201:
                    return
                auth = {"Authorization": f"Bearer {made.json()['api_key']}"}
                claimed = await client.post(
                    "/api/v1/owners/claim", json={"claim_code": device.claim_code}, headers=auth
                )
                if claimed.status_code != 200:
                    return
                if category is not None:
                    await client.put(
                        f"/api/v1/owners/me/devices/{device.serial}/data/{category}",
                        json={"value": f"owner of {device.serial}"},
                        headers=auth,
                    )
                deleted = await client.post("/api/v1/owners/me/delete", headers=auth)
                if deleted.status_code == 200:
                    receipts[device.serial] = hashlib.sha256(canonical_json(deleted.json())).hexdigest()

        await asyncio.gather(*(one(device) for device in run.owned))
        return receipts

    def _deletion_figures(self, run: _Run) -> dict[str, Any]:
        receipts: dict[str, str] = run.result.get("receipts", {})
        by_serial = {a.device.serial: a for a in run.agents}

        def wiped(serial: str) -> bool:
            device = by_serial[serial].device
            return not any((device.data_dir / c).exists() for c in device.config.context.personal_data)

        digests = set(receipts.values())
        linked = [
            r
            for r in self.recorder.reports
            if r.get("status") == 200 and r.get("answer", {}).get("deletion_receipt_sha256") in digests
        ]
        return {
            "owners": len(run.owned),
            "deleted": len(receipts),
            "devices_wiped": sum(1 for s in receipts if wiped(s)),
            "reports_linked": len(linked),
            "completed_share": round(len(linked) / len(receipts), 3) if receipts else None,
        }

    async def _drain(self, agents: list[Agent]) -> int:
        """Stop sampling; let the agents send what they queued and finish installs and their reports.

        Bounded: at most :data:`_DRAIN_WALL_S` wall seconds, and it gives up after 5 s without progress
        (a service that refuses telemetry). Returns the telemetry records still queued.
        """
        for agent in agents:
            agent.sampler = None

        def left() -> tuple[int, int]:
            queued = sum(a.queue.stats().pending for a in agents)
            busy = sum(1 for a in agents if a.state.install is not None or a.state.results or a.state.reports)
            return queued, busy

        deadline = time.monotonic() + _DRAIN_WALL_S
        before = left()
        progress_at = time.monotonic()
        while any(before) and time.monotonic() < deadline and time.monotonic() - progress_at < 5.0:
            await asyncio.sleep(0.2)
            now = left()
            if sum(now) < sum(before):
                progress_at = time.monotonic()
            before = now
        return before[0]

    async def _detection(self, run: _Run, started_at: datetime) -> dict[str, Any]:
        since = (started_at - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
        gate = asyncio.Semaphore(16)
        found: dict[str, list[datetime]] = {}
        missing_api = False

        async def one(serial: str) -> None:
            nonlocal missing_api
            async with gate:
                answer = await run.operator.get(
                    "/api/v1/alerts", params={"since": since, "device": serial, "limit": 500}
                )
            if answer.status_code == 404 and "alerts" not in answer.text:
                missing_api = True
                return
            if answer.status_code != 200:
                return
            # when the service raised the alert (``raised_at``); the observation time if it does not say
            stamps = [alert.get("raised_at") or alert.get("time") for alert in answer.json().get("alerts", [])]
            found[serial] = sorted(
                datetime.fromisoformat(stamp.replace("Z", "+00:00")) for stamp in stamps if isinstance(stamp, str)
            )

        await asyncio.gather(*(one(d.serial) for d in run.devices))
        if missing_api:
            return {"alerts_api": "missing (GET /api/v1/alerts answered 404)"}
        clock = run.clock
        latencies: list[float] = []
        per_device: dict[str, dict[str, Any]] = {}
        for serial, (kind, start) in run.attacked.items():
            start_wall = clock.origin + timedelta(seconds=start / clock.scale)
            delays = [
                (moment - start_wall).total_seconds() * clock.scale
                for moment in found.get(serial, [])
                if moment >= start_wall - timedelta(seconds=1)
            ]
            first = round(min(delays), 1) if delays else None
            per_device[serial] = {"attack": kind, "start_s": round(start, 1), "first_alert_after_s": first}
            if delays and min(delays) <= DETECTION_WINDOW_S:
                latencies.append(max(0.0, min(delays)))
        run.result["detections"] = per_device
        clean = [d.serial for d in run.devices if d.serial not in run.attacked]
        alarmed = sum(1 for s in clean if found.get(s))
        return {
            "detection_rate": round(len(latencies) / len(run.attacked), 3),
            "false_alarm_rate": round(alarmed / len(clean), 4) if clean else 0.0,
            "detection_latency_s": round(statistics.fmean(latencies), 1) if latencies else None,
            "attacked": len(run.attacked),
            "attacks": dict(Counter(kind for kind, _ in run.attacked.values())),
        }
