"""The fleet store on SQLite and on a real PostgreSQL: migrations, the schema they make, constraints, types."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic import command
from sqlalchemy import inspect, select, text, update
from sqlalchemy.exc import IntegrityError, StatementError

from trustroot.errors import StateError
from trustroot.fleet.store.db import Store, make_engine
from trustroot.fleet.store.migrate import (
    alembic_config,
    current_revision,
    head_revision,
    open_store,
    schema_differences,
    upgrade,
)
from trustroot.fleet.store.models import Alert, Batch, Device, DeviceCommand, load_models

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_migrations_make_exactly_the_models_schema(store_url: str) -> None:
    engine = make_engine(store_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        assert list(schema_differences(engine)) == []
        tables = set(inspect(engine).get_table_names())
        assert set(load_models().tables) <= tables
        assert {"devices", "batches", "audit", "device_commands", "alerts", "alembic_version"} <= tables
    finally:
        engine.dispose()


def test_a_schema_drift_is_reported(store_url: str) -> None:
    engine = make_engine(store_url)
    try:
        upgrade(engine)
        with engine.begin() as connection:
            connection.execute(text("DROP INDEX ix_devices_group_name"))
        assert [diff[0] for diff in schema_differences(engine)] == ["add_index"]
    finally:
        engine.dispose()


def test_upgrade_is_idempotent_and_the_store_opens_migrated(store_url: str) -> None:
    engine = make_engine(store_url)
    try:
        upgrade(engine)
        upgrade(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
    store = open_store(store_url)
    try:
        with store.transaction() as session:
            assert session.execute(select(Device)).first() is None
    finally:
        store.dispose()


def test_workers_starting_at_once_migrate_once(store_url: str) -> None:
    engines = [make_engine(store_url) for _ in range(3)]
    start = threading.Barrier(len(engines))
    failures: list[BaseException] = []

    def run(engine: object) -> None:
        start.wait()
        try:
            upgrade(engine)  # type: ignore[arg-type]
        except BaseException as exc:  # collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert failures == []
        assert current_revision(engines[0]) == head_revision()
        assert list(schema_differences(engines[0])) == []
    finally:
        for engine in engines:
            engine.dispose()


def test_the_chain_downgrades_to_nothing_and_up_again(store_url: str) -> None:
    engine = make_engine(store_url)
    try:
        upgrade(engine)
        with engine.begin() as connection:
            command.downgrade(alembic_config(connection), "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        upgrade(engine)
        assert list(schema_differences(engine)) == []
    finally:
        engine.dispose()


def test_a_database_from_a_newer_trustroot_is_refused(store_url: str) -> None:
    engine = make_engine(store_url)
    try:
        upgrade(engine)
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        with pytest.raises(StateError, match=r"cannot migrate .*9999") as caught:
            upgrade(engine)
        assert caught.value.hint is not None and "newer trustroot" in caught.value.hint
    finally:
        engine.dispose()


def test_an_unreachable_database_is_a_state_error() -> None:
    engine = make_engine("postgresql+psycopg://nobody:secret@127.0.0.1:1/none", connect_args={"connect_timeout": 2})
    try:
        with pytest.raises(StateError, match=r"fleet store postgresql\+psycopg://nobody:\*\*\*@127\.0\.0\.1:1/none"):
            upgrade(engine)
        with pytest.raises(StateError, match="cannot read the schema revision"):
            current_revision(engine)
    finally:
        engine.dispose()


def _batch(session: object, batch_id: str = "B1") -> None:
    session.add(  # type: ignore[attr-defined]
        Batch(
            id=batch_id, manifest_sha256=batch_id.lower().ljust(64, "0"), factory="f1", device_count=2, imported_at=NOW
        )
    )


def _device(serial: str, fingerprint: str, **extra: object) -> Device:
    fields: dict[str, object] = {
        "serial": serial,
        "certificate_fingerprint": fingerprint,
        "certificate_pem": "-----BEGIN CERTIFICATE-----\n...",
        "batch_id": "B1",
        "factory": "f1",
        "registered_at": NOW,
    }
    return Device(**(fields | extra))


@pytest.mark.parametrize(
    "second",
    [
        {"serial": "SN-1", "fingerprint": "b" * 64},
        {"serial": "SN-2", "fingerprint": "a" * 64},
        {"serial": "SN-3", "fingerprint": "c" * 64, "status": "lost"},
        {"serial": "SN-4", "fingerprint": "d" * 64, "batch_id": "no-such-batch"},
    ],
    ids=["same-serial", "same-certificate", "unknown-status", "unknown-batch"],
)
def test_the_device_table_refuses_duplicates_and_bad_values(store: Store, second: dict[str, str]) -> None:
    with store.transaction() as session:
        _batch(session)
        session.add(_device("SN-1", "a" * 64))
    with pytest.raises(IntegrityError), store.transaction() as session:
        session.add(_device(**second))
    with store.transaction() as session:
        assert session.scalars(select(Device.serial)).all() == ["SN-1"]


def test_times_are_aware_utc_and_json_round_trips(store: Store) -> None:
    paris = timezone(timedelta(hours=2))
    with store.transaction() as session:
        _batch(session)
        session.add(
            _device(
                "SN-1",
                "a" * 64,
                last_checkin_at=datetime(2026, 3, 1, 14, 30, 0, 123456, tzinfo=paris),
                health={"uptime_s": 42, "rssi": -67, "notes": ["ok", "Grüße"]},
                security_counter=2**40,
            )
        )
    with store.transaction() as session:
        device = session.scalars(select(Device)).one()
        assert device.last_checkin_at == datetime(2026, 3, 1, 12, 30, 0, 123456, tzinfo=UTC)
        assert device.last_checkin_at.tzinfo == UTC
        assert device.registered_at == NOW
        assert device.health == {"uptime_s": 42, "rssi": -67, "notes": ["ok", "Grüße"]}
        assert device.security_counter == 2**40
        assert (device.status, device.group_name, device.channel) == ("active", "default", "stable")
        assert device.batch.factory == "f1"


def test_a_naive_time_is_refused(store: Store) -> None:
    with pytest.raises(StatementError, match="naive datetime"), store.transaction() as session:
        _batch(session)
        session.add(_device("SN-1", "a" * 64, last_checkin_at=datetime(2026, 3, 1, 12, 0)))


def test_commands_go_with_their_device_and_alerts_stay(store: Store) -> None:
    with store.transaction() as session:
        _batch(session)
        device = _device("SN-1", "a" * 64)
        session.add(device)
        session.flush()
        session.add(DeviceCommand(device_id=device.id, kind="factory_reset", payload={"wipe": True}, created_at=NOW))
        session.add(Alert(device_id=device.id, kind="k", severity="critical", message="m", created_at=NOW))
    with store.transaction() as session:
        command_row = session.scalars(select(DeviceCommand)).one()
        assert (command_row.state, command_row.payload, command_row.acknowledged_at) == (
            "queued",
            {"wipe": True},
            None,
        )
    with pytest.raises(IntegrityError), store.transaction() as session:
        session.execute(update(DeviceCommand).values(state="forgotten"))
    with store.transaction() as session:
        session.delete(session.scalars(select(Device)).one())
    with store.transaction() as session:
        assert session.scalars(select(DeviceCommand)).all() == []
        assert session.scalars(select(Alert.device_id)).all() == [None]
