# ruff: noqa: E501  (table-driven cases: one case per line)
"""Private keys: PEM, DER, OpenSSH and PKCS#12, in trees (with lines) and blobs (with offsets)."""

from __future__ import annotations

import random
from pathlib import Path

from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from trustroot.scan.checks import run_blob, run_tree
from trustroot.scan.checks.keys import find_keys


def test_every_format_is_found_at_its_offset() -> None:
    r = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    e = ec.generate_private_key(ec.SECP384R1())
    d = ed25519.Ed25519PrivateKey.generate()
    parts = [
        (r.private_bytes(ser.Encoding.DER, ser.PrivateFormat.TraditionalOpenSSL, ser.NoEncryption()), "RSA", False),
        (e.private_bytes(ser.Encoding.DER, ser.PrivateFormat.TraditionalOpenSSL, ser.NoEncryption()), "EC", False),
        (d.private_bytes(ser.Encoding.DER, ser.PrivateFormat.PKCS8, ser.NoEncryption()), "Ed25519", False),
        (d.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.OpenSSH, ser.NoEncryption()), "Ed25519", False),
        (e.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.BestAvailableEncryption(b"pw")), "encrypted", True),
        (pkcs12.serialize_key_and_certificates(b"n", e, None, None, ser.NoEncryption()), "PKCS#12", False),
        (pkcs12.serialize_key_and_certificates(b"n", e, None, None, ser.BestAvailableEncryption(b"changeit")),
         "well-known password", False),
    ]  # fmt: skip
    rnd = random.Random(7)
    blob = b""
    offsets = []
    for data, _kind, _enc in parts:
        blob += rnd.randbytes(777)
        offsets.append((len(blob), len(data.rstrip(b"\n")) if data.startswith(b"-----") else len(data)))
        blob += data
    hits = sorted(find_keys(blob, base=1000), key=lambda h: h.offset)
    assert [(h.offset - 1000, h.length) for h in hits] == offsets
    for hit, (_data, kind, enc) in zip(hits, parts, strict=True):
        assert kind in hit.kind and hit.encrypted == enc


def test_noise_and_public_material_are_not_keys(tmp_path: Path) -> None:
    e = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "pub.pem").write_bytes(
        e.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
    )
    (tmp_path / "doc.md").write_text(
        "-----BEGIN PRIVATE KEY-----\n...paste your key here...\n-----END PRIVATE KEY-----\n"
    )
    (tmp_path / "noise.bin").write_bytes(random.Random(3).randbytes(2_000_000))
    assert run_tree(tmp_path) == []


def test_tree_reports_line_blob_reports_offset(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "bundle.pem").write_bytes(b"# device bundle\n\n" + pem)
    [f] = run_tree(tmp_path / "tree")
    assert (f.rule_id, f.location.path, f.location.line, f.cwe) == (
        "trustroot.keys.private-key",
        "bundle.pem",
        3,
        (321, 798),
    )
    assert pem.decode().splitlines()[1] not in f.snippet
    blob = tmp_path / "fw.img"
    window_edge = 8 * 1024 * 1024 - 100  # the key straddles the first carving window's end
    blob.write_bytes(b"\xff" * window_edge + pem + b"\xff" * 1000)
    [g] = run_blob(blob)
    assert (g.location.byte_offset, g.location.byte_length, g.location.path) == (
        window_edge,
        len(pem.rstrip()),
        "fw.img",
    )
