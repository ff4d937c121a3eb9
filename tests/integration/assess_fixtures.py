"""A product made with the earlier commands, for the assessment tests (session-scoped; copy before changing).

Built once per test worker through the real CLI and domain functions: init, context check, signed
images, a production batch provisioned, closed and imported into the fleet, a release published over
TUF, the service's TLS certificate issued, an operator added, a vulnerability report received,
triaged, fixed and closed, scans of the firmware sources and root file system, signed declarations
for what no tool can check, and the fleet's audit chain exported as JSONL (trustroot fleet export-evidence).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from trustroot.cli.main import main

#: Mandatory provisions no tool can check: a person declares them (``trustroot declare``).
DECLARED = {
    "4-1": "Every recommendation not followed is justified in compliance/ics.toml.",
    "5.1-4": "Users change the device password in the app under Settings > Security.",
    "5.4-2": "The device identity key is generated in the secure element and never leaves it.",
    "5.8-3": "The product has no external sensing capability (no camera, microphone or sensor).",
    "6-1": "The privacy notice at https://acme-plug.example/privacy lists every category and purpose.",
    "6-2": "No processing rests on consent; the product's processing is contractual.",
    "6-3": "Consent is not used, so there is nothing to withdraw; see the privacy notice.",
    "6-5": "The privacy notice describes the telemetry collected, by whom and why.",
}

FIRMWARE_SOURCE = """\
#include <stdio.h>
#include <string.h>

int parse_command(const char *input, char *out, size_t out_len) {
    if (input == NULL || out == NULL || out_len == 0) {
        return -1;
    }
    size_t n = strnlen(input, out_len - 1);
    memcpy(out, input, n);
    out[n] = '\\0';
    return (int)n;
}
"""


@dataclass(frozen=True)
class MadeProduct:
    """A product directory and the fleet evidence exported beside it."""

    root: Path
    fleet_evidence: Path

    @property
    def context(self) -> Path:
        return self.root / "security-context.toml"


def cli(*args: str, quiet: bool = True) -> None:
    """Run a trustroot command in-process; fail the fixture if it does not exit 0."""
    code = main([*args, "--quiet"] if quiet else list(args))
    if code != 0:
        raise AssertionError(f"trustroot {' '.join(args)} exited {code}")


def _append_rootfs_target(context: Path) -> None:
    text = context.read_text()
    text = text.replace(
        "[declarations]",
        '[[code_quality.targets]]\nname = "rootfs"\npath = "firmware/rootfs"\nkind = "rootfs"\n\n[declarations]',
    )
    context.write_text(text)


def _firmware(root: Path) -> None:
    src = root / "firmware" / "src"
    src.mkdir(parents=True)
    (src / "command.c").write_text(FIRMWARE_SOURCE)
    rootfs = root / "firmware" / "rootfs"
    (rootfs / "etc" / "init.d").mkdir(parents=True)
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/false\napp:x:1000:1000::/home/app:/bin/false\n")
    (rootfs / "etc" / "shadow").write_text("root:!:19700:0:99999:7:::\napp:!:19700:0:99999:7:::\n")
    (rootfs / "etc" / "init.d" / "S50app").write_text("#!/bin/sh\nexec /usr/bin/app --config /etc/app.conf\n")
    (rootfs / "etc" / "app.conf").write_text("[server]\nurl = https://127.0.0.1:8443\nverify = true\n")


def _disclosure(root: Path) -> None:
    """A report received by the intake, triaged as actively exploited, fixed and closed, with the CRA steps sent."""
    from trustroot.fleet.disclosures import (
        DisclosureReport,
        Obligation,
        Resolution,
        close,
        receive,
        record_corrective_measure,
        record_submission,
        triage,
    )
    from trustroot.fleet.operators_models import DisclosureSeverity
    from trustroot.fleet.service import product_service
    from trustroot.product import open_product

    product = open_product(root / "security-context.toml")
    with product_service(product, None) as service:
        view = receive(
            service,
            DisclosureReport(summary="Command parser overflow", details="A long command overflows a buffer."),
        )
        triage(service, view.id, severity=DisclosureSeverity("high"), actively_exploited=True, actor="ops")
        record_submission(service, view.id, Obligation.EARLY_WARNING, actor="ops")
        record_submission(service, view.id, Obligation.NOTIFICATION, actor="ops")
        record_corrective_measure(service, view.id, actor="ops")
        close(service, view.id, Resolution.FIXED, actor="ops")


def _server_certificate(root: Path) -> None:
    from trustroot.fleet.server_cert import ensure_server_certificate
    from trustroot.product import open_product

    ensure_server_certificate(open_product(root / "security-context.toml"))


def build_product(template: Path, root: Path) -> MadeProduct:
    shutil.copytree(template, root, symlinks=True)
    context = root / "security-context.toml"
    _append_rootfs_target(context)
    _firmware(root)
    ctx = ["--context", str(context)]
    cli("context", "check", *ctx, quiet=False)  # a quiet check leaves no context.checked record
    firmware = root / "fw.bin"
    firmware.write_bytes(os.urandom(4096))
    cwd = Path.cwd()
    os.chdir(root)
    try:
        cli("image", "sign", "fw.bin", "fw-1.0.0.img", "--version", "1.0.0", "--pad-header")
        cli("image", "sign", "fw.bin", "fw-1.0.1.img", "--version", "1.0.1", "--pad-header")
    finally:
        os.chdir(cwd)
    os.chdir(root)
    try:  # one scan per target, as a CI pipeline would run the gate
        cli("scan", "firmware/src", "--fail-on", "high")
        cli("scan", "firmware/rootfs", "--fail-on", "high")
    finally:
        os.chdir(cwd)
    cli("provision", "batch", "--factory", "line-1", "--count", "3", *ctx)
    manifests = sorted((root / ".trustroot" / "production").rglob("manifest-*.json"))
    if not manifests:
        batches = sorted(p.name for p in (root / ".trustroot" / "production" / "batches").iterdir())
        cli("provision", "close", batches[0], *ctx)
        manifests = sorted((root / ".trustroot" / "production").rglob("manifest-*.json"))
    cli("fleet", "import-batch", str(manifests[0]), *ctx)
    cli("release", "publish", str(root / "fw-1.0.0.img"), "--channel", "stable", *ctx)
    _server_certificate(root)
    cli("operator", "add", "alice", "--scope", "read,disclosure", *ctx)
    _disclosure(root)
    cli("release", "publish", str(root / "fw-1.0.1.img"), "--channel", "stable", *ctx)
    cli("keys", "create", "--role", "declarer", "--name", "jane", *ctx)
    for provision, justification in DECLARED.items():
        cli("declare", provision, "--by", "jane", "--justification", justification, "--edition", "2.1.1", *ctx)
    fleet = root / "fleet-audit.jsonl"
    cli("fleet", "export-evidence", "--out", str(fleet), *ctx)
    return MadeProduct(root, fleet)


@pytest.fixture(scope="session")
def made_product(product_template: Path, tmp_path_factory: pytest.TempPathFactory) -> MadeProduct:
    """The product made once per worker: never change it, copy it (:func:`product_copy`)."""
    return build_product(product_template, tmp_path_factory.mktemp("assess") / "acme")


@pytest.fixture
def product_copy(made_product: MadeProduct, tmp_path: Path) -> Iterator[MadeProduct]:
    """A private copy of :func:`made_product`, free to change."""
    target = tmp_path / "acme"
    shutil.copytree(made_product.root, target, symlinks=True)
    yield MadeProduct(target, target / made_product.fleet_evidence.name)


def now() -> datetime:
    return datetime.now(UTC)


def verdicts(report_json: Path) -> dict[str, str]:
    return {p["id"]: p["verdict"] for p in json.loads(report_json.read_text())["provisions"]}
