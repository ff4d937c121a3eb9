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
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from trustroot.compliance._tomlfile import COMPLIANCE_DIR, Issue, TomlFile, raise_issues, read_toml, schema_error
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


Text = Annotated[str, Field(max_length=MAX_FIELD_CHARS)]


class _EntryBase(BaseModel):
    """What every entry has; each table's model adds its fields (all optional text)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: Annotated[str, Field(pattern=_ID.pattern)]
    source: Literal["derived", "user"] = "user"
    derived: list[str] = Field(default_factory=list, max_length=64)
    digest: Annotated[str, Field(pattern=_DIGEST.pattern)] | None = None
    note: Text = ""


def _entry_model(table: IxitTable) -> type[_EntryBase]:
    fields: dict[str, Any] = dict.fromkeys(table.fields, (Text | None, None))
    return create_model(f"Ixit{table.number}{table.name}", __base__=_EntryBase, **fields)


_ENTRY_ADAPTERS: Final[Mapping[str, TypeAdapter[list[_EntryBase]]]] = {
    t.key: TypeAdapter(Annotated[list[_entry_model(t)], Field(max_length=MAX_ENTRIES_PER_TABLE)])  # type: ignore[misc,arg-type]
    for t in IXIT_TABLES.values()
}


class _IxitFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    format: Literal["trustroot.ixit/1"]
    product: Annotated[str, Field(max_length=200)] = ""
    ixit: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)


def _pydantic_issues(exc: ValidationError, prefix: KeyPath, table: IxitTable) -> list[Issue]:
    issues: list[Issue] = []
    for error in exc.errors(include_url=False):
        loc: KeyPath = (*prefix, *error["loc"])
        if error["type"] == "extra_forbidden":
            message = f"unknown field of {table.key}; its fields: {', '.join(table.fields)}"
        elif error["type"] == "missing":
            message = "required key is missing"
        else:
            message = error["msg"]
            if not isinstance(error.get("input"), dict | list | type(None)):
                message += f" (got {error['input']!r})"
        issues.append(Issue(loc, message))
    return issues


def _table(key: str, raw: list[dict[str, Any]], issues: list[Issue]) -> tuple[IxitEntry, ...]:
    table = _BY_KEY[key]
    try:
        models = _ENTRY_ADAPTERS[key].validate_python(raw)
    except ValidationError as exc:
        issues.extend(_pydantic_issues(exc, ("ixit", key), table))
        return ()
    seen: set[str] = set()
    out: list[IxitEntry] = []
    for index, model in enumerate(models):
        where: KeyPath = ("ixit", key, index)
        if model.id in seen:
            issues.append(Issue((*where, "id"), f"{model.id!r} is used twice in {key}"))
        seen.add(model.id)
        wrong = [d for d in model.derived if d not in table.fields]
        if wrong:
            issues.append(Issue((*where, "derived"), f"not fields of {key}: {', '.join(wrong)}"))
        values = {name: getattr(model, name) for name in table.fields if getattr(model, name) is not None}
        out.append(IxitEntry(table, model.id, values, model.source, tuple(model.derived), model.digest, model.note))
    return tuple(out)


def parse_ixit(file: TomlFile) -> Ixit:
    """Validate a read ``ixit.toml`` (pydantic): known tables, known fields, text values, unique ids."""
    try:
        model = _IxitFile.model_validate(file.data)
    except ValidationError as exc:
        raise schema_error(file, exc) from exc
    issues: list[Issue] = []
    tables: dict[str, tuple[IxitEntry, ...]] = {}
    for key, entries in model.ixit.items():
        if key not in _BY_KEY:
            issues.append(Issue(("ixit", key), f"not a TS 103 701 IXIT table; e.g. {', '.join(list(_BY_KEY)[:4])}"))
            continue
        tables[key] = _table(key, entries, issues)
    raise_issues(file, issues)
    return Ixit(path=file.path, tables=tables)


def load_ixit(path: Path) -> Ixit:
    """Read and validate ``ixit.toml`` at ``path``."""
    return parse_ixit(read_toml(path, "IXIT"))
