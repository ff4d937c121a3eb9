"""Staged rollouts: which device is offered which release, when, and when a rollout stops by itself.

A rollout takes one published release to one channel (optionally one device group) in the stages
of the Security Context (``[update] rollout_stages``, e.g. 1 %, 10 %, 50 %, 100 %)::

    start ─► ACTIVE ──pause / failures──► PAUSED ──resume──► ACTIVE
               │  ╲                          │
               │   advance (operator, or time: stage's min_hours passed)
               │                             │
               └──abort──► ABORTED ◄──abort──┘          a newer rollout on the same channel
                                                        and group: ─► SUPERSEDED
    (ABORTED and SUPERSEDED are final; an action not drawn here is refused with StateError)

**Cohorts.** A device belongs to a stage's cohort when ``cohort_fraction(rollout, serial) * 100 <
percent``: the fraction is the first 64 bits of SHA-256 over the rollout id and the serial, so it is
stable (a device offered at 1 % stays offered at 10 %), independent between rollouts (the same
devices are not always first) and proportional (a stage of p % reaches p % of the devices).

**Offers.** :func:`offer_for` (called by the device check-in) offers the newest matching release
of an ACTIVE rollout if the device is in the current cohort, has not reported a result for it,
does not already run it, and **never** if the release's security counter is below the counter the
device reports. An offer is recorded once per device and rollout; a repeated check-in gets the same
offer back until the device reports.

**Automatic pause.** :func:`record_install_result` counts results. A rollout pauses itself when, over
the devices offered since it started (or was last resumed), ``failed / offered >= failure_pause_threshold``
— judged only once at least ``min_sample`` devices were offered (:data:`DEFAULT_MIN_SAMPLE`, 20), so
one early failure cannot stop a rollout, and checked both when a failure arrives and when a new offer
would bring the sample to the minimum.

**Evidence.** Every state change (started, advanced, paused, resumed, aborted, superseded) appends a
``rollout.changed`` record to the service's audit chain, in the same transaction as the change.
Operator actions name the operator; automatic ones the ``service``.

Errors::

    NotFound (UsageError)   no release or rollout with that id
    StateError              an action the rollout's state does not allow
    UsageError              a malformed counter, release id or stage table
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, cast

from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from trustroot.context.schema import RolloutStage
from trustroot.errors import RolloutNotFound as NotFound
from trustroot.errors import StateError, UsageError
from trustroot.fleet.releases.models import InstallOutcome, InstallResult, Release, Rollout, RolloutOffer, RolloutState
from trustroot.fleet.store._locks import lock_key, serialize_writers
from trustroot.fleet.store.audit import SERVICE_ACTOR, record
from trustroot.fleet.store.models import Device, DeviceStatus

if TYPE_CHECKING:
    from trustroot.fleet.service import FleetService

__all__ = [
    "DEFAULT_MIN_SAMPLE",
    "MAX_DETAIL_CHARS",
    "InstallRecorded",
    "NotFound",
    "ReleaseView",
    "RolloutView",
    "abort_rollout",
    "advance_due",
    "advance_rollout",
    "cohort_fraction",
    "failure_share",
    "get_rollout",
    "in_cohort",
    "list_releases",
    "list_rollouts",
    "may_offer",
    "next_state",
    "offer_for",
    "pause_rollout",
    "record_install_result",
    "record_install_results",
    "resume_rollout",
    "should_pause",
    "stage_due",
    "start_rollout",
]

#: Devices that must have been offered a rollout before its failure share is judged.
DEFAULT_MIN_SAMPLE: Final = 20
#: Longest install-result detail kept (longer ones are cut).
MAX_DETAIL_CHARS: Final = 1024
_COHORT_LABEL: Final = b"trustroot.rollout-cohort/1"
_ROLLOUT_LOCK: Final = lock_key("trustroot.fleet.rollouts")
_SUBJECT: Final = "rollout/{id}"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


_log = logging.getLogger(__name__)


# --- the pure core ---------------------------------------------------------------------------------


def cohort_fraction(rollout_id: int, serial: str) -> float:
    """Where device ``serial`` stands in rollout ``rollout_id``'s order, in [0, 1): stable and uniform."""
    digest = hashlib.sha256(
        _COHORT_LABEL + b"\x00" + str(rollout_id).encode() + b"\x00" + serial.encode("utf-8")
    ).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def in_cohort(rollout_id: int, serial: str, percent: float) -> bool:
    """Whether device ``serial`` is among the first ``percent`` % of rollout ``rollout_id``."""
    return cohort_fraction(rollout_id, serial) * 100.0 < percent


def may_offer(release_counter: int, reported_counter: int) -> bool:
    """A release is never offered below the security counter the device reports (anti-rollback)."""
    return release_counter >= reported_counter


def failure_share(offered: int, failed: int) -> float:
    """Failed installs over devices offered (0 before any offer)."""
    return failed / offered if offered > 0 else 0.0


def should_pause(offered: int, failed: int, threshold: float, min_sample: int) -> bool:
    """Whether the failures pause a rollout: ``failed / offered >= threshold`` once ``offered >= min_sample``."""
    return offered >= min_sample and offered > 0 and failure_share(offered, failed) >= threshold


def stage_due(stage_started_at: datetime, min_hours: float, now: datetime) -> bool:
    """Whether a stage has lasted its minimum time (so the next stage may begin)."""
    return now - stage_started_at >= timedelta(hours=min_hours)


#: action -> (states it is allowed in, state after it).
_TRANSITIONS: Final[dict[str, tuple[frozenset[RolloutState], RolloutState]]] = {
    "pause": (frozenset({RolloutState.ACTIVE}), RolloutState.PAUSED),
    "resume": (frozenset({RolloutState.PAUSED}), RolloutState.ACTIVE),
    "abort": (frozenset({RolloutState.ACTIVE, RolloutState.PAUSED}), RolloutState.ABORTED),
    "advance": (frozenset({RolloutState.ACTIVE}), RolloutState.ACTIVE),
    "supersede": (frozenset({RolloutState.ACTIVE, RolloutState.PAUSED}), RolloutState.SUPERSEDED),
}


#: action -> its past participle (what the audit record and the errors say).
_DONE: Final[dict[str, str]] = {
    "pause": "paused",
    "resume": "resumed",
    "abort": "aborted",
    "advance": "advanced",
    "supersede": "superseded",
}


def next_state(state: RolloutState, action: str) -> RolloutState:
    """The state after ``action``; :class:`StateError` when the state does not allow it."""
    allowed, after = _TRANSITIONS[action]
    if state not in allowed:
        raise StateError(
            f"a rollout that is {state.value} cannot be {_DONE[action]}",
            hint="see 'trustroot rollout status' for what it can do now",
        )
    return after


# --- views -----------------------------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment is not None else None


@dataclass(frozen=True)
class ReleaseView:
    """A published release as operators see it."""

    id: int
    channel: str
    name: str
    version: str
    security_counter: int
    sha256: str
    size: int
    target_path: str
    published_at: datetime
    published_by: str
    support_period_end: str | None

    @classmethod
    def of(cls, row: Release) -> ReleaseView:
        return cls(
            id=row.id,
            channel=row.channel,
            name=row.name,
            version=row.version,
            security_counter=row.security_counter,
            sha256=row.sha256,
            size=row.size,
            target_path=row.target_path,
            published_at=row.published_at,
            published_by=row.published_by,
            support_period_end=row.support_period_end,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "channel": self.channel,
            "name": self.name,
            "version": self.version,
            "security_counter": self.security_counter,
            "sha256": self.sha256,
            "size": self.size,
            "target_path": self.target_path,
            "published_at": _iso(self.published_at),
            "published_by": self.published_by,
            "support_period_end": self.support_period_end,
        }


@dataclass(frozen=True)
class RolloutView:
    """A rollout as operators see it: state, stage, counts and the failure share of the current window."""

    id: int
    release: ReleaseView
    channel: str
    group: str | None
    state: RolloutState
    stage_index: int
    stages: tuple[RolloutStage, ...]
    stage_started_at: datetime
    offered: int
    succeeded: int
    failed: int
    window_offered: int
    window_failed: int
    failure_threshold: float
    min_sample: int
    reason: str | None
    created_at: datetime
    created_by: str
    updated_at: datetime

    @property
    def percent(self) -> float:
        return self.stages[self.stage_index].percent

    @property
    def failure_share(self) -> float:
        return failure_share(self.window_offered, self.window_failed)

    @property
    def next_stage_at(self) -> datetime | None:
        """When the next stage begins by time (``None`` at the last stage or when not active)."""
        if self.state is not RolloutState.ACTIVE or self.stage_index + 1 >= len(self.stages):
            return None
        return self.stage_started_at + timedelta(hours=self.stages[self.stage_index].min_hours)

    @classmethod
    def of(cls, row: Rollout, release: Release) -> RolloutView:
        return cls(
            id=row.id,
            release=ReleaseView.of(release),
            channel=row.channel,
            group=row.group_name,
            state=RolloutState(row.state),
            stage_index=row.stage_index,
            stages=_stages(row.stages),
            stage_started_at=row.stage_started_at,
            offered=row.offered_count,
            succeeded=row.succeeded_count,
            failed=row.failed_count,
            window_offered=row.offered_count - row.window_offered_base,
            window_failed=row.failed_count - row.window_failed_base,
            failure_threshold=row.failure_threshold,
            min_sample=row.min_sample,
            reason=row.reason,
            created_at=row.created_at,
            created_by=row.created_by,
            updated_at=row.updated_at,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "release": self.release.as_dict(),
            "channel": self.channel,
            "group": self.group,
            "state": self.state.value,
            "stage": self.stage_index + 1,
            "stages": [{"percent": s.percent, "min_hours": s.min_hours} for s in self.stages],
            "percent": self.percent,
            "stage_started_at": _iso(self.stage_started_at),
            "next_stage_at": _iso(self.next_stage_at),
            "offered": self.offered,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "failure_share": round(self.failure_share, 6),
            "failure_threshold": self.failure_threshold,
            "min_sample": self.min_sample,
            "reason": self.reason,
            "created_at": _iso(self.created_at),
            "created_by": self.created_by,
            "updated_at": _iso(self.updated_at),
        }


@dataclass(frozen=True)
class InstallRecorded:
    """What :func:`record_install_result` did: the rollout it counted for, and whether it paused it."""

    rollout_id: int | None
    paused: bool


def _stages(raw: Sequence[dict[str, Any]]) -> tuple[RolloutStage, ...]:
    return tuple(RolloutStage.model_validate(item, strict=False) for item in raw)


# --- inside ----------------------------------------------------------------------------------------


def _now(service: FleetService) -> datetime:
    now = service.clock()
    if now.tzinfo is None:
        raise UsageError("the fleet service clock must give timezone-aware times")
    return now.astimezone(UTC)


def _counter(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value <= 0xFFFFFFFF:
        raise UsageError(f"{what} {value!r}: must be a security counter 0..4294967295")
    return value


def _release_id(value: object) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if type(value) is not int or value < 1:
        raise UsageError(f"release id {value!r}: must be a positive integer")
    return value


def _clean_detail(detail: object) -> str | None:
    if detail is None:
        return None
    text = unicodedata.normalize("NFC", str(detail))
    text = _CONTROL.sub(" ", text).strip()
    return text[:MAX_DETAIL_CHARS] or None


def _load(session: Session, rollout_id: int, *, lock: bool = False) -> tuple[Rollout, Release]:
    if lock:
        serialize_writers(session.connection(), _ROLLOUT_LOCK)
    found = session.execute(
        select(Rollout, Release).join(Release, Rollout.release_id == Release.id).where(Rollout.id == rollout_id)
    ).one_or_none()
    if found is None:
        raise NotFound(f"no rollout {rollout_id}")
    return found[0], found[1]


def _audit(
    service: FleetService,
    session: Session,
    rollout: Rollout,
    release: Release,
    *,
    action: str,
    actor: str,
    before: str | None,
) -> None:
    data: dict[str, object] = {
        "rollout": rollout.id,
        "release": release.id,
        "version": release.version,
        "security_counter": release.security_counter,
        "channel": rollout.channel,
        "group": rollout.group_name,
        "action": action,
        "from_state": before,
        "state": rollout.state,
        "stage": rollout.stage_index + 1,
        "percent": f"{_stages(rollout.stages)[rollout.stage_index].percent:g}",  # evidence has no floats
        "offered": rollout.offered_count,
        "succeeded": rollout.succeeded_count,
        "failed": rollout.failed_count,
        "reason": rollout.reason,
    }
    record(service, "rollout.changed", _SUBJECT.format(id=rollout.id), data, actor, session=session)


def _cas(session: Session, rollout: Rollout, values: dict[str, Any]) -> bool:
    """Update ``rollout`` only if its state and stage are still what we read; refresh it. True if we won."""
    result = cast(
        CursorResult[Any],
        session.execute(
            update(Rollout)
            .where(
                Rollout.id == rollout.id,
                Rollout.state == rollout.state,
                Rollout.stage_index == rollout.stage_index,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        ),
    )
    session.refresh(rollout)
    return result.rowcount == 1


def _change(
    service: FleetService,
    session: Session,
    rollout: Rollout,
    release: Release,
    *,
    action: str,
    actor: str,
    now: datetime,
    reason: str | None = None,
) -> bool:
    """Apply ``action`` to ``rollout`` (compare-and-set) and audit it; False if another writer got there first."""
    before = RolloutState(rollout.state)
    after = next_state(before, action)
    values: dict[str, Any] = {"state": after.value, "updated_at": now}
    if reason is not None or action in ("resume", "advance"):
        values["reason"] = reason
    if action == "advance":
        if rollout.stage_index + 1 >= len(rollout.stages):
            raise StateError(
                f"rollout {rollout.id} is at its last stage already ({_stages(rollout.stages)[-1].percent:g} %)"
            )
        values["stage_index"] = rollout.stage_index + 1
        values["stage_started_at"] = now
    if action == "resume":
        # The failure window restarts: the rollout is judged on what happens after the resume.
        values["window_offered_base"] = rollout.offered_count
        values["window_failed_base"] = rollout.failed_count
        values["stage_started_at"] = now
    if not _cas(session, rollout, values):
        return False
    _audit(service, session, rollout, release, action=_DONE[action], actor=actor, before=before.value)
    return True


def _advance_if_due(service: FleetService, session: Session, rollout: Rollout, release: Release, now: datetime) -> None:
    stages = _stages(rollout.stages)
    if (
        rollout.state == RolloutState.ACTIVE
        and rollout.stage_index + 1 < len(stages)
        and stage_due(rollout.stage_started_at, stages[rollout.stage_index].min_hours, now)
    ):
        _change(
            service,
            session,
            rollout,
            release,
            action="advance",
            actor=SERVICE_ACTOR,
            now=now,
            reason="stage time passed",
        )


def _maybe_pause(
    service: FleetService,
    session: Session,
    rollout: Rollout,
    release: Release,
    now: datetime,
    *,
    offered: int,
    failed: int,
) -> bool:
    if rollout.state != RolloutState.ACTIVE or not should_pause(
        offered, failed, rollout.failure_threshold, rollout.min_sample
    ):
        return False
    share = failure_share(offered, failed)
    reason = (
        f"automatic: {failed} of {offered} devices offered reported a failed install "
        f"({share:.1%} >= {rollout.failure_threshold:.1%})"
    )
    return _change(service, session, rollout, release, action="pause", actor=SERVICE_ACTOR, now=now, reason=reason)


# --- operator actions ------------------------------------------------------------------------------


def start_rollout(
    service: FleetService,
    release_id: int | str,
    *,
    actor: str,
    group: str | None = None,
    stages: Sequence[RolloutStage] | None = None,
    min_sample: int = DEFAULT_MIN_SAMPLE,
) -> RolloutView:
    """Start a staged rollout of a release to its channel (and ``group``, if given).

    Stages and the failure threshold come from the Security Context unless ``stages`` is given.
    An ACTIVE or PAUSED rollout on the same channel and group is superseded.
    """
    number = _release_id(release_id)
    chosen = tuple(stages) if stages is not None else tuple(service.context.update.rollout_stages)
    if not chosen or chosen[-1].percent != 100 or [s.percent for s in chosen] != sorted(s.percent for s in chosen):
        raise UsageError("rollout stages must rise and end at 100 percent")
    if min_sample < 1:
        raise UsageError(f"min_sample {min_sample}: must be at least 1")
    if group is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", group):
        raise UsageError(f"device group {group!r}: use 1 to 64 letters, digits, '.', '_', '-'")
    now = _now(service)
    with service.store.transaction() as session:
        serialize_writers(session.connection(), _ROLLOUT_LOCK)
        release = session.get(Release, number)
        if release is None:
            raise NotFound(f"no release {number}", hint="list them with: trustroot release list")
        same_scope = Rollout.group_name.is_(None) if group is None else Rollout.group_name == group
        older = session.execute(
            select(Rollout, Release)
            .join(Release, Rollout.release_id == Release.id)
            .where(
                Rollout.channel == release.channel,
                same_scope,
                Rollout.state.in_([RolloutState.ACTIVE.value, RolloutState.PAUSED.value]),
            )
        ).all()
        for old, old_release in older:
            why = f"superseded by {release.version}"
            _change(service, session, old, old_release, action="supersede", actor=actor, now=now, reason=why)
        rollout = Rollout(
            release_id=release.id,
            channel=release.channel,
            group_name=group,
            state=RolloutState.ACTIVE.value,
            stages=[{"percent": s.percent, "min_hours": s.min_hours} for s in chosen],
            stage_index=0,
            stage_started_at=now,
            failure_threshold=service.context.update.failure_pause_threshold,
            min_sample=min_sample,
            offered_count=0,
            succeeded_count=0,
            failed_count=0,
            window_offered_base=0,
            window_failed_base=0,
            reason=None,
            created_at=now,
            created_by=actor,
            updated_at=now,
        )
        session.add(rollout)
        session.flush()
        _audit(service, session, rollout, release, action="started", actor=actor, before=None)
        return RolloutView.of(rollout, release)


def _operator(service: FleetService, rollout_id: int, action: str, actor: str, reason: str | None) -> RolloutView:
    now = _now(service)
    with service.store.transaction() as session:
        rollout, release = _load(session, rollout_id, lock=True)
        # Automatic changes (a time advance, a failure pause) do not take the rollout lock; if one
        # lands between our read and our write, read again and decide on the new state.
        for _attempt in range(5):
            if _change(service, session, rollout, release, action=action, actor=actor, now=now, reason=reason):
                return RolloutView.of(rollout, release)
        raise StateError(f"rollout {rollout_id} keeps changing under the {action}; try again")


def pause_rollout(service: FleetService, rollout_id: int, *, actor: str, reason: str | None = None) -> RolloutView:
    """Pause an ACTIVE rollout: no new device is offered its release until it is resumed."""
    return _operator(service, rollout_id, "pause", actor, reason or "paused by an operator")


def resume_rollout(service: FleetService, rollout_id: int, *, actor: str) -> RolloutView:
    """Resume a PAUSED rollout; its failure window and its stage's minimum time start again."""
    return _operator(service, rollout_id, "resume", actor, None)


def abort_rollout(service: FleetService, rollout_id: int, *, actor: str, reason: str | None = None) -> RolloutView:
    """Stop a rollout for good: its release is offered to no device again."""
    return _operator(service, rollout_id, "abort", actor, reason or "aborted by an operator")


def advance_rollout(service: FleetService, rollout_id: int, *, actor: str) -> RolloutView:
    """Move an ACTIVE rollout to its next stage now, whatever its minimum time."""
    return _operator(service, rollout_id, "advance", actor, "advanced by an operator")


def advance_due(service: FleetService) -> list[RolloutView]:
    """Advance every ACTIVE rollout whose stage has lasted its minimum time (call it periodically)."""
    now = _now(service)
    advanced: list[RolloutView] = []
    with service.store.transaction() as session:
        rows = session.execute(
            select(Rollout, Release)
            .join(Release, Rollout.release_id == Release.id)
            .where(Rollout.state == RolloutState.ACTIVE.value)
        ).all()
        for rollout, release in rows:
            before = rollout.stage_index
            _advance_if_due(service, session, rollout, release, now)
            if rollout.stage_index != before:
                advanced.append(RolloutView.of(rollout, release))
    return advanced


# --- reading ---------------------------------------------------------------------------------------


def get_rollout(service: FleetService, rollout_id: int) -> RolloutView:
    with service.store.transaction() as session:
        rollout, release = _load(session, rollout_id)
        return RolloutView.of(rollout, release)


def list_rollouts(service: FleetService, *, channel: str | None = None, active_only: bool = False) -> list[RolloutView]:
    """Rollouts, newest first (only ACTIVE and PAUSED ones with ``active_only``)."""
    query = select(Rollout, Release).join(Release, Rollout.release_id == Release.id).order_by(Rollout.id.desc())
    if channel is not None:
        query = query.where(Rollout.channel == channel)
    if active_only:
        query = query.where(Rollout.state.in_([RolloutState.ACTIVE.value, RolloutState.PAUSED.value]))
    with service.store.transaction() as session:
        return [RolloutView.of(rollout, release) for rollout, release in session.execute(query).all()]


def list_releases(service: FleetService, *, channel: str | None = None) -> list[ReleaseView]:
    """Published releases, newest first."""
    query = select(Release).order_by(Release.published_at.desc(), Release.id.desc())
    if channel is not None:
        query = query.where(Release.channel == channel)
    with service.store.transaction() as session:
        return [ReleaseView.of(row) for row in session.scalars(query).all()]


# --- device side (called by the check-in routes) ---------------------------------------------------


def _offer(service: FleetService, rollout: Rollout, release: Release) -> dict[str, Any]:
    return {
        "rollout_id": rollout.id,
        "release_id": release.id,
        "channel": release.channel,
        "version": release.version,
        "security_counter": release.security_counter,
        "target_path": release.target_path,
        "sha256": release.sha256,
        "length": release.size,
        "tuf": {"metadata": "/tuf/metadata/", "targets": "/tuf/targets/"},
        "download_deadline_s": service.context.update.download_deadline_s,
        "support_period_end": release.support_period_end,
    }


def _insert_offer(session: Session, rollout: Rollout, device: Device, counter: int, now: datetime) -> bool:
    """Insert the offer unless one exists (INSERT ... ON CONFLICT DO NOTHING); True if this call made it."""
    values = {
        "rollout_id": rollout.id,
        "device_id": device.id,
        "stage_index": rollout.stage_index,
        "offered_at": now,
        "reported_counter": counter,
        "result": None,
        "result_at": None,
    }
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = (
        insert(RolloutOffer)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["rollout_id", "device_id"])
        .returning(RolloutOffer.id)
    )
    return session.execute(statement).first() is not None


def offer_for(service: FleetService, device: Device, reported_counter: int) -> dict[str, Any] | None:
    """The release to offer ``device`` at this check-in, or ``None``.

    ``reported_counter`` is the security counter the device reports running; a release below it is
    never offered. The offer names the TUF target; the device fetches and verifies it through TUF
    (the offer itself is not trusted for integrity).
    """
    counter = _counter(reported_counter, "reported security counter")
    if device.status != DeviceStatus.ACTIVE.value:
        return None
    now = _now(service)
    with service.store.transaction() as session:
        candidates = session.execute(
            select(Rollout, Release)
            .join(Release, Rollout.release_id == Release.id)
            .where(
                Rollout.channel == device.channel,
                Rollout.state == RolloutState.ACTIVE.value,
                or_(Rollout.group_name.is_(None), Rollout.group_name == device.group_name),
            )
            .order_by(Release.security_counter.desc(), Rollout.id.desc())
        ).all()
        for rollout, release in candidates:
            _advance_if_due(service, session, rollout, release, now)
            if rollout.state != RolloutState.ACTIVE.value or not may_offer(release.security_counter, counter):
                continue
            if device.reported_version is not None and device.reported_version == release.version:
                continue
            offer = session.scalar(
                select(RolloutOffer).where(RolloutOffer.rollout_id == rollout.id, RolloutOffer.device_id == device.id)
            )
            if offer is not None:
                if offer.result is None:
                    return _offer(service, rollout, release)
                continue
            if not in_cohort(rollout.id, device.serial, _stages(rollout.stages)[rollout.stage_index].percent):
                continue
            offered = rollout.offered_count - rollout.window_offered_base + 1
            failed = rollout.failed_count - rollout.window_failed_base
            if _maybe_pause(service, session, rollout, release, now, offered=offered, failed=failed):
                continue
            if not _insert_offer(session, rollout, device, counter, now):
                # the same device checked in twice at once: the other check-in made the offer
                return _offer(service, rollout, release)
            session.execute(
                update(Rollout)
                .where(Rollout.id == rollout.id)
                .values(offered_count=Rollout.offered_count + 1)
                .execution_options(synchronize_session=False)
            )
            return _offer(service, rollout, release)
    return None


def record_install_result(
    service: FleetService,
    device: Device,
    release_id: int | str,
    ok: bool,
    detail: str | None = None,
) -> InstallRecorded:
    """Record a device's install result for a release; pause its rollout if failures pass the threshold.

    The result counts for the latest rollout that offered ``device`` the release; a second report
    replaces the first in the counts (a retry that succeeded). Every report is kept in
    ``install_results``.
    """
    number = _release_id(release_id)
    if type(ok) is not bool:
        raise UsageError(f"install result {ok!r}: must be true or false")
    text = _clean_detail(detail)
    now = _now(service)
    outcome = InstallOutcome.OK if ok else InstallOutcome.FAILED
    with service.store.transaction() as session:
        release = session.get(Release, number)
        if release is None:
            raise NotFound(f"no release {number}")
        found = session.execute(
            select(RolloutOffer, Rollout)
            .join(Rollout, RolloutOffer.rollout_id == Rollout.id)
            .where(RolloutOffer.device_id == device.id, Rollout.release_id == number)
            .order_by(RolloutOffer.offered_at.desc(), RolloutOffer.id.desc())
            .limit(1)
        ).one_or_none()
        session.add(
            InstallResult(
                device_id=device.id,
                release_id=number,
                rollout_id=found[1].id if found else None,
                ok=ok,
                detail=text,
                reported_at=now,
            )
        )
        if found is None:
            return InstallRecorded(rollout_id=None, paused=False)
        offer, rollout = found
        if offer.result == outcome.value:
            return InstallRecorded(rollout_id=rollout.id, paused=False)
        succeeded = (1 if ok else 0) - (1 if offer.result == InstallOutcome.OK.value else 0)
        failed = (0 if ok else 1) - (1 if offer.result == InstallOutcome.FAILED.value else 0)
        offer.result = outcome.value
        offer.result_at = now
        session.execute(
            update(Rollout)
            .where(Rollout.id == rollout.id)
            .values(
                succeeded_count=Rollout.succeeded_count + succeeded,
                failed_count=Rollout.failed_count + failed,
            )
            .execution_options(synchronize_session=False)
        )
        session.refresh(rollout)
        paused = False
        if not ok:
            paused = _maybe_pause(
                service,
                session,
                rollout,
                release,
                now,
                offered=rollout.offered_count - rollout.window_offered_base,
                failed=rollout.failed_count - rollout.window_failed_base,
            )
        return InstallRecorded(rollout_id=rollout.id, paused=paused)


#: Check-in install statuses (``trustroot.fleet.checkin.InstallResult.status``) that count as a success.
_INSTALLED: Final = "installed"


def record_install_results(
    service: FleetService, device: Device, results: Sequence[Mapping[str, Any]]
) -> list[InstallRecorded]:
    """Record the install results of one check-in (``{"version", "security_counter", "status", "error"}``).

    Each names its release by version (and security counter) on the device's channel; ``installed``
    is a success, every other status (``failed``, ``rolled_back``, ``rejected``) a failure. A result
    for a release this fleet never published is logged and skipped.
    """
    recorded: list[InstallRecorded] = []
    for item in results:
        version, counter, status = item.get("version"), item.get("security_counter"), item.get("status")
        if not isinstance(version, str) or not isinstance(status, str):
            raise UsageError(f"install result {dict(item)!r}: needs a version and a status")
        with service.store.transaction() as session:
            candidates = session.scalars(
                select(Release).where(Release.version == version).order_by((Release.channel == device.channel).desc())
            ).all()
            release_id = next(
                (row.id for row in candidates if counter is None or row.security_counter == counter), None
            )
        if release_id is None:
            _log.info("device %s reports an install of %s, which this fleet did not publish", device.serial, version)
            continue
        error = item.get("error")
        detail = status if status == _INSTALLED else f"{status}: {error}" if error else status
        recorded.append(record_install_result(service, device, release_id, status == _INSTALLED, detail))
    return recorded
