"""Device check-in: what a device reports, what the service answers, and what is remembered.

A device checks in every ``[update].checkin_interval_s`` plus a random jitter (guideline 9: a fleet
that comes back after an outage does not arrive all at once). The request (:class:`CheckinRequest`)
carries the running firmware version, its MCUboot security counter, the results of installs since
the last check-in and a few health metrics; every field is typed and bounded (guideline 13).

The answer (:class:`CheckinResponse`)::

    next_checkin_in_s   interval + a jitter drawn uniformly from [update].checkin_jitter_s
    offer               the image to install, from trustroot.fleet.rollouts.offer_for(service,
                        device, reported_counter), or None; install results go to
                        trustroot.fleet.rollouts.record_install_results first
    commands            commands queued for the device (device_commands), delivered until the
                        device acknowledges them; ids let it ignore a repeat
    support_period_end  the product's declared support period end (5.3-13)
    end_of_life         after that date, on every check-in: "support ended on <date>" (5.3-13)

Stored per device (store models, ``devices``): last check-in time, version, security counter and
health. A security counter lower than the one stored before means the device runs older firmware
than it did: a rollback; it is kept as a critical alert.

Two paths, one answer (:func:`check_in_async`, what the route calls)::

    group commit    the report alone is stored by the process's writer thread, many check-ins in one
                    transaction (:mod:`trustroot.fleet.checkin_writer`); taken when the device sends
                    no install results and has no command queued and no active rollout for its
                    channel and group (so no offer is possible)
    full path       :func:`check_in` in a worker thread, its own transactions: install results,
                    commands, the rollout engine's offer, the rollback alert, and the refusal (401,
                    naming 5.5-1) of a device revoked or removed in the store since its connection
                    was authenticated
"""

from __future__ import annotations

import functools
import logging
import random
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Final, Literal

import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from trustroot.context.schema import SecurityContext, Update
from trustroot.errors import StateError
from trustroot.fleet import rollouts
from trustroot.fleet.auth import DeviceAuthError, DeviceIdentity
from trustroot.fleet.checkin_writer import CheckinWrite, checkin_writer
from trustroot.fleet.service import FleetService
from trustroot.fleet.store.models import Alert, AlertSeverity, CommandState, Device, DeviceCommand, DeviceStatus

__all__ = [
    "MAX_COMMANDS_PER_CHECKIN",
    "CheckinRequest",
    "CheckinResponse",
    "EndOfLifeNotice",
    "Health",
    "InstallResult",
    "QueuedCommand",
    "check_in",
    "check_in_async",
    "checkin_rng",
    "end_of_life_notice",
    "next_checkin_delay",
]

_log = logging.getLogger(__name__)

#: At most this many commands go out in one answer (the rest at the next check-in).
MAX_COMMANDS_PER_CHECKIN: Final = 16
_RNG_PART = "checkin_rng"
_MAX_COUNTER = 2**32 - 1

Version = Annotated[str, Field(pattern=r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$")]
Counter = Annotated[int, Field(ge=0, le=_MAX_COUNTER)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class InstallResult(_Strict):
    """The outcome of one update install attempt since the last check-in."""

    version: Version = Field(description="Version of the image the device tried to install.")
    security_counter: Counter = Field(description="Security counter of that image.")
    status: Literal["installed", "failed", "rolled_back", "rejected"] = Field(
        description="`installed`: confirmed and running; `failed`: did not install; `rolled_back`: the boot "
        "loader reverted it; `rejected`: the image or its metadata did not verify."
    )
    error: Annotated[str, Field(max_length=500)] | None = Field(default=None, description="What went wrong.")


class Health(_Strict):
    """A few health metrics (all optional)."""

    uptime_s: Annotated[int, Field(ge=0, le=10 * 366 * 86400)] | None = None
    boot_count: Annotated[int, Field(ge=0, le=_MAX_COUNTER)] | None = None
    cpu_percent: Annotated[float, Field(ge=0, le=100)] | None = None
    memory_percent: Annotated[float, Field(ge=0, le=100)] | None = None
    storage_free_bytes: Annotated[int, Field(ge=0, le=2**53)] | None = None
    battery_percent: Annotated[float, Field(ge=0, le=100)] | None = None
    rssi_dbm: Annotated[int, Field(ge=-150, le=0)] | None = None
    reset_reason: Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,32}$")] | None = None


class CheckinRequest(_Strict):
    """What a device reports at a check-in. Its identity comes from its certificate, never from here."""

    firmware_version: Version = Field(description="Version of the running firmware image.")
    security_counter: Counter = Field(description="MCUboot security counter of the running image.")
    install_results: list[InstallResult] = Field(default_factory=list, max_length=16)
    health: Health | None = None


class EndOfLifeNotice(_Strict):
    """Sent at every check-in after the support period (EN 303 645 provision 5.3-13)."""

    support_ended_on: date
    message: str
    provision: Literal["5.3-13"] = "5.3-13"


class QueuedCommand(_Strict):
    """A command for the device (its id is what the device acknowledges)."""

    id: int
    kind: str
    payload: dict[str, Any] | None = None


class CheckinResponse(_Strict):
    """The service's answer to a check-in."""

    device_id: str
    server_time: datetime
    next_checkin_in_s: int
    next_checkin_at: datetime
    offer: dict[str, Any] | None = None
    commands: list[QueuedCommand] = Field(default_factory=list)
    support_period_end: date | None = None
    end_of_life: EndOfLifeNotice | None = None


def next_checkin_delay(update: Update, rng: random.Random) -> int:
    """Seconds until the next check-in: the interval plus a uniform jitter in ``checkin_jitter_s``."""
    low, high = update.checkin_jitter_s
    return update.checkin_interval_s + rng.randint(low, high)


def end_of_life_notice(context: SecurityContext, today: date) -> EndOfLifeNotice | None:
    """The end-of-life notice if ``today`` is after the declared support period, else None."""
    end = context.product.support_period_end
    if end is None or today <= end:
        return None
    return EndOfLifeNotice(
        support_ended_on=end,
        message=f"support ended on {end.isoformat()}: {context.product.name} receives no more security updates",
    )


def checkin_rng(service: FleetService) -> random.Random:
    """The service's jitter RNG: ``service.parts["checkin_rng"]`` (inject a seeded one in tests)."""
    rng = service.parts.get(_RNG_PART)
    if not isinstance(rng, random.Random):
        rng = service.parts[_RNG_PART] = random.SystemRandom()
    return rng


def _persist(
    service: FleetService, identity: DeviceIdentity, request: CheckinRequest, now: datetime
) -> tuple[Device, list[QueuedCommand]]:
    """Store the report, deliver queued commands; return the updated device and the commands."""
    if identity.record is None:
        raise StateError(f"device {identity.device_id}: a check-in needs the device's record in the fleet store")
    with service.store.transaction() as session:
        device = session.get(Device, identity.record.id)
        # the registration is checked again here: the connection's verdict may be older than a revocation
        if device is None or device.certificate_fingerprint != identity.fingerprint:
            raise DeviceAuthError(f"device {identity.device_id} is not registered with this fleet")
        if device.serial != identity.device_id:
            raise DeviceAuthError(f"the certificate of {identity.device_id} is registered to {device.serial}")
        if device.status != DeviceStatus.ACTIVE.value:
            raise DeviceAuthError(f"device {identity.device_id} is {device.status}: it may not use the service")
        previous = device.security_counter
        if previous is not None and request.security_counter < previous:
            _log.warning(
                "device %s reports security counter %d, below %d: rollback",
                device.serial,
                request.security_counter,
                previous,
            )
            session.add(
                Alert(
                    device_id=device.id,
                    kind="security_counter_decreased",
                    severity=AlertSeverity.CRITICAL.value,
                    message=f"security counter fell from {previous} to {request.security_counter}",
                    data={
                        "previous": previous,
                        "reported": request.security_counter,
                        "firmware_version": request.firmware_version,
                    },
                    created_at=now,
                )
            )
        device.last_checkin_at = now
        device.reported_version = request.firmware_version
        device.security_counter = request.security_counter
        device.health = request.health.model_dump(exclude_none=True) if request.health is not None else None
        rows = session.scalars(
            select(DeviceCommand)
            .where(
                DeviceCommand.device_id == device.id,
                DeviceCommand.state.in_((CommandState.QUEUED.value, CommandState.DELIVERED.value)),
            )
            .order_by(DeviceCommand.id)
            .limit(MAX_COMMANDS_PER_CHECKIN)
        ).all()
        commands = []
        for row in rows:
            if row.state == CommandState.QUEUED.value:
                row.state = CommandState.DELIVERED.value
                row.delivered_at = now
            commands.append(QueuedCommand(id=row.id, kind=row.kind, payload=row.payload))
    return device, commands  # detached at the end of the transaction, its attributes loaded


def check_in(
    service: FleetService,
    identity: DeviceIdentity,
    request: CheckinRequest,
    *,
    now: datetime,
    rng: random.Random,
) -> CheckinResponse:
    """Handle one check-in of the authenticated device ``identity`` at ``now``."""
    device, commands = _persist(service, identity, request, now)
    if request.install_results:
        rollouts.record_install_results(service, device, [result.model_dump() for result in request.install_results])
    offer = rollouts.offer_for(service, device, request.security_counter)
    return _answer(service, identity, now, rng, offer=offer, commands=commands)


def _answer(
    service: FleetService,
    identity: DeviceIdentity,
    now: datetime,
    rng: random.Random,
    *,
    offer: dict[str, Any] | None,
    commands: list[QueuedCommand],
) -> CheckinResponse:
    delay = next_checkin_delay(service.context.update, rng)
    return CheckinResponse(
        device_id=identity.device_id,
        server_time=now,
        next_checkin_in_s=delay,
        next_checkin_at=now + timedelta(seconds=delay),
        offer=offer,
        commands=commands,
        support_period_end=service.context.product.support_period_end,
        end_of_life=end_of_life_notice(service.context, now.date()),
    )


async def check_in_async(
    service: FleetService,
    identity: DeviceIdentity,
    request: CheckinRequest,
    *,
    now: datetime,
    rng: random.Random,
) -> CheckinResponse:
    """:func:`check_in`, by group commit where the report is all there is to store (module docstring)."""
    if identity.record is not None and not request.install_results:
        write = CheckinWrite(
            device_id=identity.record.id,
            fingerprint=identity.fingerprint,
            serial=identity.device_id,
            firmware_version=request.firmware_version,
            security_counter=request.security_counter,
            health=request.health.model_dump(exclude_none=True) if request.health is not None else None,
            now=now,
        )
        if await checkin_writer(service).write(write):
            return _answer(service, identity, now, rng, offer=None, commands=[])
    return await anyio.to_thread.run_sync(functools.partial(check_in, service, identity, request, now=now, rng=rng))
