"""A local OSV-format vulnerability data set: loading, and matching component versions against it.

The gate never downloads: ``--vuln-db FILE`` names a JSON file holding one OSV record, a list of
records, a ``{"vulns": [...]}`` object, JSON lines, or a directory of ``*.json`` records (as an
OSV ``all.zip`` unpacks). An affected package matches a component by name (any ecosystem) or by
``pkg:generic`` purl; ``SEMVER`` and ``ECOSYSTEM`` ranges are evaluated (events ``introduced``,
``fixed``, ``last_affected``, ``limit``) together with the explicit ``versions`` list. ``GIT``
ranges name commits, which a binary does not carry, and are skipped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from trustroot.errors import UnreadableInputError

__all__ = ["MAX_DB_BYTES", "MAX_RECORDS", "Vuln", "VulnDB", "compare_versions", "load_osv"]

#: Largest vulnerability data file read (bytes), and most records kept.
MAX_DB_BYTES: Final = 512 * 1024 * 1024
MAX_RECORDS: Final = 1_000_000
_PRE: Final = frozenset({"alpha", "beta", "rc", "pre", "dev"})
_TOKEN: Final = re.compile(r"\d+|[A-Za-z]+")


def _tokens(version: str) -> list[int | str]:
    core = version.strip().lstrip("vV").split("+", 1)[0]
    return [int(t) if t.isdigit() else t.lower() for t in _TOKEN.findall(core)]


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as version ``a`` sorts before, with, or after ``b``.

    Numeric parts compare as numbers; a letter suffix sorts after its base (OpenSSL ``1.0.2k`` >
    ``1.0.2``) unless it names a pre-release (``rc``, ``alpha``, ``beta``: ``1.1.0-rc1`` < ``1.1.0``).
    """
    ta, tb = _tokens(a), _tokens(b)
    for x, y in zip(ta, tb, strict=False):
        if x == y:
            continue
        if isinstance(x, int) and isinstance(y, int):
            return -1 if x < y else 1
        if isinstance(x, str) and isinstance(y, str):
            return -1 if x < y else 1
        # a number against a word: a pre-release word sorts first, any other word after
        word = x if isinstance(x, str) else y
        number_first = 1 if isinstance(x, int) else -1
        return number_first if word in _PRE else -number_first
    longer, sign = (ta, 1) if len(ta) > len(tb) else (tb, -1)
    rest = list(longer[min(len(ta), len(tb)) :])
    while rest and rest[0] == 0:  # trailing zero parts do not count: 3.0 == 3.0.0
        rest.pop(0)
    if not rest:
        return 0
    if isinstance(rest[0], str) and rest[0] in _PRE:
        return -sign
    return sign


@dataclass(frozen=True, slots=True)
class Vuln:
    """One OSV record, reduced to what matching and reporting need."""

    id: str
    aliases: tuple[str, ...]
    summary: str
    affected: tuple[dict[str, Any], ...]
    severity: str


def _range_hit(version: str, rng: dict[str, Any]) -> bool:
    if rng.get("type") not in ("SEMVER", "ECOSYSTEM"):
        return False
    events = rng.get("events", [])
    if not isinstance(events, list):
        return False
    affected = False
    for event in events:
        if not isinstance(event, dict):
            continue
        if "introduced" in event:
            intro = str(event["introduced"])
            if intro == "0" or compare_versions(version, intro) >= 0:
                affected = True
        elif (
            ("fixed" in event and compare_versions(version, str(event["fixed"])) >= 0)
            or ("last_affected" in event and compare_versions(version, str(event["last_affected"])) > 0)
            or ("limit" in event and compare_versions(version, str(event["limit"])) >= 0)
        ):
            affected = False
    return affected


class VulnDB:
    """The records of a local OSV data set, indexed by lower-case package name."""

    def __init__(self, records: list[Vuln]) -> None:
        self.records = records
        self._by_name: dict[str, list[tuple[Vuln, dict[str, Any]]]] = {}
        for rec in records:
            for aff in rec.affected:
                pkg = aff.get("package", {}) if isinstance(aff.get("package"), dict) else {}
                names = {str(pkg.get("name", "")).lower()}
                purl = str(pkg.get("purl", ""))
                if purl.startswith("pkg:"):
                    names.add(purl.rsplit("/", maxsplit=1)[-1].split("@", maxsplit=1)[0].lower())
                for name in names - {""}:
                    self._by_name.setdefault(name, []).append((rec, aff))

    def __len__(self) -> int:
        return len(self.records)

    def matches(self, name: str, version: str) -> list[Vuln]:
        """Records whose affected ranges or versions include ``name`` at ``version``."""
        out: dict[str, Vuln] = {}
        for rec, aff in self._by_name.get(name.lower(), []):
            versions = aff.get("versions", [])
            if isinstance(versions, list) and any(compare_versions(version, str(v)) == 0 for v in versions):
                out[rec.id] = rec
                continue
            ranges = aff.get("ranges", [])
            if isinstance(ranges, list) and any(isinstance(r, dict) and _range_hit(version, r) for r in ranges):
                out[rec.id] = rec
        return list(out.values())


def _record(obj: Any, origin: str) -> Vuln:
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or not isinstance(obj.get("affected", []), list):
        raise UnreadableInputError(f"{origin}: not an OSV record (needs a string 'id' and a list 'affected')")
    sev = ""
    for s in obj.get("severity", []) or []:
        if isinstance(s, dict) and isinstance(s.get("score"), str):
            sev = s["score"]
            break
    db_sev = obj.get("database_specific", {})
    if not sev and isinstance(db_sev, dict) and isinstance(db_sev.get("severity"), str):
        sev = db_sev["severity"]
    aliases = obj.get("aliases", [])
    return Vuln(
        id=obj["id"][:200],
        aliases=tuple(str(a)[:200] for a in aliases) if isinstance(aliases, list) else (),
        summary=str(obj.get("summary", obj.get("details", "")))[:300],
        affected=tuple(a for a in obj.get("affected", []) if isinstance(a, dict)),
        severity=sev[:200],
    )


def _parse_text(text: str, origin: str) -> list[Vuln]:
    stripped = text.lstrip()
    if not stripped:
        return []
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        try:
            return [
                _record(json.loads(line), f"{origin} line {n}")
                for n, line in enumerate(text.splitlines(), 1)
                if line.strip()
            ]
        except json.JSONDecodeError as exc:
            raise UnreadableInputError(f"{origin}: neither JSON nor JSON lines: {exc}") from exc
    if isinstance(doc, dict) and "vulns" in doc and isinstance(doc["vulns"], list):
        doc = doc["vulns"]
    if isinstance(doc, list):
        return [_record(item, f"{origin}[{i}]") for i, item in enumerate(doc)]
    return [_record(doc, origin)]


def load_osv(path: Path) -> VulnDB:
    """The OSV data set at ``path`` (file or directory). Raises :class:`UnreadableInputError`."""
    files = sorted(path.rglob("*.json")) if path.is_dir() else [path]
    records: list[Vuln] = []
    total = 0
    for f in files:
        try:
            size = f.stat().st_size
            total += size
            if total > MAX_DB_BYTES:
                raise UnreadableInputError(f"--vuln-db {path}: larger than {MAX_DB_BYTES} bytes")
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UnreadableInputError(f"--vuln-db {f}: cannot read: {exc}") from exc
        records.extend(_parse_text(text, f"--vuln-db {f}"))
        if len(records) > MAX_RECORDS:
            raise UnreadableInputError(f"--vuln-db {path}: more than {MAX_RECORDS} records")
    return VulnDB(records)
