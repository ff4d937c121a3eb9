"""Lint a Security Context against ETSI EN 303 645.

A pure function over the validated context and an injected date. Each finding names the key path,
its line in the file, the provision at stake and the fix. ``error`` findings break a mandatory
provision (``trustroot context check`` exits 1); ``advice`` findings concern recommendations and
are shown without failing the check unless ``--strict`` is given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Literal

from trustroot._mcuboot import ALLOWED_ENCRYPTION_PAIRS
from trustroot.context.common_passwords import is_common_password
from trustroot.context.load import KeyPath, LoadedContext, format_path
from trustroot.context.schema import SecurityContext

__all__ = ["ALLOWED_ENCRYPTION_PAIRS", "Finding", "lint"]

Severity = Literal["error", "advice"]

#: Hash algorithms MCUboot pairs with each signature algorithm.
_HASH_FOR_SIGNATURE: dict[str, frozenset[str]] = {
    "ecdsa-p256": frozenset({"sha256"}),
    "ecdsa-p384": frozenset({"sha384"}),
    "ed25519": frozenset({"sha256", "sha512"}),
    "rsa-3072": frozenset({"sha256"}),
    "none": frozenset({"sha256", "sha384", "sha512"}),
}
_PLACEHOLDER_DOMAINS = (
    ".example",
    "example.com",
    "example.org",
    "example.net",
    ".invalid",
    ".test",
    ".localhost",
)


@dataclass(frozen=True)
class Finding:
    """One lint finding."""

    key: str
    line: int
    provision: str
    severity: Severity
    message: str
    fix: str

    def as_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "line": self.line,
            "provision": self.provision,
            "severity": self.severity,
            "message": self.message,
            "fix": self.fix,
        }


_Raw = tuple[KeyPath, str, Severity, str, str]


def _communication(ctx: SecurityContext, today: date) -> Iterator[_Raw]:
    comm = ctx.communication
    if comm.min_tls_version in ("1.0", "1.1"):
        yield (
            ("communication", "min_tls_version"),
            "5.5-1",
            "error",
            f"TLS {comm.min_tls_version} is allowed; TLS below 1.2 is not best-practice cryptography",
            'set min_tls_version = "1.2" (or "1.3")',
        )
    if not comm.mutual_tls:
        yield (
            ("communication", "mutual_tls"),
            "5.5-1",
            "error",
            "devices do not authenticate with their certificates (mutual TLS is off)",
            "set mutual_tls = true",
        )


def _passwords(ctx: SecurityContext, today: date) -> Iterator[_Raw]:
    pw = ctx.identity.password
    key = ("identity", "password")
    if pw.mode == "shared":
        common = pw.shared_value is not None and is_common_password(pw.shared_value)
        yield (
            (*key, "mode"),
            "5.1-1",
            "error",
            "every unit would share one default password" + (" (and it is a well-known password)" if common else ""),
            'set mode = "derived" (unique per device) or "user-set", and remove shared_value',
        )
    elif pw.shared_value is not None:
        yield (
            (*key, "shared_value"),
            "5.1-1",
            "error",
            "a fixed default password is configured",
            "remove shared_value",
        )
    if pw.mode in ("derived", "random") and pw.entropy_bits < pw.min_entropy_bits:
        yield (
            (*key, "length"),
            "5.1-2",
            "error",
            f"{pw.length} {pw.alphabet} characters give {pw.entropy_bits:.0f} bits, below min_entropy_bits = "
            f"{pw.min_entropy_bits}",
            "raise length or use a larger alphabet",
        )
    if pw.mode in ("derived", "random") and pw.min_entropy_bits < 60:
        yield (
            (*key, "min_entropy_bits"),
            "5.1-2",
            "advice",
            f"min_entropy_bits = {pw.min_entropy_bits} is below the 60 bits trustroot recommends",
            "set min_entropy_bits = 60 or more",
        )


def _boot(ctx: SecurityContext, today: date) -> Iterator[_Raw]:
    boot = ctx.boot
    if boot.signature == "none":
        yield (
            ("boot", "signature"),
            "5.3-10",
            "error",
            "firmware images are not signed, so devices cannot check an update is authentic",
            'set signature = "ecdsa-p256" (or "ed25519", "ecdsa-p384", "rsa-3072")',
        )
    if not boot.anti_rollback:
        yield (
            ("boot", "anti_rollback"),
            "5.3-7",
            "error",
            "anti-rollback is off: an old, vulnerable image would still boot",
            "set anti_rollback = true",
        )
    if boot.encryption != "none" and (boot.signature, boot.encryption) not in ALLOWED_ENCRYPTION_PAIRS:
        yield (
            ("boot", "encryption"),
            "5.3-7",
            "error",
            f"MCUboot cannot use {boot.encryption} encryption with {boot.signature} signatures",
            'use signature "ecdsa-p256" with "ecies-p256", or "ed25519" with "ecies-x25519"',
        )
    if boot.hash not in _HASH_FOR_SIGNATURE[boot.signature]:
        allowed = " or ".join(sorted(_HASH_FOR_SIGNATURE[boot.signature]))
        yield (
            ("boot", "hash"),
            "5.3-7",
            "error",
            f"MCUboot does not pair a {boot.hash} image hash with {boot.signature} signatures",
            f"set hash = {allowed!r}" if " or " not in allowed else f"set hash to {allowed}",
        )
    if not boot.test_boot:
        yield (
            ("boot", "test_boot"),
            "5.7-1",
            "advice",
            "a new image is made permanent without a test boot, so a bad update cannot revert itself",
            "set test_boot = true",
        )
    if boot.encryption == "ecies-x25519" and ctx.root_of_trust.backend == "pkcs11":
        yield (
            ("boot", "encryption"),
            "5.4-1",
            "advice",
            "X25519 keys cannot live on the PKCS#11 token; the image encryption key will be an encrypted file",
            'use "ecies-p256" with "ecdsa-p256" to keep every key on the token',
        )


def _support(ctx: SecurityContext, today: date) -> Iterator[_Raw]:
    end = ctx.product.support_period_end
    if end is None:
        yield (
            ("product", "support_period_end"),
            "5.3-13",
            "error",
            "no support period is declared",
            "set support_period_end = YYYY-MM-DD (the last day security updates are provided)",
        )
    elif end < today:
        yield (
            ("product", "support_period_end"),
            "5.3-13",
            "error",
            f"the support period ended on {end.isoformat()}",
            "extend support_period_end, or declare the product end-of-life",
        )


def _disclosure(ctx: SecurityContext, today: date) -> Iterator[_Raw]:
    disclosure = ctx.product.disclosure
    if disclosure is None:
        yield (
            ("product", "disclosure"),
            "5.2-1",
            "error",
            "no vulnerability disclosure contact or policy",
            "add [product.disclosure] with contact = [...] and policy_url",
        )
        return
    for index, contact in enumerate(disclosure.contact):
        host = contact.split("@")[-1] if contact.startswith("mailto:") else contact.split("/")[2:3]
        host_text = host if isinstance(host, str) else "".join(host)
        if any(host_text.endswith(p) or host_text == p.lstrip(".") for p in _PLACEHOLDER_DOMAINS):
            yield (
                ("product", "disclosure", "contact", index),
                "5.2-1",
                "advice",
                f"{contact} is a placeholder address nobody reads",
                "replace it with the security team's real contact",
            )


def _data(ctx: SecurityContext, today: date) -> Iterator[_Raw]:
    data = ctx.data
    if not data.delete_on_reset:
        yield (
            ("data", "delete_on_reset"),
            "5.11-1",
            "error",
            "a factory reset leaves personal data on the device",
            "set delete_on_reset = true",
        )
    if not data.delete_on_transfer:
        yield (
            ("data", "delete_on_transfer"),
            "5.11-2",
            "advice",
            "a change of owner leaves the previous owner's data in place",
            "set delete_on_transfer = true",
        )
    if ctx.telemetry.contains_personal_data:
        yield (
            ("telemetry", "contains_personal_data"),
            "6-4",
            "advice",
            "telemetry carries personal data",
            "keep personal data out of telemetry, or justify it in the ICS",
        )


def _operations(ctx: SecurityContext, today: date) -> Iterator[_Raw]:
    if ctx.update.checkin_jitter_s[1] == 0:
        yield (
            ("update", "checkin_jitter_s"),
            "5.9-3",
            "advice",
            "check-ins have no jitter, so a fleet reconnects all at once after an outage",
            "set checkin_jitter_s = [0, 600] or similar",
        )
    if not ctx.update.automatic:
        yield (
            ("update", "automatic"),
            "5.3-4A",
            "advice",
            "security updates are not installed automatically",
            "set automatic = true",
        )
    if not ctx.telemetry.enabled:
        yield (
            ("telemetry", "enabled"),
            "5.10-1",
            "advice",
            "no security telemetry is collected, so anomalies go unseen",
            "set enabled = true",
        )
    if not ctx.code_quality.targets:
        yield (
            ("code_quality", "targets"),
            "5.6-9",
            "advice",
            "the scanning gate has no targets",
            "add [[code_quality.targets]] for the firmware sources and root file system",
        )


_CHECKS: tuple[Callable[[SecurityContext, date], Iterator[_Raw]], ...] = (
    _communication,
    _passwords,
    _boot,
    _support,
    _disclosure,
    _data,
    _operations,
)


def lint(loaded: LoadedContext, *, today: date) -> list[Finding]:
    """Every finding for ``loaded``, errors first, then in file order."""
    findings = [
        Finding(
            key=format_path(path),
            line=loaded.line_of(path),
            provision=provision,
            severity=severity,
            message=message,
            fix=fix,
        )
        for check in _CHECKS
        for path, provision, severity, message, fix in check(loaded.model, today)
    ]
    return sorted(findings, key=lambda f: (f.severity != "error", f.line, f.key))
