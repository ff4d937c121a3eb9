"""Operator tokens on the real fleet store (SQLite and PostgreSQL): create, verify, revoke, scopes, evidence."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from trustroot.context.load import load_context
from trustroot.errors import StateError, UsageError
from trustroot.fleet.config import FleetConfig
from trustroot.fleet.operators import (
    SCOPES,
    TOKEN_PREFIX,
    InvalidOperatorToken,
    add_operator,
    authenticate_token,
    list_operators,
    parse_scopes,
    require_operator,
    revoke_operator,
)
from trustroot.fleet.operators_models import Operator
from trustroot.fleet.service import FleetService
from trustroot.fleet.store.audit import audit_log
from trustroot.fleet.store.db import Store

pytestmark = pytest.mark.integration

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ADMIN = "user:admin"


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def fleet(store: Store, product_template: Path, tmp_path: Path) -> tuple[FleetService, Clock]:
    clock = Clock()
    service = FleetService(
        store=store,
        config=FleetConfig(database_url=str(store.engine.url), state_dir=tmp_path),
        context=load_context(product_template / "security-context.toml").model,
        pki_dir=tmp_path,
        clock=clock,
    )
    return service, clock


def test_token_is_shown_once_and_stored_only_as_its_hash(fleet: tuple[FleetService, Clock]) -> None:
    service, _ = fleet
    made = add_operator(service, "alice", "read,release", actor=ADMIN)
    token = made.token
    assert token.startswith(TOKEN_PREFIX)
    raw = base64.urlsafe_b64decode(token[len(TOKEN_PREFIX) :] + "=")
    assert len(raw) == 32  # 256 random bits
    assert made.view.scopes == ("read", "release")
    with service.store.engine.connect() as connection:
        dump = " ".join(str(v) for row in connection.execute(text("SELECT * FROM operators")) for v in row)
    assert token not in dump
    assert token[len(TOKEN_PREFIX) :] not in dump
    assert hashlib.sha256(token.encode()).hexdigest() in dump
    who = authenticate_token(service, token)
    assert (who.name, who.scopes, who.actor) == ("alice", frozenset({"read", "release"}), "operator:alice")
    # two operators never share a token
    assert add_operator(service, "bob", ["disclosure"], actor=ADMIN).token != token


def test_every_bad_token_is_the_same_error(fleet: tuple[FleetService, Clock]) -> None:
    service, _ = fleet
    token = add_operator(service, "alice", "read", actor=ADMIN).token
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    unknown_id = TOKEN_PREFIX + "Z" * 43
    for bad in ("", "tr_", token[3:], "xx_" + token[3:], token + "A", flipped, unknown_id, token.upper()):
        with pytest.raises(InvalidOperatorToken) as caught:
            authenticate_token(service, bad)
        assert caught.value.message == "invalid operator token"


def test_revoked_token_stops_working_and_evidence_names_no_token(fleet: tuple[FleetService, Clock]) -> None:
    service, clock = fleet
    token = add_operator(service, "alice", "disclosure", actor=ADMIN).token
    clock.now += timedelta(minutes=5)
    authenticate_token(service, token)
    [listed] = list_operators(service)
    assert listed.last_used_at == clock.now and listed.revoked_at is None
    revoke_operator(service, "alice", actor=ADMIN)
    with pytest.raises(InvalidOperatorToken):
        authenticate_token(service, token)
    with pytest.raises(StateError, match="revoked already"):
        revoke_operator(service, "alice", actor=ADMIN)
    with pytest.raises(StateError, match="no operator"):
        revoke_operator(service, "nobody", actor=ADMIN)
    assert list_operators(service, include_revoked=False) == []
    records = [r for r in audit_log(service).iter_records() if r.type.startswith("operator.")]
    assert [(r.type, r.subject, r.actor) for r in records] == [
        ("operator.added", "alice", ADMIN),
        ("operator.revoked", "alice", ADMIN),
    ]
    assert records[0].data == {"name": "alice", "scopes": ["disclosure"]}
    assert all(token not in str(r.data) for r in records)


def test_names_and_scopes_are_validated(fleet: tuple[FleetService, Clock]) -> None:
    service, _ = fleet
    add_operator(service, "alice", "read", actor=ADMIN)
    with pytest.raises(StateError, match="exists already"):
        add_operator(service, "alice", "read", actor=ADMIN)
    for name in ("", "a b", "-x", "x" * 65, "evil\nname"):
        with pytest.raises(UsageError):
            add_operator(service, name, "read", actor=ADMIN)
    for scopes in ("", "admin", "read,root", " , "):
        with pytest.raises(UsageError):
            add_operator(service, "carol", scopes, actor=ADMIN)
    with service.store.transaction() as session:
        assert session.scalars(select(Operator.name)).all() == ["alice"]
    assert parse_scopes(" read , disclosure ") == {"read", "disclosure"}
    assert {require_operator(s).scope for s in SCOPES} == SCOPES
    with pytest.raises(UsageError):
        require_operator("everything")
