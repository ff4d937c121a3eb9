"""The PKCS#11 backend against a real SoftHSM2 token (``softhsm_token`` in conftest.py).

Every signature is checked with pyca/cryptography's public API, every MAC and shared secret
against a computation in Python, and the non-extractability is checked at the PKCS#11 level too.
"""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pkcs11
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils, x25519
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from pkcs11 import exceptions as p11x
from pkcs11.constants import Attribute, ObjectClass

from trustroot.errors import (
    KeyExistsError,
    KeyNotExtractableError,
    KeyNotFoundError,
    KeyStateError,
    KeyStoreError,
    TokenError,
    UsageError,
    WrongSecretError,
)
from trustroot.keys import _pkcs8
from trustroot.keys._interface import (
    Algorithm,
    KeyBackend,
    KeyHandle,
    KeyInfo,
    KeyRole,
    KeyStatus,
    public_key_fingerprint,
)
from trustroot.keys._softhsm import SETUP_SCRIPT, SoftHsmInstall, SoftHsmToken, create_token, require_softhsm
from trustroot.keys.passphrase import SecretSource, fixed_secrets
from trustroot.keys.pkcs11store import TOKEN_LABEL_KEY, Pkcs11Backend, key_id_for
from trustroot.keys.store import secret_fingerprint

pytestmark = pytest.mark.integration

SIGNING = [Algorithm.ECDSA_P256, Algorithm.ECDSA_P384, Algorithm.ED25519, Algorithm.RSA_3072]
ALL_TOKEN = [*SIGNING, Algorithm.ECIES_P256, Algorithm.HMAC_SHA256]
PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
ECDSA_HASH: dict[Algorithm, type[hashes.SHA256] | type[hashes.SHA384]] = {
    Algorithm.ECDSA_P256: hashes.SHA256,
    Algorithm.ECDSA_P384: hashes.SHA384,
}
MESSAGE = b"firmware image v1.2.3 \x00\xff" * 50


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def verify(public: PublicKeyTypes, algorithm: Algorithm, signature: bytes, data: bytes) -> None:
    """Verify with pyca/cryptography by the signature conventions of keys._interface."""
    if algorithm in ECDSA_HASH:
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(signature, data, ec.ECDSA(ECDSA_HASH[algorithm]()))
    elif algorithm is Algorithm.ED25519:
        assert isinstance(public, ed25519.Ed25519PublicKey)
        public.verify(signature, data)
    else:
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(signature, data, PSS, hashes.SHA256())


def software_key(algorithm: Algorithm) -> PrivateKeyTypes:
    if algorithm in (Algorithm.ECDSA_P256, Algorithm.ECIES_P256):
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm is Algorithm.ECDSA_P384:
        return ec.generate_private_key(ec.SECP384R1())
    if algorithm is Algorithm.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(65537, 3072)


def pkcs8(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="module")
def generated(softhsm_token: SoftHsmToken) -> Iterator[dict[Algorithm, KeyInfo]]:
    """One key of every token algorithm, generated once for the module (RSA-3072 takes a while)."""
    secrets = fixed_secrets("unused", pin=softhsm_token.pin)
    with Pkcs11Backend(softhsm_token.module_path, softhsm_token.label, secrets) as backend:
        infos = {
            algorithm: backend.generate(unique(f"gen-{algorithm.value}"), KeyRole.OTHER, algorithm, domain="store")
            for algorithm in ALL_TOKEN
        }
    yield infos


@pytest.fixture
def raw_session(softhsm_token: SoftHsmToken, pkcs11_backend: Pkcs11Backend) -> Iterator[pkcs11.Session]:
    """A plain python-pkcs11 session on the token, logged in through the backend's login."""
    pkcs11_backend.open()  # the backend owns the login; this session shares it
    module = str(Path(softhsm_token.module_path).resolve())  # python-pkcs11 caches modules by path
    token = pkcs11.lib(module).get_token(token_label=softhsm_token.label)
    session = token.open(rw=False)
    yield session
    session.close()


# --- generate, sign, verify ----------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", SIGNING, ids=str)
def test_generated_key_signs_and_cryptography_verifies(
    pkcs11_backend: Pkcs11Backend, generated: dict[Algorithm, KeyInfo], algorithm: Algorithm
) -> None:
    info = generated[algorithm]
    assert info.backend == "pkcs11"
    assert info.algorithm is algorithm
    assert info.extractable is False
    assert info.labels[TOKEN_LABEL_KEY] == "trustroot-test"

    handle = pkcs11_backend.unlock(info)
    assert isinstance(handle, KeyHandle)
    public = handle.public_key()
    assert public_key_fingerprint(public) == info.fingerprint
    from_pem = serialization.load_pem_public_key(info.public_pem.encode("ascii"))
    assert public_key_fingerprint(from_pem) == info.fingerprint

    signature = handle.sign(MESSAGE)
    verify(public, algorithm, signature, MESSAGE)
    with pytest.raises(InvalidSignature):
        verify(public, algorithm, signature, MESSAGE + b"!")


@pytest.mark.parametrize("algorithm", [Algorithm.ECDSA_P256, Algorithm.ECDSA_P384], ids=str)
def test_ecdsa_signatures_are_der(
    pkcs11_backend: Pkcs11Backend, generated: dict[Algorithm, KeyInfo], algorithm: Algorithm
) -> None:
    handle = pkcs11_backend.unlock(generated[algorithm])
    signature = handle.sign(MESSAGE)
    assert signature[0] == 0x30
    r, s = utils.decode_dss_signature(signature)
    assert utils.encode_dss_signature(r, s) == signature
    public = handle.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, MESSAGE, ec.ECDSA(ECDSA_HASH[algorithm]()))
    with pytest.raises(InvalidSignature):  # the raw r||s form is not what a verifier accepts
        size = public.curve.key_size // 8
        public.verify(r.to_bytes(size, "big") + s.to_bytes(size, "big"), MESSAGE, ec.ECDSA(ECDSA_HASH[algorithm]()))


@pytest.mark.parametrize("algorithm", [Algorithm.ECDSA_P256, Algorithm.ECDSA_P384, Algorithm.RSA_3072], ids=str)
def test_sign_digest_matches_the_prehashed_verification(
    pkcs11_backend: Pkcs11Backend, generated: dict[Algorithm, KeyInfo], algorithm: Algorithm
) -> None:
    handle = pkcs11_backend.unlock(generated[algorithm])
    public = handle.public_key()
    hash_type = ECDSA_HASH.get(algorithm, hashes.SHA256)
    digest = hashlib.new(hash_type.name, MESSAGE).digest()
    signature = handle.sign_digest(digest)
    verify(public, algorithm, signature, MESSAGE)
    if isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(signature, digest, ec.ECDSA(utils.Prehashed(hash_type())))
    with pytest.raises(UsageError, match="digests of"):
        handle.sign_digest(digest[:-1])


def test_ed25519_has_no_digest_signing(pkcs11_backend: Pkcs11Backend, generated: dict[Algorithm, KeyInfo]) -> None:
    handle = pkcs11_backend.unlock(generated[Algorithm.ED25519])
    with pytest.raises(KeyStateError, match="Ed25519 has no prehashed form"):
        handle.sign_digest(hashlib.sha256(MESSAGE).digest())
    assert len(handle.sign(b"")) == 64


# --- import --------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", [*SIGNING, Algorithm.ECIES_P256], ids=str)
def test_imported_key_keeps_its_public_key_and_signs(pkcs11_backend: Pkcs11Backend, algorithm: Algorithm) -> None:
    key = software_key(algorithm)
    info = pkcs11_backend.import_key(unique("imp"), KeyRole.OTHER, algorithm, pkcs8(key), domain="store")
    assert info.fingerprint == public_key_fingerprint(key.public_key())
    handle = pkcs11_backend.unlock(info)
    assert public_key_fingerprint(handle.public_key()) == info.fingerprint
    if algorithm.is_signing:
        verify(key.public_key(), algorithm, handle.sign(MESSAGE), MESSAGE)
    else:
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        peer = ec.generate_private_key(ec.SECP256R1())
        assert handle.exchange(peer.public_key()) == key.exchange(ec.ECDH(), peer.public_key())


def test_imported_hmac_secret_equals_python_hmac(pkcs11_backend: Pkcs11Backend) -> None:
    secret = bytes(range(32))
    info = pkcs11_backend.import_key(
        unique("hmac"), KeyRole.FACTORY_SECRET, Algorithm.HMAC_SHA256, secret, domain="store"
    )
    assert info.public_pem == ""
    assert info.fingerprint == secret_fingerprint(secret)  # the same key id as the file backend's
    handle = pkcs11_backend.unlock(info)
    for data in (b"", b"device-serial-0001", MESSAGE):
        assert handle.mac(data) == hmac.new(secret, data, hashlib.sha256).digest()


def test_hmac_secret_imports_from_its_pkcs8_form(pkcs11_backend: Pkcs11Backend) -> None:
    secret = hashlib.sha256(b"factory secret").digest()
    material = _pkcs8.encode_hmac_private_key_info(secret)
    info = pkcs11_backend.import_key(
        unique("hmac8"), KeyRole.FACTORY_SECRET, Algorithm.HMAC_SHA256, material, domain="store"
    )
    assert pkcs11_backend.unlock(info).mac(b"x") == hmac.new(secret, b"x", hashlib.sha256).digest()


def test_generated_hmac_secret_macs(pkcs11_backend: Pkcs11Backend, generated: dict[Algorithm, KeyInfo]) -> None:
    handle = pkcs11_backend.unlock(generated[Algorithm.HMAC_SHA256])
    tag = handle.mac(b"serial-42")
    assert len(tag) == 32
    assert handle.mac(b"serial-42") == tag
    assert handle.mac(b"serial-43") != tag
    with pytest.raises(KeyStateError, match="it is a secret key"):
        handle.public_key()


@pytest.mark.parametrize(
    ("algorithm", "material", "message"),
    [
        (Algorithm.ECDSA_P256, b"not a key", "not unencrypted PKCS#8 DER"),
        (Algorithm.ECDSA_P256, pkcs8(ec.generate_private_key(ec.SECP384R1())), "is an EC key on secp384r1"),
        (Algorithm.ED25519, pkcs8(ec.generate_private_key(ec.SECP256R1())), "is an EC key on secp256r1"),
        (Algorithm.RSA_3072, pkcs8(rsa.generate_private_key(65537, 2048)), "is an RSA-2048 key"),
        (Algorithm.HMAC_SHA256, b"\x01" * 16, "neither an hmacWithSHA256 PKCS#8 key nor 32 raw bytes"),
    ],
    ids=["garbage", "wrong-curve", "ec-as-ed25519", "rsa-2048", "short-secret"],
)
def test_import_refuses_material_of_the_wrong_kind(
    pkcs11_backend: Pkcs11Backend, algorithm: Algorithm, material: bytes, message: str
) -> None:
    name = unique("bad")
    with pytest.raises(UsageError, match=message):
        pkcs11_backend.import_key(name, KeyRole.OTHER, algorithm, material, domain="store")
    with pytest.raises(KeyNotFoundError):
        pkcs11_backend.destroy(KeyInfo(name, KeyRole.OTHER, algorithm, "pkcs11", datetime.now(UTC)))


# --- ECDH ----------------------------------------------------------------------------------------


def test_ecdh_equals_cryptography_and_leaves_no_secret_behind(
    pkcs11_backend: Pkcs11Backend, generated: dict[Algorithm, KeyInfo], raw_session: pkcs11.Session
) -> None:
    handle = pkcs11_backend.unlock(generated[Algorithm.ECIES_P256])
    own_public = handle.public_key()
    assert isinstance(own_public, ec.EllipticCurvePublicKey)
    for _ in range(3):
        peer = ec.generate_private_key(ec.SECP256R1())
        shared = handle.exchange(peer.public_key())
        assert shared == peer.exchange(ec.ECDH(), own_public)
        assert len(shared) == 32
    session_secrets = list(raw_session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.TOKEN: False}))
    assert session_secrets == []


def test_ecdh_refuses_peers_on_other_curves(pkcs11_backend: Pkcs11Backend, generated: dict[Algorithm, KeyInfo]) -> None:
    handle = pkcs11_backend.unlock(generated[Algorithm.ECIES_P256])
    with pytest.raises(UsageError, match="needs a P-256 peer public key"):
        handle.exchange(ec.generate_private_key(ec.SECP384R1()).public_key())
    with pytest.raises(UsageError, match="needs a P-256 peer public key"):
        handle.exchange(x25519.X25519PrivateKey.generate().public_key())
    with pytest.raises(KeyStateError, match="it is not a signing key"):
        handle.sign(MESSAGE)


def test_ecies_x25519_is_file_backend_only(pkcs11_backend: Pkcs11Backend) -> None:
    with pytest.raises(KeyStoreError) as caught:
        pkcs11_backend.generate(unique("x"), KeyRole.IMAGE_ENCRYPTION, Algorithm.ECIES_X25519, domain="store")
    assert caught.value.message == "X25519 keys are file-backend only (SoftHSM2 has no X25519)"
    material = x25519.X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(KeyStoreError, match="X25519 keys are file-backend only"):
        pkcs11_backend.import_key(
            unique("x"), KeyRole.IMAGE_ENCRYPTION, Algorithm.ECIES_X25519, material, domain="store"
        )


# --- nothing leaves the token --------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALL_TOKEN, ids=str)
def test_export_is_refused(
    pkcs11_backend: Pkcs11Backend, generated: dict[Algorithm, KeyInfo], algorithm: Algorithm
) -> None:
    info = generated[algorithm]
    with pytest.raises(KeyNotExtractableError) as caught:
        pkcs11_backend.export_private_der(info)
    assert str(caught.value) == (
        f"key '{info.name}' lives on PKCS#11 token 'trustroot-test' as sensitive and non-extractable; export refused"
    )


@pytest.mark.parametrize("algorithm", ALL_TOKEN, ids=str)
def test_token_refuses_to_reveal_the_private_value(
    generated: dict[Algorithm, KeyInfo], raw_session: pkcs11.Session, algorithm: Algorithm
) -> None:
    info = generated[algorithm]
    object_class = ObjectClass.SECRET_KEY if algorithm is Algorithm.HMAC_SHA256 else ObjectClass.PRIVATE_KEY
    key = raw_session.get_key(object_class=object_class, label=info.name)
    assert key.id == key_id_for(info.name)
    assert key[Attribute.TOKEN] is True
    assert key[Attribute.SENSITIVE] is True
    assert key[Attribute.EXTRACTABLE] is False
    assert key[Attribute.ALWAYS_SENSITIVE] is True
    assert key[Attribute.NEVER_EXTRACTABLE] is True
    secret_attribute = Attribute.PRIVATE_EXPONENT if algorithm is Algorithm.RSA_3072 else Attribute.VALUE
    with pytest.raises(p11x.AttributeSensitive):
        key[secret_attribute]


def test_imported_key_is_sensitive_and_unreadable_too(
    pkcs11_backend: Pkcs11Backend, raw_session: pkcs11.Session
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    info = pkcs11_backend.import_key(unique("imp"), KeyRole.OTHER, Algorithm.ECDSA_P256, pkcs8(key), domain="store")
    token_key = raw_session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=info.name)
    assert token_key[Attribute.SENSITIVE] is True
    assert token_key[Attribute.EXTRACTABLE] is False
    with pytest.raises(p11x.AttributeSensitive):
        token_key[Attribute.VALUE]


# --- PIN, module and token errors -------------------------------------------------------------


def test_wrong_pin_is_refused_by_the_token(softhsm_token: SoftHsmToken) -> None:
    backend = Pkcs11Backend(softhsm_token.module_path, softhsm_token.label, fixed_secrets("x", pin="0000-wrong"))
    with pytest.raises(WrongSecretError) as caught:
        backend.generate(unique("never"), KeyRole.OTHER, Algorithm.ECDSA_P256, domain="store")
    assert str(caught.value) == "the PIN does not open PKCS#11 token 'trustroot-test'"
    assert isinstance(caught.value.__cause__, p11x.PinIncorrect)
    assert not backend.is_open


def test_wrong_pin_is_refused_while_the_token_is_logged_in(
    softhsm_token: SoftHsmToken, pkcs11_backend: Pkcs11Backend, generated: dict[Algorithm, KeyInfo]
) -> None:
    pkcs11_backend.unlock(generated[Algorithm.ECDSA_P256])
    intruder = Pkcs11Backend(softhsm_token.module_path, softhsm_token.label, fixed_secrets("x", pin="0000-wrong"))
    with pytest.raises(WrongSecretError, match=r"^the PIN does not open PKCS#11 token 'trustroot-test'$"):
        intruder.unlock(generated[Algorithm.ECDSA_P256])


def test_missing_pin_is_a_wrong_secret(softhsm_token: SoftHsmToken) -> None:
    backend = Pkcs11Backend(softhsm_token.module_path, softhsm_token.label, fixed_secrets("x"))
    with pytest.raises(WrongSecretError, match="no PKCS#11 user PIN given"):
        backend.generate(unique("never"), KeyRole.OTHER, Algorithm.ECDSA_P256, domain="store")


def test_missing_module_names_the_path_and_the_setup_script(pin_secrets: SecretSource) -> None:
    backend = Pkcs11Backend("/nonexistent/libsofthsm2.so", "trustroot-test", pin_secrets)  # nothing loaded yet
    with pytest.raises(TokenError) as caught:
        backend.generate(unique("never"), KeyRole.OTHER, Algorithm.ECDSA_P256, domain="store")
    message = str(caught.value)
    assert "PKCS#11 module /nonexistent/libsofthsm2.so does not exist" in message
    assert SETUP_SCRIPT in message


def test_unloadable_module_is_a_token_error(tmp_path: Path, pin_secrets: SecretSource) -> None:
    fake = tmp_path / "libfake.so"
    fake.write_bytes(b"not a shared object")
    backend = Pkcs11Backend(str(fake), "trustroot-test", pin_secrets)
    with pytest.raises(TokenError, match=f"cannot load PKCS#11 module {fake}"):
        backend.generate(unique("never"), KeyRole.OTHER, Algorithm.ECDSA_P256, domain="store")


def test_missing_token_lists_the_labels_present(softhsm_token: SoftHsmToken, pin_secrets: SecretSource) -> None:
    backend = Pkcs11Backend(softhsm_token.module_path, "no-such-token", pin_secrets)
    with pytest.raises(TokenError) as caught:
        backend.generate(unique("never"), KeyRole.OTHER, Algorithm.ECDSA_P256, domain="store")
    message = str(caught.value)
    assert message.startswith(
        f"no PKCS#11 token labelled 'no-such-token' in module {softhsm_token.module_path}; tokens present: "
    )
    assert "'trustroot-test'" in message


def test_token_initialised_after_the_module_loaded_is_found(
    softhsm_token: SoftHsmToken, generated: dict[Algorithm, KeyInfo]
) -> None:
    # `generated` has loaded the module already; SoftHSM2 sees a new token only after re-initialising.
    label = unique("late")
    subprocess.run(
        [
            require_softhsm().util_path,
            "--init-token",
            "--free",
            "--label",
            label,
            "--so-pin",
            "5555-6666",
            "--pin",
            "7777-8888",
        ],
        env={"PATH": "/usr/bin:/bin", **softhsm_token.environ()},
        capture_output=True,
        check=True,
    )
    with Pkcs11Backend(softhsm_token.module_path, label, fixed_secrets("x", pin="7777-8888")) as backend:
        info = backend.generate(unique("late-key"), KeyRole.OTHER, Algorithm.ED25519, domain="store")
        verify(backend.unlock(info).public_key(), Algorithm.ED25519, backend.unlock(info).sign(b"m"), b"m")


# --- persistence, sessions and key life cycle -------------------------------------------------


def test_keys_persist_across_backend_instances(softhsm_token: SoftHsmToken, pin_secrets: SecretSource) -> None:
    name = unique("persist")
    with Pkcs11Backend(softhsm_token.module_path, softhsm_token.label, pin_secrets) as first:
        info = first.generate(name, KeyRole.FIRMWARE_SIGNING, Algorithm.ECDSA_P256, domain="store")
        assert first.is_open
    assert not first.is_open
    with Pkcs11Backend(softhsm_token.module_path, softhsm_token.label, pin_secrets) as second:
        handle = second.unlock(info)
        verify(handle.public_key(), Algorithm.ECDSA_P256, handle.sign(MESSAGE), MESSAGE)
        with pytest.raises(KeyExistsError, match=f"key '{name}' exists on PKCS#11 token 'trustroot-test' already"):
            second.generate(name, KeyRole.OTHER, Algorithm.ED25519, domain="store")


def test_backends_share_the_login_and_close_independently(
    softhsm_token: SoftHsmToken, pin_secrets: SecretSource, generated: dict[Algorithm, KeyInfo]
) -> None:
    info = generated[Algorithm.ED25519]
    first = Pkcs11Backend(softhsm_token.module_path, softhsm_token.label, pin_secrets)
    second = Pkcs11Backend(softhsm_token.module_path, softhsm_token.label, pin_secrets)
    handle_one, handle_two = first.unlock(info), second.unlock(info)
    first.close()
    first.close()  # closing twice is harmless
    verify(handle_two.public_key(), Algorithm.ED25519, handle_two.sign(MESSAGE), MESSAGE)
    # a handle of a closed backend opens a new session when used again
    verify(handle_one.public_key(), Algorithm.ED25519, handle_one.sign(MESSAGE), MESSAGE)
    first.close()
    second.close()


def test_backend_is_a_key_backend(pkcs11_backend: Pkcs11Backend) -> None:
    backend: KeyBackend = pkcs11_backend
    assert backend.name == "pkcs11"
    assert not pkcs11_backend.is_open  # lazily opened
    assert "trustroot-test" in repr(pkcs11_backend)


def test_destroy_removes_every_object_of_the_key(pkcs11_backend: Pkcs11Backend, raw_session: pkcs11.Session) -> None:
    info = pkcs11_backend.generate(unique("gone"), KeyRole.OTHER, Algorithm.ECDSA_P256, domain="store")
    assert len(list(raw_session.get_objects({Attribute.LABEL: info.name}))) == 2
    pkcs11_backend.destroy(info)
    assert list(raw_session.get_objects({Attribute.LABEL: info.name})) == []
    with pytest.raises(KeyNotFoundError, match=f"key '{info.name}' is not on PKCS#11 token 'trustroot-test'"):
        pkcs11_backend.unlock(info)
    with pytest.raises(KeyNotFoundError):
        pkcs11_backend.destroy(info)


def test_unlock_refuses_a_token_key_that_is_not_the_recorded_one(
    pkcs11_backend: Pkcs11Backend, generated: dict[Algorithm, KeyInfo]
) -> None:
    info = generated[Algorithm.ECDSA_P256]
    forged = KeyInfo(**{**info.__dict__, "fingerprint": "00" * 32})
    with pytest.raises(TokenError, match="is not the key the store recorded"):
        pkcs11_backend.unlock(forged)
    wrong_algorithm = KeyInfo(**{**info.__dict__, "algorithm": Algorithm.ECDSA_P384})
    with pytest.raises(KeyStateError, match="is not ecdsa-p384"):
        pkcs11_backend.unlock(wrong_algorithm)
    wrong_type = KeyInfo(**{**info.__dict__, "algorithm": Algorithm.RSA_3072})
    with pytest.raises(KeyStateError, match="is not a rsa-3072 key"):
        pkcs11_backend.unlock(wrong_type)
    other_backend = KeyInfo(**{**info.__dict__, "backend": "file"})
    with pytest.raises(KeyStateError, match="belongs to the file backend"):
        pkcs11_backend.unlock(other_backend)


def test_handles_follow_the_type_and_state_rules(
    pkcs11_backend: Pkcs11Backend, generated: dict[Algorithm, KeyInfo]
) -> None:
    signer = pkcs11_backend.unlock(generated[Algorithm.ECDSA_P256])
    with pytest.raises(KeyStateError, match="cannot compute a MAC: it is not an hmac-sha256 secret"):
        signer.mac(b"x")
    with pytest.raises(KeyStateError, match="cannot do a key exchange"):
        signer.exchange(ec.generate_private_key(ec.SECP256R1()).public_key())
    secret = pkcs11_backend.unlock(generated[Algorithm.HMAC_SHA256])
    with pytest.raises(KeyStateError, match="cannot sign: it is not a signing key"):
        secret.sign(b"x")

    retired = KeyInfo(**{**generated[Algorithm.ECDSA_P256].__dict__, "status": KeyStatus.RETIRED})
    with pytest.raises(KeyStateError, match="cannot sign: it is retired"):
        pkcs11_backend.unlock(retired).sign(MESSAGE)
    retired_ecies = KeyInfo(**{**generated[Algorithm.ECIES_P256].__dict__, "status": KeyStatus.RETIRED})
    pkcs11_backend.unlock(retired_ecies).exchange(ec.generate_private_key(ec.SECP256R1()).public_key())
    revoked = KeyInfo(**{**generated[Algorithm.HMAC_SHA256].__dict__, "status": KeyStatus.REVOKED})
    with pytest.raises(KeyStateError, match="cannot compute a MAC: it is revoked"):
        pkcs11_backend.unlock(revoked).mac(b"x")


@pytest.mark.parametrize("name", ["", "Upper", "-lead", "a/b", "x" * 65])
def test_key_names_are_checked(pkcs11_backend: Pkcs11Backend, name: str) -> None:
    with pytest.raises(UsageError, match="is not allowed"):
        pkcs11_backend.generate(name, KeyRole.OTHER, Algorithm.ECDSA_P256, domain="store")


def test_generate_records_the_injected_clock(softhsm_token: SoftHsmToken, pin_secrets: SecretSource) -> None:
    moment = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    with Pkcs11Backend(softhsm_token.module_path, softhsm_token.label, pin_secrets, clock=lambda: moment) as backend:
        info = backend.generate(unique("clock"), KeyRole.EVIDENCE, Algorithm.ED25519, domain="root")
    assert info.created == moment
    assert info.role is KeyRole.EVIDENCE
    assert info.passphrase_domain == "root"


# --- the SoftHSM2 helpers -------------------------------------------------------------------------


def test_create_token_makes_a_separate_token(tmp_path: Path) -> None:
    token = create_token(tmp_path, "side-token", pin="1111-2222", so_pin="3333-4444", activate=False)
    assert token.config_path.read_text(encoding="utf-8").count("directories.tokendir") == 1
    shown = subprocess.run(
        [require_softhsm().util_path, "--show-slots"],
        env={"PATH": "/usr/bin:/bin", **token.environ()},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "side-token" in shown.stdout
    assert "trustroot-test" not in shown.stdout


def test_create_token_reports_a_failing_tool(tmp_path: Path) -> None:
    broken = SoftHsmInstall(module_path=require_softhsm().module_path, util_path="/bin/false")
    with pytest.raises(TokenError, match="softhsm2-util refused to initialise token 'x'"):
        create_token(tmp_path, "x", pin="1", so_pin="2", install=broken, activate=False)
