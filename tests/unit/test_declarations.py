"""Signed declarations (issue 8): made with a declarer key, verifiable from the record and the store,
and refused when forged or edited, even by someone who rewrites the evidence log consistently."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from trustroot.cli.main import main
from trustroot.compliance.declarations import (
    DECLARATION_TYPE,
    Statement,
    declare,
    signed_bytes,
    verified_declarations,
    verify_declaration,
)
from trustroot.errors import DeclarationError, KeyExistsError, UsageError
from trustroot.evidence import EvidenceRecord, record_hash
from trustroot.keys._interface import Algorithm, KeyRole
from trustroot.product import Product, open_product

JUSTIFICATION = "No debug header is populated on the production PCB"


@pytest.fixture
def product(product_dir: Path) -> Product:
    opened = open_product(product_dir)
    for person in ("alice", "bob"):
        info = opened.keys.create(KeyRole.DECLARER, Algorithm.ED25519, name=person)
        opened.record("key.created", info.name, {"role": "declarer"})
    return opened


def _forged(record: EvidenceRecord, **data_changes: object) -> EvidenceRecord:
    """The record with ``data`` changed and a consistent hash (what a log rewriter could make)."""
    raw = record.as_dict()
    data = json.loads(json.dumps(raw["data"]))
    for dotted, value in data_changes.items():
        target = data
        *parents, last = dotted.split("__")
        for part in parents:
            target = target[part]
        target[last] = value
    raw["data"] = data
    raw.pop("hash")
    raw["hash"] = record_hash(raw)
    return EvidenceRecord.from_dict(raw)


def _record(product: Product, seq: int) -> EvidenceRecord:
    return next(r for r in product.evidence.iter_records() if r.seq == seq)


def test_a_declaration_verifies_from_the_record_and_the_public_key(product: Product) -> None:
    made = declare(product, "5.6-4A", "alice", JUSTIFICATION)
    record = _record(product, made.seq)
    assert record.type == DECLARATION_TYPE and record.subject == "5.6-4A"
    again = verify_declaration(record, product.keys)
    assert again.statement.by == "alice" and again.statement.justification == JUSTIFICATION
    # the signature is over the prefixed canonical statement, checkable with the public key alone
    statement = Statement.model_validate(record.data["statement"])
    signature = base64.b64decode(str(record.data["signature"]))
    product.keys.public_key("alice").verify(signature, signed_bytes(statement))  # type: ignore[union-attr,call-arg]
    # the whole log (hash chain, checkpoints) still verifies
    product.evidence.verify(product.evidence_public_keys())


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"statement__justification": "We never checked the debug port at all."}, "does not verify"),
        ({"statement__provision": "5.6-1"}, "subject"),
        ({"statement__by": "bob"}, "signed with 'alice's key"),
        ({"statement__edition": "2.1.1"}, "does not verify"),
        ({"statement__key__name": "bob"}, "not the key that signed"),
        ({"signature": base64.b64encode(b"\x00" * 64).decode()}, "does not verify"),
        ({"signature": "!!not base64!!"}, "not base64"),
        ({"statement__extra": "x"}, "malformed"),
        ({"statement__product": "Other Plug"}, "signed for product 'Other Plug'"),
    ],
)
def test_an_edited_declaration_is_refused(product: Product, change: dict[str, object], reason: str) -> None:
    made = declare(product, "5.6-4A", "alice", JUSTIFICATION)
    forged = _forged(_record(product, made.seq), **change)
    with pytest.raises(DeclarationError, match=reason):
        verify_declaration(forged, product.keys, product="Acme Plug")


def test_a_statement_resigned_by_another_declarer_under_alices_name_is_refused(product: Product) -> None:
    made = declare(product, "5.6-4A", "alice", JUSTIFICATION)
    record = _record(product, made.seq)
    statement = Statement.model_validate(record.data["statement"])
    bobs = product.keys.unlock("bob").sign(signed_bytes(statement))
    forged = _forged(record, signature=base64.b64encode(bobs).decode())
    with pytest.raises(DeclarationError, match="does not verify"):
        verify_declaration(forged, product.keys)


def test_revoked_unknown_and_non_declarer_keys_are_refused(product: Product) -> None:
    made = declare(product, "5.6-4A", "alice", JUSTIFICATION)
    record = _record(product, made.seq)
    product.keys.revoke("alice", "left the company")
    with pytest.raises(DeclarationError, match="revoked"):
        verify_declaration(record, product.keys)
    with pytest.raises(DeclarationError, match="does not hold"):
        verify_declaration(_forged(record, statement__key__name="mallory"), product.keys)
    evidence_key = product.keys.active(KeyRole.EVIDENCE)
    with pytest.raises(DeclarationError, match="not a declarer key"):
        verify_declaration(_forged(record, statement__key__name=evidence_key.name), product.keys)
    with pytest.raises(DeclarationError, match="is revoked"):
        declare(product, "5.6-4A", "alice", JUSTIFICATION)


def test_declare_refuses_bad_input(product: Product) -> None:
    with pytest.raises(UsageError, match=r"not a provision of EN 303 645 V3\.1\.3"):
        declare(product, "5.6-4", "alice", JUSTIFICATION)  # a V2.1.1 id
    declare(product, "5.6-4", "alice", JUSTIFICATION, edition="2.1.1")
    with pytest.raises(UsageError, match="characters"):
        declare(product, "5.6-4A", "alice", "ok")
    with pytest.raises(UsageError, match="control characters"):
        declare(product, "5.6-4A", "alice", "fine text \x1b[31m red")
    with pytest.raises(UsageError, match="not declarer"):
        declare(product, "5.6-4A", product.keys.active(KeyRole.EVIDENCE).name, JUSTIFICATION)
    with pytest.raises(UsageError, match="key name"):
        declare(product, "5.6-4A", "Alice Smith", JUSTIFICATION)


def test_declarers_have_one_key_each(product: Product) -> None:
    with pytest.raises(KeyExistsError):
        product.keys.create(KeyRole.DECLARER, Algorithm.ED25519, name="alice")
    assert {k.name for k in product.keys.list() if k.role is KeyRole.DECLARER} == {"alice", "bob"}


def test_a_consistently_rewritten_log_still_cannot_change_what_alice_said(
    product: Product, capsys: pytest.CaptureFixture[str]
) -> None:
    """An attacker who rewrites the unsigned tail of evidence.jsonl with valid hashes is caught."""
    declare(product, "5.6-4A", "alice", JUSTIFICATION)
    log = product.state_dir / "evidence.jsonl"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    prev = None
    for obj in lines:
        if obj["type"] == DECLARATION_TYPE:
            obj["data"]["statement"]["justification"] = "Debug port left open, but we say it is fine."
        if prev is not None:
            obj["prev"] = prev
        obj.pop("hash")
        obj["hash"] = record_hash(obj)
        prev = obj["hash"]
    log.write_text("".join(json.dumps(o, sort_keys=True, separators=(",", ":")) + "\n" for o in lines))
    reopened = open_product(product.root)
    report = reopened.evidence.verify(reopened.evidence_public_keys())  # the tail is unsigned: it verifies
    assert report.records == len(lines)
    valid, refused = verified_declarations(reopened.evidence.iter_records(), reopened.keys)
    assert valid == [] and len(refused) == 1 and "does not verify" in refused[0][1]
    assert main(["compliance", "declarations", "--context", str(product.root)]) == 1
    assert "refused" in capsys.readouterr().out


def test_cli_keys_create_declarer_and_declare(product_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = ["--context", str(product_dir)]
    assert main(["keys", "create", "--role", "declarer", "--name", "carol", *ctx]) == 0
    assert main(["keys", "create", "--role", "declarer", *ctx]) == 2  # a declarer key needs a name
    assert main(["declare", "5.8-3", "--by", "carol", "--justification", "The plug has no sensors.", *ctx]) == 0
    capsys.readouterr()
    assert main(["compliance", "declarations", "--json", *ctx]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [d["provision"] for d in listed["valid"]] == ["5.8-3"]
    assert listed["valid"][0]["by"] == "carol"
