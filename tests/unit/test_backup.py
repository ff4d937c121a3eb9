"""M-of-N backup of the offline root: create, describe, recover, refuse."""

from __future__ import annotations

import itertools
import json
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from trustroot.errors import BackupError
from trustroot.keys._interface import Algorithm, KeyInfo, KeyRole, public_key_fingerprint
from trustroot.keys.backup import (
    BACKUP_MAGIC,
    create_backup,
    describe_backup,
    open_backup,
)
from trustroot.keys.shamir import Share, parse_share, split
from trustroot.limits import Limits

NOW = datetime(2026, 1, 15, 12, 0, 0, tzinfo=UTC)
DECRYPTION_FAILED = "cannot be decrypted with these shares"


def pkcs8(private: Any) -> bytes:
    der: bytes = private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return der


@pytest.fixture(scope="module")
def items() -> list[tuple[Any, bytes]]:
    root = ec.generate_private_key(ec.SECP384R1())
    update = ed25519.Ed25519PrivateKey.generate()
    root_info = KeyInfo(
        name="root-ca-1",
        role=KeyRole.ROOT_CA,
        algorithm=Algorithm.ECDSA_P384,
        backend="file",
        created=NOW,
        fingerprint=public_key_fingerprint(root.public_key()),
        passphrase_domain="root",
        extractable=True,
    )
    update_meta = {
        "name": "update-root-1",
        "role": "update-root",
        "algorithm": "ed25519",
        "generation": 2,
        "domain": "root",
    }
    secret_meta = {"name": "factory-secret-1", "role": "factory-secret", "algorithm": "hmac-sha256"}
    return [(root_info, pkcs8(root)), (update_meta, pkcs8(update)), (secret_meta, bytes(range(32)))]


@pytest.fixture(scope="module")
def backup(items: list[tuple[Any, bytes]]) -> tuple[bytes, list[Share]]:
    return create_backup(items, 3, 5, now=NOW)


def recovered_names(result: list[Any]) -> list[str]:
    return [meta["name"] for meta, _ in result]


# ------------------------------------------------------------------------------------------------ happy


def test_every_three_of_five_recovers(backup: tuple[bytes, list[Share]], items: list[tuple[Any, bytes]]) -> None:
    blob, shares = backup
    expected_material = [material for _, material in items]
    subsets = list(itertools.combinations(shares, 3))
    assert len(subsets) == 10
    for subset in subsets:
        result = open_backup(blob, subset)
        assert [material for _, material in result] == expected_material
    assert recovered_names(open_backup(blob, shares)) == ["root-ca-1", "update-root-1", "factory-secret-1"]


def test_recovered_metadata(backup: tuple[bytes, list[Share]], items: list[tuple[Any, bytes]]) -> None:
    blob, shares = backup
    (root_meta, root_der), (update_meta, _), (secret_meta, _) = open_backup(blob, shares[:3])
    assert root_meta == {
        "name": "root-ca-1",
        "role": "root-ca",
        "algorithm": "ecdsa-p384",
        "generation": 1,
        "public_fingerprint": items[0][0].fingerprint,
        "domain": "root",
    }
    restored = serialization.load_der_private_key(root_der, password=None)
    assert public_key_fingerprint(restored.public_key()) == root_meta["public_fingerprint"]
    assert update_meta["generation"] == 2
    assert len(update_meta["public_fingerprint"]) == 64  # computed from the key when not given
    assert secret_meta["public_fingerprint"] == ""
    assert (update_meta["domain"], secret_meta["domain"]) == ("root", "store")


def test_custodian_text_flow(backup: tuple[bytes, list[Share]]) -> None:
    blob, shares = backup
    texts = {f"custodian-{s.index}.txt": s.to_text() for s in shares}
    chosen = [
        parse_share(texts[name], source=name) for name in ("custodian-5.txt", "custodian-1.txt", "custodian-3.txt")
    ]
    assert len(open_backup(blob, chosen)) == 3


def test_describe_without_shares_keeps_the_manifest_secret(backup: tuple[bytes, list[Share]]) -> None:
    blob, shares = backup
    description = describe_backup(blob)
    assert description.backup_id == shares[0].backup_id
    assert (description.threshold, description.count) == (3, 5)
    assert description.created == NOW
    assert description.size == len(blob)
    assert blob.startswith(BACKUP_MAGIC)
    for clear in (b"root-ca-1", b"update-root", b"trustroot.backup/1", b"pkcs8", bytes(range(32))):
        assert clear not in blob


def test_two_backups_of_the_same_keys_differ(items: list[tuple[Any, bytes]]) -> None:
    first, first_shares = create_backup(items, 2, 3, now=NOW)
    second, second_shares = create_backup(items, 2, 3, now=NOW)
    assert first != second
    assert first_shares[0].backup_id != second_shares[0].backup_id


# ---------------------------------------------------------------------------------------------- refuse


def test_any_two_shares_refuse(backup: tuple[bytes, list[Share]]) -> None:
    blob, shares = backup
    for pair in itertools.combinations(shares, 2):
        with pytest.raises(BackupError, match="needs 3 of its 5 shares, only 2 given"):
            open_backup(blob, pair)
    with pytest.raises(BackupError, match=r"^backup: no shares given \(backup [0-9a-f]{8} needs 3\)"):
        open_backup(blob, [])


def test_share_of_another_backup_refuses(backup: tuple[bytes, list[Share]], items: list[tuple[Any, bytes]]) -> None:
    blob, shares = backup
    _, foreign = create_backup(items, 3, 5, now=NOW)
    with pytest.raises(
        BackupError, match=r"share 2-of-5 of backup [0-9a-f]{8} belongs to another backup, not to vault"
    ):
        open_backup(blob, [shares[0], foreign[1], shares[2]], source="vault")


def test_share_of_another_split_shape_refuses(backup: tuple[bytes, list[Share]]) -> None:
    blob, shares = backup
    reshaped = Share(shares[0].backup_id, 1, 2, 5, shares[0].value)
    with pytest.raises(BackupError, match="is a 2-of-5 share but backup is 3-of-5"):
        open_backup(blob, [reshaped, shares[1], shares[2]])


def test_typo_in_a_share_refuses_naming_it(backup: tuple[bytes, list[Share]]) -> None:
    _, shares = backup
    text = shares[3].to_text()
    fields = text.split(":")
    fields[4] = fields[4][:10] + ("Q" if fields[4][10] != "Q" else "R") + fields[4][11:]
    with pytest.raises(BackupError, match=r"^dave\.txt: checksum mismatch.*claims to be share 4-of-5"):
        parse_share(":".join(fields), source="dave.txt")


def test_wrong_share_value_gives_the_one_decryption_message(backup: tuple[bytes, list[Share]]) -> None:
    blob, shares = backup
    forged = Share(shares[1].backup_id, 2, 3, 5, bytes(b ^ 0x5A for b in shares[1].value))
    with pytest.raises(BackupError) as wrong_share:
        open_backup(blob, [shares[0], forged, shares[2]])
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    with pytest.raises(BackupError) as wrong_file:
        open_backup(bytes(tampered), shares[:3])
    assert str(wrong_share.value) == str(wrong_file.value)
    assert DECRYPTION_FAILED in str(wrong_share.value)


HEADER_FIELDS = {"id": 19, "threshold": 35, "count": 36, "created": 44, "nonce": 50, "ciphertext": 70}


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("id", "belongs to another backup"),
        ("threshold", "corrupt header|is a 3-of-5 share but"),
        ("count", "is a 3-of-5 share but"),
        ("created", DECRYPTION_FAILED),
        ("nonce", DECRYPTION_FAILED),
        ("ciphertext", DECRYPTION_FAILED),
    ],
)
def test_tampered_backup_refuses(backup: tuple[bytes, list[Share]], field: str, message: str) -> None:
    blob, shares = backup
    tampered = bytearray(blob)
    tampered[HEADER_FIELDS[field]] ^= 0x01
    with pytest.raises(BackupError, match=message):
        open_backup(bytes(tampered), shares[:3])


def test_malformed_files_refuse(backup: tuple[bytes, list[Share]]) -> None:
    blob, shares = backup
    cases = [
        (b"hello world" * 10, "^backup: not a trustroot backup"),
        (b"TRUSTROOT-BACKUP-2\n" + blob[19:], "unsupported backup format version"),
        (blob[:60], r"truncated backup \(60 bytes\)"),
        (blob[:35] + bytes([6, 5]) + blob[37:], r"corrupt header \(threshold 6 of 5\)"),
        (blob[:35] + bytes([1, 5]) + blob[37:], r"corrupt header \(threshold 1 of 5\)"),
        (blob[:37] + struct.pack(">Q", 2**63) + blob[45:], r"corrupt header \(creation time\)"),
    ]
    for data, message in cases:
        with pytest.raises(BackupError, match=message):
            describe_backup(data)
        with pytest.raises(BackupError, match=message):
            open_backup(data, shares)
    with pytest.raises(BackupError, match=r"^vault\.bin: larger than the limit of 100 bytes"):
        describe_backup(blob, source="vault.bin", limits=Limits(max_backup_bytes=100))


def test_create_refusals(items: list[tuple[Any, bytes]]) -> None:
    root_info, root_der = items[0]
    other_der = pkcs8(ec.generate_private_key(ec.SECP384R1()))
    meta = {"name": "k", "role": "root-ca", "algorithm": "ecdsa-p384"}
    cases: list[tuple[Any, str]] = [
        ([], "nothing to back up"),
        (
            [(root_info, other_der)],
            "key 'root-ca-1': the private key does not match its recorded public fingerprint",
        ),
        ([(root_info, b"not a key")], "key 'root-ca-1': the material is not a clear PKCS#8 private key"),
        ([(root_info, b"")], "key 'root-ca-1': the key material is empty"),
        ([(root_info, root_der), (root_info, root_der)], "key 'root-ca-1' is listed twice"),
        ([({**meta, "role": "janitor"}, root_der)], "key 'k': unknown role 'janitor'"),
        ([({**meta, "algorithm": "dsa"}, root_der)], "or algorithm 'dsa'"),
        ([({**meta, "generation": 0}, root_der)], "generation must be a positive integer"),
        ([({**meta, "fingerprint": "abc"}, root_der)], "public_fingerprint must be 64 hex digits"),
        ([({"role": "root-ca"}, root_der)], "key #1 to back up has no name"),
        ([({**meta, "domain": "cloud"}, root_der)], "key 'k': domain must be 'store' or 'root', got 'cloud'"),
    ]
    for given, message in cases:
        with pytest.raises(BackupError, match=message):
            create_backup(given, 2, 3, now=NOW)
    with pytest.raises(BackupError, match="a split needs 2 <= threshold"):
        create_backup(items, 1, 3, now=NOW)
    with pytest.raises(BackupError, match="timezone-aware"):
        create_backup(items, 2, 3, now=datetime(2026, 1, 1))
    with pytest.raises(BackupError, match="over the limit of 200"):
        create_backup(items, 2, 3, now=NOW, limits=Limits(max_backup_bytes=200))


def test_created_is_utc_seconds(items: list[tuple[Any, bytes]]) -> None:
    local = NOW.astimezone(timezone(timedelta(hours=2))).replace(microsecond=123456)
    blob, _ = create_backup(items[:1], 2, 2, now=local)
    assert describe_backup(blob).created == NOW


# ------------------------------------------------------------------------------- authenticated, malformed


def sealed(make_manifest: Callable[[str], bytes]) -> tuple[bytes, list[Share]]:
    """A backup whose manifest is chosen here, sealed as the module docstring describes."""
    key = bytes(range(32))
    shares = split(key, 2, 2)
    backup_id = shares[0].backup_id
    nonce = bytes(12)
    header = BACKUP_MAGIC + bytes.fromhex(backup_id) + bytes([2, 2]) + struct.pack(">Q", 1) + nonce
    return header + AESGCM(key).encrypt(nonce, make_manifest(backup_id), header), shares


def _manifest(backup_id: str, **changes: Any) -> bytes:
    body: dict[str, Any] = {"format": "trustroot.backup/1", "backup_id": backup_id, "keys": []}
    body.update(changes)
    return json.dumps(body).encode()


MANIFESTS = [
    pytest.param(lambda i: b"\xff not json", "the decrypted manifest is malformed", id="not JSON"),
    pytest.param(lambda i: b"[]", "the decrypted manifest is malformed", id="a list"),
    pytest.param(lambda i: _manifest(i, format="trustroot.backup/2"), "unsupported manifest format", id="v2"),
    pytest.param(lambda i: _manifest("0" * 32), "the decrypted manifest is malformed", id="other id"),
    pytest.param(lambda i: _manifest(i, keys={}), "the decrypted manifest is malformed", id="keys dict"),
    pytest.param(lambda i: _manifest(i, keys=[1]), "the decrypted manifest is malformed", id="entry"),
    pytest.param(lambda i: _manifest(i, keys=[{"pkcs8": "***"}]), "the decrypted manifest is malformed", id="b64"),
    pytest.param(lambda i: _manifest(i, keys=[{"pkcs8": "AA=="}]), "key #1 to back up has no name", id="meta"),
]


@pytest.mark.parametrize(("make", "message"), MANIFESTS)
def test_authenticated_but_malformed_manifest(make: Callable[[str], bytes], message: str) -> None:
    blob, shares = sealed(make)
    with pytest.raises(BackupError, match=message):
        open_backup(blob, shares)


def test_sealed_helper_follows_the_documented_format() -> None:
    blob, shares = sealed(_manifest)
    assert describe_backup(blob).created == datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert open_backup(blob, shares) == []
