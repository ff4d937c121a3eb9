"""Fill ``compliance/ixit.toml`` from the Security Context and the key store, keeping people's text.

Per entry: a ``user`` entry (or one trustroot did not make) is never touched; a ``derived`` entry
whose derived fields no longer match its ``digest`` was edited by hand and becomes the user's;
otherwise its derived fields are rewritten and every other field (text a person added, such as
``user_notification``) is kept. A derived entry trustroot no longer makes (a personal data
category removed from the context) is dropped unless edited. The result is validated before it
replaces the file.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT, Table

from trustroot.compliance._tomlfile import TomlFile, digest_of, read_toml, write_text
from trustroot.compliance.ixit import IXIT_FORMAT, IXIT_TABLES, Ixit, IxitEntry, ixit_path, load_ixit, parse_ixit
from trustroot.context.load import LoadedContext, locate_keys
from trustroot.context.schema import SecurityContext
from trustroot.keys._interface import KeyInfo, KeyRole

__all__ = ["IxitFillReport", "derive_ixit", "fill_ixit"]

#: Software components listed individually in 6-SoftComp (the SBOM holds all of them).
MAX_COMPONENT_ENTRIES = 200

Derived = dict[str, list[tuple[str, dict[str, str]]]]


@dataclass
class IxitFillReport:
    path: Path
    created: bool
    derived: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    empty_tables: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "created": self.created,
            "derived": self.derived,
            "kept": self.kept,
            "adopted": self.adopted,
            "dropped": self.dropped,
            "empty_tables": self.empty_tables,
        }


def _keys_text(keys: Sequence[KeyInfo], role: KeyRole) -> str:
    found = [k for k in keys if k.role is role and k.status.value == "active"]
    return ", ".join(f"{k.name} ({k.algorithm.value}, {k.backend})" for k in found) or "none yet"


def derive_ixit(ctx: SecurityContext, keys: Sequence[KeyInfo] = ()) -> Derived:
    """The IXIT entries trustroot can write itself, per table key."""
    out: Derived = {t.key: [] for t in IXIT_TABLES.values()}
    _auth(ctx, out)
    _published(ctx, out)
    _updates(ctx, out)
    _parameters(ctx, keys, out)
    _processes(ctx, out)
    _data(ctx, out)
    return {k: v for k, v in out.items() if v}


def _auth(ctx: SecurityContext, out: Derived) -> None:
    pw, cert, comm, rot = ctx.identity.password, ctx.identity.certificate, ctx.communication, ctx.root_of_trust
    if pw.mode != "none":
        gen = {
            "derived": f"HMAC-SHA256(factory secret, product, serial), {pw.length} {pw.alphabet} characters "
            f"({pw.entropy_bits:.0f} bits); the factory secret never leaves the key store",
            "random": f"drawn from the OS CSPRNG per device, {pw.length} {pw.alphabet} characters",
            "user-set": "none: the user sets the password before first use",
            "shared": "one password for every unit (refused by trustroot context check, 5.1-1)",
        }[pw.mode]
        out["1-AuthMech"].append(
            (
                "AuthMech-DevicePassword",
                {
                    "description": "per-device password for local administration of the device",
                    "authentication_factor": "user-defined password"
                    if pw.mode == "user-set"
                    else "pre-installed unique password",
                    "password_generation_mechanism": gen,
                    "security_guarantees": "only a holder of this unit's password is authenticated",
                    "cryptographic_details": "the device stores a salted verifier, not the password",
                },
            )
        )
    out["1-AuthMech"].append(
        (
            "AuthMech-DeviceIdentity",
            {
                "description": "the device authenticates to the fleet service with its identity certificate "
                "(mutual TLS)",
                "authentication_factor": f"{cert.algorithm} private key of the device and its IDevID-style certificate",
                "security_guarantees": "only devices holding a certificate of the product's issuing CA are accepted",
                "cryptographic_details": f"TLS >= {comm.min_tls_version}; issuing CA {rot.algorithms.issuing_ca}, "
                f"root CA {rot.algorithms.root_ca}",
            },
        )
    )


def _published(ctx: SecurityContext, out: Derived) -> None:
    disclosure = ctx.product.disclosure
    userinfo = {"model_designation": ctx.product.model}
    if disclosure is not None:
        userinfo["publication_of_vulnerability_disclosure_policy"] = (
            f"{disclosure.policy_url}; contact {', '.join(disclosure.contact)}; security.txt (RFC 9116)"
        )
    if ctx.product.support_period_end is not None:
        userinfo["support_period"] = f"security updates until {ctx.product.support_period_end.isoformat()}"
    out["2-UserInfo"].append(("UserInfo", userinfo))


def _updates(ctx: SecurityContext, out: Derived) -> None:
    boot, upd, comm, rot = ctx.boot, ctx.update, ctx.communication, ctx.root_of_trust
    out["6-SoftComp"].append(
        (
            "SoftComp-Firmware",
            {
                "description": f"the device firmware, as one {boot.image_format} image",
                "update_mechanism": "UpdMech-TUF",
                "cryptographic_usage": f"image signature {boot.signature}, hash {boot.hash}, "
                f"encryption {boot.encryption}",
            },
        )
    )
    for comp in ctx.components[:MAX_COMPONENT_ENTRIES]:
        ident = "SoftComp-" + "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in comp.name)[:50]
        out["6-SoftComp"].append(
            (
                ident,
                {
                    "description": f"{comp.name} {comp.version}" + (f" ({comp.purl})" if comp.purl else ""),
                    "update_mechanism": "UpdMech-TUF (part of the firmware image)",
                },
            )
        )
    out["6-SoftComp"] = list({ident: (ident, f) for ident, f in out["6-SoftComp"]}.values())
    out["7-UpdMech"].append(
        (
            "UpdMech-TUF",
            {
                "description": "signed firmware images published by the fleet service as TUF targets "
                "and installed by MCUboot",
                "security_guarantees": "authenticity and integrity of every image; freshness and consistency of the "
                "metadata (no rollback, freeze or mix-and-match)"
                + (", downgrade protection" if boot.anti_rollback else ""),
                "cryptographic_details": f"images: {boot.signature} over {boot.hash}; "
                f"TUF metadata: {rot.algorithms.update}; "
                f"transport: TLS >= {comm.min_tls_version}",
                "initiation_and_interaction": "automatic, no user action"
                if upd.automatic
                else "installed when the user accepts",
                "configuration": f"channels {', '.join(upd.channels)}; staged rollout "
                f"{' -> '.join(f'{s.percent:g}%' for s in upd.rollout_stages)}",
                "update_checking": f"device check-in every {upd.checkin_interval_s} s plus {upd.checkin_jitter_s[0]}-"
                f"{upd.checkin_jitter_s[1]} s of jitter",
            },
        )
    )
    out["8-UpdProc"].append(
        (
            "UpdProc-Release",
            {
                "description": "a release is signed, published to a channel and rolled out in stages; "
                "a rollout pauses when "
                f"more than {upd.failure_pause_threshold:.0%} of installs fail",
            },
        )
    )


def _parameters(ctx: SecurityContext, keys: Sequence[KeyInfo], out: Derived) -> None:
    pw, cert, rot = ctx.identity.password, ctx.identity.certificate, ctx.root_of_trust
    sec = out["10-SecParam"]
    sec.append(
        (
            "SecParam-DeviceIdentityKey",
            {
                "type": "critical security parameter",
                "description": f"the device's {cert.algorithm} identity key",
                "protection_scheme": "kept on the device; never leaves it in the CSR flow",
                "provisioning_mechanism": "trustroot provision (factory): CSR from the device or an encrypted bundle",
                "generation_mechanism": "generated per device",
            },
        )
    )
    if pw.mode in ("derived", "random"):
        sec.append(
            (
                "SecParam-FactorySecret",
                {
                    "type": "critical security parameter",
                    "description": "HMAC key from which device passwords are derived",
                    "protection_scheme": f"key store ({rot.backend}); "
                    f"active key: {_keys_text(keys, KeyRole.FACTORY_SECRET)}",
                    "generation_mechanism": "generated in the key store at trustroot init",
                },
            )
        )
    for role, what in (
        (KeyRole.FIRMWARE_SIGNING, "firmware image signing key"),
        (KeyRole.UPDATE_ROOT, "TUF root key (the device trusts its public part)"),
        (KeyRole.ISSUING_CA, "issuing CA key for device certificates"),
        (KeyRole.EVIDENCE, "evidence log checkpoint key"),
    ):
        sec.append(
            (
                f"SecParam-{role.value}",
                {
                    "type": "critical security parameter (public part on the device)"
                    if role in (KeyRole.FIRMWARE_SIGNING, KeyRole.UPDATE_ROOT)
                    else "critical security parameter (manufacturer side)",
                    "description": what,
                    "protection_scheme": f"key store ({rot.backend}); active: {_keys_text(keys, role)}",
                    "generation_mechanism": "generated in the key store by a recorded key ceremony",
                },
            )
        )


def _processes(ctx: SecurityContext, out: Derived) -> None:
    boot, upd, comm, rot = ctx.boot, ctx.update, ctx.communication, ctx.root_of_trust
    cert = ctx.identity.certificate
    out["11-ComMech"].append(
        (
            "ComMech-DeviceService",
            {
                "description": f"device to fleet service over HTTPS ({comm.service_url})",
                "security_guarantees": "confidentiality, integrity and mutual authentication"
                if comm.mutual_tls
                else "confidentiality and integrity, server authentication",
                "cryptographic_details": f"TLS >= {comm.min_tls_version}; device certificates {cert.algorithm}",
                "resilience_measures": f"retries with backoff; check-ins spread by "
                f"{upd.checkin_jitter_s[1]} s of jitter",
            },
        )
    )
    out["14-SecMgmt"].append(
        (
            "SecMgmt-KeyStore",
            {
                "description": f"keys in {rot.backend} backend ("
                + ("scrypt-encrypted PKCS#8 files" if rot.backend == "file" else "PKCS#11 token")
                + "); creation, rotation, revocation, backup to Shamir shares and restore are key ceremonies, each "
                "recorded in the hash-chained evidence log",
            },
        )
    )
    engines = ctx.code_quality.engines
    if ctx.code_quality.targets:
        scan = f"scanning gate over {len(ctx.code_quality.targets)} targets with {', '.join(engines)}"
        out["5-VulnMon"].append(("VulnMon-ScanGate", {"description": scan + "; reports through the disclosure intake"}))
        out["12-NetSecImpl"].append(
            (
                "NetSecImpl-ScanGate",
                {
                    "description": "firmware sources and images",
                    "review_evaluation_method": scan,
                },
            )
        )
        out["19-SecDev"].append(("SecDev-ScanGate", {"description": f"every change passes the {scan}"}))
    out["20-SecBoot"].append(
        (
            "SecBoot-MCUboot",
            {
                "description": f"MCUboot verifies the image before booting it ({boot.upgrade_mode} upgrades, test boot "
                f"{'on' if boot.test_boot else 'off'})",
                "security_guarantees": "only images signed by the product's firmware key boot"
                + ("; older security counters are refused" if boot.anti_rollback else ""),
                "detection_mechanisms": f"{boot.signature} signature over the {boot.hash} image hash",
                "notification_functionality": "a refused image is reported as telemetry metric update_auth_failures"
                if ctx.telemetry.enabled
                else "",
            },
        )
    )


def _data(ctx: SecurityContext, out: Derived) -> None:
    boot, upd = ctx.boot, ctx.update
    for cat in ctx.data.personal:
        where = [w for w, on in (("on the device", cat.on_device), ("in the fleet service", cat.in_service)) if on]
        out["21-PersData"].append(
            (
                f"PersData-{cat.name}",
                {
                    "description": cat.description,
                    "processing_activities": f"stored {' and '.join(where) or 'nowhere'}"
                    + (f"; the service keeps it at most {cat.retention_days} days" if cat.in_service else ""),
                    "sensitive": "yes" if cat.sensitive else "no",
                },
            )
        )
    out["23-ResMech"].append(
        (
            "ResMech-UpdateRollback",
            {
                "description": "a new image boots once on trial and is reverted unless it confirms itself"
                if boot.test_boot
                else "images are installed by overwrite",
                "type": "software update resilience",
            },
        )
    )
    out["23-ResMech"].append(
        (
            "ResMech-CheckinBackoff",
            {
                "description": f"check-ins retry with backoff and jitter; "
                f"downloads have a {upd.download_deadline_s} s deadline",
                "type": "network outage resilience",
            },
        )
    )
    tel = ctx.telemetry
    if tel.enabled:
        out["24-TelData"].append(
            (
                "TelData-Security",
                {
                    "description": f"metrics: {', '.join(tel.metrics)}",
                    "purpose": "detect security anomalies in the fleet",
                    "personal_data": "yes" if tel.contains_personal_data else "none",
                    "security_examination": f"{len(tel.rules)} threshold rules examined by the monitor",
                },
            )
        )
    data = ctx.data
    confirm = "a signed deletion receipt" if data.deletion_receipt else ""
    if data.delete_on_reset:
        out["25-DelFunc"].append(
            (
                "DelFunc-FactoryReset",
                {
                    "description": "factory reset erases personal data on the device",
                    "target_type": "device",
                    "initiation_and_interaction": "the user resets the device",
                    "confirmation": confirm,
                },
            )
        )
    if data.delete_on_transfer:
        out["25-DelFunc"].append(
            (
                "DelFunc-OwnershipTransfer",
                {
                    "description": "an ownership transfer erases the previous owner's data",
                    "target_type": "device and service",
                    "initiation_and_interaction": "new owner claims the device",
                    "confirmation": confirm,
                },
            )
        )
    if any(c.in_service for c in data.personal):
        out["25-DelFunc"].append(
            (
                "DelFunc-ServiceDeletion",
                {
                    "description": "the fleet service deletes a device's personal data on request",
                    "target_type": "associated service",
                    "confirmation": confirm,
                },
            )
        )
    if upd.automatic:
        out["26-UserDec"].append(
            (
                "UserDec-AutomaticUpdates",
                {
                    "description": "whether security updates install automatically",
                    "options": "on (default) / off",
                },
            )
        )


def _fresh_fields(entry: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in entry.items() if v}


def _entry_table(ident: str, fields: Mapping[str, str]) -> Table:
    table = tomlkit.table()
    table["id"] = ident
    for key, value in fields.items():
        table[key] = value
    table["source"] = "derived"
    table["derived"] = sorted(fields)
    table["digest"] = digest_of(dict(fields))
    return table


def _refresh(table: Table, old: IxitEntry, fields: Mapping[str, str]) -> None:
    for key in old.derived:
        if key not in fields and key in table:
            del table[key]
    for key, value in fields.items():
        table[key] = value
    table["derived"] = sorted(fields)
    table["digest"] = digest_of(dict(fields))


def _edited(old: IxitEntry) -> bool:
    current = {k: old.fields[k] for k in old.derived if k in old.fields}
    return old.digest is not None and digest_of(current) != old.digest


def _merge_table(
    key: str,
    old_tables: list[Table],
    old_entries: Mapping[str, IxitEntry],
    fresh: dict[str, dict[str, str]],
    report: IxitFillReport,
) -> AoT:
    merged = AoT([])
    for raw in old_tables:
        ident = str(raw.get("id"))
        old = old_entries[ident]
        label = f"{key}/{ident}"
        if old.source == "user" or _edited(old):
            fresh.pop(ident, None)
            if old.source != "user":
                raw["source"] = "user"
                del raw["digest"]
                report.adopted.append(label)
            else:
                report.kept.append(label)
            merged.append(raw)
        elif ident in fresh:
            _refresh(raw, old, fresh.pop(ident))
            report.derived.append(label)
            merged.append(raw)
        else:
            report.dropped.append(label)
    for ident, fields in fresh.items():
        merged.append(_entry_table(ident, fields))
        report.derived.append(f"{key}/{ident}")
    return merged


def fill_ixit(ctx: LoadedContext, keys: Sequence[KeyInfo] = (), *, path: Path | None = None) -> IxitFillReport:
    """Create or refresh the IXIT of the product whose context is ``ctx``; see the module rules."""
    target = path or ixit_path(ctx.path)
    existing: Ixit | None = load_ixit(target) if target.exists() else None
    report = IxitFillReport(path=target, created=existing is None)
    if existing is not None:
        doc = tomlkit.parse(read_toml(target, "IXIT").text)
    else:
        doc = tomlkit.document()
        doc.add(
            tomlkit.comment("IXIT (ETSI TS 103 701 Implementation eXtra Information for Testing), kept by trustroot.")
        )
        doc.add(
            tomlkit.comment(
                "'trustroot compliance fill' refreshes the 'derived' fields of source = \"derived\" entries;"
            )
        )
        doc.add(
            tomlkit.comment("other fields, source = \"user\" entries and 'note' are yours. Tables and their fields:")
        )
        for t in IXIT_TABLES.values():
            doc.add(tomlkit.comment(f"  {t.key} ({t.title}): {', '.join(t.fields)}"))
        doc.add("format", IXIT_FORMAT)
    doc["product"] = ctx.model.product.name
    if "ixit" not in doc:
        doc["ixit"] = tomlkit.table(is_super_table=True)
    tables: Any = doc["ixit"]
    derived = derive_ixit(ctx.model, keys)
    for t in IXIT_TABLES.values():
        old_entries = {e.id: e for e in existing.entries(t.key)} if existing is not None else {}
        fresh = {ident: _fresh_fields(f) for ident, f in derived.get(t.key, [])}
        merged = _merge_table(t.key, list(tables[t.key]) if t.key in tables else [], old_entries, fresh, report)
        if len(merged):
            tables[t.key] = merged
        else:
            if t.key in tables:
                del tables[t.key]
            report.empty_tables.append(t.key)
    text = tomlkit.dumps(doc)
    parse_ixit(TomlFile(path=target, text=text, data=tomllib.loads(text), locations=locate_keys(text)))
    write_text(target, text)
    return report
