"""The production store: schema, allocation without gaps, transactions that roll back, refusals."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from trustroot.provision.store import (
    BatchRecord,
    NewDevice,
    ProductionStateError,
    ProductionStore,
    TokenRecord,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _token(token_id: str = "tok-0123456789abcdef", count: int = 10) -> TokenRecord:  # noqa: S107
    return TokenRecord(
        token_id=token_id,
        factory="f1",
        count=count,
        expires=NOW + timedelta(days=1),
        station_key=None,
        issued=NOW,
        reserved=0,
        spent=0,
        last_seen=NOW,
        state_signature=b"sig",
        state_key="k",
    )


def _batch(batch_id: str = "batch-000000000001", requested: int = 10) -> BatchRecord:
    return BatchRecord(
        batch_id=batch_id,
        token_id="tok-0123456789abcdef",
        factory="f1",
        state="open",
        requested=requested,
        provisioned=0,
        out_dir=None,
        opened=NOW,
        closed=None,
        manifest_sha256=None,
    )


def _device(sequence: int, fingerprint: str | None = None) -> NewDevice:
    return NewDevice(
        sequence=sequence,
        serial=f"ACME-{sequence:08d}",
        cert_fingerprint=fingerprint or f"{sequence:064x}",
        cert_serial=f"{sequence:x}",
        certificate=b"der",
        claim_hash=None,
        password_verifier=None,
        bundle=None,
    )


@pytest.fixture
def store(tmp_path: Path) -> ProductionStore:
    opened = ProductionStore.open(tmp_path / "production", product="Acme Plug")
    with opened.transaction() as txn:
        txn.add_token(_token(), b"{}")
        txn.add_batch(_batch())
    return opened


def _add(store: ProductionStore, count: int) -> None:
    with store.transaction() as txn:
        first = txn.allocate(count)
        txn.add_devices(
            [_device(first + i) for i in range(count)],
            batch_id="batch-000000000001",
            token_id="tok-0123456789abcdef",
            factory="f1",
            time=NOW,
            run="r",
        )


def test_the_store_is_wal_with_secure_delete_and_a_schema_version(store: ProductionStore) -> None:
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.close()
    assert store.path.stat().st_mode & 0o777 == 0o600
    assert store.next_sequence() == 1


def test_a_rolled_back_transaction_consumes_no_sequence_number(store: ProductionStore) -> None:
    _add(store, 3)
    with pytest.raises(RuntimeError), store.transaction() as txn:
        txn.allocate(5)
        raise RuntimeError("crash in the middle of a chunk")
    assert store.next_sequence() == 4
    _add(store, 2)
    assert [d.serial for d in store.iter_devices()] == [f"ACME-{i:08d}" for i in range(1, 6)]


def test_duplicates_are_refused_by_the_schema(store: ProductionStore) -> None:
    _add(store, 1)
    with pytest.raises(ProductionStateError, match="would duplicate a serial, sequence or certificate"):
        with store.transaction() as txn:
            txn.add_devices(
                [_device(2, fingerprint=f"{1:064x}")],
                batch_id="batch-000000000001",
                token_id="tok-0123456789abcdef",
                factory="f1",
                time=NOW,
                run="r",
            )
    assert store.count_devices() == 1


def test_the_counters_cannot_exceed_the_token(store: ProductionStore) -> None:
    record = _token()
    with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
        with store.transaction() as txn:
            txn.set_token_state(TokenRecord(**{**record.__dict__, "reserved": 11, "spent": 11}))


def test_another_products_store_and_an_unknown_schema_are_refused(store: ProductionStore, tmp_path: Path) -> None:
    store.close()
    with pytest.raises(ProductionStateError, match="belongs to product 'Acme Plug', not 'Acme Lamp'"):
        ProductionStore.open(tmp_path / "production", product="Acme Lamp")
    conn = sqlite3.connect(tmp_path / "production" / "production.sqlite")
    conn.execute("PRAGMA user_version = 7")
    conn.close()
    with pytest.raises(ProductionStateError, match="schema version 7; this trustroot reads version 1 only"):
        ProductionStore.open(tmp_path / "production", product="Acme Plug")


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    (tmp_path / "production").mkdir()
    (tmp_path / "production" / "production.sqlite").write_bytes(b"x" * 4096)
    with pytest.raises(ProductionStateError, match="is damaged or not a production store"):
        ProductionStore.open(tmp_path / "production", product="Acme Plug")


def test_the_consistency_check_finds_a_gap_and_a_wrong_counter(store: ProductionStore) -> None:
    _add(store, 3)
    assert store.check_consistency() == [
        "token tok-0123456789abcdef: spent 0 but 3 devices recorded",
        "batch batch-000000000001: provisioned 0 but 3 devices recorded",
    ]
    conn = sqlite3.connect(store.path)
    conn.execute("DELETE FROM devices WHERE sequence = 2")
    conn.commit()
    conn.close()
    problems = store.check_consistency()
    assert "device sequences are not contiguous from 1: 2 records span 1..3" in problems
    assert "the allocator is at 4 but 2 sequence numbers are recorded" in problems


def test_reserved_serials_are_issued_once(store: ProductionStore) -> None:
    with store.transaction() as txn:
        first = txn.allocate(2)
        txn.reserve_devices(
            first,
            ["ACME-00000001", "ACME-00000002"],
            batch_id="batch-000000000001",
            token_id="tok-0123456789abcdef",
            factory="f1",
            time=NOW,
        )
    with store.transaction() as txn:
        txn.issue_reserved(_device(1), time=NOW, run="r")
    with pytest.raises(ProductionStateError, match="serial ACME-00000001 is not reserved"), store.transaction() as txn:
        txn.issue_reserved(_device(1, fingerprint="f" * 64), time=NOW, run="r")
    with store.transaction() as txn:
        assert txn.void_reserved("batch-000000000001") == 1
    assert [d.status for d in store.iter_devices()] == ["active", "void"]
