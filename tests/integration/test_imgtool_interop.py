"""Live interop with imgtool 2.5.0 from the tools environment (few runs: imgtool starts in ~0.3 s).

- the committed vectors are what scripts/make_image_vectors.py makes now (``--check``);
- images trustroot signs pass ``imgtool verify``, for each algorithm, padded, and as HEX;
- imgtool signs an image with options no vector has, and trustroot makes the same bytes;
- imgtool's RSA-2048 images (which trustroot does not sign) verify with trustroot.

The tools environment missing is a failure, not a skip (scripts/tools-env.sh installs it).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trustroot.components import default_tools_dir
from trustroot.image import load_key_file, sign_image, verify_image

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
INPUTS = REPO / "tests" / "vectors" / "mcuboot" / "inputs"


@pytest.fixture(scope="module")
def imgtool() -> Path:
    tools = default_tools_dir()
    path = (tools / "bin" / "imgtool") if tools else REPO / ".tools" / "bin" / "imgtool"
    if not path.exists():
        pytest.fail(f"no imgtool at {path}: run scripts/tools-env.sh", pytrace=False)
    version = subprocess.run([str(path), "version"], capture_output=True, text=True, check=True).stdout.strip()
    assert version == "2.5.0"
    return path


def _imgtool(imgtool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(imgtool), *args], capture_output=True, text=True, check=False, timeout=120)


def test_the_vectors_rebuild_without_a_difference(imgtool: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_image_vectors.py"), "--check", "--imgtool", str(imgtool)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("algorithm", "options", "name"),
    [
        ("ecdsa-p256", {"security_counter": 3, "dependencies": [(1, "1.0.0")]}, "p256.bin"),
        ("ecdsa-p384", {"slot_size": 0x3000, "confirm": True, "align": 8}, "p384.bin"),
        ("ed25519", {"hash_algorithm": "sha512", "public_key_format": "full"}, "ed.bin"),
        ("rsa-3072", {"slot_size": 0x4000, "pad": True, "align": 32, "max_sectors": 16}, "rsa.bin"),
        ("ed25519", {"slot_size": 0x4000, "confirm": True, "hex_addr": 0x08020000}, "ed.hex"),
    ],
)
def test_trustroot_images_pass_imgtool_verify(
    imgtool: Path, tmp_path: Path, algorithm: str, options: dict[str, object], name: str
) -> None:
    key_file = INPUTS / f"{algorithm}-TEST-ONLY.pem"
    out = tmp_path / name
    sign_image(
        INPUTS / "payload.bin",
        out,
        load_key_file(key_file),
        version="4.3.2+1",
        header_size=0x200,
        pad_header=True,
        **options,  # type: ignore[arg-type]
    )
    done = _imgtool(imgtool, "verify", "-k", str(key_file), str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Image version: 4.3.2+1" in done.stdout


def test_imgtool_and_trustroot_make_the_same_bytes_live(imgtool: Path, tmp_path: Path) -> None:
    key_file = INPUTS / "ed25519-TEST-ONLY.pem"
    args = ["-v", "9.8.7+6", "-H", "0x400", "--pad-header", "-S", "0x3000", "--align", "16", "--max-align", "32"]
    args += ["--confirm", "-s", "0xfffffffe", "-d", "(7,0.0.1)", "-R", "0", "-F", "0x10000", "--non-bootable"]
    theirs = tmp_path / "imgtool.bin"
    done = _imgtool(imgtool, "sign", *args, "-k", str(key_file), str(INPUTS / "payload.bin"), str(theirs))
    assert done.returncode == 0, done.stderr
    ours = tmp_path / "trustroot.bin"
    sign_image(
        INPUTS / "payload.bin",
        ours,
        load_key_file(key_file),
        version="9.8.7+6",
        header_size=0x400,
        pad_header=True,
        slot_size=0x3000,
        align=16,
        max_align=32,
        confirm=True,
        security_counter=0xFFFFFFFE,
        dependencies=[(7, "0.0.1")],
        erased_val=0,
        rom_fixed=0x10000,
        non_bootable=True,
    )
    assert ours.read_bytes() == theirs.read_bytes()


def test_imgtool_rsa_2048_images_verify(imgtool: Path, tmp_path: Path) -> None:
    key_file = tmp_path / "rsa2048.pem"
    assert _imgtool(imgtool, "keygen", "-k", str(key_file), "-t", "rsa-2048").returncode == 0
    image = tmp_path / "rsa2048.bin"
    done = _imgtool(
        imgtool,
        "sign",
        "-v",
        "1.0.0",
        "-H",
        "0x200",
        "--pad-header",
        "-S",
        "0x2000",
        "-k",
        str(key_file),
        str(INPUTS / "payload.bin"),
        str(image),
    )
    assert done.returncode == 0, done.stderr
    public = load_key_file(key_file).public_key()
    assert verify_image(image, keys=[public]).algorithm == "rsa-2048"
