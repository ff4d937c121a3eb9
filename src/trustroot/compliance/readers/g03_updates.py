"""Guideline 3: keep software updated (5.3-1 ... 5.3-16)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Final

from trustroot.compliance.cra import reports
from trustroot.compliance.readers import inconclusive, lint_unit, reader, unit
from trustroot.compliance.verdicts import UnitResult, Verdict

if TYPE_CHECKING:
    from trustroot.compliance.sources import EvidenceSet, Sourced

#: A fix counts as timely (5.3-8) when its corrective measure came within this many days of the report.
TIMELY_FIX_DAYS: Final = 90
#: Image signature algorithms that are best practice for updates (5.3-7).
BEST_PRACTICE_IMAGE_ALGORITHMS: Final = frozenset({"ecdsa-p256", "ecdsa-p384", "ed25519", "rsa-3072"})
#: Longest check-in interval that still counts as "regularly" checking for updates (5.3-5).
MAX_CHECK_INTERVAL_S: Final = 7 * 86400

_FIRMWARE_KEY_TYPES = ("key.created", "key.imported", "key.rotated")


def _releases(ev: EvidenceSet) -> list[Sourced]:
    return ev.of_type("release.published")


def _firmware_keys(ev: EvidenceSet) -> dict[str, Sourced]:
    return {
        str(s.data.get("fingerprint")): s
        for s in ev.of_type(*_FIRMWARE_KEY_TYPES)
        if s.data.get("role") == "firmware-signing" and s.data.get("fingerprint")
    }


def _revoked(ev: EvidenceSet) -> set[str]:
    return {str(s.data.get("fingerprint")) for s in ev.of_type("key.revoked")}


@reader("5.3-1")
def updatable(ev: EvidenceSet) -> list[UnitResult]:
    boot = ev.context.model.boot
    return [
        unit(
            "5.3-1",
            1,
            "The firmware is one updatable MCUboot image",
            Verdict.PASS,
            f"{boot.image_format} image, {boot.upgrade_mode} upgrades, channels "
            f"{', '.join(ev.context.model.update.channels)}",
            [ev.setting("boot", "image_format"), ev.setting("update", "channels")],
        )
    ]


@reader("5.3-2")
def update_mechanism(ev: EvidenceSet) -> list[UnitResult]:
    releases = _releases(ev)
    if not releases:
        return [inconclusive("5.3-2", 1, "Updates are published for the fleet", "no release.published record")]
    latest = releases[-1]
    tuf = latest.data.get("tuf")
    roles = sorted(tuf) if isinstance(tuf, dict) else []
    verdict = Verdict.PASS if {"root", "targets", "snapshot", "timestamp"} <= set(roles) else Verdict.FAIL
    return [
        unit(
            "5.3-2",
            1,
            "Updates are published for the fleet over TUF",
            verdict,
            f"{len(releases)} release(s); latest {latest.data.get('version')} on {latest.data.get('channel')} with "
            f"TUF roles {', '.join(roles) or 'none'}",
            [latest.ref()],
        )
    ]


@reader("5.3-3")
def easy_update(ev: EvidenceSet) -> list[UnitResult]:
    update = ev.context.model.update
    if update.automatic:
        return [
            unit(
                "5.3-3",
                1,
                "Updates need no action from the user",
                Verdict.PASS,
                "devices install security updates automatically",
                [ev.setting("update", "automatic")],
            )
        ]
    return [inconclusive("5.3-3", 1, "Updates need no action from the user", "updates are not automatic")]


@reader("5.3-4")
def automatic_updates(ev: EvidenceSet) -> list[UnitResult]:
    automatic = ev.context.model.update.automatic
    return [
        unit(
            "5.3-4",
            1,
            "Security updates install automatically",
            Verdict.PASS if automatic else Verdict.FAIL,
            "automatic = true" if automatic else "automatic = false: users must install updates by hand",
            [ev.setting("update", "automatic")],
        )
    ]


@reader("5.3-5")
def checks_for_updates(ev: EvidenceSet) -> list[UnitResult]:
    interval = ev.context.model.update.checkin_interval_s
    ok = interval <= MAX_CHECK_INTERVAL_S
    return [
        unit(
            "5.3-5",
            1,
            "Devices check for updates regularly",
            Verdict.PASS if ok else Verdict.FAIL,
            f"check-in every {interval} s (limit {MAX_CHECK_INTERVAL_S} s)",
            [ev.setting("update", "checkin_interval_s")],
        )
    ]


@reader("5.3-7")
def update_crypto(ev: EvidenceSet) -> list[UnitResult]:
    p = "5.3-7"
    units = [
        lint_unit(
            ev,
            p,
            1,
            "Images are signed with best-practice algorithms and anti-rollback is on",
            f"{ev.context.model.boot.signature} signatures, {ev.context.model.boot.hash}, anti-rollback on",
            [("boot", "signature"), ("boot", "anti_rollback")],
        )
    ]
    signed = ev.of_type("image.signed")
    if not signed:
        units.append(inconclusive(p, 2, "Every signed image uses a best-practice algorithm", "no image.signed record"))
    else:
        weak = [s for s in signed if s.data.get("algorithm") not in BEST_PRACTICE_IMAGE_ALGORITHMS]
        no_counter = [
            s for s in signed if ev.context.model.boot.anti_rollback and s.data.get("security_counter") is None
        ]
        bad = weak + no_counter
        units.append(
            unit(
                p,
                2,
                "Every signed image uses a best-practice algorithm and carries a security counter",
                Verdict.FAIL if bad else Verdict.PASS,
                f"{len(bad)} of {len(signed)} image(s) unsigned, weak or without counter: "
                + ", ".join(s.record.subject for s in bad[:5])
                if bad
                else f"{len(signed)} image(s), all {', '.join(sorted({str(s.data.get('algorithm')) for s in signed}))}",
                [s.ref() for s in (bad or signed[-1:])],
            )
        )
    return units


@reader("5.3-8")
def timely_updates(ev: EvidenceSet) -> list[UnitResult]:
    p = "5.3-8"
    releases = _releases(ev)
    if not releases:
        return [inconclusive(p, 1, "Updates are released", "no release.published record")]
    units = [
        unit(
            p,
            1,
            "Updates are released within the support period",
            Verdict.FAIL if any(r.data.get("after_support_period") for r in releases) else Verdict.PASS,
            f"latest release {releases[-1].data.get('version')} at {releases[-1].record.time}",
            [releases[-1].ref()],
        )
    ]
    if ev.fleet_source is not None:
        slow: list[str] = []
        refs = []
        fixed = [r for r in reports(ev) if r.resolution in ("fixed", "mitigated") or r.at("corrective_measure_at")]
        for report in fixed:
            measure = report.at("corrective_measure_at") or report.at("closed_at")
            refs += report.evidence[-1:]
            limit = report.received_at + timedelta(days=TIMELY_FIX_DAYS)
            if (measure or ev.now) > limit:
                slow.append(f"{report.id}: fix {'at ' + str(measure) if measure else 'missing'}, due by {limit}")
        units.append(
            unit(
                p,
                2,
                f"Fixed vulnerabilities got a corrective measure within {TIMELY_FIX_DAYS} days",
                Verdict.FAIL if slow else Verdict.PASS,
                "; ".join(slow) if slow else f"{len(fixed)} fixed report(s), each within {TIMELY_FIX_DAYS} days",
                refs,
            )
        )
    return units


def _signed_by_product(ev: EvidenceSet, key_field: str, records: list[Sourced]) -> tuple[list[Sourced], dict[str, str]]:
    keys = _firmware_keys(ev)
    revoked = _revoked(ev)
    bad: list[Sourced] = []
    why: dict[str, str] = {}
    for s in records:
        key = s.data.get(key_field)
        if not key:
            bad.append(s)
            why[s.record.hash] = "unsigned"
        elif key not in keys:
            bad.append(s)
            why[s.record.hash] = f"signed by {str(key)[:16]}, not a firmware-signing key of the product"
        elif key in revoked:
            bad.append(s)
            why[s.record.hash] = f"signed by revoked key {str(key)[:16]}"
    return bad, why


@reader("5.3-9")
def device_verifies(ev: EvidenceSet) -> list[UnitResult]:
    return [
        lint_unit(
            ev,
            "5.3-9",
            1,
            "Devices verify each image's signature before installing it",
            f"MCUboot verifies {ev.context.model.boot.signature} signatures; test boot "
            + ("on" if ev.context.model.boot.test_boot else "off"),
            [("boot", "signature")],
            lint_of="5.3-10",
        )
    ]


@reader("5.3-10")
def authentic_updates(ev: EvidenceSet) -> list[UnitResult]:
    p = "5.3-10"
    units = [
        lint_unit(
            ev,
            p,
            1,
            "Images are signed and devices check the signature",
            f"[boot] signature = {ev.context.model.boot.signature}",
            [("boot", "signature")],
        )
    ]
    for number, (record_type, key_field, what) in enumerate(
        (("image.signed", "key_id", "signed image"), ("release.published", "image_key_id", "published release")),
        start=2,
    ):
        records = ev.of_type(record_type)
        title = f"Every {what} is signed by a firmware-signing key of the product"
        if not records:
            units.append(inconclusive(p, number, title, f"no {record_type} record"))
            continue
        bad, why = _signed_by_product(ev, key_field, records)
        units.append(
            unit(
                p,
                number,
                title,
                Verdict.FAIL if bad else Verdict.PASS,
                "; ".join(f"{s.record.subject}: {why[s.record.hash]}" for s in bad[:5])
                if bad
                else f"{len(records)} {what}(s), each under a product firmware-signing key",
                [s.ref() for s in (bad or records[-1:])],
            )
        )
    return units


@reader("5.3-13")
def support_period(ev: EvidenceSet) -> list[UnitResult]:
    end = ev.context.model.product.support_period_end
    return [
        lint_unit(
            ev,
            "5.3-13",
            1,
            "A support period is declared and has not lapsed",
            f"security updates until {end.isoformat() if end else '?'}",
            [("product", "support_period_end")],
        )
    ]


def _not_applicable_if_updatable(provision: str, ev: EvidenceSet) -> list[UnitResult]:
    releases = _releases(ev)
    if releases:
        return [
            unit(
                provision,
                1,
                "Condition 3 (software components are not updatable) does not hold",
                Verdict.NOT_APPLICABLE,
                "condition 3: the software is updatable (releases are published)",
                [releases[-1].ref()],
            )
        ]
    return [inconclusive(provision, 1, "Is the software updatable?", "no release.published record")]


@reader("5.3-14")
def not_updatable_rationale(ev: EvidenceSet) -> list[UnitResult]:
    return _not_applicable_if_updatable("5.3-14", ev)


@reader("5.3-15")
def not_updatable_isolation(ev: EvidenceSet) -> list[UnitResult]:
    return _not_applicable_if_updatable("5.3-15", ev)


@reader("5.3-16")
def model_designation(ev: EvidenceSet) -> list[UnitResult]:
    product = ev.context.model.product
    devices = ev.of_type("device.provisioned")
    refs = [ev.setting("product", "model")] + [d.ref("device certificate carries the model") for d in devices[:1]]
    return [
        unit(
            "5.3-16",
            1,
            "The model designation is stated",
            Verdict.PASS,
            f"model {product.model!r} of {product.name} (on the label and in every device certificate)",
            refs,
        )
    ]
