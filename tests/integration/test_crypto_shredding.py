"""The forensic test of "delete my data": the bytes are gone from the database FILES, on both backends.

Store personal data with a recognisable plaintext; show that the ciphertext and the wrapped data key
are in the database files (SQLite: the main file and the -wal file; PostgreSQL: every file under
``base/<database oid>/`` of the server's data directory, after a CHECKPOINT) and that the plaintext is
nowhere in clear; delete; then find neither the ciphertext nor the wrapped key in any of those files.
SQLite gets there through secure_delete + ``wal_checkpoint(TRUNCATE)``, PostgreSQL through ``VACUUM FULL``
(see :mod:`trustroot.fleet.personal_data` for why not plain VACUUM).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from postgres import PostgresServer
from service_fixtures import InProcess, copy_product, in_process, issue_device, next_serial_number, register_device
from sqlalchemy import select, text
from test_ownership import call, claimed, new_owner, with_categories

from trustroot.fleet.ownership import set_claim_code_hash
from trustroot.fleet.ownership_models import OwnerDataKey, PersonalDatum
from trustroot.provision.claim import claim_code_hash, generate_claim_code

pytest_plugins = ["service_fixtures"]
pytestmark = pytest.mark.integration

PLAINTEXT = "FORENSIC-MARKER-7f3a9c: 221B Baker Street, London"


@pytest.fixture(scope="module")
def shred_product(product_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_product(product_template, tmp_path_factory.mktemp("shredding") / "acme")


@pytest.fixture
def app(shred_product: Path, migrated_store_url: str) -> Iterator[InProcess]:
    with in_process(shred_product, migrated_store_url) as running:
        with_categories(running)
        yield running


def database_files(app: InProcess, request: pytest.FixtureRequest) -> list[Path]:
    """The files holding the store's data, with every page on disk."""
    if app.service.store.dialect == "sqlite":
        main = Path(app.service.store.engine.url.database or "")
        return [main, main.with_name(main.name + "-wal")]
    server: PostgresServer = request.getfixturevalue("postgres_server")
    with app.service.store.engine.connect() as connection:
        oid = connection.execute(text("SELECT oid FROM pg_database WHERE datname = current_database()")).scalar_one()
    with psycopg.connect(server.conninfo(), autocommit=True) as admin:
        admin.execute("CHECKPOINT")
    return sorted(path for path in (server.data_dir / "base" / str(oid)).iterdir() if path.is_file())


def holding(files: list[Path], needle: bytes) -> list[str]:
    return [path.name for path in files if path.exists() and needle in path.read_bytes()]


def neighbour(app: InProcess, shred_product: Path) -> None:
    """Another owner's data on another device, stored first: it keeps the table's pages alive (a plain
    VACUUM would truncate an emptied table and hide that it leaves deleted bytes in a page's free space).
    """
    device = issue_device(shred_product, next_serial_number())
    register_device(app.url, device)
    code = generate_claim_code()
    set_claim_code_hash(app.service, device.serial, claim_code_hash(code))
    other = new_owner(app)
    assert (
        call(app, "POST", "/api/v1/owners/claim", json={"claim_code": code}, headers=other.headers).status_code == 200
    )
    path = f"/api/v1/owners/me/devices/{device.serial}/data/home-address"
    assert call(app, "PUT", path, json={"value": "neighbour"}, headers=other.headers).status_code == 200


def test_deleted_personal_data_leaves_no_bytes_in_the_database_files(
    app: InProcess, shred_product: Path, request: pytest.FixtureRequest
) -> None:
    serial = app.device.serial
    neighbour(app, shred_product)
    owner = claimed(app)
    answer = call(
        app,
        "PUT",
        f"/api/v1/owners/me/devices/{serial}/data/home-address",
        json={"value": PLAINTEXT},
        headers=owner.headers,
    )
    assert answer.status_code == 200, answer.text
    with app.service.store.transaction() as session:
        ciphertext = session.scalars(
            select(PersonalDatum.ciphertext).where(PersonalDatum.owner_id == owner.owner_id)
        ).one()
        wrapped = session.scalars(select(OwnerDataKey.wrapped_key).where(OwnerDataKey.owner_id == owner.owner_id)).one()

    files = database_files(app, request)
    # before: the encrypted forms are on disk, the plaintext never
    assert holding(files, ciphertext), f"the ciphertext is in none of {[f.name for f in files]}"
    assert holding(files, wrapped), "the wrapped data key is in no database file"
    assert holding(files, PLAINTEXT.encode()) == []
    assert holding(files, PLAINTEXT.encode("utf-16-le")) == []

    deleted = call(app, "POST", "/api/v1/owners/me/delete", headers=owner.headers)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["receipt"]["rows_deleted"] == 1

    # after: neither the ciphertext nor the wrapped key is in any file (nor a 16-byte piece of them)
    files = database_files(app, request)
    for needle in (ciphertext, wrapped, ciphertext[12:28], wrapped[8:24]):
        assert holding(files, needle) == [], f"{needle.hex()[:16]}… survived the deletion"
    assert holding(files, PLAINTEXT.encode()) == []
    with app.service.store.transaction() as session:  # the neighbour's data is still there
        assert len(session.scalars(select(PersonalDatum.id)).all()) == 1
