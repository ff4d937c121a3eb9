"""Guidelines 7 to 12 and clause 6: integrity, personal data, resilience, telemetry, deletion, set-up."""

from __future__ import annotations

from typing import TYPE_CHECKING

from trustroot.compliance.readers import inconclusive, lint_unit, reader, unit
from trustroot.compliance.verdicts import UnitResult, Verdict

if TYPE_CHECKING:
    from trustroot.compliance.sources import EvidenceSet


@reader("5.7-1")
def secure_boot(ev: EvidenceSet) -> list[UnitResult]:
    p = "5.7-1"
    boot = ev.context.model.boot
    units = [
        lint_unit(
            ev,
            p,
            1,
            "The boot loader verifies the image, with anti-rollback",
            f"MCUboot verifies {boot.signature} signatures, anti-rollback "
            + ("on" if boot.anti_rollback else "off")
            + ", test boot "
            + ("on" if boot.test_boot else "off"),
            [("boot", "signature"), ("boot", "anti_rollback"), ("boot", "test_boot")],
            lint_of="5.3-10",
        )
    ]
    if boot.signature == "none" or not boot.anti_rollback:
        units[0] = unit(p, 1, units[0].title, Verdict.FAIL, "images unsigned or anti-rollback off", units[0].evidence)
    signed = ev.of_type("image.signed")
    if signed:
        units.append(
            unit(
                p,
                2,
                "Images are signed for the boot loader",
                Verdict.PASS,
                f"{len(signed)} image(s) signed, latest {signed[-1].data.get('version')} "
                f"counter {signed[-1].data.get('security_counter')}",
                [signed[-1].ref()],
            )
        )
    else:
        units.append(inconclusive(p, 2, "Images are signed for the boot loader", "no image.signed record"))
    return units


@reader("5.7-2")
def tamper_alert(ev: EvidenceSet) -> list[UnitResult]:
    telemetry = ev.context.model.telemetry
    index = next((i for i, r in enumerate(telemetry.rules) if r.metric == "update_auth_failures"), None)
    ok = telemetry.enabled and index is not None
    return [
        unit(
            "5.7-2",
            1,
            "A failed authenticity check raises an alert",
            Verdict.PASS if ok else Verdict.FAIL,
            "telemetry rule on update_auth_failures" if ok else "no enabled rule watches update_auth_failures",
            [ev.setting("telemetry", "rules", index) if index is not None else ev.setting("telemetry", "rules")],
        )
    ]


@reader("5.8-1")
def personal_data_in_transit(ev: EvidenceSet) -> list[UnitResult]:
    categories = [c.name for c in ev.context.model.data.personal]
    return [
        lint_unit(
            ev,
            "5.8-1",
            1,
            "Personal data travels only inside TLS",
            f"categories {', '.join(categories) or 'none'} travel inside mutual TLS",
            [("data", "personal"), ("communication", "min_tls_version")],
            lint_of="5.5-1",
        )
    ]


@reader("5.8-2")
def sensitive_data_in_transit(ev: EvidenceSet) -> list[UnitResult]:
    sensitive = [c.name for c in ev.context.model.data.personal if c.sensitive]
    return [
        lint_unit(
            ev,
            "5.8-2",
            1,
            "Sensitive personal data is encrypted with best-practice cryptography in transit",
            f"sensitive categories {', '.join(sensitive) or 'none declared'}; all service traffic is TLS "
            f"{ev.context.model.communication.min_tls_version}+; stored per owner under a wrapped data key",
            [("data", "personal"), ("communication", "min_tls_version")],
            lint_of="5.5-1",
        )
    ]


@reader("5.9-1")
def resilience(ev: EvidenceSet) -> list[UnitResult]:
    boot = ev.context.model.boot
    return [
        unit(
            "5.9-1",
            1,
            "An interrupted update falls back to the last known-good image",
            Verdict.PASS if boot.test_boot else Verdict.FAIL,
            f"{boot.upgrade_mode} upgrades with test boot " + ("on" if boot.test_boot else "off"),
            [ev.setting("boot", "test_boot"), ev.setting("boot", "upgrade_mode")],
        )
    ]


@reader("5.9-3")
def orderly_reconnect(ev: EvidenceSet) -> list[UnitResult]:
    low, high = ev.context.model.update.checkin_jitter_s
    return [
        unit(
            "5.9-3",
            1,
            "Check-ins are spread with jitter",
            Verdict.PASS if high > 0 else Verdict.FAIL,
            f"jitter {low}-{high} s" if high > 0 else "no jitter: the fleet reconnects all at once",
            [ev.setting("update", "checkin_jitter_s")],
        )
    ]


@reader("5.10-1")
def telemetry_examined(ev: EvidenceSet) -> list[UnitResult]:
    telemetry = ev.context.model.telemetry
    if not telemetry.enabled:
        return [
            unit(
                "5.10-1",
                1,
                "Condition 6 (telemetry data is collected)",
                Verdict.NOT_APPLICABLE,
                "condition 6: no telemetry is collected",
                [ev.setting("telemetry", "enabled")],
            )
        ]
    return [
        unit(
            "5.10-1",
            1,
            "Telemetry is examined by rules for anomalies",
            Verdict.PASS if telemetry.rules else Verdict.FAIL,
            f"{len(telemetry.rules)} rule(s) over {len(telemetry.metrics)} metric(s)",
            [ev.setting("telemetry", "enabled"), ev.setting("telemetry", "rules")],
        )
    ]


@reader("5.11-1")
def erase_on_reset(ev: EvidenceSet) -> list[UnitResult]:
    return [
        lint_unit(
            ev,
            "5.11-1",
            1,
            "A factory reset erases the user's data",
            "delete_on_reset = true: a factory reset wipes every personal-data category",
            [("data", "delete_on_reset")],
        )
    ]


@reader("5.11-2")
def erase_in_service(ev: EvidenceSet) -> list[UnitResult]:
    p = "5.11-2"
    data = ev.context.model.data
    units = [
        unit(
            p,
            1,
            "A change of owner erases the previous owner's data",
            Verdict.PASS if data.delete_on_transfer else Verdict.FAIL,
            f"delete_on_transfer = {str(data.delete_on_transfer).lower()}",
            [ev.setting("data", "delete_on_transfer")],
        )
    ]
    deleted = ev.of_type("data.deleted")
    if deleted:
        units.append(
            unit(
                p,
                2,
                "Deletions in the service happened",
                Verdict.PASS,
                f"{len(deleted)} deletion(s) recorded, latest {deleted[-1].record.time}",
                [deleted[-1].ref()],
            )
        )
    return units


@reader("5.11-4")
def deletion_confirmed(ev: EvidenceSet) -> list[UnitResult]:
    p = "5.11-4"
    data = ev.context.model.data
    deleted = [s for s in ev.of_type("data.deleted") if s.data.get("reason") != "retention"]
    units = [
        unit(
            p,
            1,
            "Deletions return a signed receipt",
            Verdict.PASS if data.deletion_receipt else Verdict.FAIL,
            f"deletion_receipt = {str(data.deletion_receipt).lower()}",
            [ev.setting("data", "deletion_receipt")],
        )
    ]
    if deleted:
        without = [s for s in deleted if not s.data.get("receipt_sha256")]
        units.append(
            unit(
                p,
                2,
                "Every recorded deletion has its receipt",
                Verdict.FAIL if without else Verdict.PASS,
                f"{len(without)} deletion(s) without a receipt"
                if without
                else f"{len(deleted)} deletion(s), each with a receipt digest",
                [s.ref() for s in (without or deleted[-1:])],
            )
        )
    return units


@reader("5.12-3")
def setup_checked(ev: EvidenceSet) -> list[UnitResult]:
    title = "The set-up as it is now was checked against EN 303 645"
    checks = [s for s in ev.of_type("context.checked") if s.data.get("ok") is True]
    if not checks:
        return [inconclusive("5.12-3", 1, title, "no passing context.checked record (trustroot context check)")]
    current = [s for s in checks if s.data.get("sha256") == ev.context_sha256]
    if not current:
        return [
            inconclusive(
                "5.12-3",
                1,
                title,
                f"the context changed after its last check ({checks[-1].record.time}); check it again",
            )
        ]
    return [
        unit(
            "5.12-3",
            1,
            title,
            Verdict.PASS,
            f"trustroot context check passed on this context (sha256 {ev.context_sha256[:12]}) "
            f"at {current[-1].record.time}",
            [current[-1].ref(), ev.setting()],
        )
    ]


@reader("6-4")
def telemetry_minimal(ev: EvidenceSet) -> list[UnitResult]:
    telemetry = ev.context.model.telemetry
    if not telemetry.enabled:
        return [
            unit(
                "6-4",
                1,
                "Condition 6 (telemetry data is collected)",
                Verdict.NOT_APPLICABLE,
                "condition 6: no telemetry is collected",
                [ev.setting("telemetry", "enabled")],
            )
        ]
    return [
        unit(
            "6-4",
            1,
            "Telemetry carries no personal data",
            Verdict.FAIL if telemetry.contains_personal_data else Verdict.PASS,
            "telemetry carries personal data" if telemetry.contains_personal_data else "metrics are device facts only",
            [ev.setting("telemetry", "contains_personal_data")],
        )
    ]
