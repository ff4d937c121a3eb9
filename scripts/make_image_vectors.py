#!/usr/bin/env python3
"""Build the imgtool-made MCUboot test vectors in ``tests/vectors/mcuboot/`` (imgtool 2.5.0).

Inputs (``inputs/``): two payloads and one Intel HEX file this script writes from a fixed seed,
and TEST-ONLY keys made once with ``imgtool keygen`` (committed; never regenerated, because
keys are random). Outputs: one image per vector, signed by imgtool from those inputs, and
``manifest.json`` describing each vector: imgtool's arguments, the equivalent
``trustroot.image.sign_image`` options, and a *normalized* view of the image.

ECDSA and RSA-PSS signatures, and the image key of an encrypted image, are random, so a
rebuild cannot give the same bytes for those vectors. The normalized view keeps everything
else (header, payload or its hash, protected TLVs, the hash TLV, the key TLV, TLV order,
trailer); Ed25519 vectors are deterministic and compared byte for byte. ``--check`` rebuilds
everything in a temporary directory and fails on any difference from the tree: CI runs it.

Usage: scripts/make_image_vectors.py [--check] [--imgtool PATH] [--out DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "tests" / "vectors" / "mcuboot"
DEFAULT_IMGTOOL = REPO / ".tools" / "bin" / "imgtool"
IMGTOOL_VERSION = "2.5.0"
SEED = b"trustroot mcuboot vectors v1"

sys.path.insert(0, str(REPO / "src"))
from trustroot._mcuboot import ENC_TLV_TYPES, SIGNATURE_TLV_TYPES, parse_image  # noqa: E402
from trustroot.image.hexfile import iter_hex, scan_hex  # noqa: E402

#: Key files (inputs/NAME-TEST-ONLY.pem) and their imgtool keygen type.
KEYS = {
    "ecdsa-p256": "ecdsa-p256",
    "ecdsa-p384": "ecdsa-p384",
    "ed25519": "ed25519",
    "rsa-3072": "rsa-3072",
    "enc-p256": "ecdsa-p256",
    "enc-x25519": "x25519",
}
BASE = ["-v", "1.2.3+4", "-H", "0x200", "--pad-header", "-S", "0x2000"]
BASE_OPTS: dict[str, Any] = {"version": "1.2.3+4", "header_size": 0x200, "pad_header": True, "slot_size": 0x2000}


@dataclass(frozen=True)
class Vector:
    name: str
    key: str | None
    args: list[str]
    options: dict[str, Any]
    source: str = "payload.bin"
    suffix: str = ".bin"
    enc_key: str | None = None
    aes_bits: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


VECTORS = [
    Vector("ecdsa-p256", "ecdsa-p256", BASE, BASE_OPTS),
    Vector("ecdsa-p384", "ecdsa-p384", BASE, BASE_OPTS),
    Vector("ed25519", "ed25519", BASE, BASE_OPTS),
    Vector("rsa-3072", "rsa-3072", BASE, BASE_OPTS),
    Vector(
        "ed25519-padded-confirmed",
        "ed25519",
        [*BASE, "--align", "8", "--confirm"],
        {**BASE_OPTS, "align": 8, "confirm": True},
    ),
    Vector(
        "ecdsa-p256-counter-deps",
        "ecdsa-p256",
        [*BASE, "-s", "42", "-d", "(1,2.0.0), (2,1.4.0+7)"],
        {**BASE_OPTS, "security_counter": 42, "dependencies": [[1, "2.0.0"], [2, "1.4.0+7"]]},
    ),
    Vector("ed25519-sha512", "ed25519", [*BASE, "--sha", "512"], {**BASE_OPTS, "hash_algorithm": "sha512"}),
    Vector(
        "ed25519-full-pubkey",
        "ed25519",
        [*BASE, "--public-key-format", "full"],
        {**BASE_OPTS, "public_key_format": "full"},
    ),
    Vector(
        "rsa-3072-align32-confirmed",
        "rsa-3072",
        [*BASE, "--align", "32", "-M", "8", "--confirm"],
        {**BASE_OPTS, "align": 32, "max_sectors": 8, "confirm": True},
    ),
    Vector(
        "ed25519-hex",
        "ed25519",
        ["-v", "0.9.0", "-H", "0x200", "-S", "0x4000", "--align", "4", "--confirm"],
        {"version": "0.9.0", "header_size": 0x200, "slot_size": 0x4000, "align": 4, "confirm": True},
        source="app.hex",
        suffix=".hex",
    ),
    Vector(
        "ecdsa-p384-hex-in",
        "ecdsa-p384",
        ["-v", "0.9.1", "-H", "0x200", "-S", "0x4000"],
        {"version": "0.9.1", "header_size": 0x200, "slot_size": 0x4000},
        source="app.hex",
    ),
    Vector("ecdsa-p256-encrypted", "ecdsa-p256", BASE, BASE_OPTS, enc_key="enc-p256", aes_bits=128),
    Vector(
        "ed25519-encrypted-aes256",
        "ed25519",
        [*BASE, "--encrypt-keylen", "256", "--align", "8", "--confirm"],
        {**BASE_OPTS, "align": 8, "confirm": True},
        enc_key="enc-x25519",
        aes_bits=256,
    ),
    Vector("unsigned", None, BASE, BASE_OPTS),
    Vector(
        "ed25519-ramload-erased0",
        "ed25519",
        [*BASE, "-L", "0x20000000", "-R", "0", "--pad"],
        {**BASE_OPTS, "load_addr": 0x20000000, "erased_val": 0, "pad": True},
    ),
    Vector(
        "ecdsa-p256-zero-header",
        "ecdsa-p256",
        ["-v", "2.0.0", "-H", "0x200", "-S", "0x2000"],
        {"version": "2.0.0", "header_size": 0x200, "slot_size": 0x2000},
        source="payload-zero-header.bin",
    ),
]


# --- inputs ----------------------------------------------------------------------------------------


def _stream(label: bytes, size: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(SEED + label + counter.to_bytes(4, "big")).digest()
        counter += 1
    return bytes(out[:size])


def _record(kind: int, address: int, data: bytes) -> str:
    body = bytes([len(data), (address >> 8) & 0xFF, address & 0xFF, kind]) + data
    return ":" + (body + bytes([-sum(body) & 0xFF])).hex().upper() + "\n"


def _hex_text() -> str:
    """Two segments at 0x08000000 with a gap, a header area of zeros, a start address record."""
    lines = [_record(0x04, 0, (0x0800).to_bytes(2, "big")), _record(0x05, 0, (0x08000401).to_bytes(4, "big"))]
    segments = [(0x0000, bytes(0x200) + _stream(b"hex1", 1500)), (0x0200 + 1500 + 0x30, _stream(b"hex2", 700))]
    for start, data in segments:
        for pos in range(0, len(data), 32):
            lines.append(_record(0x00, start + pos, data[pos : pos + 32]))
    lines.append(":00000001FF\n")
    return "".join(lines)


def write_inputs(inputs: Path) -> None:
    inputs.mkdir(parents=True, exist_ok=True)
    (inputs / "payload.bin").write_bytes(_stream(b"payload", 3001))
    (inputs / "payload-zero-header.bin").write_bytes(bytes(0x200) + _stream(b"zero-header", 2000))
    (inputs / "app.hex").write_text(_hex_text())


def key_path(inputs: Path, name: str) -> Path:
    return inputs / f"{name}-TEST-ONLY.pem"


def make_keys(inputs: Path, imgtool: Path) -> None:
    for name, kind in KEYS.items():
        path = key_path(inputs, name)
        if not path.exists():
            subprocess.run([str(imgtool), "keygen", "-k", str(path), "-t", kind], check=True, capture_output=True)


# --- images ----------------------------------------------------------------------------------------


def _binary(path: Path) -> bytes:
    if path.suffix == ".hex":
        scan_hex(path)
        return b"".join(iter_hex(path))
    return path.read_bytes()


def normalize(path: Path, *, encrypted: bool) -> dict[str, Any]:
    """What stays the same when imgtool signs the same inputs again (random signatures left out)."""
    data = _binary(path)
    layout = parse_image(data)
    tlvs = []
    for tlv in layout.tlvs:
        random = tlv.type in SIGNATURE_TLV_TYPES - {0x24} or tlv.type in ENC_TLV_TYPES
        tlvs.append({"type": tlv.type, "value": None if random else tlv.value.hex(), "length": len(tlv.value)})
        if tlv.type == 0x22:  # DER ECDSA: its length varies too
            tlvs[-1]["length"] = None
    payload = data[layout.payload_offset : layout.protected_offset]
    trailer = layout.trailer
    return {
        "header": data[: layout.payload_offset].hex(),
        "payload_sha256": None if encrypted else hashlib.sha256(payload).hexdigest(),
        "protected": data[layout.protected_offset : layout.unprotected_offset].hex(),
        "tlvs": tlvs,
        "size": len(data) if trailer is not None else None,
        "trailer": None
        if trailer is None
        else {"max_align": trailer.max_align, "image_ok": trailer.image_ok, "erased_value": trailer.erased_value},
        "tail": data[-64:].hex() if trailer is not None else None,
    }


_BATCH = """
import contextlib, io, json, sys
from imgtool.main import imgtool
for args in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()):
        imgtool.main(args=args, standalone_mode=False)
"""


def run_imgtool(imgtool: Path, commands: list[list[str]]) -> None:
    """Run imgtool once per command, all in one interpreter when imgtool is a Python script."""
    first = imgtool.read_bytes()[:200].split(b"\n", 1)[0]
    interpreter = first[2:].decode().strip() if first.startswith(b"#!") and b"python" in first else ""
    if interpreter and Path(interpreter).exists():
        subprocess.run([interpreter, "-c", _BATCH, json.dumps(commands)], check=True, capture_output=True)
        return
    for command in commands:  # pragma: no cover - an imgtool that is not a Python script
        subprocess.run([str(imgtool), *command], check=True, capture_output=True)


def build(out: Path, imgtool: Path, inputs: Path) -> dict[str, Any]:
    """Sign every vector into ``out`` (one imgtool interpreter for all) and return the manifest."""
    commands = []
    for vector in VECTORS:
        command = ["sign", *vector.args]
        if vector.key:
            command += ["-k", str(key_path(inputs, vector.key))]
        if vector.enc_key:
            command += ["-E", str(key_path(inputs, vector.enc_key))]
        commands.append([*command, str(inputs / vector.source), str(out / f"{vector.name}{vector.suffix}")])
    run_imgtool(imgtool, commands)
    entries = []
    for vector in VECTORS:
        image = out / f"{vector.name}{vector.suffix}"
        deterministic = vector.key in ("ed25519", None) and vector.enc_key is None
        entries.append(
            {
                "name": vector.name,
                "file": image.name,
                "source": vector.source,
                "key": key_path(inputs, vector.key).name if vector.key else None,
                "enc_key": key_path(inputs, vector.enc_key).name if vector.enc_key else None,
                "aes_bits": vector.aes_bits,
                "imgtool_args": vector.args,
                "options": vector.options,
                "deterministic": deterministic,
                "sha256": hashlib.sha256(image.read_bytes()).hexdigest() if deterministic else None,
                "normalized": normalize(image, encrypted=vector.enc_key is not None),
            }
        )
    return {"imgtool": IMGTOOL_VERSION, "vectors": entries}


def _dump(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=1, sort_keys=True) + "\n"


def check(out: Path, imgtool: Path) -> list[str]:
    """Rebuild in a temporary directory; return the differences from ``out`` (empty: none)."""
    problems: list[str] = []
    inputs = out / "inputs"
    with tempfile.TemporaryDirectory(prefix="mcuboot-vectors-") as tmp:
        fresh = Path(tmp)
        write_inputs(fresh / "inputs")
        for name in ("payload.bin", "payload-zero-header.bin", "app.hex"):
            if (fresh / "inputs" / name).read_bytes() != (inputs / name).read_bytes():
                problems.append(f"inputs/{name} differs from what the script writes")
        for name in KEYS:
            if not key_path(inputs, name).exists():
                problems.append(f"inputs/{key_path(inputs, name).name} is missing")
        if problems:
            return problems
        manifest = build(fresh, imgtool, inputs)
        committed = (out / "manifest.json").read_text() if (out / "manifest.json").exists() else ""
        if _dump(manifest) != committed:
            problems.append("manifest.json differs from a rebuild")
        for entry in manifest["vectors"]:
            image = out / entry["file"]
            if not image.exists():
                problems.append(f"{entry['file']} is missing")
                continue
            if normalize(image, encrypted=entry["enc_key"] is not None) != entry["normalized"]:
                problems.append(f"{entry['file']} does not match its manifest entry")
            if entry["deterministic"] and image.read_bytes() != (fresh / entry["file"]).read_bytes():
                problems.append(f"{entry['file']} differs from a rebuild (Ed25519 and unsigned are deterministic)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="rebuild in a temp dir and compare; change nothing")
    parser.add_argument("--imgtool", type=Path, default=DEFAULT_IMGTOOL, help="imgtool 2.5.0 (default: .tools/bin)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="vector directory")
    args = parser.parse_args(argv)
    if not args.imgtool.exists():
        print(f"no imgtool at {args.imgtool}: run scripts/tools-env.sh", file=sys.stderr)
        return 2
    if args.check:
        problems = check(args.out, args.imgtool)
        for problem in problems:
            print(f"vectors: {problem}", file=sys.stderr)
        return 1 if problems else 0
    write_inputs(args.out / "inputs")
    make_keys(args.out / "inputs", args.imgtool)
    with tempfile.TemporaryDirectory(prefix="mcuboot-vectors-") as tmp:
        manifest = build(Path(tmp), args.imgtool, args.out / "inputs")
        for entry in manifest["vectors"]:
            shutil.copyfile(Path(tmp) / entry["file"], args.out / entry["file"])
    (args.out / "manifest.json").write_text(_dump(manifest))
    print(f"wrote {len(VECTORS)} vectors to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
