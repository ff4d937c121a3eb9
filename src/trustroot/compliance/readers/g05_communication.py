"""Guideline 5: communicate securely (5.5-1, 5.5-4 ... 5.5-8)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from trustroot.compliance.readers import inconclusive, lint_unit, reader, scan_unit, unit
from trustroot.compliance.verdicts import UnitResult, Verdict

if TYPE_CHECKING:
    from trustroot.compliance.sources import EvidenceSet


def _tls(ev: EvidenceSet, provision: str, number: int, title: str) -> UnitResult:
    comm = ev.context.model.communication
    return lint_unit(
        ev,
        provision,
        number,
        title,
        f"TLS {comm.min_tls_version}+ with mutual TLS (device certificates)",
        [("communication", "min_tls_version"), ("communication", "mutual_tls")],
        lint_of="5.5-1",
    )


def _server_certificate(ev: EvidenceSet, provision: str, number: int) -> UnitResult:
    title = "The service's TLS certificate comes from the product's root of trust"
    issued = ev.of_type("tls.server_certificate.issued")
    if not issued:
        return inconclusive(provision, number, title, "no tls.server_certificate.issued record (run trustroot serve)")
    latest = issued[-1]
    return unit(
        provision,
        number,
        title,
        Verdict.PASS,
        f"issued {latest.record.time}, valid until {latest.data.get('not_after')}",
        [latest.ref()],
    )


@reader("5.5-1")
def best_practice_crypto(ev: EvidenceSet) -> list[UnitResult]:
    p = "5.5-1"
    units = [_tls(ev, p, 1, "Communication uses TLS 1.2 or newer with mutual authentication")]
    units.append(_server_certificate(ev, p, 2))
    if ev.scans:
        units.append(scan_unit(ev, p, 3, "No weak TLS or crypto settings in the firmware"))
    return units


@reader("5.5-4")
def authenticated_functions(ev: EvidenceSet) -> list[UnitResult]:
    return [_tls(ev, "5.5-4", 1, "Network functions need the device's certificate")]


@reader("5.5-5")
def authenticated_configuration(ev: EvidenceSet) -> list[UnitResult]:
    p = "5.5-5"
    units = [_tls(ev, p, 1, "Device API calls are authenticated by certificate")]
    if ev.fleet_source is not None:
        operators = ev.of_type("operator.added")
        scopes = sorted({str(x) for s in operators for x in (s.data.get("scopes") or [])})
        units.append(
            unit(
                p,
                2,
                "Operator changes are made with scoped tokens",
                Verdict.PASS,
                f"{len(operators)} operator token(s) with scopes {', '.join(scopes) or 'none'}; every operator "
                "route needs a token",
                [s.ref() for s in operators[-3:]],
            )
        )
    return units


@reader("5.5-6")
def secrets_encrypted_in_transit(ev: EvidenceSet) -> list[UnitResult]:
    p = "5.5-6"
    units = [_tls(ev, p, 1, "Secrets travel only inside TLS")]
    bundles = [s for s in ev.of_type("device.provisioned") if s.data.get("flow") == "bundle"]
    if bundles:
        units.append(
            unit(
                p,
                2,
                "Device keys travel to the station encrypted",
                Verdict.PASS,
                f"{len(bundles)} device(s) received their key in a bundle encrypted to the station (ECDH + AES-GCM)",
                [bundles[0].ref()],
            )
        )
    return units


@reader("5.5-7")
def csp_protected_remote(ev: EvidenceSet) -> list[UnitResult]:
    p = "5.5-7"
    units = [_tls(ev, p, 1, "Critical security parameters cross networks only inside mutual TLS")]
    if ev.scans:
        units.append(scan_unit(ev, p, 2, "No cleartext credentials or protocols in the firmware", also=("5.5-1",)))
    return units


@reader("5.5-8")
def csp_lifecycle(ev: EvidenceSet) -> list[UnitResult]:
    p = "5.5-8"
    ceremony = ev.latest("rootoftrust.created")
    if ceremony is None:
        return [inconclusive(p, 1, "Keys are made in a recorded ceremony", "no rootoftrust.created record")]
    lifecycle = ev.of_type("key.rotated", "key.revoked", "key.backup.created", "key.restored")
    return [
        unit(
            p,
            1,
            "Keys are made, rotated and revoked in recorded ceremonies",
            Verdict.PASS,
            f"root of trust created {ceremony.record.time} on the {ceremony.data.get('backend')} backend; "
            f"{len(lifecycle)} later lifecycle record(s)",
            [ceremony.ref()] + [s.ref() for s in lifecycle[-3:]],
        )
    ]
