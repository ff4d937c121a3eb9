"""One ``trustroot scan`` of two targets: the assessment gives each target only its own findings."""

from __future__ import annotations

from pathlib import Path

import pytest

from trustroot.cli.main import main
from trustroot.compliance.sources import load_evidence
from trustroot.product import open_product

pytestmark = pytest.mark.integration

_SOURCE = """#include <openssl/ssl.h>
void connect_cloud(SSL_CTX *ctx)
{
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
}
"""


def test_findings_of_one_report_go_to_the_target_they_were_found_in(
    product_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(product_dir)
    targets = (
        '[{name = "firmware-src", path = "firmware/src", kind = "source"},'
        ' {name = "rootfs", path = "rootfs", kind = "rootfs"}]'
    )
    assert main(["context", "set", "code_quality.targets", targets, "--quiet"]) == 0
    (product_dir / "firmware" / "src").mkdir(parents=True)
    (product_dir / "firmware" / "src" / "cloud.c").write_text(_SOURCE)
    (product_dir / "rootfs" / "etc").mkdir(parents=True)
    (product_dir / "rootfs" / "etc" / "inittab").write_text("::respawn:/usr/sbin/telnetd -l /bin/sh\n")
    code = main(["scan", "firmware/src", "rootfs", "--engine", "trustroot", "--quiet"])
    capsys.readouterr()
    assert code == 1  # both targets have a finding at or above medium
    product = open_product(product_dir / "security-context.toml")
    scans = load_evidence(product, now=product.clock()).scans
    source_rules = {f.rule_id for f in scans["firmware-src"].findings}
    rootfs_rules = {f.rule_id for f in scans["rootfs"].findings}
    assert "trustroot.crypto.verify-none" in source_rules and "trustroot.crypto.verify-none" not in rootfs_rules
    assert "trustroot.surface.debug-shell" in rootfs_rules and "trustroot.surface.debug-shell" not in source_rules
    assert all("cloud.c" in f.location for f in scans["firmware-src"].findings)
    assert all(f.location.startswith("rootfs/etc/") for f in scans["rootfs"].findings)
