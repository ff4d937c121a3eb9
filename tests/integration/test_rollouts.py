"""Staged rollouts on the real fleet store (SQLite and PostgreSQL): offers, stages, automatic pause, audit.

Every test that takes ``store`` runs twice, once per backend (``conftest_postgres``). Devices and
releases are rows made here; the TUF side is in ``test_tuf_releases.py``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from trustroot.context.load import load_context
from trustroot.context.schema import RolloutStage
from trustroot.errors import StateError
from trustroot.fleet import rollouts
from trustroot.fleet.api import releases as releases_api
from trustroot.fleet.config import FleetConfig
from trustroot.fleet.releases.models import InstallResult, Release, RolloutOffer, RolloutState
from trustroot.fleet.service import FleetService
from trustroot.fleet.store.audit import SERVICE_ACTOR, audit_log
from trustroot.fleet.store.db import Store
from trustroot.fleet.store.models import Batch, Device

pytestmark = pytest.mark.integration

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OPERATOR = "operator:alice"


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Fleet:
    service: FleetService
    clock: Clock
    devices: list[Device] = field(default_factory=list)

    def device(self, serial: str) -> Device:
        return next(d for d in self.devices if d.serial == serial)


@pytest.fixture
def fleet(store: Store, product_template: Path, tmp_path: Path) -> Fleet:
    context = load_context(product_template / "security-context.toml").model
    clock = Clock()
    service = FleetService(
        store=store,
        config=FleetConfig(database_url=str(store.engine.url), state_dir=tmp_path),
        context=context,
        pki_dir=tmp_path,
        keys=None,
        clock=clock,
    )
    return Fleet(service=service, clock=clock)


def add_devices(
    fleet: Fleet, count: int, *, group: str = "default", channel: str = "stable", prefix: str = "D"
) -> None:
    with fleet.service.store.transaction() as session:
        batch_id = f"batch-{prefix}-{len(fleet.devices)}"
        session.add(
            Batch(id=batch_id, manifest_sha256=_hex(batch_id), factory="f1", device_count=count, imported_at=START)
        )
        made = [
            Device(
                serial=f"{prefix}-{n:06d}",
                certificate_fingerprint=_hex(f"{prefix}-{n}"),
                certificate_pem="-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
                batch_id=batch_id,
                factory="f1",
                model="AP-1",
                status="active",
                registered_at=START,
                group_name=group,
                channel=channel,
            )
            for n in range(count)
        ]
        session.add_all(made)
    fleet.devices.extend(made)


def _hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def add_release(fleet: Fleet, version: str, counter: int, *, channel: str = "stable") -> int:
    with fleet.service.store.transaction() as session:
        row = Release(
            channel=channel,
            name="acme-plug",
            version=version,
            security_counter=counter,
            sha256=_hex(version),
            size=1000,
            target_path=f"{channel}/acme-plug-{version}.img",
            published_at=START,
            published_by="cli:test",
            support_period_end="2031-12-31",
        )
        session.add(row)
        session.flush()
        return row.id


def offers(fleet: Fleet, counter: int = 0) -> dict[str, dict[str, Any]]:
    """Check every device in (small fleets only)."""
    found = {}
    for device in fleet.devices:
        offer = rollouts.offer_for(fleet.service, device, counter)
        if offer is not None:
            found[device.serial] = offer
    return found


def audit(fleet: Fleet) -> list[tuple[str, str, str]]:
    return [
        (record.subject, str(record.data["action"]), record.actor)
        for record in audit_log(fleet.service).iter_records()
        if record.type == "rollout.changed"
    ]


ONE_STAGE = [RolloutStage(percent=100, min_hours=0)]


# --- offers and stages -----------------------------------------------------------------------------


def test_stages_offer_the_cohort_and_advance_by_time(fleet: Fleet) -> None:
    add_devices(fleet, 300)
    release = add_release(fleet, "1.1.0+0", 2)
    view = rollouts.start_rollout(fleet.service, release, actor=OPERATOR)
    assert (view.state, view.stage_index, view.percent) == (RolloutState.ACTIVE, 0, 1)
    serials = [d.serial for d in fleet.devices]
    at_1 = {s for s in serials if rollouts.in_cohort(view.id, s, 1)}
    at_10 = {s for s in serials if rollouts.in_cohort(view.id, s, 10)}
    assert at_1 and at_1 < at_10
    # ask the 10 % cohort and as many devices outside it (asking all 300 adds nothing but time)
    outside = [s for s in serials if s not in at_10][: len(at_10)]
    asked = [fleet.device(s) for s in sorted(at_10) + outside]

    def offered() -> dict[str, dict[str, Any]]:
        return {d.serial: o for d in asked if (o := rollouts.offer_for(fleet.service, d, 1)) is not None}

    first = offered()
    assert set(first) == at_1
    offer = first[min(at_1)]
    assert offer["release_id"] == release and offer["target_path"] == "stable/acme-plug-1.1.0+0.img"
    assert offer["security_counter"] == 2 and offer["tuf"]["targets"] == "/tuf/targets/"
    # a repeated check-in gets the same offer, counted once
    assert offered() == first
    assert rollouts.get_rollout(fleet.service, view.id).offered == len(at_1)
    # 23 hours later the stage has not lasted its minimum (24 h) ...
    fleet.clock.advance(hours=23)
    assert set(offered()) == at_1
    # ... at 24 hours the next check-in advances it to 10 % (written by the service)
    fleet.clock.advance(hours=1)
    assert set(offered()) == at_10
    assert rollouts.get_rollout(fleet.service, view.id).percent == 10
    assert audit(fleet) == [
        (f"rollout/{view.id}", "started", OPERATOR),
        (f"rollout/{view.id}", "advanced", SERVICE_ACTOR),
    ]


def test_operator_advance_and_the_last_stage(fleet: Fleet) -> None:
    add_devices(fleet, 50)
    view = rollouts.start_rollout(fleet.service, add_release(fleet, "1.1.0+0", 2), actor=OPERATOR)
    for percent in (10, 50, 100):
        assert rollouts.advance_rollout(fleet.service, view.id, actor=OPERATOR).percent == percent
    with pytest.raises(StateError, match="last stage"):
        rollouts.advance_rollout(fleet.service, view.id, actor=OPERATOR)
    assert len(offers(fleet)) == 50
    # the periodic tick has nothing to do at the last stage
    fleet.clock.advance(days=10)
    assert rollouts.advance_due(fleet.service) == []


def test_advance_due_moves_every_rollout_whose_time_has_come(fleet: Fleet) -> None:
    add_devices(fleet, 5)
    view = rollouts.start_rollout(fleet.service, add_release(fleet, "1.1.0+0", 2), actor=OPERATOR)
    assert rollouts.advance_due(fleet.service) == []
    fleet.clock.advance(hours=24)
    assert [v.id for v in rollouts.advance_due(fleet.service)] == [view.id]
    assert rollouts.get_rollout(fleet.service, view.id).next_stage_at == fleet.clock.now + timedelta(hours=24)


@pytest.mark.parametrize(("reported", "offered"), [(4, True), (5, True), (6, False)])
def test_never_offered_below_the_reported_counter(fleet: Fleet, reported: int, offered: bool) -> None:
    add_devices(fleet, 3)
    rollouts.start_rollout(fleet.service, add_release(fleet, "1.1.0+0", 5), actor=OPERATOR, stages=ONE_STAGE)
    assert (rollouts.offer_for(fleet.service, fleet.devices[0], reported) is not None) is offered


def test_newest_counter_wins_and_a_group_rollout_reaches_only_its_group(fleet: Fleet) -> None:
    add_devices(fleet, 10, group="default")
    add_devices(fleet, 10, group="beta", prefix="B")
    general = add_release(fleet, "1.1.0+0", 2)
    beta = add_release(fleet, "1.2.0+0", 3)
    rollouts.start_rollout(fleet.service, general, actor=OPERATOR, stages=ONE_STAGE)
    rollouts.start_rollout(fleet.service, beta, actor=OPERATOR, stages=ONE_STAGE, group="beta")
    found = offers(fleet)
    assert {s for s, o in found.items() if o["release_id"] == beta} == {f"B-{n:06d}" for n in range(10)}
    assert {s for s, o in found.items() if o["release_id"] == general} == {f"D-{n:06d}" for n in range(10)}
    # a device of another channel is offered nothing
    add_devices(fleet, 1, channel="beta-channel", prefix="C")
    assert rollouts.offer_for(fleet.service, fleet.device("C-000000"), 0) is None


def test_a_device_already_running_the_release_is_not_offered_it(fleet: Fleet) -> None:
    add_devices(fleet, 1)
    rollouts.start_rollout(fleet.service, add_release(fleet, "1.1.0+0", 2), actor=OPERATOR, stages=ONE_STAGE)
    device = fleet.devices[0]
    device.reported_version = "1.1.0+0"
    assert rollouts.offer_for(fleet.service, device, 2) is None


# --- results and automatic pause -------------------------------------------------------------------


def test_failures_pause_the_rollout_at_the_threshold(fleet: Fleet) -> None:
    add_devices(fleet, 60)
    release = add_release(fleet, "1.1.0+0", 2)
    view = rollouts.start_rollout(fleet.service, release, actor=OPERATOR, stages=ONE_STAGE)
    assert view.failure_threshold == 0.05 and view.min_sample == rollouts.DEFAULT_MIN_SAMPLE
    offered = [d for d in fleet.devices[:40] if rollouts.offer_for(fleet.service, d, 1) is not None]
    assert len(offered) == 40
    first = rollouts.record_install_result(fleet.service, offered[0], release, False, "hash mismatch")
    assert first == rollouts.InstallRecorded(rollout_id=view.id, paused=False)  # 1/40 = 2.5 %
    for device in offered[1:10]:
        rollouts.record_install_result(fleet.service, device, release, True)
    second = rollouts.record_install_result(fleet.service, offered[10], release, False, "boot loop")
    assert second.paused  # 2/40 = 5 %: at the threshold
    status = rollouts.get_rollout(fleet.service, view.id)
    assert status.state is RolloutState.PAUSED
    assert (status.offered, status.succeeded, status.failed) == (40, 9, 2)
    assert "2 of 40 devices" in (status.reason or "")
    # paused: nobody new is offered it, not even a device offered before
    assert rollouts.offer_for(fleet.service, fleet.devices[50], 1) is None
    assert rollouts.offer_for(fleet.service, offered[20], 1) is None
    assert audit(fleet)[-1] == (f"rollout/{view.id}", "paused", SERVICE_ACTOR)
    # resume: the window starts again, so the old failures no longer count
    resumed = rollouts.resume_rollout(fleet.service, view.id, actor=OPERATOR)
    assert resumed.state is RolloutState.ACTIVE and resumed.failure_share == 0
    assert rollouts.offer_for(fleet.service, fleet.devices[50], 1) is not None
    assert audit(fleet)[-1] == (f"rollout/{view.id}", "resumed", OPERATOR)


def test_no_pause_before_the_minimum_sample_then_one_when_it_is_reached(fleet: Fleet) -> None:
    add_devices(fleet, 30)
    release = add_release(fleet, "1.1.0+0", 2)
    view = rollouts.start_rollout(fleet.service, release, actor=OPERATOR, stages=ONE_STAGE)
    early = [d for d in fleet.devices[:5] if rollouts.offer_for(fleet.service, d, 1) is not None]
    for device in early:  # 5 of 5 failed, but only 5 offered: not judged yet
        assert not rollouts.record_install_result(fleet.service, device, release, False, "x").paused
    for device in fleet.devices[5:19]:
        assert rollouts.offer_for(fleet.service, device, 1) is not None
    # the 20th offer would make 5/20 = 25 % over the minimum sample: the rollout pauses instead
    assert rollouts.offer_for(fleet.service, fleet.devices[19], 1) is None
    assert rollouts.get_rollout(fleet.service, view.id).state is RolloutState.PAUSED


def test_a_retry_that_succeeds_replaces_the_failure(fleet: Fleet) -> None:
    add_devices(fleet, 1)
    release = add_release(fleet, "1.1.0+0", 2)
    view = rollouts.start_rollout(fleet.service, release, actor=OPERATOR, stages=ONE_STAGE)
    device = fleet.devices[0]
    assert rollouts.offer_for(fleet.service, device, 1) is not None
    rollouts.record_install_result(fleet.service, device, release, False, "power lost\x00 during \n swap")
    rollouts.record_install_result(fleet.service, device, str(release), True)
    status = rollouts.get_rollout(fleet.service, view.id)
    assert (status.succeeded, status.failed) == (1, 0)
    with fleet.service.store.transaction() as session:
        details = session.scalars(select(InstallResult.detail).order_by(InstallResult.id)).all()
        offer = session.scalars(select(RolloutOffer)).one()
    assert details == ["power lost  during   swap", None]
    assert offer.result == "ok"
    assert rollouts.offer_for(fleet.service, device, 2) is None  # reported: not offered again


def test_check_in_results_are_matched_to_releases(fleet: Fleet) -> None:
    add_devices(fleet, 1)
    release = add_release(fleet, "1.1.0+0", 2)
    view = rollouts.start_rollout(fleet.service, release, actor=OPERATOR, stages=ONE_STAGE)
    device = fleet.devices[0]
    rollouts.offer_for(fleet.service, device, 1)
    recorded = rollouts.record_install_results(
        fleet.service,
        device,
        [
            {"version": "1.1.0+0", "security_counter": 2, "status": "rolled_back", "error": "watchdog"},
            {"version": "9.9.9+0", "security_counter": 9, "status": "installed", "error": None},
        ],
    )
    assert recorded == [rollouts.InstallRecorded(rollout_id=view.id, paused=False)]
    with fleet.service.store.transaction() as session:
        assert session.scalars(select(InstallResult.detail)).all() == ["rolled_back: watchdog"]


def test_a_result_without_an_offer_is_kept_but_counts_for_no_rollout(fleet: Fleet) -> None:
    add_devices(fleet, 1)
    release = add_release(fleet, "1.1.0+0", 2)
    assert rollouts.record_install_result(fleet.service, fleet.devices[0], release, True) == rollouts.InstallRecorded(
        None, False
    )
    with pytest.raises(rollouts.NotFound):
        rollouts.record_install_result(fleet.service, fleet.devices[0], 999, True)


# --- operator actions ------------------------------------------------------------------------------


def test_abort_is_final(fleet: Fleet) -> None:
    add_devices(fleet, 5)
    view = rollouts.start_rollout(fleet.service, add_release(fleet, "1.1.0+0", 2), actor=OPERATOR, stages=ONE_STAGE)
    rollouts.pause_rollout(fleet.service, view.id, actor=OPERATOR, reason="calls")
    aborted = rollouts.abort_rollout(fleet.service, view.id, actor=OPERATOR, reason="boot loop on rev B")
    assert aborted.state is RolloutState.ABORTED and aborted.reason == "boot loop on rev B"
    assert offers(fleet) == {}
    for action in (rollouts.resume_rollout, rollouts.pause_rollout, rollouts.abort_rollout, rollouts.advance_rollout):
        with pytest.raises(StateError, match="is aborted cannot"):
            action(fleet.service, view.id, actor=OPERATOR)
    assert [a for _, a, _ in audit(fleet)] == ["started", "paused", "aborted"]


def test_a_new_rollout_supersedes_the_old_one(fleet: Fleet) -> None:
    add_devices(fleet, 5)
    old = rollouts.start_rollout(fleet.service, add_release(fleet, "1.1.0+0", 2), actor=OPERATOR)
    new = rollouts.start_rollout(fleet.service, add_release(fleet, "1.2.0+0", 3), actor=OPERATOR)
    assert rollouts.get_rollout(fleet.service, old.id).state is RolloutState.SUPERSEDED
    assert [v.id for v in rollouts.list_rollouts(fleet.service, active_only=True)] == [new.id]
    assert [v.id for v in rollouts.list_rollouts(fleet.service)] == [new.id, old.id]
    assert [v.version for v in rollouts.list_releases(fleet.service)] == ["1.2.0+0", "1.1.0+0"]
    assert [(s, a) for s, a, _ in audit(fleet)] == [
        (f"rollout/{old.id}", "started"),
        (f"rollout/{old.id}", "superseded"),
        (f"rollout/{new.id}", "started"),
    ]


def test_unknown_ids(fleet: Fleet) -> None:
    with pytest.raises(rollouts.NotFound, match="no release 42"):
        rollouts.start_rollout(fleet.service, 42, actor=OPERATOR)
    with pytest.raises(rollouts.NotFound, match="no rollout 42"):
        rollouts.pause_rollout(fleet.service, 42, actor=OPERATOR)


def test_the_audit_chain_verifies(fleet: Fleet) -> None:
    add_devices(fleet, 2)
    view = rollouts.start_rollout(fleet.service, add_release(fleet, "1.1.0+0", 2), actor=OPERATOR)
    rollouts.pause_rollout(fleet.service, view.id, actor=OPERATOR)
    report = audit_log(fleet.service).verify({})
    assert report.records == 2


# --- the operator API ------------------------------------------------------------------------------


class Api:
    """A synchronous client of an ASGI application, in process (httpx's ASGITransport under anyio)."""

    def __init__(self, app: FastAPI, tokens: dict[str, str] | None = None) -> None:
        self._app = app
        self._tokens = tokens or {}

    def auth(self, name: str) -> dict[str, str]:
        """Authorization header of the operator token made for ``name`` (any other name is sent as is)."""
        return {"Authorization": f"Bearer {self._tokens.get(name, name)}"}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self._app)
            async with httpx.AsyncClient(transport=transport, base_url="http://fleet.test") as client:
                return await client.request(method, path, **kwargs)

        return anyio.run(go)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)


def _app(fleet: Fleet) -> FastAPI:
    app = FastAPI()
    app.state.fleet = fleet.service
    app.include_router(releases_api.router)
    return app


@pytest.fixture
def api(fleet: Fleet) -> Api:
    from trustroot.fleet.operators import add_operator

    tokens = {
        "tok-release": add_operator(fleet.service, "alice", "release", actor="test").token,
        "tok-devices": add_operator(fleet.service, "bob", "read", actor="test").token,
    }
    return Api(_app(fleet), tokens)


@pytest.mark.parametrize("store_backend", ["sqlite"], indirect=True)
def test_operator_routes(api: Api, fleet: Fleet) -> None:
    add_devices(fleet, 3)
    release = add_release(fleet, "1.1.0+0", 2)
    good = api.auth("tok-release")
    assert api.get("/api/v1/releases").status_code == 401
    assert api.get("/api/v1/releases", headers=api.auth("nope")).status_code == 401
    assert api.get("/api/v1/releases", headers=api.auth("tok-devices")).status_code == 403
    listed = api.get("/api/v1/releases", headers=good)
    assert listed.status_code == 200 and listed.json()[0]["version"] == "1.1.0+0"
    started = api.post("/api/v1/rollouts", json={"release_id": release}, headers=good)
    assert started.status_code == 201, started.text
    rollout = started.json()
    assert rollout["state"] == "active" and rollout["stage"] == 1 and rollout["created_by"] == "operator:alice"
    path = f"/api/v1/rollouts/{rollout['id']}"
    assert api.post(f"{path}/pause", json={"reason": "calls"}, headers=good).json()["state"] == "paused"
    assert api.post(f"{path}/pause", headers=good).status_code == 409
    assert api.post(f"{path}/resume", headers=good).json()["state"] == "active"
    assert api.post(f"{path}/advance", headers=good).json()["percent"] == 10
    assert api.post(f"{path}/abort", headers=good).json()["state"] == "aborted"
    assert api.get(path, headers=good).json()["state"] == "aborted"
    assert api.get("/api/v1/rollouts?active=true", headers=good).json() == []
    assert api.get("/api/v1/rollouts/999", headers=good).status_code == 404
    assert api.post("/api/v1/rollouts", json={"release_id": 999}, headers=good).status_code == 404
    assert api.post("/api/v1/rollouts", json={"release_id": 0}, headers=good).status_code == 422
    assert api.post("/api/v1/rollouts", json={"release_id": release, "x": 1}, headers=good).status_code == 422
    assert audit(fleet)[0][2] == "operator:alice"


@pytest.mark.parametrize("store_backend", ["sqlite"], indirect=True)
def test_operator_routes_deny_by_default(fleet: Fleet) -> None:
    unknown = {"Authorization": "Bearer tr_not-a-real-token"}
    assert Api(_app(fleet)).get("/api/v1/rollouts", headers=unknown).status_code == 401


def test_counts_stay_consistent(fleet: Fleet) -> None:
    add_devices(fleet, 30)
    release = add_release(fleet, "1.1.0+0", 2)
    view = rollouts.start_rollout(fleet.service, release, actor=OPERATOR, stages=ONE_STAGE)
    offered = [d for d in fleet.devices if rollouts.offer_for(fleet.service, d, 0) is not None]
    for device in offered:
        rollouts.record_install_result(fleet.service, device, release, True)
    with fleet.service.store.transaction() as session:
        rows = session.scalar(select(func.count()).select_from(RolloutOffer))
    status = rollouts.get_rollout(fleet.service, view.id)
    assert rows == status.offered == status.succeeded == len(offered) == 30
