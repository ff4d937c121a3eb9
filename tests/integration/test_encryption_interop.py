"""Image encryption against imgtool 2.5.0 and against an independent re-implementation.

- images imgtool signs with ``--encrypt`` (both pairs, AES-128 and AES-256, and the SHA-512
  X25519 variant) decrypt with trustroot's decryptor to the original payload;
- given the same image key and ephemeral key, imgtool writes byte for byte the TLV and ciphertext
  trustroot's encryptor writes (imgtool's randomness is pinned in a subprocess);
- trustroot's TLV and ciphertext open with a re-implementation written here from MCUboot's
  ``docs/encrypted_images.md``, using only primitives (stdlib HMAC/HKDF, AES-ECB for the counter
  mode), not trustroot's code;
- a P-256 key on a PKCS#11 token (SoftHSM2) opens imgtool's images through ``KeyHandle.exchange``;
- the boot loader sources (public key C/Rust, key hash, the ``enc_priv_key`` secret) are byte for byte
  what ``imgtool getpub``/``getpubhash``/``getpriv`` print.

A missing tools environment fails these tests (never a skip).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from trustroot.components import default_tools_dir
from trustroot.image.bootloader import private_key_c, public_key_c, public_key_hash_c, public_key_rust
from trustroot.image.encryption import (
    ENCRYPTED_AES128,
    ENCRYPTED_AES256,
    TLV_ENCEC256,
    TLV_ENCX25519,
    TLV_ENCX25519_SHA512,
    AesKeyBits,
    aes_key_bits_from_flags,
    make_decryptor,
    make_encryptor,
)
from trustroot.keys._interface import Algorithm, KeyRole
from trustroot.keys.pkcs11store import Pkcs11Backend

pytestmark = pytest.mark.integration

IMAGE_MAGIC = 0x96F3B83D
TLV_INFO_MAGIC = 0x6907
TLV_PROT_INFO_MAGIC = 0x6908
HEADER_SIZE = 0x200
PAYLOAD = bytes((i * 7 + 3) & 0xFF for i in range(3001))  # not a multiple of 16: imgtool pads
KAT_PAYLOAD = b"MCUboot known-answer payload".ljust(48, b".")
KAT_SEED = b"trustroot-kat"


# --- the tools ------------------------------------------------------------------------------------


def _tools() -> Path:
    tools = default_tools_dir()
    if tools is None or not (tools / "bin" / "imgtool").exists():
        pytest.fail(f"no imgtool in the tools environment {tools}: run scripts/tools-env.sh first", pytrace=False)
    return tools


def imgtool(*args: str) -> None:
    done = subprocess.run(
        [str(_tools() / "bin" / "imgtool"), *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr + done.stdout


def write_pem(path: Path, key: Any, *, public: bool = False) -> Path:
    if public:
        data = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    else:
        data = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    path.write_bytes(data)
    return path


def sign_args(infile: Path, outfile: Path, sig_key: Path, enc_key: Path, bits: int) -> list[str]:
    return [
        "sign", "--key", str(sig_key), "--encrypt", str(enc_key), "--encrypt-keylen", str(bits),
        "--version", "1.2.3", "--header-size", hex(HEADER_SIZE), "--pad-header",
        "--slot-size", "0x20000", "--align", "8", str(infile), str(outfile),
    ]  # fmt: skip


# --- a minimal MCUboot image reader (enough for these tests) ------------------------------------


@dataclass
class Image:
    flags: int
    body: bytes
    tlvs: dict[int, bytes]


def read_image(data: bytes) -> Image:
    magic, _load, hdr_size, prot_size, img_size, flags = struct.unpack_from("<IIHHII", data, 0)
    assert magic == IMAGE_MAGIC
    body = data[hdr_size : hdr_size + img_size]
    offset = hdr_size + img_size
    tlvs: dict[int, bytes] = {}
    for expected in ((TLV_PROT_INFO_MAGIC,) if prot_size else ()) + (TLV_INFO_MAGIC,):
        info_magic, total = struct.unpack_from("<HH", data, offset)
        assert info_magic == expected
        end, offset = offset + total, offset + 4
        while offset < end:
            kind, length = struct.unpack_from("<HH", data, offset)
            tlvs[kind] = data[offset + 4 : offset + 4 + length]
            offset += 4 + length
    return Image(flags, body, tlvs)


def padded(payload: bytes) -> bytes:
    """imgtool pads an encrypted image's body with zeros to a multiple of 16 bytes."""
    return payload + bytes(-len(payload) % 16)


# --- the independent re-implementation -----------------------------------------------------------


def hkdf_sha(hash_name: str, ikm: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 with the standard library (no salt = a zero key of the hash length)."""
    size = hashlib.new(hash_name).digest_size
    prk = hmac.new(bytes(size), ikm, hash_name).digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hash_name).digest()
        okm += block
        counter += 1
    return okm[:length]


def ctr_keystream_xor(key: bytes, data: bytes) -> bytes:
    """AES-CTR from a zero 128-bit big-endian counter, built from single AES block encryptions."""
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305 - the block function only
    stream = b"".join(ecb.update(i.to_bytes(16, "big")) for i in range((len(data) + 15) // 16))
    return bytes(a ^ b for a, b in zip(data, stream, strict=False))


def reference_open(private: Any, tlv_type: int, value: bytes, bits: int) -> bytes:
    """The image key from a key TLV, per MCUboot's docs/encrypted_images.md; AssertionError if it does not open."""
    key_len = bits // 8
    hash_name = "sha512" if tlv_type == TLV_ENCX25519_SHA512 else "sha256"
    tag_len = hashlib.new(hash_name).digest_size
    pub_len = 65 if tlv_type == TLV_ENCEC256 else 32
    assert len(value) == pub_len + tag_len + key_len
    ephemeral, tag, wrapped = value[:pub_len], value[pub_len : pub_len + tag_len], value[pub_len + tag_len :]
    if tlv_type == TLV_ENCEC256:
        shared = private.exchange(ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), ephemeral))
    else:
        shared = private.exchange(x25519.X25519PublicKey.from_public_bytes(ephemeral))
    okm = hkdf_sha(hash_name, shared, b"MCUBoot_ECIES_v1", key_len + tag_len)
    assert hmac.compare_digest(hmac.new(okm[key_len:], wrapped, hash_name).digest(), tag)
    return ctr_keystream_xor(okm[:key_len], wrapped)


# --- cases ------------------------------------------------------------------------------------------

CASES = [
    pytest.param("ecdsa-p256", 128, id="p256-aes128"),
    pytest.param("ecdsa-p256", 256, id="p256-aes256"),
    pytest.param("ed25519", 128, id="x25519-aes128"),
    pytest.param("ed25519", 256, id="x25519-aes256"),
]


def keys_for(signing: str) -> tuple[Any, Any]:
    if signing == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate(), x25519.X25519PrivateKey.generate()


@pytest.mark.parametrize(("signing", "bits"), CASES)
def test_imgtool_encrypted_images_decrypt(tmp_path: Path, signing: str, bits: AesKeyBits) -> None:
    sig_key, enc_key = keys_for(signing)
    infile = tmp_path / "app.bin"
    infile.write_bytes(PAYLOAD)
    sig_pem = write_pem(tmp_path / "sig.pem", sig_key)
    enc_pub = write_pem(tmp_path / "enc.pub.pem", enc_key.public_key(), public=True)
    imgtool(*sign_args(infile, tmp_path / "app.signed.bin", sig_pem, enc_pub, bits))
    image = read_image((tmp_path / "app.signed.bin").read_bytes())
    assert image.flags & (ENCRYPTED_AES128 | ENCRYPTED_AES256) == (
        ENCRYPTED_AES128 if bits == 128 else ENCRYPTED_AES256
    )
    key_bits = aes_key_bits_from_flags(image.flags)
    assert key_bits == bits
    tlv_type = TLV_ENCEC256 if signing == "ecdsa-p256" else TLV_ENCX25519
    decrypt = make_decryptor(enc_key, tlv_type, image.tlvs[tlv_type], key_bits)
    assert decrypt(image.body) == padded(PAYLOAD)
    # the reference opens imgtool's TLV too (it checks the re-implementation itself)
    reference_key = reference_open(enc_key, tlv_type, image.tlvs[tlv_type], bits)
    assert ctr_keystream_xor(reference_key, image.body) == padded(PAYLOAD)


@pytest.mark.parametrize("bits", [128, 256])
def test_imgtool_x25519_hmac_sha512_images_decrypt(tmp_path: Path, bits: AesKeyBits) -> None:
    sig_key, enc_key = keys_for("ed25519")
    infile = tmp_path / "app.bin"
    infile.write_bytes(PAYLOAD)
    args = sign_args(
        infile,
        tmp_path / "out.bin",
        write_pem(tmp_path / "sig.pem", sig_key),
        write_pem(tmp_path / "enc.pem", enc_key),
        bits,
    )
    imgtool(*args[:1], "--hmac-sha", "512", *args[1:])
    image = read_image((tmp_path / "out.bin").read_bytes())
    assert len(image.tlvs[TLV_ENCX25519_SHA512]) == 32 + 64 + bits // 8
    decrypt = make_decryptor(enc_key, TLV_ENCX25519_SHA512, image.tlvs[TLV_ENCX25519_SHA512], bits)
    assert decrypt(image.body) == padded(PAYLOAD)


# imgtool with its randomness pinned: the image key from os.urandom, the ephemeral key from the
# key generators of imgtool.image (only that module sees the substitutes).
_PINNED_IMGTOOL = """
import os, sys, types
from cryptography.hazmat.primitives.asymmetric import ec as real_ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
import imgtool.image as image
from imgtool.main import imgtool

image_key, ephemeral = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2])

class _Os(types.ModuleType):
    def __getattr__(self, name):
        return getattr(os, name)
    @staticmethod
    def urandom(n):
        assert n == len(image_key), n
        return image_key

class _Ec(types.ModuleType):
    def __getattr__(self, name):
        return getattr(real_ec, name)
    @staticmethod
    def generate_private_key(curve, backend=None):
        return real_ec.derive_private_key(int.from_bytes(ephemeral, "big"), curve)

class _X25519:
    @staticmethod
    def generate():
        return X25519PrivateKey.from_private_bytes(ephemeral)

image.os, image.ec, image.X25519PrivateKey = _Os("os"), _Ec("ec"), _X25519
imgtool.main(args=sys.argv[3:], standalone_mode=False)
"""


def pinned_imgtool(tmp_path: Path, image_key: bytes, ephemeral: bytes, args: list[str]) -> None:
    python = _tools() / "venvs" / "imgtool" / "bin" / "python"
    script = tmp_path / "pinned_imgtool.py"
    script.write_text(_PINNED_IMGTOOL)
    done = subprocess.run(
        [str(python), str(script), image_key.hex(), ephemeral.hex(), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout


def kat_rng() -> Any:
    """The same deterministic source as tests/unit/test_image_encryption.py (SHA-256 counter mode)."""
    counter, buffer = 0, b""

    def rng(n: int) -> bytes:
        nonlocal counter, buffer
        while len(buffer) < n:
            buffer += hashlib.sha256(KAT_SEED + counter.to_bytes(4, "big")).digest()
            counter += 1
        out, buffer = buffer[:n], buffer[n:]
        return out

    return rng


@pytest.mark.parametrize(("signing", "bits"), CASES)
def test_imgtool_with_the_same_randomness_writes_the_same_bytes(tmp_path: Path, signing: str, bits: AesKeyBits) -> None:
    """Known answers from imgtool itself: the KAT digests of the unit tests are these bytes."""
    sig_key, enc_key = keys_for(signing)
    if signing == "ecdsa-p256":  # the unit tests' fixed keys
        enc_key = ec.derive_private_key(
            0x1F2E3D4C5B6A79880102030405060708090A0B0C0D0E0F101112131415161718, ec.SECP256R1()
        )
    else:
        enc_key = x25519.X25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
    rng = kat_rng()
    image_key, ephemeral = rng(bits // 8), rng(32)
    infile = tmp_path / "kat.bin"
    infile.write_bytes(KAT_PAYLOAD)
    enc_pub = write_pem(tmp_path / "enc.pub.pem", enc_key.public_key(), public=True)
    args = sign_args(infile, tmp_path / "kat.signed.bin", write_pem(tmp_path / "sig.pem", sig_key), enc_pub, bits)
    pinned_imgtool(tmp_path, image_key, ephemeral, args)
    image = read_image((tmp_path / "kat.signed.bin").read_bytes())
    ours = make_encryptor(enc_key.public_key(), bits, signing, rng=kat_rng())
    assert image.tlvs[ours.tlv_type] == ours.tlv_value
    assert image.body == ours.update(KAT_PAYLOAD)
    assert image.flags & ours.flags == ours.flags


@pytest.mark.parametrize(("signing", "bits"), CASES)
def test_our_output_opens_with_the_reference(signing: str, bits: AesKeyBits) -> None:
    _, enc_key = keys_for(signing)
    enc = make_encryptor(enc_key.public_key(), bits, signing)
    ciphertext = b"".join(enc.update(PAYLOAD[i : i + 100]) for i in range(0, len(PAYLOAD), 100))
    image_key = reference_open(enc_key, enc.tlv_type, enc.tlv_value, bits)
    assert len(image_key) == bits // 8
    assert ctr_keystream_xor(image_key, ciphertext) == PAYLOAD
    assert make_decryptor(enc_key, enc.tlv_type, enc.tlv_value, bits)(ciphertext) == PAYLOAD


def test_the_reference_refuses_what_the_decryptor_refuses() -> None:
    """The cross-check has teeth: an altered tag fails the reference as well."""
    _, enc_key = keys_for("ecdsa-p256")
    enc = make_encryptor(enc_key.public_key(), 128, "ecdsa-p256")
    bad = enc.tlv_value[:70] + bytes([enc.tlv_value[70] ^ 1]) + enc.tlv_value[71:]
    with pytest.raises(AssertionError):
        reference_open(enc_key, TLV_ENCEC256, bad, 128)


def test_a_token_key_opens_imgtool_images(tmp_path: Path, pkcs11_backend: Pkcs11Backend) -> None:
    """ECIES-P256 with the private key on a PKCS#11 token (SoftHSM2), through KeyHandle.exchange."""
    info = pkcs11_backend.generate(
        f"enc-{uuid.uuid4().hex[:12]}", KeyRole.IMAGE_ENCRYPTION, Algorithm.ECIES_P256, domain="store"
    )
    try:
        handle = pkcs11_backend.unlock(info)
        infile = tmp_path / "app.bin"
        infile.write_bytes(PAYLOAD)
        enc_pub = write_pem(tmp_path / "enc.pub.pem", handle.public_key(), public=True)
        sig_pem = write_pem(tmp_path / "sig.pem", ec.generate_private_key(ec.SECP256R1()))
        imgtool(*sign_args(infile, tmp_path / "out.bin", sig_pem, enc_pub, 256))
        image = read_image((tmp_path / "out.bin").read_bytes())
        decrypt = make_decryptor(handle, TLV_ENCEC256, image.tlvs[TLV_ENCEC256], 256)
        assert decrypt(image.body) == padded(PAYLOAD)
        # and the token opens what trustroot encrypts
        enc = make_encryptor(handle.public_key(), 128, "ecdsa-p256")
        assert make_decryptor(handle, enc.tlv_type, enc.tlv_value, 128)(enc.update(PAYLOAD)) == PAYLOAD
    finally:
        pkcs11_backend.destroy(info)


# --- boot loader files against a live imgtool ------------------------------------------------------


def imgtool_out(*args: str) -> str:
    done = subprocess.run(
        [str(_tools() / "bin" / "imgtool"), *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


@pytest.mark.parametrize("kind", ["ecdsa-p256", "ecdsa-p384", "ed25519", "rsa-2048", "x25519"])
def test_public_key_sources_are_byte_identical_to_imgtool(tmp_path: Path, kind: str) -> None:
    key: Any = {
        "ecdsa-p256": lambda: ec.generate_private_key(ec.SECP256R1()),
        "ecdsa-p384": lambda: ec.generate_private_key(ec.SECP384R1()),
        "ed25519": ed25519.Ed25519PrivateKey.generate,
        "rsa-2048": lambda: rsa.generate_private_key(65537, 2048),
        "x25519": x25519.X25519PrivateKey.generate,
    }[kind]()
    pem = str(write_pem(tmp_path / "key.pem", key))
    public = key.public_key()
    assert imgtool_out("getpub", "-k", pem, "--lang", "c") == public_key_c(public)
    assert imgtool_out("getpub", "-k", pem, "--lang", "rust") == public_key_rust(public)
    assert imgtool_out("getpubhash", "-k", pem) == public_key_hash_c(public)
    assert imgtool_out("getpub", "-k", pem, "--lang", "c", "--name-suffix", "_1") == public_key_c(
        public, name_suffix="_1"
    )
    # a public PEM (what CONFIG_BOOT_SIGNATURE_KEY_FILE points at) gives the same source
    pub_pem = str(write_pem(tmp_path / "key.pub.pem", public, public=True))
    assert imgtool_out("getpub", "-k", pub_pem) == public_key_c(public)


@pytest.mark.parametrize("kind", ["ecdsa-p256", "x25519"])
@pytest.mark.parametrize("minimal", [False, True])
def test_the_boot_loader_secret_is_byte_identical_to_imgtool_getpriv(tmp_path: Path, kind: str, minimal: bool) -> None:
    key: Any = ec.generate_private_key(ec.SECP256R1()) if kind == "ecdsa-p256" else x25519.X25519PrivateKey.generate()
    pem = str(write_pem(tmp_path / "enc.pem", key))
    expected = imgtool_out("getpriv", "-k", pem, *(["--minimal"] if minimal else []))
    assert private_key_c(key, minimal=minimal) == expected
