"""The whole life of a product in one call: the README's main job (``trustroot demo``).

Steps, each with its own progress: create the product and its root of trust; sign firmware 1.0 and
1.1; provision 200 devices in a factory batch; import the batch into the fleet and publish both
releases over TUF; give a demo operator a console login; start the fleet service; simulate the fleet;
scan a sample firmware tree; assess. Everything stays in the demo directory for the user to explore.
Passphrases come from the environment, or random ones are made for the demo directory and handed
back to be shown once (never written to disk).
"""

from __future__ import annotations

import os
import secrets as pysecrets
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from trustroot.context.lint import Finding, lint
from trustroot.errors import StateError, UsageError
from trustroot.keys.passphrase import ENV_VARS, SecretKind, fixed_secrets
from trustroot.product import create_product, open_product, record_context_check

__all__ = ["DEMO_MARKER", "DEMO_OPERATOR", "DemoProgress", "DemoResult", "run_demo"]

#: File the demo leaves in its directory, so that ``--replace`` only ever removes a demo.
DEMO_MARKER = ".trustroot-demo"
#: The console operator the demo makes.
DEMO_OPERATOR = "demo-operator"
DEMO_DEVICES = 200


class DemoProgress(Protocol):
    """Where the demo reports its steps: a step begins (with a total, when countable), then advances."""

    def step(self, title: str, total: int | None = None) -> None: ...

    def advance(self, count: int = 1) -> None: ...


class _Silent:
    def step(self, title: str, total: int | None = None) -> None:
        return None

    def advance(self, count: int = 1) -> None:
        return None


@dataclass
class DemoResult:
    directory: Path
    findings: list[Finding]
    keys: list[str]
    evidence_records: int = 0
    last_signed_seq: int | None = None
    #: What each step produced, for the summary (JSON-able).
    steps: dict[str, Any] = field(default_factory=dict)
    #: Passphrases made up for this run, by the environment variable that passes them (e.g.
    #: TRUSTROOT_PASSPHRASE); empty when taken from the environment.
    generated_secrets: dict[str, str] = field(default_factory=dict)
    #: The console login made for the demo operator (name, password, TOTP secret).
    console_login: dict[str, str] = field(default_factory=dict)


def _secret(kind: SecretKind, generated: dict[str, str]) -> str:
    value = os.environ.get(ENV_VARS[kind])
    if value:
        return value
    value = pysecrets.token_urlsafe(18)
    generated[ENV_VARS[kind]] = value
    return value


def _prepare(directory: Path, replace: bool) -> Path:
    directory = directory.resolve()
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"--dir {directory}: is a file, not a directory; choose another --dir")
    if directory.exists() and any(directory.iterdir()):
        if not (directory / DEMO_MARKER).exists():
            raise StateError(f"{directory} is not empty and not a trustroot demo; choose another --dir")
        if not replace:
            raise StateError(f"{directory} holds an earlier demo", hint="pass --replace to start it afresh")
        shutil.rmtree(directory)
    return directory


def run_demo(
    directory: Path,
    *,
    replace: bool = False,
    progress: DemoProgress | None = None,
    devices: int = DEMO_DEVICES,
    time_scale: float | None = None,
) -> DemoResult:
    """Run the demo in ``directory`` (refused if it holds anything but an earlier demo)."""
    from trustroot.demo import life

    report = progress or _Silent()
    directory = _prepare(directory, replace)
    generated: dict[str, str] = {}
    source = fixed_secrets(_secret("store", generated), _secret("root", generated))
    report.step("create the product and its root of trust")
    product = create_product(directory, "Acme Plug", secrets=source)
    (directory / DEMO_MARKER).write_text("made by trustroot demo; --replace may remove this directory\n")
    life.configure(product)
    product = open_product(product.context.path, secrets=source)
    findings = lint(product.context, today=datetime.now(UTC).date())
    if not any(f.severity == "error" for f in findings):
        record_context_check(product.context.path, len(findings), product.actor)
    result = DemoResult(
        directory=directory,
        findings=findings,
        keys=[k.name for k in product.keys.list()],
        generated_secrets=generated,
    )
    life.run(product, result, report, devices=devices, time_scale=time_scale or life.DEMO_TIME_SCALE)
    verified = product.evidence.verify(product.evidence_public_keys())
    result.evidence_records = verified.records
    result.last_signed_seq = verified.last_signed_seq
    return result
