"""imgtool 2.5.0's images (tests/vectors/mcuboot, made by scripts/make_image_vectors.py) against trustroot.

Both directions, without running imgtool: every imgtool image verifies with trustroot, and
trustroot signing the same inputs with the same options makes the same image: byte for byte
where imgtool is deterministic (Ed25519, unsigned), and equal in everything but the random
parts (ECDSA / RSA-PSS signature values, the encrypted payload and its key TLV) otherwise.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from trustroot._mcuboot import ImageVerificationError
from trustroot.image import load_key_file, sign_image, verify_image
from trustroot.image.encryption import make_encryptor

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO / "tests" / "vectors" / "mcuboot"
INPUTS = VECTORS / "inputs"
MANIFEST = json.loads((VECTORS / "manifest.json").read_text())
ENTRIES = MANIFEST["vectors"]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_image_vectors", REPO / "scripts" / "make_image_vectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_image_vectors", module)
    spec.loader.exec_module(module)
    return module


SCRIPT = _script()


def _options(entry: dict[str, Any]) -> dict[str, Any]:
    options = dict(entry["options"])
    if "dependencies" in options:
        options["dependencies"] = [tuple(d) for d in options["dependencies"]]
    return options


def test_the_manifest_covers_what_the_issue_asks() -> None:
    assert MANIFEST["imgtool"] == "2.5.0"
    names = {e["name"] for e in ENTRIES}
    for algorithm in ("ecdsa-p256", "ecdsa-p384", "ed25519", "rsa-3072"):
        assert algorithm in names
    assert any(e["options"].get("confirm") for e in ENTRIES)
    assert any(e["options"].get("dependencies") for e in ENTRIES)
    assert any(e["options"].get("security_counter") for e in ENTRIES)
    assert any(e["source"].endswith(".hex") for e in ENTRIES)
    assert any(e["file"].endswith(".hex") for e in ENTRIES)
    assert any(e["enc_key"] for e in ENTRIES)
    assert len(ENTRIES) == len(SCRIPT.VECTORS)


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["name"] for e in ENTRIES])
def test_imgtool_images_verify_with_trustroot(entry: dict[str, Any]) -> None:
    image = VECTORS / entry["file"]
    enc_key = load_key_file(INPUTS / entry["enc_key"]) if entry["enc_key"] else None
    if entry["key"] is None:
        verified = verify_image(image, keys=[], allow_unsigned=True)
    else:
        key = load_key_file(INPUTS / entry["key"])
        verified = verify_image(image, keys=[key.public_key()], enc_key=enc_key)
        assert verified.algorithm == entry["key"].removesuffix("-TEST-ONLY.pem")
    options = entry["options"]
    assert str(verified.version).startswith(options["version"])
    assert verified.security_counter == options.get("security_counter")
    assert verified.encrypted == (enc_key is not None)
    assert [[d.image_id, str(d.min_version)] for d in verified.dependencies] == [
        [i, v if "+" in v else v + "+0"] for i, v in options.get("dependencies", [])
    ]


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["name"] for e in ENTRIES])
def test_trustroot_signs_the_same_image_as_imgtool(entry: dict[str, Any], tmp_path: Path) -> None:
    key = load_key_file(INPUTS / entry["key"]) if entry["key"] else None
    encryptor = None
    signing_algorithm = entry["key"].removesuffix("-TEST-ONLY.pem") if entry["key"] else ""
    if entry["enc_key"]:
        enc_public = load_key_file(INPUTS / entry["enc_key"]).public_key()
        encryptor = make_encryptor(enc_public, entry["aes_bits"], signing_algorithm)
    out = tmp_path / entry["file"]
    sign_image(INPUTS / entry["source"], out, key, encryptor=encryptor, **_options(entry))
    if entry["deterministic"]:
        assert out.read_bytes() == (VECTORS / entry["file"]).read_bytes()
    else:
        assert SCRIPT.normalize(out, encrypted=encryptor is not None) == entry["normalized"]


def test_a_vector_signed_by_another_key_is_refused() -> None:
    entry = next(e for e in ENTRIES if e["name"] == "ecdsa-p256")
    other = load_key_file(INPUTS / "enc-p256-TEST-ONLY.pem")  # a P-256 key, not the signing one
    with pytest.raises(ImageVerificationError, match="signed by another key"):
        verify_image(VECTORS / entry["file"], keys=[other.public_key()])
