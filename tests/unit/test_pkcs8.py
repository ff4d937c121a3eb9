"""PKCS#8 EncryptedPrivateKeyInfo with PBES2 = scrypt + AES-256-CBC (trustroot.keys._pkcs8)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from hypothesis import given, settings
from hypothesis import strategies as st

from trustroot import _der
from trustroot.errors import KeyFileCorruptError, KeyStoreError, UsageError, WrongSecretError
from trustroot.keys import _pkcs8
from trustroot.limits import INSECURE_TEST_SCRYPT, Limits, ScryptCost

PASSPHRASE = b"correct horse battery staple"
SOURCE = "keys/test.key.pem"
UNLOCK_MESSAGE = f"the passphrase does not unlock key file {SOURCE}"


def _pkcs8_der(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="module")
def ec_der() -> bytes:
    return _pkcs8_der(ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture(scope="module")
def sealed(ec_der: bytes) -> bytes:
    return _pkcs8.encrypt_pem(ec_der, PASSPHRASE)


# --- building envelopes by hand, for the strictness table ------------------------------------------


def _envelope(
    *,
    pbes2_oid: str = _pkcs8.PBES2_OID,
    kdf_oid: str = _pkcs8.SCRYPT_OID,
    cipher_oid: str = _pkcs8.AES256_CBC_OID,
    salt: bytes = b"s" * 16,
    n: int = 1024,
    r: int = 8,
    p: int = 1,
    key_length: int | None = 32,
    iv: bytes = b"i" * 16,
    ciphertext: bytes = b"c" * 32,
    trailing: bytes = b"",
) -> bytes:
    params = [_der.octet_string(salt), _der.integer(n), _der.integer(r), _der.integer(p)]
    if key_length is not None:
        params.append(_der.integer(key_length))
    pbes2 = _der.sequence(
        _der.sequence(_der.oid(kdf_oid), _der.sequence(*params)),
        _der.sequence(_der.oid(cipher_oid), _der.octet_string(iv)),
    )
    return _der.sequence(_der.sequence(_der.oid(pbes2_oid), pbes2), _der.octet_string(ciphertext)) + trailing


def _encrypt_raw(plain: bytes, *, salt: bytes = b"s" * 16, iv: bytes = b"i" * 16) -> bytes:
    """An envelope whose ciphertext is ``plain`` encrypted as is (no padding added) under PASSPHRASE."""
    key = Scrypt(salt=salt, length=32, n=1024, r=8, p=1).derive(PASSPHRASE)
    encryptor = Cipher(algorithms.AES256(key), modes.CBC(iv)).encryptor()
    return _envelope(salt=salt, iv=iv, ciphertext=encryptor.update(plain) + encryptor.finalize())


def _padded(data: bytes) -> bytes:
    padder = padding.PKCS7(128).padder()
    return padder.update(data) + padder.finalize()


# --- round trips -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: _pkcs8_der(ec.generate_private_key(ec.SECP256R1())),
        lambda: _pkcs8_der(ec.generate_private_key(ec.SECP384R1())),
        lambda: _pkcs8_der(ed25519.Ed25519PrivateKey.generate()),
        lambda: x25519.X25519PrivateKey.generate().private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        lambda: _pkcs8.encode_hmac_private_key_info(bytes(range(32))),
    ],
    ids=["p256", "p384", "ed25519", "x25519", "hmac"],
)
def test_round_trip(make: Callable[[], bytes]) -> None:
    der = make()
    pem = _pkcs8.encrypt_pem(der, PASSPHRASE)
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    assert pem.endswith(b"-----END ENCRYPTED PRIVATE KEY-----\n")
    assert all(len(line) <= 64 for line in pem.splitlines())
    assert _pkcs8.decrypt_pem(pem, PASSPHRASE, source=SOURCE) == der


def test_round_trip_rsa() -> None:
    # The envelope does not care about the key size: 2048 bits keep the test fast.
    der = _pkcs8_der(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    assert _pkcs8.decrypt_pem(_pkcs8.encrypt_pem(der, PASSPHRASE), PASSPHRASE, source=SOURCE) == der


def test_envelope_fields(sealed: bytes) -> None:
    der = _pkcs8.pem_decode(sealed, source=SOURCE)
    outer = _der.parse_sequence(der)
    algorithm = _der.parse_sequence(outer[0].raw)
    assert _der.decode_oid(algorithm[0]) == "1.2.840.113549.1.5.13"
    pbes2 = _der.parse_sequence(algorithm[1].raw)
    kdf = _der.parse_sequence(pbes2[0].raw)
    assert _der.decode_oid(kdf[0]) == "1.3.6.1.4.1.11591.4.11"
    params = _der.parse_sequence(kdf[1].raw)
    assert len(params[0].content) == 16
    # The suite runs with the test-only cost (tests/conftest.py); keyLength is written as 32.
    assert [_der.decode_integer(x) for x in params[1:]] == [2**10, 8, 1, 32]
    cipher = _der.parse_sequence(pbes2[1].raw)
    assert _der.decode_oid(cipher[0]) == "2.16.840.1.101.3.4.1.42"
    assert len(cipher[1].content) == 16
    assert _pkcs8.pbes2_kdf_oid(der) == _pkcs8.SCRYPT_OID


def test_explicit_cost_is_written(ec_der: bytes) -> None:
    der = _pkcs8.encrypt(ec_der, PASSPHRASE, cost=ScryptCost(n=2**11, r=4, p=2))
    envelope = _pkcs8.parse_envelope(der, source=SOURCE)
    assert envelope.cost == ScryptCost(n=2**11, r=4, p=2)
    assert _pkcs8.decrypt(envelope, PASSPHRASE, source=SOURCE) == ec_der


def test_salt_and_iv_are_fresh(ec_der: bytes) -> None:
    one = _pkcs8.parse_envelope(_pkcs8.encrypt(ec_der, PASSPHRASE), source=SOURCE)
    two = _pkcs8.parse_envelope(_pkcs8.encrypt(ec_der, PASSPHRASE), source=SOURCE)
    assert one.salt != two.salt
    assert one.iv != two.iv


def test_cryptography_loads_our_files(sealed: bytes, ec_der: bytes) -> None:
    key = serialization.load_pem_private_key(sealed, PASSPHRASE)
    assert _pkcs8_der(key) == ec_der  # type: ignore[arg-type]


def test_key_length_may_be_absent() -> None:
    # OpenSSL omits the optional keyLength; it is then the cipher's (32).
    plain = _pkcs8.encode_hmac_private_key_info(b"k" * 32)
    with_length = _pkcs8.parse_envelope(_encrypt_raw(_padded(plain)), source=SOURCE)
    without = _pkcs8.parse_envelope(_envelope(key_length=None, ciphertext=with_length.ciphertext), source=SOURCE)
    assert _pkcs8.decrypt(without, PASSPHRASE, source=SOURCE) == plain


# --- refusals before any key derivation ------------------------------------------------------------

PBKDF2_OID = "1.2.840.113549.1.5.12"
AES128_CBC_OID = "2.16.840.1.101.3.4.1.2"
PBE_SHA1_DES_OID = "1.2.840.113549.1.5.10"


@pytest.mark.parametrize(
    ("der", "message"),
    [
        (_envelope(pbes2_oid=PBE_SHA1_DES_OID), "is not the expected 1.2.840.113549.1.5.13"),
        (_envelope(kdf_oid=PBKDF2_OID), "key derivation (scrypt) 1.2.840.113549.1.5.12 is not the expected"),
        (_envelope(cipher_oid=AES128_CBC_OID), "cipher (AES-256-CBC) 2.16.840.1.101.3.4.1.2 is not"),
        (_envelope(key_length=16), "scrypt key length is not 32"),
        (_envelope(n=1000), "scrypt N=1000 is not a power of two"),
        (_envelope(n=1), "scrypt N=1 is not a power of two"),
        (_envelope(n=0), "scrypt N=0 is not a power of two"),
        (_envelope(r=0), "scrypt r=0, p=1 out of range"),
        (_envelope(p=0), "scrypt r=8, p=0 out of range"),
        (_envelope(p=17), "scrypt r=8, p=17 out of range"),
        (_envelope(n=2**20, r=16), "need 2147483648 bytes of memory, above the limit of 1073741824"),
        (_envelope(n=2**64), "above the limit"),
        (_envelope(salt=b"s" * 15), "scrypt salt of 15 bytes is shorter than 16"),
        (_envelope(salt=b"s" * 8), "scrypt salt of 8 bytes is shorter than 16"),
        (_envelope(iv=b"i" * 8), "AES-CBC IV of 8 bytes, expected 16"),
        (_envelope(ciphertext=b"c" * 15), "encrypted data of 15 bytes is not a whole number of AES blocks"),
        (_envelope(ciphertext=b""), "encrypted data of 0 bytes"),
        (_envelope(trailing=b"\x00"), "trailing bytes after the element"),
        (b"\x30\x80\x00\x00", "indefinite length is not DER"),
        (b"", "truncated element header"),
        (_der.sequence(_der.integer(1)), "EncryptedPrivateKeyInfo must have two elements"),
        (_der.sequence(_der.integer(1), _der.integer(2)), "unexpected tag 0x02"),
    ],
)
def test_envelope_refusals(der: bytes, message: str) -> None:
    with pytest.raises(KeyFileCorruptError) as caught:
        _pkcs8.parse_envelope(der, source=SOURCE)
    assert f"key file {SOURCE}" in str(caught.value)
    assert message in str(caught.value)
    # The same refusal through the PEM path, before any passphrase is used.
    with pytest.raises(KeyFileCorruptError):
        _pkcs8.decrypt_pem(_pkcs8.pem_encode(der), PASSPHRASE, source=SOURCE)


def test_memory_limit_follows_limits() -> None:
    der = _envelope(n=2**14)  # 16 MiB
    tight = Limits(max_scrypt_memory_bytes=8 << 20)
    with pytest.raises(KeyFileCorruptError, match="above the limit of 8388608"):
        _pkcs8.parse_envelope(der, source=SOURCE, limits=tight)
    assert _pkcs8.parse_envelope(der, source=SOURCE).cost == ScryptCost(n=2**14)


def test_short_salt_accepted_only_when_asked() -> None:
    der = _envelope(salt=b"s" * 8)
    envelope = _pkcs8.parse_envelope(der, source=SOURCE, min_salt_bytes=_pkcs8.OPENSSL_MIN_SALT_BYTES)
    assert envelope.salt == b"s" * 8


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\xfe", "is not PEM text"),
        (b"", "is not one 'ENCRYPTED PRIVATE KEY' PEM block"),
        (
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "is not one 'ENCRYPTED PRIVATE KEY'",
        ),
        (
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n-----END ENCRYPTED PRIVATE KEY-----\n",
            "is not one 'ENCRYPTED PRIVATE KEY'",
        ),
        (
            b"junk\n-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
            "is not one",
        ),
        (
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAA*A\n-----END ENCRYPTED PRIVATE KEY-----\n",
            "has damaged base64",
        ),
        (
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
            "has damaged base64",
        ),
    ],
)
def test_pem_refusals(data: bytes, message: str) -> None:
    with pytest.raises(KeyFileCorruptError, match=message):
        _pkcs8.pem_decode(data, source=SOURCE)


def test_pem_accepts_crlf(sealed: bytes) -> None:
    crlf = sealed.replace(b"\n", b"\r\n")
    assert _pkcs8.pem_decode(crlf, source=SOURCE) == _pkcs8.pem_decode(sealed, source=SOURCE)


# --- no oracle: every failure after key derivation is the same error -------------------------------


def _unlock_error(der: bytes) -> WrongSecretError:
    with pytest.raises(WrongSecretError) as caught:
        _pkcs8.decrypt(_pkcs8.parse_envelope(der, source=SOURCE), PASSPHRASE, source=SOURCE)
    return caught.value


def test_wrong_passphrase(sealed: bytes) -> None:
    with pytest.raises(WrongSecretError) as caught:
        _pkcs8.decrypt_pem(sealed, b"not the passphrase", source=SOURCE)
    assert str(caught.value) == UNLOCK_MESSAGE


def test_bad_padding_wrong_body_and_wrong_passphrase_look_the_same(ec_der: bytes) -> None:
    bad_padding = _unlock_error(_encrypt_raw(b"\x00" * 32))
    inconsistent_padding = _unlock_error(_encrypt_raw(b"\x00" * 30 + b"\x01\x02"))
    not_pkcs8 = _unlock_error(_encrypt_raw(_padded(b"this is not a PrivateKeyInfo")))
    sec1 = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    not_pkcs8_but_a_key = _unlock_error(_encrypt_raw(_padded(sec1)))
    wrong = _pkcs8.encrypt(ec_der, b"another passphrase")
    with pytest.raises(WrongSecretError) as caught:
        _pkcs8.decrypt(_pkcs8.parse_envelope(wrong, source=SOURCE), PASSPHRASE, source=SOURCE)
    errors = [bad_padding, inconsistent_padding, not_pkcs8, not_pkcs8_but_a_key, caught.value]
    assert {str(e) for e in errors} == {UNLOCK_MESSAGE}
    assert {type(e) for e in errors} == {WrongSecretError}
    assert all(e.__cause__ is None and e.__suppress_context__ for e in errors)


def test_kdf_refusal_is_wrapped(sealed: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> bytes:
        raise MemoryError

    monkeypatch.setattr(_pkcs8, "_kdf", refuse)
    with pytest.raises(KeyFileCorruptError, match=f"key file {SOURCE}: scrypt refused its parameters"):
        _pkcs8.decrypt_pem(sealed, PASSPHRASE, source=SOURCE)


def test_empty_passphrase_refused_on_encrypt(ec_der: bytes) -> None:
    with pytest.raises(WrongSecretError, match="empty passphrase"):
        _pkcs8.encrypt(ec_der, b"")


@pytest.mark.parametrize("cost", [ScryptCost(n=1000), ScryptCost(n=1024, r=0), ScryptCost(n=1024, p=99)])
def test_invalid_cost_refused_on_encrypt(ec_der: bytes, cost: ScryptCost) -> None:
    with pytest.raises(UsageError, match="cannot encrypt a key file"):
        _pkcs8.encrypt(ec_der, PASSPHRASE, cost=cost)


def test_default_cost_is_the_test_cost(sealed: bytes) -> None:
    envelope = _pkcs8.parse_envelope(_pkcs8.pem_decode(sealed, source=SOURCE), source=SOURCE)
    assert envelope.cost == INSECURE_TEST_SCRYPT


# --- HMAC secrets ----------------------------------------------------------------------------------


def test_hmac_private_key_info() -> None:
    secret = bytes(range(32))
    der = _pkcs8.encode_hmac_private_key_info(secret)
    assert _pkcs8.check_private_key_info(der) == "1.2.840.113549.2.9"
    assert _pkcs8.decode_hmac_private_key_info(der) == secret
    with pytest.raises(ValueError, match="32 bytes, not 31"):
        _pkcs8.encode_hmac_private_key_info(secret[:31])


@pytest.mark.parametrize(
    "der",
    [
        _der.sequence(_der.integer(0), _der.sequence(_der.oid("1.2.840.113549.2.9"), _der.null())),
        _der.sequence(
            _der.integer(1),
            _der.sequence(_der.oid("1.2.840.113549.2.9"), _der.null()),
            _der.octet_string(b"k" * 32),
        ),
        _der.sequence(
            _der.integer(0),
            _der.sequence(_der.oid("1.2.840.113549.2.7"), _der.null()),
            _der.octet_string(b"k" * 32),
        ),
        _der.sequence(_der.integer(0), _der.sequence(_der.oid("1.2.840.113549.2.9")), _der.octet_string(b"k" * 32)),
        _der.sequence(
            _der.integer(0),
            _der.sequence(_der.oid("1.2.840.113549.2.9"), _der.null()),
            _der.octet_string(b"k" * 16),
        ),
        _der.sequence(_der.integer(0), _der.sequence(_der.oid("1.2.840.113549.2.9"), _der.null()), _der.integer(5)),
    ],
    ids=["two-elements", "version-1", "hmac-sha1", "no-null", "short-secret", "not-octets"],
)
def test_hmac_private_key_info_refusals(der: bytes) -> None:
    with pytest.raises(_der.DerError):
        _pkcs8.decode_hmac_private_key_info(der)


def test_pbes2_kdf_oid_of_other_things() -> None:
    assert _pkcs8.pbes2_kdf_oid(b"garbage") is None
    assert _pkcs8.pbes2_kdf_oid(_envelope(pbes2_oid=PBE_SHA1_DES_OID)) is None
    assert _pkcs8.pbes2_kdf_oid(_envelope(kdf_oid=PBKDF2_OID)) == PBKDF2_OID


# --- random damage never escapes as anything but a KeyStoreError -----------------------------------


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_random_edits_stay_key_store_errors(sealed: bytes, ec_der: bytes, data: st.DataObject) -> None:
    der = bytearray(_pkcs8.pem_decode(sealed, source=SOURCE))
    kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "pem"]))
    if kind == "flip":
        position = data.draw(st.integers(0, len(der) - 1))
        der[position] ^= data.draw(st.integers(1, 255))
        damaged = _pkcs8.pem_encode(bytes(der))
    elif kind == "truncate":
        damaged = _pkcs8.pem_encode(bytes(der[: data.draw(st.integers(0, len(der) - 1))]))
    elif kind == "insert":
        position = data.draw(st.integers(0, len(der)))
        der[position:position] = data.draw(st.binary(min_size=1, max_size=8))
        damaged = _pkcs8.pem_encode(bytes(der))
    else:
        text = bytearray(sealed)
        position = data.draw(st.integers(0, len(text) - 1))
        text[position] = data.draw(st.integers(0, 255))
        damaged = bytes(text)
    try:
        plain = _pkcs8.decrypt_pem(damaged, PASSPHRASE, source=SOURCE)
    except KeyStoreError as exc:
        assert isinstance(exc, KeyFileCorruptError | WrongSecretError)
        if isinstance(exc, WrongSecretError):
            assert str(exc) == UNLOCK_MESSAGE
    else:
        # CBC is malleable: an edit in the ciphertext may still give a PrivateKeyInfo outline. The
        # file backend then fails on loading the key or on its fingerprint (see test_filestore).
        _pkcs8.check_private_key_info(plain)
