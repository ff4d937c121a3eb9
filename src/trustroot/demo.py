"""The whole life of a product in one call: the README's main job.

It grows with the product; today: create a product with its root of trust, lint its context,
verify its evidence. Passphrases come from the environment, or random ones are made for the demo
directory and handed back to be shown once (never written to disk).
"""

from __future__ import annotations

import os
import secrets as pysecrets
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from trustroot.context.lint import Finding, lint
from trustroot.errors import StateError
from trustroot.keys.passphrase import ENV_VARS, SecretKind, fixed_secrets
from trustroot.product import ProgressHook, create_product

__all__ = ["DEMO_MARKER", "DemoResult", "run_demo"]

#: File the demo leaves in its directory, so that ``--replace`` only ever removes a demo.
DEMO_MARKER = ".trustroot-demo"


@dataclass
class DemoResult:
    directory: Path
    findings: list[Finding]
    evidence_records: int
    last_signed_seq: int | None
    keys: list[str]
    #: Passphrases made up for this run (kind -> value); empty when taken from the environment.
    generated_secrets: dict[str, str] = field(default_factory=dict)


def _secret(kind: SecretKind, generated: dict[str, str]) -> str:
    value = os.environ.get(ENV_VARS[kind])
    if value:
        return value
    value = pysecrets.token_urlsafe(18)
    generated[kind] = value
    return value


def run_demo(directory: Path, *, replace: bool = False, progress: ProgressHook | None = None) -> DemoResult:
    """Run the demo in ``directory`` (refused if it holds anything but an earlier demo)."""
    directory = directory.resolve()
    if directory.exists() and any(directory.iterdir()):
        if not (directory / DEMO_MARKER).exists():
            raise StateError(f"{directory} is not empty and not a trustroot demo; choose another --dir")
        if not replace:
            raise StateError(f"{directory} holds an earlier demo", hint="pass --replace to start it afresh")
        shutil.rmtree(directory)
    generated: dict[str, str] = {}
    source = fixed_secrets(_secret("store", generated), _secret("root", generated))
    product = create_product(directory, "Acme Plug", secrets=source, progress=progress)
    (directory / DEMO_MARKER).write_text("made by trustroot demo; --replace may remove this directory\n")
    step = progress or (lambda _text: None)
    step("context check")
    findings = lint(product.context, today=datetime.now(UTC).date())
    step("evidence verify")
    report = product.evidence.verify(product.evidence_public_keys())
    return DemoResult(
        directory=directory,
        findings=findings,
        evidence_records=report.records,
        last_signed_seq=report.last_signed_seq,
        keys=[k.name for k in product.keys.list()],
        generated_secrets=generated,
    )
