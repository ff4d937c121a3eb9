"""Guideline 1: no universal default passwords (5.1-1, 5.1-2, 5.1-3, 5.1-5)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from trustroot.compliance.readers import inconclusive, lint_unit, reader, scan_unit, unit
from trustroot.compliance.verdicts import UnitResult, Verdict

if TYPE_CHECKING:
    from trustroot.compliance.sources import EvidenceSet

#: Password schemes a device.provisioned record may carry (anything else, "shared" above all, fails 5.1-1).
UNIQUE_SCHEMES = frozenset({"derived", "random", "user-set", "none"})


@reader("5.1-1")
def unique_passwords(ev: EvidenceSet) -> list[UnitResult]:
    p = "5.1-1"
    units = [
        lint_unit(
            ev,
            p,
            1,
            "The context's password policy gives every unit its own password",
            f"password mode {ev.context.model.identity.password.mode!r}: unique per device, no shared value",
            [("identity", "password", "mode")],
        )
    ]
    provisioned = ev.of_type("device.provisioned")
    if not provisioned:
        units.append(inconclusive(p, 2, "Every provisioned device got a unique password", "no device provisioned yet"))
    else:
        bad = [s for s in provisioned if s.data.get("password") not in UNIQUE_SCHEMES]
        if bad:
            schemes = sorted({str(s.data.get("password")) for s in bad})
            units.append(
                unit(
                    p,
                    2,
                    "Every provisioned device got a unique password",
                    Verdict.FAIL,
                    f"{len(bad)} of {len(provisioned)} devices were provisioned with password scheme "
                    f"{', '.join(schemes)} (e.g. {bad[0].record.subject})",
                    [s.ref() for s in bad[:20]],
                )
            )
        else:
            schemes = sorted({str(s.data.get("password")) for s in provisioned})
            units.append(
                unit(
                    p,
                    2,
                    "Every provisioned device got a unique password",
                    Verdict.PASS,
                    f"{len(provisioned)} devices provisioned, each with scheme {', '.join(schemes)}",
                    [provisioned[0].ref("first"), provisioned[-1].ref("last")],
                )
            )
    if any(s.kind in ("rootfs", "image") for s in ev.scans.values()):
        units.append(scan_unit(ev, p, 3, "No default credentials in the firmware", kinds=("rootfs", "image")))
    return units


@reader("5.1-2")
def unpredictable_passwords(ev: EvidenceSet) -> list[UnitResult]:
    p = "5.1-2"
    pw = ev.context.model.identity.password
    units = [
        lint_unit(
            ev,
            p,
            1,
            "Generated passwords have enough entropy",
            f"{pw.length} {pw.alphabet} characters: {pw.entropy_bits:.0f} bits (minimum {pw.min_entropy_bits})",
            [("identity", "password", "length"), ("identity", "password", "alphabet")],
        )
    ]
    if pw.mode == "derived":
        secret = [s for s in ev.of_type("key.created", "key.imported") if s.data.get("role") == "factory-secret"]
        if secret:
            units.append(
                unit(
                    p,
                    2,
                    "Derived passwords rest on a secret factory key",
                    Verdict.PASS,
                    "passwords are HMAC-SHA256 of the factory secret, product and serial; the secret is in the key "
                    f"store ({secret[-1].data.get('backend')})",
                    [secret[-1].ref()],
                )
            )
        else:
            units.append(
                inconclusive(p, 2, "Derived passwords rest on a secret factory key", "no factory-secret key recorded")
            )
    return units


@reader("5.1-3")
def authentication_crypto(ev: EvidenceSet) -> list[UnitResult]:
    model = ev.context.model
    return [
        lint_unit(
            ev,
            "5.1-3",
            1,
            "Devices authenticate to the service with best-practice cryptography",
            f"mutual TLS {model.communication.min_tls_version}+ with {model.identity.certificate.algorithm} "
            "device certificates",
            [("communication", "mutual_tls"), ("identity", "certificate", "algorithm")],
            lint_of="5.5-1",
        )
    ]


@reader("5.1-5")
def brute_force(ev: EvidenceSet) -> list[UnitResult]:
    p = "5.1-5"
    model = ev.context.model
    units = [
        lint_unit(
            ev,
            p,
            1,
            "Network authentication is by certificate, which cannot be guessed",
            "devices authenticate over the network with their certificates (mutual TLS), not passwords",
            [("communication", "mutual_tls")],
            lint_of="5.5-1",
        )
    ]
    rules = [(i, r) for i, r in enumerate(model.telemetry.rules) if r.metric == "auth_failures" and r.max is not None]
    if model.telemetry.enabled and rules:
        index, rule = rules[0]
        units.append(
            unit(
                p,
                2,
                "Repeated authentication failures are detected",
                Verdict.PASS,
                f"telemetry rule: more than {rule.max:g} authentication failures in {rule.window_s} s raises an alert",
                [ev.setting("telemetry", "rules", index, "metric"), ev.setting("telemetry", "enabled")],
            )
        )
    else:
        units.append(
            unit(
                p,
                2,
                "Repeated authentication failures are detected",
                Verdict.FAIL,
                "no enabled telemetry rule bounds auth_failures, so a guessing attack goes unnoticed",
                [ev.setting("telemetry", "rules"), ev.setting("telemetry", "enabled")],
            )
        )
    return units
