"""Screenshots of the console on a demo product, for docs/tour.md (maintainers' tool, not a test).

    TRUSTROOT_PASSPHRASE=... TRUSTROOT_ROOT_PASSPHRASE=... \
        .venv/bin/trustroot demo --dir /tmp/tour --replace --json > /tmp/tour.json
    TRUSTROOT_PASSPHRASE=... .venv/bin/python scripts/tour_screenshots.py /tmp/tour /tmp/tour.json docs/img/tour

Starts ``trustroot serve`` for the demo product on a free loopback port, signs the demo operator in
with its password and a TOTP code in Debian's Chromium (driven by Playwright; the service's
certificate pinned by its key), and saves one PNG per page. Stops the service afterwards.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import sync_playwright

from trustroot.fleet import totp

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pin(port: int) -> str:
    cert = x509.load_pem_x509_certificate(ssl.get_server_certificate(("127.0.0.1", port)).encode())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def _serve(demo: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "trustroot.cli", "serve", "--port", str(port), "--context", str(demo)],
        stdout=handle,
        stderr=subprocess.STDOUT,
        cwd=demo,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"trustroot serve exited: {log.read_text()[-1000:]}")
        if re.search(r"listening on https://", log.read_text(errors="replace")):
            return process
        time.sleep(0.2)
    process.terminate()
    raise SystemExit("trustroot serve did not start within 60 s")


def main(demo: Path, login_json: Path, out: Path) -> None:
    made = json.loads(login_json.read_text())
    login = made["console_login"]
    serials = sorted(made["steps"]["simulation"]["detections"])
    out.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    process = _serve(demo, port, out / "serve.log")
    try:
        base = f"https://127.0.0.1:{port}"
        with sync_playwright() as driver:
            browser = driver.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", f"--ignore-certificate-errors-spki-list={_pin(port)}"],
            )
            page = browser.new_context(viewport={"width": 1280, "height": 860}).new_page()
            page.goto(f"{base}/console/login")
            page.fill("#name", login["name"])
            page.fill("#password", login["password"])
            page.fill("#code", totp.totp(login["totp_secret"], datetime.now(UTC)))
            page.screenshot(path=str(out / "01-sign-in.png"))
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/console/")
            shots = [
                ("02-overview.png", "/console/"),
                ("03-releases.png", "/console/releases"),
                ("04-alerts.png", "/console/alerts"),
                ("05-device.png", f"/console/devices/{serials[0]}" if serials else "/console/"),
                ("06-compliance.png", "/console/compliance"),
                ("07-report.png", "/console/compliance/report.html"),
            ]
            for name, path in shots:
                page.goto(base + path)
                page.screenshot(path=str(out / name), full_page=False)
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=20)
        (out / "serve.log").unlink(missing_ok=True)
    print(f"wrote {len(list(out.glob('*.png')))} screenshots to {out}")


if __name__ == "__main__":
    if len(sys.argv) != 4 or not os.environ.get("TRUSTROOT_PASSPHRASE"):
        raise SystemExit("usage: TRUSTROOT_PASSPHRASE=... tour_screenshots.py DEMO_DIR DEMO_JSON OUT_DIR")
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
