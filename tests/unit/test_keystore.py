"""The key store front object (trustroot.keys.store)."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from trustroot.errors import (
    KeyExistsError,
    KeyFileCorruptError,
    KeyNotFoundError,
    KeyStateError,
    KeyStoreError,
    UsageError,
    WrongSecretError,
)
from trustroot.keys import _pkcs8
from trustroot.keys._interface import (
    Algorithm,
    BackendName,
    KeyBackend,
    KeyHandle,
    KeyInfo,
    KeyRole,
    KeyStatus,
    public_key_fingerprint,
)
from trustroot.keys.filestore import FileBackend
from trustroot.keys.passphrase import SecretKind
from trustroot.keys.store import (
    INDEX_FORMAT,
    InvalidSignature,
    KeyStore,
    forget_unlocked_keys,
    key_info_from_json,
    key_info_to_json,
    secret_fingerprint,
    verify_signature,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PRIVATE_KEY_MARKERS = [
    b"BEGIN PRIVATE KEY",
    b"BEGIN EC PRIVATE KEY",
    b"BEGIN RSA PRIVATE KEY",
    b"OPENSSH PRIVATE KEY",
]


class Secrets:
    """A secret source that counts its calls."""

    def __init__(self, store: str = "store passphrase", root: str = "root passphrase") -> None:
        self.values: dict[SecretKind, str] = {"store": store, "root": root}
        self.calls: list[tuple[SecretKind, bool]] = []

    def __call__(self, kind: SecretKind, confirm: bool = False) -> str:
        self.calls.append((kind, confirm))
        return self.values[kind]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


class TokenStandIn:
    """Plays the ``pkcs11`` backend (keys kept in files elsewhere) and records what it was asked."""

    name: BackendName = "pkcs11"

    def __init__(self, directory: Path) -> None:
        self._files = FileBackend(directory, Secrets())
        self.generated: list[tuple[str, Algorithm]] = []

    def generate(self, name: str, role: KeyRole, algorithm: Algorithm, *, domain: Literal["store", "root"]) -> KeyInfo:
        if algorithm is Algorithm.ECIES_X25519:
            raise AssertionError("a token is never asked for X25519")
        self.generated.append((name, algorithm))
        info = self._files.generate(name, role, algorithm, domain=domain)
        return dataclasses.replace(info, backend="pkcs11", extractable=False, labels={"pkcs11-token": "t"})

    def import_key(
        self,
        name: str,
        role: KeyRole,
        algorithm: Algorithm,
        material: bytes,
        *,
        domain: Literal["store", "root"],
    ) -> KeyInfo:
        info = self._files.import_key(name, role, algorithm, material, domain=domain)
        return dataclasses.replace(info, backend="pkcs11", extractable=False)

    def unlock(self, info: KeyInfo) -> KeyHandle:
        return self._files.unlock(dataclasses.replace(info, backend="file"))

    def export_private_der(self, info: KeyInfo) -> bytes:
        raise AssertionError("not used")

    def destroy(self, info: KeyInfo) -> None:
        self._files.destroy(info)


@pytest.fixture(autouse=True)
def _fresh_handles() -> Iterator[None]:
    forget_unlocked_keys()
    yield
    forget_unlocked_keys()


@pytest.fixture
def secrets() -> Secrets:
    return Secrets()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    return tmp_path / "state" / "keys"


@pytest.fixture
def store(keys_dir: Path, secrets: Secrets, clock: Clock) -> KeyStore:
    return KeyStore(keys_dir, {"file": FileBackend(keys_dir, secrets, clock=clock)}, "file", clock=clock)


def _index(store: KeyStore) -> dict[str, Any]:
    return json.loads(store.index_path.read_text())  # type: ignore[no-any-return]


# --- create, list, get, active -----------------------------------------------------------------


def test_create_and_read(store: KeyStore) -> None:
    fw = store.create(KeyRole.FIRMWARE_SIGNING, Algorithm.ECDSA_P256)
    assert fw.name == "firmware-signing-1"
    assert fw.generation == 1
    assert fw.status is KeyStatus.ACTIVE
    assert fw.backend == "file"
    assert fw.created == T0 + timedelta(seconds=1)
    root = store.create(KeyRole.ROOT_CA, Algorithm.ECDSA_P384, domain="root", name="offline-root")
    assert root.passphrase_domain == "root"
    assert [k.name for k in store.list()] == ["firmware-signing-1", "offline-root"]
    assert store.get("offline-root") == root
    assert store.active(KeyRole.FIRMWARE_SIGNING) == fw
    assert store.active(KeyRole.ROOT_CA) == root


def test_not_found(store: KeyStore) -> None:
    assert store.list() == []
    with pytest.raises(KeyNotFoundError, match="no key named 'nope'"):
        store.get("nope")
    with pytest.raises(KeyNotFoundError, match="no active key for role 'evidence'") as caught:
        store.active(KeyRole.EVIDENCE)
    assert caught.value.hint == "create one with: trustroot keys create evidence"


def test_one_active_key_per_role(store: KeyStore) -> None:
    first = store.create(KeyRole.EVIDENCE, Algorithm.ED25519)
    with pytest.raises(KeyExistsError, match="role 'evidence' already has an active key 'evidence-1'") as caught:
        store.create(KeyRole.EVIDENCE, Algorithm.ED25519, name="evidence-b")
    assert caught.value.hint == "rotate it with: trustroot keys rotate evidence"
    assert store.list() == [first]
    assert not (store.directory / "evidence-b.key.pem").exists()


def test_other_role_may_have_many(store: KeyStore) -> None:
    a = store.create(KeyRole.OTHER, Algorithm.ED25519, name="tls-server")
    b = store.create(KeyRole.OTHER, Algorithm.ED25519)
    assert b.name == "other-2"
    assert b.generation == 2
    assert store.active(KeyRole.OTHER) == b
    assert {k.name for k in store.list()} == {a.name, b.name}


def test_name_taken_and_invalid(store: KeyStore) -> None:
    store.create(KeyRole.OTHER, Algorithm.ED25519, name="x")
    with pytest.raises(KeyExistsError, match="a key named 'x' exists already"):
        store.create(KeyRole.EVIDENCE, Algorithm.ED25519, name="x")
    with pytest.raises(UsageError, match=r"key name '\.\./x' is not allowed"):
        store.create(KeyRole.EVIDENCE, Algorithm.ED25519, name="../x")
    with pytest.raises(UsageError, match="unknown passphrase domain"):
        store.create(KeyRole.EVIDENCE, Algorithm.ED25519, domain="pin")  # type: ignore[arg-type]


def test_index_file(store: KeyStore) -> None:
    info = store.create(KeyRole.FACTORY_SECRET, Algorithm.HMAC_SHA256)
    document = _index(store)
    assert document["format"] == "trustroot.keyindex/1" == INDEX_FORMAT
    assert document["keys"] == [
        {
            "name": "factory-secret-1",
            "role": "factory-secret",
            "algorithm": "hmac-sha256",
            "backend": "file",
            "created": "2026-03-01T12:00:01+00:00",
            "status": "active",
            "generation": 1,
            "passphrase_domain": "store",
            "extractable": True,
            "fingerprint": info.fingerprint,
            "public_pem": "",
            "labels": {},
        }
    ]
    assert stat.S_IMODE(store.index_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700


def test_key_info_json_round_trip(store: KeyStore) -> None:
    info = store.create(KeyRole.UPDATE_ROOT, Algorithm.ED25519, domain="root")
    info = dataclasses.replace(info, status=KeyStatus.RETIRED, labels={"b": "2", "a": "1"})
    record = key_info_to_json(info)
    assert json.loads(json.dumps(record)) == record
    assert key_info_from_json(record) == info
    with pytest.raises(UsageError, match="timezone-aware"):
        key_info_to_json(dataclasses.replace(info, created=datetime(2026, 1, 1)))


# --- unlock: once per process -------------------------------------------------------------------


def test_unlock_once_per_process(store: KeyStore, secrets: Secrets, keys_dir: Path, clock: Clock) -> None:
    info = store.create(KeyRole.EVIDENCE, Algorithm.ED25519)
    secrets.calls.clear()
    first = store.unlock(info.name)
    second = store.unlock(info)
    assert secrets.calls == [("store", False)]
    # Another store object on the same directory (another path spelling) shares the handle.
    other = KeyStore(keys_dir / ".." / "keys", {"file": FileBackend(keys_dir, secrets)}, "file")
    third = other.unlock(info.name)
    assert secrets.calls == [("store", False)]
    assert first.sign(b"x") and second.sign(b"y") and third.sign(b"z")
    public = first.public_key()
    assert isinstance(public, ed25519.Ed25519PublicKey)
    public.verify(third.sign(b"z"), b"z")
    forget_unlocked_keys()
    store.unlock(info.name)
    assert secrets.calls == [("store", False), ("store", False)]


def test_failed_unlock_is_not_cached(keys_dir: Path, clock: Clock) -> None:
    good = Secrets()
    store = KeyStore(keys_dir, {"file": FileBackend(keys_dir, good)}, "file")
    info = store.create(KeyRole.EVIDENCE, Algorithm.ED25519)
    forget_unlocked_keys()
    wrong = Secrets(store="wrong")
    wrong_store = KeyStore(keys_dir, {"file": FileBackend(keys_dir, wrong)}, "file")
    path = keys_dir / "evidence-1.key.pem"
    for _ in range(2):
        with pytest.raises(WrongSecretError, match=f"^the passphrase does not unlock key file {path}$"):
            wrong_store.unlock(info.name)
    assert len(wrong.calls) == 2
    store.unlock(info.name).sign(b"ok")


def test_handle_satisfies_the_protocol(store: KeyStore) -> None:
    info = store.create(KeyRole.IMAGE_ENCRYPTION, Algorithm.ECIES_P256)
    handle = store.unlock(info.name)
    assert isinstance(handle, KeyHandle)
    assert handle.info == info
    peer = ec.generate_private_key(ec.SECP256R1())
    ours = handle.public_key()
    assert isinstance(ours, ec.EllipticCurvePublicKey)
    assert handle.exchange(peer.public_key()) == peer.exchange(ec.ECDH(), ours)
    with pytest.raises(KeyStateError, match="key 'image-encryption-1' \\(ecies-p256\\) cannot sign"):
        handle.sign(b"x")
    assert "image-encryption-1" in repr(handle)


# --- rotate and revoke --------------------------------------------------------------------------


def test_rotate(store: KeyStore) -> None:
    old = store.create(KeyRole.FIRMWARE_SIGNING, Algorithm.ECDSA_P256)
    old_handle = store.unlock(old.name)
    signature = old_handle.sign(b"image v1")
    new = store.rotate(KeyRole.FIRMWARE_SIGNING)
    assert new.name == "firmware-signing-2"
    assert new.generation == 2
    assert new.status is KeyStatus.ACTIVE
    assert new.labels == {"replaces": "firmware-signing-1"}
    assert new.algorithm is Algorithm.ECDSA_P256
    retired = store.get(old.name)
    assert retired.status is KeyStatus.RETIRED
    assert retired.labels == {"replaced_by": "firmware-signing-2"}
    assert store.active(KeyRole.FIRMWARE_SIGNING) == new
    # The retired key still verifies what it signed, and never signs again (even through a handle
    # given out before the rotation).
    store.verify(old.name, b"image v1", signature)
    with pytest.raises(KeyStateError, match="key 'firmware-signing-1' \\(ecdsa-p256\\) cannot sign: it is retired"):
        old_handle.sign(b"image v2")
    with pytest.raises(KeyStateError, match="it is retired"):
        store.unlock(old.name).sign_digest(hashlib.sha256(b"x").digest())
    new_signature = store.unlock(new.name).sign(b"image v2")
    store.verify(new.name, b"image v2", new_signature)
    with pytest.raises(InvalidSignature):
        store.verify(old.name, b"image v2", new_signature)
    third = store.rotate(KeyRole.FIRMWARE_SIGNING)
    assert third.name == "firmware-signing-3"
    assert store.get(new.name).labels == {
        "replaces": "firmware-signing-1",
        "replaced_by": "firmware-signing-3",
    }


def test_rotate_keeps_domain_and_may_change_algorithm(store: KeyStore, secrets: Secrets) -> None:
    store.create(KeyRole.ROOT_CA, Algorithm.ECDSA_P256, domain="root")
    secrets.calls.clear()
    new = store.rotate(KeyRole.ROOT_CA, algorithm=Algorithm.ECDSA_P384)
    assert new.passphrase_domain == "root"
    assert new.algorithm is Algorithm.ECDSA_P384
    assert secrets.calls == [("root", True)]


def test_rotate_refusals(store: KeyStore) -> None:
    with pytest.raises(KeyNotFoundError, match="no active key for role 'evidence' to rotate"):
        store.rotate(KeyRole.EVIDENCE)
    store.create(KeyRole.OTHER, Algorithm.ED25519)
    store.create(KeyRole.OTHER, Algorithm.ED25519)
    with pytest.raises(UsageError, match="role 'other' has 2 active keys"):
        store.rotate(KeyRole.OTHER)


def test_retired_secret_still_macs(store: KeyStore) -> None:
    old = store.create(KeyRole.FACTORY_SECRET, Algorithm.HMAC_SHA256)
    tag = store.unlock(old.name).mac(b"serial-1")
    store.rotate(KeyRole.FACTORY_SECRET)
    assert store.unlock(old.name).mac(b"serial-1") == tag


def test_revoke(store: KeyStore, clock: Clock) -> None:
    info = store.create(KeyRole.UPDATE_TIMESTAMP, Algorithm.ED25519)
    handle = store.unlock(info.name)
    signature = handle.sign(b"metadata")
    revoked = store.revoke(info.name, "  laptop stolen ")
    assert revoked.status is KeyStatus.REVOKED
    assert revoked.labels["revocation_reason"] == "laptop stolen"
    assert datetime.fromisoformat(revoked.labels["revoked_at"]) == clock.now
    assert store.get(info.name) == revoked
    with pytest.raises(KeyStateError, match="cannot sign: it is revoked"):
        handle.sign(b"more")
    with pytest.raises(KeyStateError, match="key 'update-timestamp-1' is revoked \\(laptop stolen\\)"):
        store.unlock(info.name)
    with pytest.raises(KeyStateError, match="is revoked: signatures by it are no longer accepted"):
        store.verify(info.name, b"metadata", signature)
    with pytest.raises(KeyStateError, match="is revoked already"):
        store.revoke(info.name, "again")
    with pytest.raises(UsageError, match="needs a reason"):
        store.revoke(info.name, "  ")
    with pytest.raises(KeyNotFoundError):
        store.revoke("nope", "x")
    # The role has no active key now; a new one may be created.
    assert store.create(KeyRole.UPDATE_TIMESTAMP, Algorithm.ED25519).name == "update-timestamp-2"


def test_revocation_by_another_process_stops_handles_at_next_unlock(store: KeyStore, keys_dir: Path) -> None:
    info = store.create(KeyRole.EVIDENCE, Algorithm.ED25519)
    handle = store.unlock(info.name)
    # Another process revokes: it edits the index, this process's cache knows nothing yet.
    document = _index(store)
    document["keys"][0]["status"] = "revoked"
    store.index_path.write_text(json.dumps(document))
    handle.sign(b"still active as far as this process knows")
    with pytest.raises(KeyStateError, match="is revoked"):
        store.unlock(info.name)
    with pytest.raises(KeyStateError, match="cannot sign: it is revoked"):
        handle.sign(b"now refused")


def test_revoked_handle_refuses_every_private_use(store: KeyStore) -> None:
    secret = store.create(KeyRole.FACTORY_SECRET, Algorithm.HMAC_SHA256)
    x = store.create(KeyRole.IMAGE_ENCRYPTION, Algorithm.ECIES_X25519)
    mac_handle, x_handle = store.unlock(secret.name), store.unlock(x.name)
    store.revoke(secret.name, "leaked")
    store.revoke(x.name, "leaked")
    with pytest.raises(KeyStateError, match="cannot compute a MAC: it is revoked"):
        mac_handle.mac(b"x")
    with pytest.raises(KeyStateError, match="cannot do a key exchange: it is revoked"):
        x_handle.exchange(x_handle.public_key())


# --- import, export -----------------------------------------------------------------------------


def test_import_and_export_public(store: KeyStore) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    info = store.import_key(KeyRole.FIRMWARE_SIGNING, Algorithm.ECDSA_P256, der)
    assert info.name == "firmware-signing-1"
    assert info.fingerprint == public_key_fingerprint(key.public_key())
    assert store.export_public_pem(info.name) == key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert store.export_private_der(info.name) == der
    with pytest.raises(KeyExistsError, match="already has an active key"):
        store.import_key(KeyRole.FIRMWARE_SIGNING, Algorithm.ECDSA_P256, der, name="again")
    with pytest.raises(KeyStoreError, match="as ecdsa-p384 is an EC key on secp256r1"):
        store.import_key(KeyRole.OTHER, Algorithm.ECDSA_P384, der)
    assert [k.name for k in store.list()] == [info.name]


def test_import_retired_generation(store: KeyStore) -> None:
    secret = bytes(range(32))
    old = store.import_key(
        KeyRole.FACTORY_SECRET, Algorithm.HMAC_SHA256, secret, status=KeyStatus.RETIRED, generation=1
    )
    new = store.import_key(KeyRole.FACTORY_SECRET, Algorithm.HMAC_SHA256, b"\x01" * 32, generation=2)
    assert (old.status, old.generation, new.status, new.generation) == (
        KeyStatus.RETIRED,
        1,
        KeyStatus.ACTIVE,
        2,
    )
    assert old.fingerprint == secret_fingerprint(secret)
    assert old.fingerprint == hashlib.sha256(hmac.digest(secret, b"trustroot/key-id/v1", "sha256")).hexdigest()
    with pytest.raises(UsageError, match="generations start at 1"):
        store.import_key(KeyRole.OTHER, Algorithm.HMAC_SHA256, secret, generation=0)


def test_export_public_of_a_secret_refused(store: KeyStore) -> None:
    info = store.create(KeyRole.FACTORY_SECRET, Algorithm.HMAC_SHA256)
    with pytest.raises(KeyStateError, match="is a secret: it has no public key"):
        store.export_public_pem(info.name)
    with pytest.raises(KeyStateError, match="is not a signing key"):
        store.verify(info.name, b"x", b"y")


def test_destroy(store: KeyStore) -> None:
    info = store.create(KeyRole.OTHER, Algorithm.ED25519, name="temp")
    store.unlock(info.name)
    store.destroy(info.name)
    assert store.list() == []
    assert not (store.directory / "temp.key.pem").exists()


# --- routing ------------------------------------------------------------------------------------


@pytest.fixture
def token_store(tmp_path: Path, keys_dir: Path, secrets: Secrets) -> tuple[KeyStore, TokenStandIn]:
    token = TokenStandIn(tmp_path / "token")
    backends: dict[BackendName, KeyBackend] = {"file": FileBackend(keys_dir, secrets), "pkcs11": token}
    return KeyStore(keys_dir, backends, "pkcs11"), token


def test_x25519_always_goes_to_the_file_backend(token_store: tuple[KeyStore, TokenStandIn]) -> None:
    store, token = token_store
    signing = store.create(KeyRole.FIRMWARE_SIGNING, Algorithm.ECDSA_P256)
    assert signing.backend == "pkcs11"
    assert signing.labels == {"pkcs11-token": "t"}
    x = store.create(KeyRole.IMAGE_ENCRYPTION, Algorithm.ECIES_X25519)
    assert x.backend == "file"
    assert (store.directory / "image-encryption-1.key.pem").is_file()
    assert token.generated == [("firmware-signing-1", Algorithm.ECDSA_P256)]
    with pytest.raises(UsageError, match="ecies-x25519 keys live in the file backend only"):
        store.create(KeyRole.OTHER, Algorithm.ECIES_X25519, backend="pkcs11")
    p256 = store.create(KeyRole.OTHER, Algorithm.ECIES_P256, backend="file")
    assert p256.backend == "file"
    # A pkcs11 key rotates on the token; rotating to X25519 moves to files.
    assert store.rotate(KeyRole.FIRMWARE_SIGNING).backend == "pkcs11"
    assert store.rotate(KeyRole.FIRMWARE_SIGNING, algorithm=Algorithm.ECIES_X25519).backend == "file"
    assert store.unlock("firmware-signing-2").info.backend == "pkcs11"
    assert store.unlock("firmware-signing-3").info.backend == "file"


def test_backend_configuration(keys_dir: Path, secrets: Secrets) -> None:
    files = FileBackend(keys_dir, secrets)
    with pytest.raises(UsageError, match="default key backend 'pkcs11' is not among the backends"):
        KeyStore(keys_dir, {"file": files}, "pkcs11")
    with pytest.raises(UsageError, match="backend registered as 'pkcs11' calls itself 'file'"):
        KeyStore(keys_dir, {"file": files, "pkcs11": files}, "file")
    store = KeyStore(keys_dir, {"file": files}, "file")
    with pytest.raises(KeyStoreError, match="the pkcs11 key backend is not configured"):
        store.create(KeyRole.OTHER, Algorithm.ED25519, backend="pkcs11")


# --- failures leave nothing behind --------------------------------------------------------------


def test_failed_index_write_destroys_the_new_key(store: KeyStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(keys: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "_write", broken)
    with pytest.raises(OSError, match="No space left"):
        store.create(KeyRole.EVIDENCE, Algorithm.ED25519)
    assert not (store.directory / "evidence-1.key.pem").exists()
    monkeypatch.undo()
    assert store.list() == []


def test_concurrent_creates_keep_every_record(store: KeyStore) -> None:
    errors: list[BaseException] = []

    def make(i: int) -> None:
        try:
            store.create(KeyRole.OTHER, Algorithm.ED25519, name=f"k{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=make, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(k.name for k in store.list()) == [f"k{i}" for i in range(8)]
    assert sorted(k.generation for k in store.list()) == list(range(1, 9))


# --- a damaged index ----------------------------------------------------------------------------


def _record(store: KeyStore) -> dict[str, Any]:
    store.create(KeyRole.EVIDENCE, Algorithm.ED25519)
    return _index(store)["keys"][0]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: {**r, "status": "lost"}, "'lost' is not a valid KeyStatus"),
        (lambda r: {**r, "role": "boss"}, "'boss' is not a valid KeyRole"),
        (lambda r: {**r, "algorithm": "rsa-1024"}, "'rsa-1024' is not a valid Algorithm"),
        (lambda r: {**r, "backend": "cloud"}, "unknown backend 'cloud'"),
        (lambda r: {**r, "passphrase_domain": "pin"}, "unknown passphrase domain 'pin'"),
        (lambda r: {**r, "created": "2026-03-01T12:00:01"}, "creation time without a time zone"),
        (lambda r: {**r, "created": "yesterday"}, "Invalid isoformat string"),
        (lambda r: {**r, "generation": True}, "field 'generation' must be a int"),
        (lambda r: {**r, "generation": 0}, "generation must be 1 or more"),
        (lambda r: {**r, "extractable": "yes"}, "field 'extractable' must be a bool"),
        (lambda r: {**r, "labels": {"a": 1}}, "labels must map strings to strings"),
        (lambda r: {**r, "name": "../escape"}, "invalid key name '../escape'"),
        (lambda r: {k: v for k, v in r.items() if k != "fingerprint"}, "missing ['fingerprint']"),
        (lambda r: {**r, "extra": 1}, "unknown ['extra']"),
        (lambda r: [r], "a key record must be an object"),
    ],
)
def test_damaged_records(store: KeyStore, edit: Any, message: str) -> None:
    record = _record(store)
    store.index_path.write_text(json.dumps({"format": INDEX_FORMAT, "keys": [edit(record)]}))
    with pytest.raises(KeyFileCorruptError) as caught:
        store.list()
    assert str(caught.value).startswith(f"key index {store.index_path} is damaged: key record 0: ")
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not JSON"),
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[" * 200_000, "not JSON"),
        (b"[]", "no 'format' field"),
        (b'{"keys": []}', "no 'format' field"),
        (b'{"format": "trustroot.keyindex/1"}', "expected the fields 'format' and 'keys'"),
        (b'{"format": "trustroot.keyindex/1", "keys": {}}', "expected the fields 'format' and 'keys'"),
        (b'{"format": "trustroot.keyindex/1", "keys": [], "x": 1}', "expected the fields"),
    ],
)
def test_damaged_index(store: KeyStore, content: bytes, message: str) -> None:
    store.directory.mkdir(parents=True)
    store.index_path.write_bytes(content)
    with pytest.raises(KeyFileCorruptError, match=f"key index {store.index_path} is damaged: {message}"):
        store.list()
    with pytest.raises(KeyFileCorruptError):
        store.create(KeyRole.OTHER, Algorithm.ED25519)


def test_duplicate_names_in_index(store: KeyStore) -> None:
    record = _record(store)
    store.index_path.write_text(json.dumps({"format": INDEX_FORMAT, "keys": [record, record]}))
    with pytest.raises(KeyFileCorruptError, match="a key name appears twice"):
        store.list()


def test_unknown_index_format_refused(store: KeyStore) -> None:
    store.directory.mkdir(parents=True)
    store.index_path.write_text(json.dumps({"format": "trustroot.keyindex/2", "keys": []}))
    with pytest.raises(KeyStoreError, match=r"has format 'trustroot\.keyindex/2'; this trustroot reads") as caught:
        store.list()
    assert not isinstance(caught.value, KeyFileCorruptError)


def test_oversized_index_refused(store: KeyStore) -> None:
    store.directory.mkdir(parents=True)
    store.index_path.write_bytes(b" " * ((16 << 20) + 1))
    with pytest.raises(KeyFileCorruptError, match="larger than the limit"):
        store.list()


# --- verify_signature ---------------------------------------------------------------------------


def test_verify_signature_conventions() -> None:
    data = b"signed bytes"
    p256 = ec.generate_private_key(ec.SECP256R1())
    p384 = ec.generate_private_key(ec.SECP384R1())
    ed = ed25519.Ed25519PrivateKey.generate()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    cases: list[tuple[PublicKeyTypes, Algorithm, bytes]] = [
        (p256.public_key(), Algorithm.ECDSA_P256, p256.sign(data, ec.ECDSA(hashes.SHA256()))),
        (p384.public_key(), Algorithm.ECDSA_P384, p384.sign(data, ec.ECDSA(hashes.SHA384()))),
        (ed.public_key(), Algorithm.ED25519, ed.sign(data)),
        (rsa_key.public_key(), Algorithm.RSA_3072, rsa_key.sign(data, pss, hashes.SHA256())),
    ]
    for public, algorithm, signature in cases:
        verify_signature(public, algorithm, data, signature)
        with pytest.raises(InvalidSignature, match=f"the {algorithm.value} signature does not verify"):
            verify_signature(public, algorithm, data + b"!", signature)
    with pytest.raises(InvalidSignature, match="the public key is not an ecdsa-p384 key"):
        verify_signature(p256.public_key(), Algorithm.ECDSA_P384, data, cases[0][2])
    with pytest.raises(InvalidSignature, match="the public key is not an ed25519 key"):
        verify_signature(p256.public_key(), Algorithm.ED25519, data, cases[0][2])
    with pytest.raises(InvalidSignature, match="the public key is not an rsa-3072 key"):
        verify_signature(ed.public_key(), Algorithm.RSA_3072, data, cases[2][2])
    with pytest.raises(InvalidSignature, match="ecies-p256 is not a signature algorithm"):
        verify_signature(p256.public_key(), Algorithm.ECIES_P256, data, cases[0][2])
    # ECDSA over SHA-256 is not accepted in place of SHA-384 for P-384.
    with pytest.raises(InvalidSignature):
        verify_signature(p384.public_key(), Algorithm.ECDSA_P384, data, p384.sign(data, ec.ECDSA(hashes.SHA256())))
    assert issubclass(InvalidSignature, KeyStoreError)


# --- nothing in clear on disk -------------------------------------------------------------------


def test_no_clear_private_key_in_the_store(store: KeyStore) -> None:
    for algorithm in (a for a in Algorithm if a is not Algorithm.RSA_3072):
        store.create(KeyRole.OTHER, algorithm, name=f"k-{algorithm.value}")
    secret = _pkcs8.decode_hmac_private_key_info(store.export_private_der("k-hmac-sha256"))
    files = [p for p in store.directory.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"index.json", ".lock", "k-ed25519.key.pem"}
    for path in files:
        data = path.read_bytes()
        assert not any(marker in data for marker in PRIVATE_KEY_MARKERS), path
        assert secret not in data
        for load in (serialization.load_pem_private_key, serialization.load_der_private_key):
            with pytest.raises((ValueError, TypeError)):
                load(data, None)
