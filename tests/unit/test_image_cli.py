"""``trustroot image sign | verify | info``: standalone (like imgtool) and inside a product."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trustroot.cli.main import main
from trustroot.image import load_key_file, verify_image

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "mcuboot"
KEY = VECTORS / "inputs" / "ed25519-TEST-ONLY.pem"
P256 = VECTORS / "inputs" / "ecdsa-p256-TEST-ONLY.pem"
SIZES = ["--header-size", "0x200", "--pad-header", "--slot-size", "0x4000"]


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with no security-context.toml above it, and a firmware file."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fw.bin").write_bytes(os.urandom(2000))
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["image", *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


# --- standalone ---------------------------------------------------------------------------------------------


def test_sign_verify_info_like_imgtool(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys,
        "sign",
        "fw.bin",
        "fw.img",
        "--key",
        str(KEY),
        "--version",
        "1.2.3+4",
        *SIZES,
        "--security-counter",
        "0x10",
        "--dependency",
        "1,2.0.0",
        "--confirm",
        "--align",
        "8",
    )
    assert code == 0, err
    assert "signed fw.img: version 1.2.3+4, security counter 16, ed25519" in out
    assert "working like imgtool" in err
    verified = verify_image(here / "fw.img", keys=[load_key_file(KEY).public_key()])
    assert (verified.security_counter, verified.layout.file_size) == (16, 0x4000)

    code, out, _ = run(capsys, "verify", "fw.img", "--key", str(KEY), "--json", "--quiet")
    assert code == 0
    data = json.loads(out)
    assert data["verified"] is True and data["version"] == "1.2.3+4" and data["security_counter"] == 16
    assert data["dependencies"] == [{"image_id": 1, "min_version": "2.0.0+0"}]

    code, out, _ = run(capsys, "info", "fw.img")
    assert code == 0
    assert "NOT verified" in out and "security counter   16" in out and "image_ok set" in out
    code, out, _ = run(capsys, "info", "fw.img", "--json")
    assert json.loads(out)["verified"] is False


def test_sign_json_and_quiet(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "sign", "fw.bin", "fw.img", "-k", str(P256), "-v", "2.0.0", *SIZES, "--json", "-q")
    assert code == 0 and err == ""
    data = json.loads(out)
    assert data["algorithm"] == "ecdsa-p256" and data["evidence"] is False and data["size"] > 2000


def test_hex_in_and_out(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        capsys, "sign", "fw.bin", "fw.hex", "-k", str(KEY), "-v", "1.0.0", *SIZES, "--hex-addr", "0x8000"
    )
    assert code == 0, err
    assert run(capsys, "verify", "fw.hex", "-k", str(KEY))[0] == 0
    code, _, err = run(
        capsys, "sign", "fw.hex", "again.bin", "-k", str(KEY), "-v", "1.0.1", "-H", "0x200", "-S", "0x4000"
    )
    assert code == 1 and "not all zeros" in err  # a signed image is not firmware: its header area is taken


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["sign", "missing.bin", "o.img", "-v", "1.0.0", *SIZES], 2, "no such file"),
        (["sign", "fw.bin", "o.img", "-v", "1.0.0"], 2, "--header-size and --slot-size are needed"),
        (["sign", "fw.bin", "o.img", "-v", "1.0.0", "--security-counter", "auto", *SIZES], 2, "no product here"),
        (["sign", "fw.bin", "o.img", "-v", "1.0.0.0", *SIZES], 2, "--version"),
        (["sign", "fw.bin", "o.img", "-v", "1.0.0", "--header-size", "zz", "--slot-size", "1"], 2, "not a decimal"),
        (["sign", "fw.bin", "o.img", "-v", "1.0.0", "--align", "3", *SIZES], 2, "invalid choice"),
        (["sign", "fw.bin", "o.img", "-v", "1.0.0", "-d", "1", *SIZES], 2, "expected ID,VERSION"),
        (["sign", "fw.bin", "o.img", "-v", "1.0.0", "-d", "300,1.0.0", *SIZES], 2, "0..255"),
        (["sign", "fw.bin", "o.img", "-v", "1.0.0", "-d", "1,x", *SIZES], 2, "--dependency 1,x"),
        (["sign", "fw.bin", "o.img", "-v", "1.0.0", "--encrypt", *SIZES], 2, "--enc-key"),
        (["sign", "fw.bin", "o.img", "-v", "1.0.0", "-k", "nokey.pem", *SIZES], 2, "key file"),
        (["sign", "fw.bin", "o.img", "-v", "1.0.0", "--password-env", "NO_SUCH_VAR_X", *SIZES], 2, "NO_SUCH_VAR_X"),
        (["sign", "fw.bin"], 2, "required"),
        (["verify", "fw.bin"], 2, "--key"),
        (["verify", "fw.bin", "-k", str(KEY)], 1, "bad header magic"),
        (["verify", "missing.img", "-k", str(KEY)], 2, "no such file"),
        (["info", "fw.bin"], 1, "not an MCUboot image"),
        (["info", "missing.img"], 2, "no such file"),
        (["verify", "fw.bin", "-k", str(KEY), "--context", "nowhere"], 2, "--context nowhere"),
    ],
)
def test_refusals_are_one_line_with_their_exit_code(
    here: Path, capsys: pytest.CaptureFixture[str], args: list[str], code: int, words: str
) -> None:
    got, _out, err = run(capsys, *args)
    assert got == code, err
    assert words in err
    assert not (here / "o.img").exists()


def test_a_wrong_key_exits_1(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "sign", "fw.bin", "fw.img", "-k", str(KEY), "-v", "1.0.0", *SIZES)[0] == 0
    code, _, err = run(capsys, "verify", "fw.img", "-k", str(P256))
    assert code == 1 and "signed by another key" in err
    code, _, err = run(capsys, "verify", "fw.img", "-k", str(KEY), "--min-counter", "1")
    assert code == 1 and "no security counter" in err


def test_garbage_never_gives_a_traceback(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, content in (
        ("a.img", os.urandom(5000)),
        ("b.img", b""),
        ("c.hex", b":zz\n"),
        ("d.img", b"=\xb8\xf3\x96" * 20),
    ):
        (here / name).write_bytes(content)
        assert run(capsys, "verify", name, "-k", str(KEY))[0] == 1
        assert run(capsys, "info", name)[0] == 1


def test_help_has_examples(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("sign", "verify", "info"):
        code, out, _ = run(capsys, command, "--help")
        assert code == 0 and "Example: trustroot image " + command in out


def test_the_typer_entries_forward() -> None:
    from typer.testing import CliRunner

    from trustroot.cli.app import build_app

    image = VECTORS / "ed25519.bin"
    result = CliRunner().invoke(build_app(), ["image", "info", str(image)])
    assert result.exit_code == 0 and "1.2.3+4" in result.output
    result = CliRunner().invoke(build_app(), ["image", "info", str(VECTORS / "inputs" / "payload.bin")])
    assert result.exit_code == 1


def test_the_entry_path_stays_lean(here: Path) -> None:
    """No Typer, Rich, Click or pydantic when signing or verifying outside a product."""
    probe = (
        "import sys\n"
        "from trustroot.cli.main import main\n"
        f"codes = [main(['image', 'sign', 'fw.bin', 'fw.img', '-k', {str(KEY)!r}, '-v', '1.0.0', '-q', *{SIZES!r}]),\n"
        f"         main(['image', 'verify', 'fw.img', '-k', {str(KEY)!r}, '-q']), main(['image', 'info', 'fw.img'])]\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'typer', 'rich', 'click', 'pydantic'})\n"
        "print(codes, heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=here, capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[0, 0, 0] []", done.stderr


# --- inside a product ---------------------------------------------------------------------------------------


def test_inside_a_product_the_context_the_key_store_and_evidence(
    product_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from trustroot.evidence import EvidenceLog

    monkeypatch.chdir(product_dir)
    (product_dir / "fw.bin").write_bytes(os.urandom(3000))
    code, out, err = run(capsys, "sign", "fw.bin", "fw-1.img", "--version", "1.0.0", "--pad-header", "--json")
    assert code == 0, err
    first = json.loads(out)
    assert "imgtool" not in err
    assert first["evidence"] is True and first["security_counter"] == 1 and first["algorithm"] == "ecdsa-p256"
    code, out, err = run(
        capsys,
        "sign",
        "fw.bin",
        "fw-2.img",
        "--version",
        "1.1.0",
        "--security-counter",
        "auto",
        "--confirm",
        "--pad-header",
    )
    assert code == 0, err
    assert "security counter 2" in out and "recorded as evidence" in out

    records = [
        r for r in EvidenceLog(product_dir / ".trustroot" / "evidence.jsonl").iter_records() if r.type == "image.signed"
    ]
    assert [r.subject for r in records] == ["fw-1.img", "fw-2.img"]
    data = records[1].data
    assert isinstance(data, dict)
    assert data["security_counter"] == 2 and data["encrypted"] is False and data["version"] == "1.1.0+0"
    assert data["sha256"] == __import__("hashlib").sha256((product_dir / "fw-2.img").read_bytes()).hexdigest()
    assert data["size"] == 0x60000  # the context's slot size, padded (--confirm)
    assert not any(isinstance(v, float) for v in data.values())

    code, out, err = run(capsys, "verify", "fw-2.img", "--min-counter", "2")
    assert code == 0, err
    code, _, err = run(capsys, "verify", "fw-1.img", "--min-counter", "2")
    assert code == 1 and "below the floor 2" in err
    code, _, err = run(
        capsys,
        "sign",
        "fw.bin",
        "x.img",
        "-v",
        "1.0.0",
        "--pad-header",
        "--key",
        str(KEY),
        "--context",
        str(product_dir),
    )
    assert code == 0, err  # a key file is allowed in a product; it is recorded with its own key id
    code, _, err = run(capsys, "verify", "x.img")
    assert code == 1 and "signed by another key" in err


def test_a_product_counter_floor_and_a_wrong_algorithm(
    product_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(product_dir)
    (product_dir / "fw.bin").write_bytes(os.urandom(100))
    code, _, err = run(capsys, "sign", "fw.bin", "o.img", "--version", "1.0.0", "--pad-header", "--hash", "sha512")
    assert code == 2 and "cannot sign a sha512 image" in err
    text = (product_dir / "security-context.toml").read_text()
    head, boot = text.split("[boot]", 1)
    boot = boot.replace('signature = "ecdsa-p256"', 'signature = "ed25519"', 1)
    (product_dir / "security-context.toml").write_text(head + "[boot]" + boot)
    code, _, err = run(capsys, "sign", "fw.bin", "o.img", "--version", "1.0.0", "--pad-header")
    assert code == 2 and "is ecdsa-p256" in err


_PEAK = (
    "import sys\n"
    "from trustroot.cli.main import main\n"
    "code = main(sys.argv[1:])\n"
    "status = open('/proc/self/status').read()\n"  # VmHWM: this process image's own peak (wait4 would
    "sys.stderr.write(status.split('VmHWM:')[1].split()[0])\n"  # count the forking test process too)
    "sys.exit(code)\n"
)


def _peak_mib(args: list[str], cwd: Path) -> float:
    """Run the CLI with ``args`` in a fresh interpreter; return its peak resident memory in MiB."""
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return int(done.stderr.strip().splitlines()[-1]) / 1024


def test_memory_stays_flat_whatever_the_image_size(here: Path) -> None:
    """A 96 MiB image signs and verifies in well under 48 MiB (the input is streamed, never held)."""
    size = 96 << 20
    with (here / "big.bin").open("wb") as handle:
        handle.truncate(size)  # sparse: cheap to make, still read byte by byte
    sign = ["image", "sign", "big.bin", "big.img", "-k", str(KEY), "-v", "1.0.0", "-q"]
    sign += ["-H", "0x200", "--pad-header", "-S", hex(size + 0x20000), "--confirm"]
    assert _peak_mib(sign, here) < 48
    assert (here / "big.img").stat().st_size == size + 0x20000
    assert _peak_mib(["image", "verify", "big.img", "-k", str(KEY), "-q"], here) < 48


def test_encryption_standalone(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    enc = VECTORS / "inputs" / "enc-x25519-TEST-ONLY.pem"
    code, out, err = run(
        capsys, "sign", "fw.bin", "fw.img", "-k", str(KEY), "-v", "1.0.0", *SIZES, "--enc-key", str(enc)
    )
    assert code == 0, err
    assert "encrypted" in out
    code, _, err = run(capsys, "verify", "fw.img", "-k", str(KEY))
    assert code == 1 and "decryption key" in err
    code, out, err = run(capsys, "verify", "fw.img", "-k", str(KEY), "--enc-key", str(enc), "--json")
    assert code == 0, err
    assert json.loads(out)["encrypted"] is True
    code, _, err = run(capsys, "sign", "fw.bin", "x.img", "-v", "1.0.0", *SIZES, "--enc-key", str(enc))
    assert code == 2 and "must be signed" in err


def test_an_encrypting_product(
    product_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """[boot] encryption makes every image encrypted with the store's key; verify decrypts with it."""
    from trustroot.keys._interface import Algorithm, KeyRole
    from trustroot.product import open_product

    context = product_dir / "security-context.toml"
    head, boot = context.read_text().split("[boot]", 1)
    context.write_text(head + "[boot]" + boot.replace('encryption = "none"', 'encryption = "ecies-p256"', 1))
    open_product(context).keys.create(KeyRole.IMAGE_ENCRYPTION, Algorithm.ECIES_P256)
    monkeypatch.chdir(product_dir)
    (product_dir / "fw.bin").write_bytes(os.urandom(5000))
    code, out, err = run(capsys, "sign", "fw.bin", "fw.img", "-v", "1.0.0", "--pad-header", "--json")
    assert code == 0, err
    signed = json.loads(out)
    assert signed["encrypted"] is True
    code, out, err = run(capsys, "verify", "fw.img", "--json")
    assert code == 0, err
    assert json.loads(out)["encrypted"] is True
    code, _, err = run(capsys, "sign", "fw.bin", "plain.img", "-v", "1.0.0", "--pad-header", "--no-encrypt")
    assert code == 0, err
    code, out, _ = run(capsys, "info", "plain.img", "--json")
    assert code == 0 and json.loads(out)["encrypted"] is False


def test_negative_numbers_and_interrupts(
    here: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from trustroot.cli import image_cmd

    code, _, err = run(capsys, "sign", "fw.bin", "o.img", "-v", "1.0.0", *SIZES, "--load-addr", "-5")
    assert code == 2 and "must not be negative" in err

    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setitem(image_cmd._RUNNERS, "info", interrupted)
    code, _, err = run(capsys, "info", "x.img")
    assert code == 130 and "interrupted" in err


def test_a_product_verifies_garbage_as_a_refusal(
    product_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(product_dir)
    (product_dir / "junk.img").write_bytes(b"\x3d\xb8\xf3\x96" + os.urandom(200))
    code, _, err = run(capsys, "verify", "junk.img")
    assert code == 1 and "image junk.img" in err
