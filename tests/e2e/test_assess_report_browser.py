"""The assessment's HTML report opened in a real headless Chromium: it renders, offline, with content.

The screenshot is kept under test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from trustroot.cli.main import main

if TYPE_CHECKING:
    from assess_fixtures import MadeProduct

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
pytest_plugins = ["assess_fixtures"]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
BROWSER_TIMEOUT_S = 90


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("chromium is not installed: run scripts/setup.sh (Debian package chromium)")
    return found


def _browser(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run", *args],
        check=False,
        capture_output=True,
        timeout=BROWSER_TIMEOUT_S,
    )


def _pixels(png: bytes) -> tuple[int, int, list[tuple[int, ...]]]:
    """Decode an 8-bit RGB or RGBA PNG (what Chromium writes) into rows of pixels."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        body = png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), (depth, colour)
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    previous = bytearray(stride)
    pixels: list[tuple[int, ...]] = []
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - bpp] if x >= bpp else 0
            up = previous[x]
            corner = previous[x - bpp] if x >= bpp else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                predictor = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
                line[x] = (line[x] + predictor) & 0xFF
        previous = line
        if y % 4 == 0:  # every fourth row is plenty to judge the page
            pixels.extend(tuple(line[i : i + 3]) for i in range(0, stride, bpp * 4))
    return width, height, pixels


@pytest.fixture(scope="module")
def report_html(made_product: MadeProduct, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("browser") / "acme"
    shutil.copytree(made_product.root, root, symlinks=True)
    out = root.parent / "out"
    code = main(
        ["assess", "--out", str(out), "--fleet-evidence", str(root / made_product.fleet_evidence.name),
         "--context", str(root / "security-context.toml"), "--quiet"]
    )  # fmt: skip
    assert code == 0
    return out / "report.html"


def test_report_renders_in_headless_chromium(report_html: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "assessment-report.png"
    shot.unlink(missing_ok=True)
    done = _browser("--window-size=1280,1200", f"--screenshot={shot}", report_html.as_uri())
    assert shot.is_file(), done.stderr.decode(errors="replace")[-2000:]
    width, height, pixels = _pixels(shot.read_bytes())
    assert (width, height) == (1280, 1200)
    background = {(0xF5, 0xF7, 0xFA), (0xFF, 0xFF, 0xFF)}
    inked = [p for p in pixels if p not in background]
    assert len(inked) / len(pixels) > 0.05, "the page looks blank"
    # the verdict colours of the summary bars are on screen (pass green, declared blue)
    assert (0x1B, 0x7F, 0x3B) in set(pixels)
    assert (0x35, 0x59, 0xB7) in set(pixels)


def test_report_dom_has_the_provisions_and_needs_no_network(report_html: Path) -> None:
    html = report_html.read_text()
    assert "http://" not in html.replace("http://json-schema", "")
    for forbidden in ("<script", "<link", "<img", "@import", "src="):
        assert forbidden not in html, forbidden
    done = _browser("--dump-dom", report_html.as_uri())
    dom = done.stdout.decode()
    assert dom.count('<tr id="p-') == 68
    assert "Implementation conformance statement" in dom and "Summary per guideline" in dom
