"""The fleet store's models, revisions and locks, without a database server."""

from __future__ import annotations

import ast
import fnmatch
import hashlib
import tomllib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import CheckConstraint
from sqlalchemy.dialects import postgresql, sqlite

from trustroot.fleet.store._locks import AUDIT_LOCK_KEY, MIGRATION_LOCK_KEY, lock_key
from trustroot.fleet.store.migrate import MIGRATIONS_DIR, alembic_config, head_revision
from trustroot.fleet.store.models import (
    MODEL_MODULES,
    AlertSeverity,
    AuditRecord,
    CommandState,
    DeviceStatus,
    UTCDateTime,
    load_models,
)

CORE_TABLES = {"batches", "devices", "device_commands", "alerts", "audit"}


def test_every_model_module_is_loaded_and_the_core_tables_exist() -> None:
    metadata = load_models()
    assert MODEL_MODULES[0] == "trustroot.fleet.store.models"
    assert set(metadata.tables) >= CORE_TABLES


def test_constraint_names_follow_the_convention() -> None:
    metadata = load_models()
    for table in metadata.tables.values():
        assert table.primary_key.name == f"pk_{table.name}"
        for index in table.indexes:
            assert index.name is not None and index.name.startswith(f"ix_{table.name}_"), index.name
        for constraint in table.constraints:
            assert constraint.name, f"{table.name}: a constraint without a name"


@pytest.mark.parametrize(
    ("table", "column", "values"),
    [
        ("devices", "status", DeviceStatus),
        ("device_commands", "state", CommandState),
        ("alerts", "severity", AlertSeverity),
    ],
)
def test_closed_value_sets_are_check_constraints(table: str, column: str, values: type[object]) -> None:
    checks = [c for c in load_models().tables[table].constraints if isinstance(c, CheckConstraint)]
    texts = [str(c.sqltext) for c in checks if c.name == f"ck_{table}_{column}_valid"]
    assert texts == [f"{column} IN ({', '.join(repr(v.value) for v in values)})"]  # type: ignore[attr-defined]


def test_the_audit_table_holds_the_nine_record_fields_with_unique_seq_and_hash() -> None:
    table = AuditRecord.__table__
    assert [c.name for c in table.columns] == ["seq", "v", "time", "actor", "type", "subject", "data", "prev", "hash"]
    assert [c.name for c in table.primary_key.columns] == ["seq"]
    assert table.c.seq.autoincrement is False
    assert table.c.hash.unique


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()], ids=["sqlite", "postgresql"])
def test_utc_datetime_binds_utc_and_reads_aware(dialect: object) -> None:
    column = UTCDateTime()
    moment = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=-5)))
    bound = column.process_bind_param(moment, dialect)  # type: ignore[arg-type]
    assert bound is not None and bound == moment.astimezone(UTC).replace(tzinfo=bound.tzinfo)
    if getattr(dialect, "name", "") == "sqlite":
        assert bound.tzinfo is None
    else:
        assert bound.tzinfo == UTC
    read = column.process_result_value(bound, dialect)  # type: ignore[arg-type]
    assert read == moment and read is not None and read.tzinfo == UTC
    assert column.process_bind_param(None, dialect) is None  # type: ignore[arg-type]
    assert column.process_result_value(None, dialect) is None  # type: ignore[arg-type]


def test_utc_datetime_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="naive datetime 2026-01-02T03:04:05"):
        UTCDateTime().process_bind_param(datetime(2026, 1, 2, 3, 4, 5), sqlite.dialect())


def test_the_revisions_form_one_numbered_chain() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    revisions = list(script.walk_revisions())  # newest first
    assert script.get_heads() == [head_revision()]
    numbers = [rev.revision for rev in reversed(revisions)]
    assert numbers == [f"{n:04d}" for n in range(1, len(numbers) + 1)]
    for revision in revisions:
        expected = None if revision.revision == "0001" else f"{int(revision.revision) - 1:04d}"
        assert revision.down_revision == expected, revision.revision
        assert Path(revision.path).name.startswith(f"{revision.revision}_")


@pytest.mark.parametrize("path", sorted((MIGRATIONS_DIR / "versions").glob("*.py")), ids=lambda p: p.name)
def test_a_revision_imports_no_trustroot_model(path: Path) -> None:
    """A revision describes the schema as it was: it must not change when today's models do."""
    tree = ast.parse(path.read_text())
    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]
    assert not [name for name in imported if name and name.startswith("trustroot")]


def test_lock_keys_are_stable_signed_64_bit_and_distinct() -> None:
    assert lock_key("trustroot.fleet.audit") == AUDIT_LOCK_KEY
    assert AUDIT_LOCK_KEY != MIGRATION_LOCK_KEY
    for key in (AUDIT_LOCK_KEY, MIGRATION_LOCK_KEY, lock_key("")):
        assert -(2**63) <= key < 2**63
    assert int.from_bytes(hashlib.sha256(b"trustroot.fleet.audit").digest()[:8], "big", signed=True) == AUDIT_LOCK_KEY


def _glob_matches(path: str, pattern: str) -> bool:
    """setuptools' package-data glob: ``*`` stays within one directory, ``**`` crosses them."""
    if "**" in pattern:
        return fnmatch.fnmatchcase(path, pattern)
    parts, wanted = path.split("/"), pattern.split("/")
    return len(parts) == len(wanted) and all(map(fnmatch.fnmatchcase, parts, wanted))


def test_the_package_data_ships_every_migration_file() -> None:
    """Alembic reads env.py, script.py.mako and the revisions from the installed package at run time."""
    package = MIGRATIONS_DIR.parents[2]  # src/trustroot
    pyproject = tomllib.loads((package.parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["trustroot"]
    files = [p.relative_to(package).as_posix() for p in MIGRATIONS_DIR.rglob("*") if p.is_file()]
    files = [f for f in files if "__pycache__" not in f]
    assert {"fleet/store/migrations/env.py", "fleet/store/migrations/script.py.mako"} <= set(files)
    missing = [f for f in files if not any(_glob_matches(f, pattern) for pattern in patterns)]
    assert missing == [], f"add to [tool.setuptools.package-data] trustroot: {missing}"
