"""verify_ownership_chain and verify_deletion_receipt: pure verifiers, an attack matrix of broken chains."""

from __future__ import annotations

import base64
import copy
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from trustroot.fleet.ownership import (
    GENESIS_PREV,
    LINK_DOMAIN,
    OwnerRef,
    OwnershipChainError,
    transfer_authorization,
    verify_ownership_chain,
)
from trustroot.fleet.receipts import (
    RECEIPT_DOMAIN,
    RECEIPT_TYPE,
    ReceiptError,
    canonical_json,
    verify_deletion_receipt,
)

SERVICE = Ed25519PrivateKey.generate()
ALICE = Ed25519PrivateKey.generate()
BOB = Ed25519PrivateKey.generate()
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SERIAL = "ACME-000001"


def _raw(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes_raw().hex()


def _ref(name: str, key: Ed25519PrivateKey) -> OwnerRef:
    return OwnerRef(name, _raw(key))


def _sign(body: dict[str, Any], key: Ed25519PrivateKey = SERVICE) -> dict[str, Any]:
    signature = key.sign(LINK_DOMAIN + canonical_json(body))
    return {"body": body, "signature": base64.b64encode(signature).decode(), "key_id": "test"}


def _hash(link: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(link["body"])).hexdigest()


def _body(seq: int, prev: str, kind: str, owner: OwnerRef | None, authorization: str | None = None) -> dict[str, Any]:
    return {
        "v": 1,
        "serial": SERIAL,
        "seq": seq,
        "prev": prev,
        "kind": kind,
        "owner": None if owner is None else {"id": owner.id, "public_key": owner.public_key},
        "time": (T0 + timedelta(minutes=seq)).isoformat(),
        "authorization": authorization,
    }


def _chain() -> list[dict[str, Any]]:
    """claim by alice, transfer to bob (authorised by alice), release by bob."""
    alice, bob = _ref("alice", ALICE), _ref("bob", BOB)
    claim = _sign(_body(1, GENESIS_PREV, "claim", alice))
    auth = base64.b64encode(ALICE.sign(transfer_authorization(SERIAL, _hash(claim), bob))).decode()
    transfer = _sign(_body(2, _hash(claim), "transfer", bob, auth))
    release = _sign(_body(3, _hash(transfer), "release", None))
    return [claim, transfer, release]


def test_a_valid_chain_names_its_current_owner() -> None:
    chain = _chain()
    assert verify_ownership_chain(chain[:1], SERVICE.public_key()) == _ref("alice", ALICE)
    assert verify_ownership_chain(chain[:2], SERVICE.public_key()) == _ref("bob", BOB)
    assert verify_ownership_chain(chain, SERVICE.public_key()) is None


def _resign(index: int, change: Callable[[dict[str, Any]], None]) -> Callable[[list[dict[str, Any]]], None]:
    """Change link ``index``'s body and sign it again with the SERVICE key (a compromised-looking server)."""

    def apply(chain: list[dict[str, Any]]) -> None:
        body = copy.deepcopy(chain[index]["body"])
        change(body)
        chain[index] = _sign(body)

    return apply


def _set(index: int, key: str, value: object) -> Callable[[list[dict[str, Any]]], None]:
    return _resign(index, lambda body: body.__setitem__(key, value))


def _edit_unsigned(chain: list[dict[str, Any]]) -> None:
    chain[1]["body"]["owner"]["id"] = "mallory"


def _foreign_signature(chain: list[dict[str, Any]]) -> None:
    chain[0] = _sign(chain[0]["body"], Ed25519PrivateKey.generate())


def _drop_middle(chain: list[dict[str, Any]]) -> None:
    del chain[1]


def _swap(chain: list[dict[str, Any]]) -> None:
    chain[0], chain[1] = chain[1], chain[0]


def _bob_authorises_himself(chain: list[dict[str, Any]]) -> None:
    body = copy.deepcopy(chain[1]["body"])
    bob = _ref("bob", BOB)
    body["authorization"] = base64.b64encode(BOB.sign(transfer_authorization(SERIAL, body["prev"], bob))).decode()
    chain[1] = _sign(body)


def _second_claim(chain: list[dict[str, Any]]) -> None:
    bob = _ref("bob", BOB)
    chain[1] = _sign(_body(2, _hash(chain[0]), "claim", bob))


BROKEN: dict[str, Callable[[list[dict[str, Any]]], None]] = {
    "edited body, signature kept": _edit_unsigned,
    "signed by another key": _foreign_signature,
    "link removed": _drop_middle,
    "links reordered": _swap,
    "wrong prev": _set(1, "prev", "f" * 64),
    "wrong seq": _set(0, "seq", 2),
    "another serial": _set(1, "serial", "ACME-000002"),
    "time goes back": _set(1, "time", (T0 - timedelta(days=1)).isoformat()),
    "naive time": _set(0, "time", "2026-11-22T12:00:00"),
    "unknown kind": _set(0, "kind", "steal"),
    "unknown version": _set(0, "v", 2),
    "transfer without authorization": _set(1, "authorization", None),
    "transfer authorised by the new owner": _bob_authorises_himself,
    "claim of an owned device": _second_claim,
    "release naming an owner": _set(2, "owner", {"id": "x", "public_key": _raw(BOB)}),
    "claim with an authorization": _set(0, "authorization", "AAAA"),
    "bad owner key": _set(0, "owner", {"id": "alice", "public_key": "zz"}),
}


@pytest.mark.parametrize("attack", sorted(BROKEN))
def test_every_break_of_the_chain_is_refused(attack: str) -> None:
    chain = _chain()
    BROKEN[attack](chain)
    with pytest.raises(OwnershipChainError):
        verify_ownership_chain(chain, SERVICE.public_key())


def test_an_empty_chain_or_garbage_is_refused() -> None:
    with pytest.raises(OwnershipChainError):
        verify_ownership_chain([], SERVICE.public_key())
    with pytest.raises(OwnershipChainError):
        verify_ownership_chain([{"body": "x", "signature": "!!"}], SERVICE.public_key())


def _receipt() -> dict[str, Any]:
    body = {
        "v": 1,
        "type": RECEIPT_TYPE,
        "reason": "owner-request",
        "owner_id_sha256": "a" * 64,
        "devices": [SERIAL],
        "categories": {"voice": 1},
        "rows_deleted": 1,
        "data_key_destroyed": True,
        "factory_reset_queued": [SERIAL],
        "time": T0.isoformat(),
    }
    signature = SERVICE.sign(RECEIPT_DOMAIN + canonical_json(body))
    return {"receipt": body, "signature": base64.b64encode(signature).decode(), "key_id": "k", "algorithm": "ed25519"}


def test_a_receipt_verifies_and_an_altered_one_does_not() -> None:
    receipt = _receipt()
    assert verify_deletion_receipt(receipt, SERVICE.public_key())["rows_deleted"] == 1
    altered = copy.deepcopy(receipt)
    altered["receipt"]["rows_deleted"] = 0
    for bad in (altered, {**receipt, "signature": "%%"}, {"signature": receipt["signature"]}):
        with pytest.raises(ReceiptError):
            verify_deletion_receipt(bad, SERVICE.public_key())
    with pytest.raises(ReceiptError):
        verify_deletion_receipt(receipt, Ed25519PrivateKey.generate().public_key())
