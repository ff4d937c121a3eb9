"""Guideline 4: store credentials and security-sensitive data securely (5.4-1, 5.4-3, 5.4-4)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from trustroot.compliance.readers import inconclusive, reader, scan_unit, unit
from trustroot.compliance.verdicts import UnitResult, Verdict

if TYPE_CHECKING:
    from trustroot.compliance.sources import EvidenceSet

#: Key-store backends that never hold a private key in clear.
PROTECTED_BACKENDS: Final = frozenset({"file", "pkcs11"})
#: Scan rules that find key material.
KEY_RULES: Final = ("private-key", "privatekey", "private_key")


@reader("5.4-1")
def keys_protected(ev: EvidenceSet) -> list[UnitResult]:
    p = "5.4-1"
    created = ev.of_type("key.created", "key.imported", "key.rotated", "key.restored")
    keyed = [s for s in created if "backend" in s.data]
    units: list[UnitResult] = []
    if not keyed:
        units.append(inconclusive(p, 1, "Every key lives in a protected key store", "no key.created record"))
    else:
        clear = [s for s in keyed if s.data.get("backend") not in PROTECTED_BACKENDS]
        backends = sorted({str(s.data.get("backend")) for s in keyed})
        units.append(
            unit(
                p,
                1,
                "Every key lives in a protected key store (scrypt-encrypted file or PKCS#11 token)",
                Verdict.FAIL if clear else Verdict.PASS,
                f"{len(clear)} key(s) outside a protected backend: " + ", ".join(s.record.subject for s in clear[:5])
                if clear
                else f"{len(keyed)} key record(s), backends {', '.join(backends)}",
                [s.ref() for s in (clear or keyed[:1])],
            )
        )
    exported = [s for s in ev.of_type("key.exported") if s.data.get("private") is True]
    sanctioned = ev.of_type("bootloader.secret.exported")
    note = (
        f"; {len(sanctioned)} boot-loader secret export(s), the one sanctioned exception (ADR 7)" if sanctioned else ""
    )
    units.append(
        unit(
            p,
            2,
            "No private key was exported in clear",
            Verdict.FAIL if exported else Verdict.PASS,
            f"{len(exported)} private key export(s) recorded" if exported else "no private key left the store" + note,
            [s.ref() for s in exported]
            + [s.ref("sanctioned boot-loader export") for s in sanctioned]
            + [ev.chain_ref("no key.exported record of private key material up to this head")],
        )
    )
    if any(s.kind in ("rootfs", "image") for s in ev.scans.values()):
        units.append(
            scan_unit(
                ev, p, 3, "No private key in the firmware", kinds=("rootfs", "image"), also=("5.4-3",), rules=KEY_RULES
            )
        )
    return units


@reader("5.4-3")
def no_hard_coded_secrets(ev: EvidenceSet) -> list[UnitResult]:
    return [scan_unit(ev, "5.4-3", 1, "No hard-coded critical security parameter in the software", rules=KEY_RULES)]


@reader("5.4-4")
def unique_device_credentials(ev: EvidenceSet) -> list[UnitResult]:
    p = "5.4-4"
    devices = ev.of_type("device.provisioned")
    if not devices:
        return [inconclusive(p, 1, "Every device has its own identity key and certificate", "no device provisioned")]
    seen: dict[str, str] = {}
    duplicates: list[str] = []
    for s in devices:
        fingerprint = str(s.data.get("certificate"))
        if fingerprint in seen:
            duplicates.append(f"{s.record.subject} shares a certificate with {seen[fingerprint]}")
        seen.setdefault(fingerprint, s.record.subject)
    return [
        unit(
            p,
            1,
            "Every device has its own identity key and certificate",
            Verdict.FAIL if duplicates else Verdict.PASS,
            "; ".join(duplicates[:5]) if duplicates else f"{len(devices)} devices, {len(seen)} distinct certificates",
            [devices[0].ref("first"), devices[-1].ref("last")],
        )
    ]
