"""The product's IXIT: ``compliance/ixit.toml``, the 29 ETSI TS 103 701 tables of extra information.

A test lab reads the IXIT (Implementation eXtra Information for Testing) to know the product's
mechanisms: its authentication mechanisms (1-AuthMech), user information (2-UserInfo), update
mechanisms (7-UpdMech), security parameters (10-SecParam) and so on. Each table holds entries;
each entry has an ``id`` and the table's fields (names as TS 103 701 V1.1.1 uses them in its test
units, here in snake case)::

    format = "trustroot.ixit/1"

    [[ixit.7-UpdMech]]
    id = "UpdMech-TUF"
    description = "signed MCUboot images fetched over TUF from the fleet service"
    user_notification = "the app shows a banner"     # a field trustroot cannot know: yours
    source = "derived"
    derived = ["description", "security_guarantees", ...]
    digest = "..."

``trustroot compliance fill`` refreshes the ``derived`` fields of ``derived`` entries and never
touches other fields, ``user`` entries, or entries it did not make; an entry whose derived fields
were edited by hand becomes the user's (see :mod:`trustroot.compliance.ixit_fill`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from trustroot.compliance._tomlfile import COMPLIANCE_DIR, Issue, TomlFile, raise_issues, read_toml
from trustroot.context.load import KeyPath

__all__ = [
    "ENTRY_META",
    "IXIT_FILE",
    "IXIT_FORMAT",
    "IXIT_TABLES",
    "Ixit",
    "IxitEntry",
    "IxitTable",
    "ixit_path",
    "load_ixit",
    "parse_ixit",
]

IXIT_FILE: Final = "ixit.toml"
IXIT_FORMAT: Final = "trustroot.ixit/1"
MAX_FIELD_CHARS: Final = 4000
MAX_ENTRIES_PER_TABLE: Final = 1000
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DIGEST = re.compile(r"^[0-9a-f]{16}$")
#: Keys every entry may have besides its table's fields.
ENTRY_META: Final = ("id", "source", "derived", "digest", "note")


@dataclass(frozen=True)
class IxitTable:
    """One TS 103 701 IXIT table: number, short name, title and field keys."""

    number: int
    name: str
    title: str
    fields: tuple[str, ...]

    @property
    def key(self) -> str:
        """``7-UpdMech``: the table's key in ``ixit.toml`` and its name in TS 103 701."""
        return f"{self.number}-{self.name}"


def _t(number: int, name: str, title: str, *fields: str) -> IxitTable:
    return IxitTable(number, name, title, fields)


_D = "description"
#: The 29 tables of ETSI TS 103 701 V1.1.1 (V2.1.1 renames 11 SecComMech, 15 PhyIntf, 28 LogIntf).
IXIT_TABLES: Final[Mapping[int, IxitTable]] = {
    t.number: t
    for t in (
        _t(1, "AuthMech", "Authentication mechanisms", _D, "authentication_factor", "password_generation_mechanism",
           "security_guarantees", "cryptographic_details", "brute_force_prevention"),
        _t(2, "UserInfo", "Information published for users",
           "publication_of_vulnerability_disclosure_policy", "publication_of_support_period", "support_period",
           "publication_of_non_updatable", "documentation_of_replacement", "model_designation",
           "documentation_of_change_mechanisms", "documentation_of_sensors", "documentation_of_secure_setup",
           "documentation_of_setup_check", "documentation_of_maintenance_check", "documentation_of_personal_data",
           "documentation_of_telemetry_data", "documentation_of_deletion"),
        _t(3, "VulnTypes", "Relevant vulnerability types", _D, "action", "time_frame"),
        _t(4, "Conf", "Confirmations by the manufacturer", "confirmation_of_vulnerability_actions",
           "confirmation_of_vulnerability_monitoring", "confirmation_of_update_procedures",
           "confirmation_of_secure_management", "confirmation_of_secure_development"),
        _t(5, "VulnMon", "Vulnerability monitoring", _D),
        _t(6, "SoftComp", "Software components", _D, "update_mechanism", "cryptographic_usage"),
        _t(7, "UpdMech", "Update mechanisms", _D, "security_guarantees", "cryptographic_details",
           "initiation_and_interaction", "configuration", "update_checking", "user_notification"),
        _t(8, "UpdProc", "Update procedures", _D, "time_frame"),
        _t(9, "ReplSup", "Replacement support", "isolation", "hardware_replacement"),
        _t(10, "SecParam", "Security parameters", "type", _D, "security_guarantees", "protection_scheme",
           "provisioning_mechanism", "generation_mechanism"),
        _t(11, "ComMech", "Communication mechanisms", _D, "security_guarantees", "cryptographic_details",
           "resilience_measures"),
        _t(12, "NetSecImpl", "Network and security implementations", _D, "review_evaluation_method", "report"),
        _t(13, "SoftServ", "Software services", _D, "status", "justification", "authentication_mechanism",
           "allows_configuration", "security_guarantees"),
        _t(14, "SecMgmt", "Secure management processes", _D),
        _t(15, "Intf", "Interfaces", _D, "status", "disclosed_information", "protection", "debug_interface"),
        _t(16, "CodeMin", "Code minimisation", _D),
        _t(17, "PrivlCtrl", "Privilege control", _D),
        _t(18, "AccCtrl", "Hardware-level access control", _D),
        _t(19, "SecDev", "Secure development processes", _D),
        _t(20, "SecBoot", "Secure boot mechanisms", _D, "security_guarantees", "detection_mechanisms",
           "notification_functionality", "user_notification"),
        _t(21, "PersData", "Personal data", _D, "processing_activities", "sensitive", "obtaining_consent",
           "withdrawing_consent"),
        _t(22, "ExtSens", "External sensing capabilities", _D),
        _t(23, "ResMech", "Resilience mechanisms", _D, "type", "security_guarantees"),
        _t(24, "TelData", "Telemetry data", _D, "purpose", "personal_data", "security_examination"),
        _t(25, "DelFunc", "Deletion functionalities", _D, "target_type", "initiation_and_interaction", "confirmation"),
        _t(26, "UserDec", "User decisions", _D, "options", "triggered_by"),
        _t(27, "UserIntf", "User interfaces", _D),
        _t(28, "ExtAPI", "External APIs", _D),
        _t(29, "InpVal", "Input validation", _D),
    )
}  # fmt: skip
_BY_KEY: Final = {t.key: t for t in IXIT_TABLES.values()}


@dataclass(frozen=True)
class IxitEntry:
    """One validated entry of one table."""

    table: IxitTable
    id: str
    fields: Mapping[str, str]
    source: str
    derived: tuple[str, ...]
    digest: str | None
    note: str


@dataclass(frozen=True)
class Ixit:
    """A validated ``ixit.toml``."""

    path: Path
    tables: Mapping[str, tuple[IxitEntry, ...]]

    def entries(self, table: int | str) -> tuple[IxitEntry, ...]:
        key = IXIT_TABLES[table].key if isinstance(table, int) else table
        return self.tables.get(key, ())

    def __iter__(self) -> Iterator[IxitEntry]:
        for entries in self.tables.values():
            yield from entries


def ixit_path(context_path: Path) -> Path:
    """``compliance/ixit.toml`` beside ``security-context.toml``."""
    return context_path.parent / COMPLIANCE_DIR / IXIT_FILE


def _text(value: object, where: KeyPath, issues: list[Issue]) -> str | None:
    if not isinstance(value, str):
        issues.append(Issue(where, f"must be text (got {type(value).__name__})"))
        return None
    if len(value) > MAX_FIELD_CHARS:
        issues.append(Issue(where, f"longer than {MAX_FIELD_CHARS} characters"))
        return None
    return value


def _entry(table: IxitTable, raw: object, where: KeyPath, seen: set[str], issues: list[Issue]) -> IxitEntry | None:
    if not isinstance(raw, dict):
        issues.append(Issue(where, "each entry must be a table ([[ixit.N-Name]])"))
        return None
    before = len(issues)
    ident = raw.get("id")
    if not isinstance(ident, str) or not _ID.match(ident):
        issues.append(Issue((*where, "id"), "required: 1-64 of A-Z a-z 0-9 . _ - (e.g. UpdMech-TUF)"))
    elif ident in seen:
        issues.append(Issue((*where, "id"), f"{ident!r} is used twice in {table.key}"))
    else:
        seen.add(ident)
    fields: dict[str, str] = {}
    for key, value in raw.items():
        if key in ENTRY_META:
            continue
        if key not in table.fields:
            issues.append(Issue((*where, key), f"unknown field of {table.key}; its fields: {', '.join(table.fields)}"))
            continue
        text = _text(value, (*where, key), issues)
        if text is not None:
            fields[key] = text
    source = raw.get("source", "user")
    if source not in ("derived", "user"):
        issues.append(Issue((*where, "source"), 'must be "derived" or "user"'))
    derived = raw.get("derived", [])
    if not isinstance(derived, list) or not all(isinstance(d, str) and d in table.fields for d in derived):
        issues.append(Issue((*where, "derived"), "must list field names of the table"))
        derived = []
    digest = raw.get("digest")
    if digest is not None and (not isinstance(digest, str) or not _DIGEST.match(digest)):
        issues.append(Issue((*where, "digest"), "must be 16 hex digits (written by trustroot)"))
    note = _text(raw.get("note", ""), (*where, "note"), issues) or ""
    if len(issues) != before:
        return None
    return IxitEntry(table, str(ident), fields, str(source), tuple(derived), digest, note)


def parse_ixit(file: TomlFile) -> Ixit:
    """Validate a read ``ixit.toml``: known tables, known fields, text values, unique ids."""
    data: Mapping[str, Any] = file.data
    issues: list[Issue] = []
    if data.get("format") != IXIT_FORMAT:
        issues.append(Issue(("format",), f'must be "{IXIT_FORMAT}" (got {data.get("format")!r})'))
    for key in data:
        if key not in ("format", "product", "ixit"):
            issues.append(Issue((key,), "unknown key"))
    product = data.get("product", "")
    if not isinstance(product, str) or len(product) > 200:
        issues.append(Issue(("product",), "must be text of at most 200 characters"))
    raw_tables = data.get("ixit", {})
    tables: dict[str, tuple[IxitEntry, ...]] = {}
    if not isinstance(raw_tables, dict):
        issues.append(Issue(("ixit",), "must be a table of IXIT tables"))
        raw_tables = {}
    for key, entries in raw_tables.items():
        table = _BY_KEY.get(key)
        if table is None:
            issues.append(Issue(("ixit", key), f"not a TS 103 701 IXIT table; e.g. {', '.join(list(_BY_KEY)[:4])}"))
            continue
        if not isinstance(entries, list) or len(entries) > MAX_ENTRIES_PER_TABLE:
            issues.append(Issue(("ixit", key), f"must be an array of at most {MAX_ENTRIES_PER_TABLE} entries"))
            continue
        seen: set[str] = set()
        found = [_entry(table, raw, ("ixit", key, i), seen, issues) for i, raw in enumerate(entries)]
        tables[key] = tuple(e for e in found if e is not None)
    raise_issues(file, issues)
    return Ixit(path=file.path, tables=tables)


def load_ixit(path: Path) -> Ixit:
    """Read and validate ``ixit.toml`` at ``path``."""
    return parse_ixit(read_toml(path, "IXIT"))
