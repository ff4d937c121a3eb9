"""The encrypted-file key backend (trustroot.keys.filestore)."""

from __future__ import annotations

import hashlib
import hmac
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa, utils, x25519
from hypothesis import given, settings
from hypothesis import strategies as st

from trustroot.errors import (
    KeyExistsError,
    KeyFileCorruptError,
    KeyNotExtractableError,
    KeyStateError,
    KeyStoreError,
    UnreadableInputError,
    UsageError,
    WrongSecretError,
)
from trustroot.keys import _pkcs8
from trustroot.keys._interface import (
    Algorithm,
    KeyHandle,
    KeyInfo,
    KeyRole,
    KeyStatus,
    public_key_fingerprint,
)
from trustroot.keys.filestore import FileBackend, FileKeyHandle, load_pem_private_key_file
from trustroot.keys.passphrase import SecretKind
from trustroot.keys.store import secret_fingerprint

STORE = "store passphrase for tests"
ROOT = "root passphrase for tests"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
ASYMMETRIC = [a for a in Algorithm if not a.is_secret]
PRIVATE_KEY_MARKERS = [
    b"BEGIN PRIVATE KEY",
    b"BEGIN EC PRIVATE KEY",
    b"BEGIN RSA PRIVATE KEY",
    b"OPENSSH PRIVATE KEY",
]


class Secrets:
    """A secret source that counts its calls."""

    def __init__(self, store: str = STORE, root: str = ROOT) -> None:
        self.values: dict[SecretKind, str] = {"store": store, "root": root}
        self.calls: list[tuple[SecretKind, bool]] = []

    def __call__(self, kind: SecretKind, confirm: bool = False) -> str:
        self.calls.append((kind, confirm))
        return self.values[kind]


@pytest.fixture
def secrets() -> Secrets:
    return Secrets()


@pytest.fixture
def backend(tmp_path: Path, secrets: Secrets) -> FileBackend:
    return FileBackend(tmp_path / "keys", secrets, clock=lambda: NOW)


@pytest.fixture(scope="module")
def keys_of_every_algorithm(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[FileBackend, dict[Algorithm, KeyInfo]]:
    """One key per algorithm, made once for the module (RSA-3072 generation is the slow part)."""
    backend = FileBackend(tmp_path_factory.mktemp("all") / "keys", Secrets())
    made = {
        algorithm: backend.generate(f"k-{algorithm.value}", KeyRole.OTHER, algorithm, domain="store")
        for algorithm in Algorithm
    }
    return backend, made


@pytest.fixture(scope="module")
def handles(
    keys_of_every_algorithm: tuple[FileBackend, dict[Algorithm, KeyInfo]],
) -> dict[Algorithm, KeyHandle]:
    """Each key of ``keys_of_every_algorithm`` unlocked once (loading RSA-3072 checks the key: slow)."""
    backend, made = keys_of_every_algorithm
    return {algorithm: backend.unlock(info) for algorithm, info in made.items()}


def _clear_der(key: object) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


# --- generation and the files written ----------------------------------------------------------


@pytest.mark.parametrize("algorithm", list(Algorithm), ids=str)
def test_every_algorithm_round_trips(
    keys_of_every_algorithm: tuple[FileBackend, dict[Algorithm, KeyInfo]], algorithm: Algorithm
) -> None:
    backend, made = keys_of_every_algorithm
    info = made[algorithm]
    path = backend.directory / f"k-{algorithm.value}.key.pem"
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert info.backend == "file"
    assert info.extractable
    assert info.status is KeyStatus.ACTIVE
    assert info.passphrase_domain == "store"
    handle = backend.unlock(info)
    assert isinstance(handle, KeyHandle)
    assert handle.info == info
    if algorithm.is_secret:
        assert info.public_pem == ""
        secret = _pkcs8.decode_hmac_private_key_info(backend.export_private_der(info))
        assert info.fingerprint == hashlib.sha256(hmac.digest(secret, b"trustroot/key-id/v1", "sha256")).hexdigest()
        assert info.fingerprint == secret_fingerprint(secret)
    else:
        public = handle.public_key()
        assert info.fingerprint == public_key_fingerprint(public)
        assert serialization.load_pem_public_key(info.public_pem.encode()).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) == public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        clear = backend.export_private_der(info)
        assert serialization.load_der_private_key(clear, None).public_key() == public


def test_algorithm_key_types(handles: dict[Algorithm, KeyHandle]) -> None:
    for algorithm, curve in (
        (Algorithm.ECDSA_P256, "secp256r1"),
        (Algorithm.ECDSA_P384, "secp384r1"),
        (Algorithm.ECIES_P256, "secp256r1"),
    ):
        public = handles[algorithm].public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        assert public.curve.name == curve
    assert isinstance(handles[Algorithm.ED25519].public_key(), ed25519.Ed25519PublicKey)
    assert isinstance(handles[Algorithm.ECIES_X25519].public_key(), x25519.X25519PublicKey)
    rsa_public = handles[Algorithm.RSA_3072].public_key()
    assert isinstance(rsa_public, rsa.RSAPublicKey)
    assert rsa_public.key_size == 3072


def test_generate_fields_and_secret_calls(backend: FileBackend, secrets: Secrets) -> None:
    info = backend.generate("fw-1", KeyRole.FIRMWARE_SIGNING, Algorithm.ED25519, domain="store")
    assert info.name == "fw-1"
    assert info.role is KeyRole.FIRMWARE_SIGNING
    assert info.created == NOW
    assert info.generation == 1
    assert secrets.calls == [("store", True)]  # a new key file: the passphrase is confirmed
    backend.unlock(info)
    assert secrets.calls[-1] == ("store", False)


def test_root_domain_uses_the_root_passphrase(backend: FileBackend, secrets: Secrets, tmp_path: Path) -> None:
    info = backend.generate("root-ca-1", KeyRole.ROOT_CA, Algorithm.ECDSA_P384, domain="root")
    assert info.passphrase_domain == "root"
    assert secrets.calls == [("root", True)]
    path = backend.key_path("root-ca-1")
    _pkcs8.decrypt_pem(path.read_bytes(), ROOT.encode(), source=str(path))
    with pytest.raises(WrongSecretError):
        _pkcs8.decrypt_pem(path.read_bytes(), STORE.encode(), source=str(path))
    wrong_root = FileBackend(backend.directory, Secrets(root="another root passphrase"))
    with pytest.raises(WrongSecretError, match=f"the passphrase does not unlock key file {path}$"):
        wrong_root.unlock(info)


def test_existing_name_refused(backend: FileBackend, secrets: Secrets) -> None:
    backend.generate("a", KeyRole.OTHER, Algorithm.ED25519, domain="store")
    calls = len(secrets.calls)
    with pytest.raises(KeyExistsError, match=r"a\.key\.pem exists already; keys are never replaced"):
        backend.generate("a", KeyRole.OTHER, Algorithm.ED25519, domain="store")
    assert len(secrets.calls) == calls  # refused before asking anything


@pytest.mark.parametrize("name", ["", "A", "-a", ".a", "../a", "a/b", "a\n", "a b", "ä", "a" * 65, "key.PEM"])
def test_bad_names_refused(backend: FileBackend, name: str) -> None:
    with pytest.raises(UsageError, match="is not allowed"):
        backend.generate(name, KeyRole.OTHER, Algorithm.ED25519, domain="store")
    assert not backend.directory.exists() or not any(backend.directory.iterdir())


@pytest.mark.parametrize("name", ["a", "0", "a" * 64, "fw-signing.2_b"])
def test_good_names(backend: FileBackend, name: str) -> None:
    backend.generate(name, KeyRole.OTHER, Algorithm.ED25519, domain="store")
    assert backend.key_path(name).name == f"{name}.key.pem"


def test_unknown_domain_refused(backend: FileBackend) -> None:
    with pytest.raises(UsageError, match="unknown passphrase domain 'pin'"):
        backend.generate("a", KeyRole.OTHER, Algorithm.ED25519, domain="pin")  # type: ignore[arg-type]


def test_directory_is_private(backend: FileBackend) -> None:
    backend.generate("a", KeyRole.OTHER, Algorithm.ED25519, domain="store")
    assert stat.S_IMODE(backend.directory.stat().st_mode) == 0o700


# --- signatures by the conventions of keys._interface -------------------------------------------

DATA = b"firmware image bytes" * 100


def test_ecdsa_signatures(handles: dict[Algorithm, KeyHandle]) -> None:
    for algorithm, digest in (
        (Algorithm.ECDSA_P256, hashes.SHA256()),
        (Algorithm.ECDSA_P384, hashes.SHA384()),
    ):
        handle = handles[algorithm]
        public = handle.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        signature = handle.sign(DATA)
        utils.decode_dss_signature(signature)  # DER Ecdsa-Sig-Value
        public.verify(signature, DATA, ec.ECDSA(digest))
        hasher = hashes.Hash(digest)
        hasher.update(DATA)
        prehashed = handle.sign_digest(hasher.finalize())
        public.verify(prehashed, DATA, ec.ECDSA(digest))


def test_ed25519_signature(handles: dict[Algorithm, KeyHandle]) -> None:
    handle = handles[Algorithm.ED25519]
    public = handle.public_key()
    assert isinstance(public, ed25519.Ed25519PublicKey)
    signature = handle.sign(DATA)
    assert len(signature) == 64
    public.verify(signature, DATA)
    with pytest.raises(KeyStateError, match="cannot sign a digest: Ed25519 has no prehashed form"):
        handle.sign_digest(hashlib.sha256(DATA).digest())


def test_rsa_pss_signature(handles: dict[Algorithm, KeyHandle]) -> None:
    handle = handles[Algorithm.RSA_3072]
    public = handle.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    public.verify(handle.sign(DATA), DATA, pss, hashes.SHA256())
    public.verify(handle.sign_digest(hashlib.sha256(DATA).digest()), DATA, pss, hashes.SHA256())
    # salt length 32 exactly: a verifier expecting another length refuses.
    with pytest.raises(InvalidSignature):
        public.verify(
            handle.sign(DATA),
            DATA,
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=20),
            hashes.SHA256(),
        )


@pytest.mark.parametrize(("algorithm", "size"), [(Algorithm.ECDSA_P256, 48), (Algorithm.ECDSA_P384, 32)])
def test_sign_digest_wrong_length(handles: dict[Algorithm, KeyHandle], algorithm: Algorithm, size: int) -> None:
    with pytest.raises(UsageError, match=f"not {size} bytes"):
        handles[algorithm].sign_digest(b"\x00" * size)


def test_hmac(keys_of_every_algorithm: tuple[FileBackend, dict[Algorithm, KeyInfo]]) -> None:
    backend, made = keys_of_every_algorithm
    info = made[Algorithm.HMAC_SHA256]
    secret = _pkcs8.decode_hmac_private_key_info(backend.export_private_der(info))
    assert backend.unlock(info).mac(b"serial-0001") == hmac.digest(secret, b"serial-0001", "sha256")


def test_exchange(keys_of_every_algorithm: tuple[FileBackend, dict[Algorithm, KeyInfo]]) -> None:
    backend, made = keys_of_every_algorithm
    p256 = backend.unlock(made[Algorithm.ECIES_P256])
    peer = ec.generate_private_key(ec.SECP256R1())
    ours = p256.public_key()
    assert isinstance(ours, ec.EllipticCurvePublicKey)
    assert p256.exchange(peer.public_key()) == peer.exchange(ec.ECDH(), ours)
    x = backend.unlock(made[Algorithm.ECIES_X25519])
    peer_x = x25519.X25519PrivateKey.generate()
    ours_x = x.public_key()
    assert isinstance(ours_x, x25519.X25519PublicKey)
    assert x.exchange(peer_x.public_key()) == peer_x.exchange(ours_x)
    with pytest.raises(UsageError, match="needs a P-256 peer public key"):
        p256.exchange(ec.generate_private_key(ec.SECP384R1()).public_key())
    with pytest.raises(UsageError, match="needs a P-256 peer public key"):
        p256.exchange(peer_x.public_key())
    with pytest.raises(UsageError, match="needs an X25519 peer public key"):
        x.exchange(peer.public_key())
    with pytest.raises(UsageError, match=r"X25519 peer public key .* is invalid"):
        x.exchange(x25519.X25519PublicKey.from_public_bytes(b"\x00" * 32))  # small order


WRONG_TYPE = [
    (Algorithm.ECIES_P256, "sign", "cannot sign: it is not a signing key"),
    (Algorithm.ECIES_X25519, "sign", "cannot sign: it is not a signing key"),
    (Algorithm.HMAC_SHA256, "sign", "cannot sign: it is not a signing key"),
    (Algorithm.ECIES_P256, "sign_digest", "cannot sign a digest: it is not a signing key"),
    (Algorithm.HMAC_SHA256, "sign_digest", "cannot sign a digest: it is not a signing key"),
    (Algorithm.ECDSA_P256, "mac", "cannot compute a MAC: it is not an hmac-sha256 secret"),
    (Algorithm.ED25519, "mac", "cannot compute a MAC"),
    (Algorithm.ECIES_X25519, "mac", "cannot compute a MAC"),
    (
        Algorithm.ECDSA_P256,
        "exchange",
        "cannot do a key exchange: it is not an ecies-p256 or ecies-x25519 key",
    ),
    (Algorithm.RSA_3072, "exchange", "cannot do a key exchange"),
    (Algorithm.HMAC_SHA256, "exchange", "cannot do a key exchange"),
    (Algorithm.HMAC_SHA256, "public_key", "cannot give a public key: it is a secret key"),
]


@pytest.mark.parametrize(("algorithm", "operation", "message"), WRONG_TYPE)
def test_wrong_type_operations(
    handles: dict[Algorithm, KeyHandle], algorithm: Algorithm, operation: str, message: str
) -> None:
    handle = handles[algorithm]
    arguments: dict[str, tuple[object, ...]] = {
        "sign": (DATA,),
        "sign_digest": (b"\x00" * 32,),
        "mac": (DATA,),
        "exchange": (x25519.X25519PrivateKey.generate().public_key(),),
        "public_key": (),
    }
    with pytest.raises(KeyStateError) as caught:
        getattr(handle, operation)(*arguments[operation])
    assert f"key 'k-{algorithm.value}' ({algorithm.value}) {message}" in str(caught.value)


@pytest.mark.parametrize(
    ("status", "operation", "refused"),
    [
        (KeyStatus.RETIRED, "sign", True),
        (KeyStatus.RETIRED, "sign_digest", True),
        (KeyStatus.RETIRED, "mac", False),
        (KeyStatus.RETIRED, "exchange", False),
        (KeyStatus.REVOKED, "sign", True),
        (KeyStatus.REVOKED, "mac", True),
        (KeyStatus.REVOKED, "exchange", True),
    ],
)
def test_state_rules_of_the_handle(
    keys_of_every_algorithm: tuple[FileBackend, dict[Algorithm, KeyInfo]],
    status: KeyStatus,
    operation: str,
    refused: bool,
) -> None:
    backend, made = keys_of_every_algorithm
    algorithm, arguments = {
        "sign": (Algorithm.ECDSA_P256, (DATA,)),
        "sign_digest": (Algorithm.ECDSA_P256, (b"\x00" * 32,)),
        "mac": (Algorithm.HMAC_SHA256, (DATA,)),
        "exchange": (Algorithm.ECIES_X25519, (x25519.X25519PrivateKey.generate().public_key(),)),
    }[operation]
    info = made[algorithm]
    handle = backend.unlock(KeyInfo(**{**info.__dict__, "status": status}))
    if refused:
        with pytest.raises(KeyStateError, match=f"it is {status.value}"):
            getattr(handle, operation)(*arguments)
    else:
        getattr(handle, operation)(*arguments)


def test_handle_repr_shows_no_key(
    keys_of_every_algorithm: tuple[FileBackend, dict[Algorithm, KeyInfo]],
) -> None:
    backend, made = keys_of_every_algorithm
    handle = backend.unlock(made[Algorithm.HMAC_SHA256])
    assert repr(handle) == "FileKeyHandle('k-hmac-sha256', hmac-sha256)"
    assert isinstance(handle, FileKeyHandle)


# --- unlock failures -----------------------------------------------------------------------------


@pytest.fixture
def one_key(backend: FileBackend) -> tuple[FileBackend, KeyInfo, Path]:
    info = backend.generate("evidence-1", KeyRole.EVIDENCE, Algorithm.ECDSA_P256, domain="store")
    return backend, info, backend.key_path(info.name)


def test_wrong_passphrase(one_key: tuple[FileBackend, KeyInfo, Path]) -> None:
    backend, info, path = one_key
    wrong = FileBackend(backend.directory, Secrets(store="not the store passphrase"))
    with pytest.raises(WrongSecretError) as caught:
        wrong.unlock(info)
    assert str(caught.value) == f"the passphrase does not unlock key file {path}"
    with pytest.raises(WrongSecretError) as again:
        wrong.export_private_der(info)
    assert str(again.value) == str(caught.value)


def _damage_cases(pem: bytes) -> dict[str, tuple[bytes, type[KeyStoreError], str]]:
    der = _pkcs8.pem_decode(pem, source="x")
    flipped_oid = bytearray(der)
    flipped_oid[der.index(bytes.fromhex("2a864886f70d01050d")) + 8] ^= 0x01  # PBES2 -> another OID
    flipped_last = bytearray(der)
    flipped_last[-1] ^= 0x01  # last ciphertext byte: padding goes wrong
    return {
        "empty": (b"", KeyFileCorruptError, "is not one 'ENCRYPTED PRIVATE KEY' PEM block"),
        "garbage": (b"\x00\x01garbage\xff" * 10, KeyFileCorruptError, "is not PEM text"),
        "text": (b"hello\n", KeyFileCorruptError, "is not one 'ENCRYPTED PRIVATE KEY' PEM block"),
        "truncated-pem": (pem[: len(pem) // 2], KeyFileCorruptError, "is not one 'ENCRYPTED PRIVATE KEY'"),
        "truncated-der": (_pkcs8.pem_encode(der[:-5]), KeyFileCorruptError, "runs past the end"),
        "bit-flipped-oid": (
            _pkcs8.pem_encode(bytes(flipped_oid)),
            KeyFileCorruptError,
            "is not the expected",
        ),
        "bit-flipped-ciphertext": (
            _pkcs8.pem_encode(bytes(flipped_last)),
            WrongSecretError,
            "the passphrase does not unlock key file",
        ),
        "clear-key": (
            pem.replace(b"ENCRYPTED ", b""),
            KeyFileCorruptError,
            "is not one 'ENCRYPTED PRIVATE KEY' PEM block",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "empty",
        "garbage",
        "text",
        "truncated-pem",
        "truncated-der",
        "bit-flipped-oid",
        "bit-flipped-ciphertext",
        "clear-key",
    ],
)
def test_damaged_key_files(one_key: tuple[FileBackend, KeyInfo, Path], case: str) -> None:
    backend, info, path = one_key
    data, error, message = _damage_cases(path.read_bytes())[case]
    path.write_bytes(data)
    with pytest.raises(error) as caught:
        backend.unlock(info)
    assert f"key file {path}" in str(caught.value)
    assert message in str(caught.value)


def test_damage_reported_before_asking(one_key: tuple[FileBackend, KeyInfo, Path], secrets: Secrets) -> None:
    backend, info, path = one_key
    path.write_bytes(b"garbage")
    calls = len(secrets.calls)
    with pytest.raises(KeyFileCorruptError):
        backend.unlock(info)
    assert len(secrets.calls) == calls


def test_missing_and_oversized_files(one_key: tuple[FileBackend, KeyInfo, Path]) -> None:
    backend, info, path = one_key
    path.write_bytes(b"A" * (64 << 10) + b"A")
    with pytest.raises(KeyFileCorruptError, match="is larger than the limit of 65536 bytes"):
        backend.unlock(info)
    path.unlink()
    with pytest.raises(KeyFileCorruptError, match=f"key file {path} is missing"):
        backend.unlock(info)


def test_swapped_key_files(backend: FileBackend) -> None:
    a = backend.generate("a", KeyRole.OTHER, Algorithm.ECDSA_P256, domain="store")
    b = backend.generate("b", KeyRole.OTHER, Algorithm.ECDSA_P256, domain="store")
    c = backend.generate("c", KeyRole.OTHER, Algorithm.ED25519, domain="store")
    path_a, path_b, path_c = (backend.key_path(n) for n in "abc")
    data_a = path_a.read_bytes()
    path_a.write_bytes(path_b.read_bytes())
    with pytest.raises(KeyFileCorruptError, match="holds another key than the index records for 'a'"):
        backend.unlock(a)
    path_a.write_bytes(path_c.read_bytes())
    with pytest.raises(KeyFileCorruptError, match="holds an Ed25519 key, but the index records ecdsa-p256"):
        backend.unlock(a)
    path_a.write_bytes(data_a)
    assert backend.unlock(a).public_key() != backend.unlock(b).public_key()
    assert backend.unlock(c).info == c


def test_unlock_of_another_backend_refused(one_key: tuple[FileBackend, KeyInfo, Path]) -> None:
    backend, info, _ = one_key
    with pytest.raises(UsageError, match="lives in the pkcs11 backend"):
        backend.unlock(KeyInfo(**{**info.__dict__, "backend": "pkcs11"}))


@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_random_edits_never_escape(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    backend, info, original = _fuzz_target(tmp_path_factory)
    path = backend.key_path(info.name)
    edited = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "set", "delete", "insert", "truncate"]))
        position = data.draw(st.integers(0, max(len(edited) - 1, 0)))
        if action == "flip" and edited:
            edited[position] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "set" and edited:
            edited[position] = data.draw(st.integers(0, 255))
        elif action == "delete" and edited:
            del edited[position]
        elif action == "insert":
            edited.insert(position, data.draw(st.integers(0, 255)))
        else:
            del edited[position:]
    path.write_bytes(bytes(edited))
    try:
        handle = backend.unlock(info)
    except KeyStoreError as exc:
        assert isinstance(exc, KeyFileCorruptError | WrongSecretError), repr(exc)
    else:
        assert public_key_fingerprint(handle.public_key()) == info.fingerprint


_FUZZ: dict[str, tuple[FileBackend, KeyInfo, bytes]] = {}


def _fuzz_target(factory: pytest.TempPathFactory) -> tuple[FileBackend, KeyInfo, bytes]:
    if "target" not in _FUZZ:
        backend = FileBackend(factory.mktemp("fuzz") / "keys", Secrets())
        info = backend.generate("fuzz", KeyRole.OTHER, Algorithm.ECDSA_P256, domain="store")
        _FUZZ["target"] = (backend, info, backend.key_path("fuzz").read_bytes())
    return _FUZZ["target"]


# --- import, export, destroy --------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: (Algorithm.ECDSA_P256, ec.generate_private_key(ec.SECP256R1())),
        lambda: (Algorithm.ECIES_P256, ec.generate_private_key(ec.SECP256R1())),
        lambda: (Algorithm.ECDSA_P384, ec.generate_private_key(ec.SECP384R1())),
        lambda: (Algorithm.ED25519, ed25519.Ed25519PrivateKey.generate()),
        lambda: (Algorithm.ECIES_X25519, x25519.X25519PrivateKey.generate()),
    ],
    ids=["p256", "ecies-p256", "p384", "ed25519", "x25519"],
)
def test_import_round_trip(backend: FileBackend, make: object) -> None:
    algorithm, key = make()  # type: ignore[operator]
    info = backend.import_key("imported", KeyRole.OTHER, algorithm, _clear_der(key), domain="store")
    assert info.algorithm is algorithm
    assert info.fingerprint == public_key_fingerprint(key.public_key())
    assert backend.export_private_der(info) == _clear_der(key)


def test_import_rsa(
    backend: FileBackend,
    keys_of_every_algorithm: tuple[FileBackend, dict[Algorithm, KeyInfo]],
) -> None:
    source, made = keys_of_every_algorithm
    der = source.export_private_der(made[Algorithm.RSA_3072])
    info = backend.import_key("rsa", KeyRole.FIRMWARE_SIGNING, Algorithm.RSA_3072, der, domain="store")
    assert info.fingerprint == made[Algorithm.RSA_3072].fingerprint
    assert backend.key_path("rsa").read_bytes() != source.key_path("k-rsa-3072").read_bytes()


def test_import_hmac_raw_and_clear_der(backend: FileBackend) -> None:
    secret = bytes(range(32))
    raw = backend.import_key("raw", KeyRole.FACTORY_SECRET, Algorithm.HMAC_SHA256, secret, domain="store")
    der = backend.import_key(
        "der",
        KeyRole.FACTORY_SECRET,
        Algorithm.HMAC_SHA256,
        _pkcs8.encode_hmac_private_key_info(secret),
        domain="store",
    )
    assert raw.fingerprint == der.fingerprint == secret_fingerprint(secret)
    assert backend.unlock(raw).mac(b"x") == hmac.digest(secret, b"x", "sha256")
    assert backend.export_private_der(raw) == _pkcs8.encode_hmac_private_key_info(secret)


@pytest.mark.parametrize(
    ("algorithm", "make", "message"),
    [
        (
            Algorithm.RSA_3072,
            lambda: _clear_der(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            "as rsa-3072 is an RSA-2048 key",
        ),
        (
            Algorithm.ECDSA_P256,
            lambda: _clear_der(ec.generate_private_key(ec.SECP384R1())),
            "as ecdsa-p256 is an EC key on secp384r1",
        ),
        (
            Algorithm.ECDSA_P384,
            lambda: _clear_der(ec.generate_private_key(ec.SECP256K1())),
            "as ecdsa-p384 is an EC key on secp256k1",
        ),
        (
            Algorithm.ED25519,
            lambda: _clear_der(x25519.X25519PrivateKey.generate()),
            "as ed25519 is an X25519 key",
        ),
        (
            Algorithm.ECIES_X25519,
            lambda: _clear_der(ed25519.Ed25519PrivateKey.generate()),
            "is an Ed25519 key",
        ),
        (
            Algorithm.ED25519,
            lambda: _clear_der(ed448.Ed448PrivateKey.generate()),
            "as ed25519 is a key of type Ed448PrivateKey",
        ),
        (
            Algorithm.HMAC_SHA256,
            lambda: _clear_der(ec.generate_private_key(ec.SECP256R1())),
            "as hmac-sha256 is an EC key on secp256r1",
        ),
        (Algorithm.HMAC_SHA256, lambda: b"k" * 31, "is not PKCS#8 DER of a private key (or 32 raw bytes"),
        (Algorithm.ECDSA_P256, lambda: b"k" * 32, "is not PKCS#8 DER of a private key"),
        (
            Algorithm.ECDSA_P256,
            lambda: ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            ),
            "is not PKCS#8 DER",
        ),
    ],
    ids=[
        "rsa-2048",
        "p384-as-p256",
        "k256",
        "x-as-ed",
        "ed-as-x",
        "ed448",
        "ec-as-hmac",
        "short",
        "junk",
        "sec1",
    ],
)
def test_import_refusals(backend: FileBackend, algorithm: Algorithm, make: object, message: str) -> None:
    material = make()  # type: ignore[operator]
    with pytest.raises(KeyStoreError) as caught:
        backend.import_key("offered", KeyRole.OTHER, algorithm, material, domain="store")
    assert type(caught.value) is KeyStoreError
    assert str(caught.value).startswith("the key material offered for key 'offered' ")
    assert message in str(caught.value)
    assert not backend.key_path("offered").exists()


def test_export_non_extractable_refused(one_key: tuple[FileBackend, KeyInfo, Path]) -> None:
    backend, info, _ = one_key
    with pytest.raises(KeyNotExtractableError, match="key 'evidence-1' is marked non-extractable"):
        backend.export_private_der(KeyInfo(**{**info.__dict__, "extractable": False}))


def test_destroy(one_key: tuple[FileBackend, KeyInfo, Path]) -> None:
    backend, info, path = one_key
    backend.destroy(info)
    assert not path.exists()
    backend.destroy(info)  # idempotent: used in roll-backs


# --- nothing in clear on disk -------------------------------------------------------------------


def assert_no_clear_private_key(directory: Path) -> None:
    """No file under ``directory`` holds a private key in clear (markers, or loadable unencrypted)."""
    files = [p for p in directory.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        for marker in PRIVATE_KEY_MARKERS:
            assert marker not in data, f"{path} contains {marker!r}"
        for load in (serialization.load_pem_private_key, serialization.load_der_private_key):
            with pytest.raises((ValueError, TypeError)):
                load(data, None)
        with pytest.raises((ValueError, TypeError)):
            serialization.load_ssh_private_key(data, None)


def test_no_clear_private_key_on_disk(
    keys_of_every_algorithm: tuple[FileBackend, dict[Algorithm, KeyInfo]],
) -> None:
    backend, made = keys_of_every_algorithm
    assert_no_clear_private_key(backend.directory)
    # The secret's bytes appear nowhere either.
    secret = _pkcs8.decode_hmac_private_key_info(backend.export_private_der(made[Algorithm.HMAC_SHA256]))
    assert all(secret not in p.read_bytes() for p in backend.directory.iterdir())


# --- a team's existing keys ---------------------------------------------------------------------


@pytest.fixture
def imgtool_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.mark.parametrize(
    ("private_format", "password"),
    [
        (serialization.PrivateFormat.PKCS8, None),
        (serialization.PrivateFormat.TraditionalOpenSSL, None),
        (serialization.PrivateFormat.PKCS8, b"team password"),
        (serialization.PrivateFormat.TraditionalOpenSSL, b"team password"),
    ],
    ids=["pkcs8", "sec1", "pkcs8-pbkdf2", "sec1-encrypted"],
)
def test_load_team_key(
    tmp_path: Path,
    imgtool_key: ec.EllipticCurvePrivateKey,
    private_format: serialization.PrivateFormat,
    password: bytes | None,
) -> None:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    path = tmp_path / "imgtool-key.pem"
    path.write_bytes(imgtool_key.private_bytes(serialization.Encoding.PEM, private_format, encryption))
    assert load_pem_private_key_file(path, password) == _clear_der(imgtool_key)
    if password:
        assert load_pem_private_key_file(path, password.decode()) == _clear_der(imgtool_key)
        with pytest.raises(WrongSecretError, match=f"the password does not unlock key file {path}"):
            load_pem_private_key_file(path, b"wrong")
        with pytest.raises(WrongSecretError, match="is encrypted: its password is needed"):
            load_pem_private_key_file(path)
    else:
        # A password given for a clear file is not needed, and not an error.
        assert load_pem_private_key_file(path, b"unneeded") == _clear_der(imgtool_key)


def test_load_team_key_in_our_scrypt_form(tmp_path: Path, imgtool_key: ec.EllipticCurvePrivateKey) -> None:
    path = tmp_path / "k.pem"
    path.write_bytes(b"comment line\n" + _pkcs8.encrypt_pem(_clear_der(imgtool_key), b"pw"))
    assert load_pem_private_key_file(path, "pw") == _clear_der(imgtool_key)
    with pytest.raises(WrongSecretError, match=f"the passphrase does not unlock key file {path}"):
        load_pem_private_key_file(path, "wrong")
    with pytest.raises(WrongSecretError, match="its password is needed"):
        load_pem_private_key_file(path, None)


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (b"not a key", KeyFileCorruptError, "is not a PEM private key this toolkit can use"),
        (
            dsa.generate_private_key(key_size=2048).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            KeyFileCorruptError,
            "which trustroot does not use",
        ),
    ],
    ids=["text", "dsa"],
)
def test_load_team_key_refusals(tmp_path: Path, content: bytes, error: type[Exception], message: str) -> None:
    path = tmp_path / "k.pem"
    path.write_bytes(content)
    with pytest.raises(error, match=message):
        load_pem_private_key_file(path)


def test_load_team_key_unreadable(tmp_path: Path) -> None:
    with pytest.raises(UnreadableInputError, match="cannot be read"):
        load_pem_private_key_file(tmp_path / "missing.pem")
