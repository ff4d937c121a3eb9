"""Fill ``compliance/ics.toml`` from what trustroot knows, keeping every decision a person made.

Rules of a (re-)fill, row by row (features, conditions and provisions alike):

- a ``user`` row is never touched (nor any ``note``);
- a ``derived``, ``declared`` or ``pending`` row whose content no longer matches its ``digest`` was
  edited by hand: it becomes the user's (``source = "user"``) and is kept as written;
- any other row is rewritten from the context (``derived``), a signed declaration (``declared``,
  for rows trustroot cannot decide itself) or left ``pending``.

Applicability follows the file's own ``[features]`` and ``[conditions]``: a person who marks
feature (q) absent makes every F(q) provision N/A on the next fill. The reporting row (5.0-1, or
4-1 in V2.1.1) is Y once no recommendation is pending. The result is validated before it replaces
the file (atomically), so a fill never leaves an invalid ICS behind.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import Table

from trustroot.compliance._tomlfile import TomlFile, digest_of, write_text
from trustroot.compliance.catalogue import Edition, Status, load_catalogue
from trustroot.compliance.declarations import Declaration
from trustroot.compliance.facts import (
    REPORTING_IDS,
    Fact,
    Row,
    derive_conditions,
    derive_features,
    derive_rows,
    implied_features,
)
from trustroot.compliance.ics import ICS_FORMAT, ConditionRow, FeatureRow, Ics, IcsEntry, ics_path, load_ics, parse_ics
from trustroot.context.load import LoadedContext, locate_keys
from trustroot.errors import UsageError

__all__ = ["FillReport", "fill_ics"]

_HEADER = """\
Implementation Conformance Statement (ETSI EN 303 645 Table B.1 style), kept by trustroot.
'trustroot compliance fill' rewrites rows with source = "derived", "declared" or "pending";
rows with source = "user" and every 'note' are yours and never rewritten. Editing a derived row
makes it yours. N/A needs 'because' naming a condition ("C(3)") or feature ("F(q)") that does not apply.
"""


@dataclass
class FillReport:
    """What a fill did, row ids per outcome."""

    path: Path
    edition: Edition
    created: bool
    derived: list[str] = field(default_factory=list)
    declared: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "edition": self.edition,
            "created": self.created,
            "derived": self.derived,
            "declared": self.declared,
            "kept": self.kept,
            "adopted": self.adopted,
            "pending": self.pending,
        }


def _row_content(
    support: str | None, justification: str, because: Sequence[str], evidence: Sequence[str]
) -> dict[str, Any]:
    return {"support": support, "justification": justification, "because": list(because), "evidence": list(evidence)}


def _entry_digest(entry: IcsEntry) -> str:
    return digest_of(_row_content(entry.support, entry.justification, entry.because, entry.evidence))


def _fact_content(key: str, fact: Fact) -> dict[str, Any]:
    return {key: fact.value, "basis": fact.basis}


def _edited(source: str, digest: str | None, current: str) -> bool:
    return source != "user" and digest is not None and digest != current


def _set(table: Table, values: Mapping[str, Any]) -> None:
    """Write ``values`` into ``table``; None, "" and [] remove the key."""
    for key, value in values.items():
        if value is None or value in ("", []):
            if key in table:
                del table[key]
        else:
            table[key] = value


def _child(parent: Table | tomlkit.TOMLDocument, key: str) -> Table:
    if key not in parent:
        parent[key] = tomlkit.table(is_super_table=True)
    found = parent[key]
    if not isinstance(found, Table):
        raise UsageError(f"{key} in ics.toml is not a table")
    return found


class _Filler:
    def __init__(self, ctx: LoadedContext, existing: Ics | None, doc: tomlkit.TOMLDocument, report: FillReport) -> None:
        self.ctx = ctx
        self.existing = existing
        self.doc = doc
        self.report = report

    def facts(self, name: str, key: str, derived: Mapping[Any, Fact]) -> dict[Any, Fact]:
        """Merge the ``[features]`` or ``[conditions]`` table; return the effective facts."""
        table = _child(self.doc, name)
        old_rows: Mapping[str, FeatureRow | ConditionRow] = {}
        if self.existing is not None:
            old_rows = self.existing.model.features if name == "features" else self.existing.model.conditions
        effective: dict[Any, Fact] = {}
        for ident, fact in derived.items():
            label = str(ident)
            old = old_rows.get(label)
            if old is not None:
                value = old.present if isinstance(old, FeatureRow) else old.holds
                current = digest_of({key: value, "basis": old.basis})
                if old.source == "user" or _edited(old.source, old.digest, current):
                    if old.source != "user":
                        table[label]["source"] = "user"
                        del table[label]["digest"]
                    effective[ident] = Fact(value, old.basis)
                    continue
            content = _fact_content(key, fact)
            fresh = tomlkit.table()
            _set(fresh, {**content, "source": "derived", "digest": digest_of(content)})
            table[label] = fresh
            effective[ident] = fact
        return effective

    def provisions(self, rows: Mapping[str, Row], declarations: Mapping[str, Declaration]) -> None:
        table = _child(self.doc, "provision")
        catalogue = load_catalogue(self.report.edition)
        for p in catalogue:
            if p.id in REPORTING_IDS:
                continue
            old = self.existing.entry(p.id) if self.existing is not None else None
            if old is not None and self._keep(table, p.id, old):
                continue
            if p.id in rows:
                row = rows[p.id]
                content = _row_content(row.support, row.justification, row.because, row.evidence)
                source = "derived"
                self.report.derived.append(p.id)
            elif p.id in declarations:
                d = declarations[p.id]
                text = f"{d.statement.justification} (declared by {d.statement.by}, signed {d.statement.signed_at})"
                content = _row_content("Y", text, (), (d.evidence_ref,))
                source = "declared"
                self.report.declared.append(p.id)
            else:
                content = _row_content(None, "", (), ())
                source = "pending"
                self.report.pending.append(p.id)
            self._write(table, p.id, content, source)
        self._reporting_row(table, catalogue)

    def _keep(self, table: Table, pid: str, old: IcsEntry) -> bool:
        if old.effective_source == "user":
            if old.source != "user":
                table[pid]["source"] = "user"
                if "digest" in table[pid]:
                    del table[pid]["digest"]
            self.report.kept.append(pid)
            return True
        if _edited(old.source, old.digest, _entry_digest(old)):
            table[pid]["source"] = "user"
            del table[pid]["digest"]
            self.report.adopted.append(pid)
            return True
        return False

    def _write(self, table: Table, pid: str, content: dict[str, Any], source: str) -> None:
        fresh = tomlkit.table()
        _set(fresh, {**content, "source": source, "digest": digest_of(content)})
        if pid in table and "note" in table[pid]:
            fresh["note"] = table[pid]["note"]
        table[pid] = fresh

    def _reporting_row(self, table: Table, catalogue: Any) -> None:
        pid = "5.0-1" if self.report.edition == "3.1.3" else "4-1"
        old = self.existing.entry(pid) if self.existing is not None else None
        if old is not None and self._keep(table, pid, old):
            return
        recommended = {p.id for p in catalogue if p.status is Status.RECOMMENDED}
        open_rows = sorted(recommended & set(self.report.pending))
        if open_rows:
            self._write(table, pid, _row_content(None, "", (), ()), "pending")
            self.report.pending.append(pid)
            return
        text = "every recommendation marked N or N/A in this ICS carries its justification (checked on every read)"
        self._write(table, pid, _row_content("Y", text, (), ()), "derived")
        self.report.derived.append(pid)


def _decided_features(existing: Ics | None) -> dict[str, bool | None]:
    """The features a person set (user rows, or derived rows edited by hand)."""
    if existing is None:
        return {}
    return {
        letter: row.present
        for letter, row in existing.model.features.items()
        if row.source == "user"
        or _edited(row.source, row.digest, digest_of({"present": row.present, "basis": row.basis}))
    }


def fill_ics(
    ctx: LoadedContext,
    declarations: Sequence[Declaration] = (),
    *,
    edition: Edition | None = None,
    path: Path | None = None,
) -> FillReport:
    """Create or refresh the ICS of the product whose context is ``ctx``; see the module rules."""
    target = path or ics_path(ctx.path)
    existing = load_ics(target) if target.exists() else None
    if existing is not None and edition is not None and edition != existing.edition:
        raise UsageError(
            f"{target} is the ICS for EN 303 645 V{existing.edition}, not V{edition}",
            hint="keep one edition per file: move it aside to start an ICS for the other edition",
        )
    chosen: Edition = existing.edition if existing is not None else (edition or "3.1.3")
    if existing is not None:
        doc = tomlkit.parse(existing_text(target))
    else:
        doc = tomlkit.document()
        for line in _HEADER.splitlines():
            doc.add(tomlkit.comment(line))
        doc.add("format", ICS_FORMAT)
        doc.add("edition", chosen)
    doc["product"] = ctx.model.product.name
    report = FillReport(path=target, edition=chosen, created=existing is None)
    filler = _Filler(ctx, existing, doc, report)
    model = ctx.model
    if chosen == "3.1.3":
        decided = _decided_features(existing)
        features = filler.facts("features", "present", implied_features(derive_features(model), decided))
        conditions = filler.facts("conditions", "holds", derive_conditions(model, "3.1.3"))
    else:
        features = {}
        conditions = filler.facts("conditions", "holds", derive_conditions(model, "2.1.1"))
    catalogue = load_catalogue(chosen)
    rows = derive_rows(model, catalogue, load_catalogue("3.1.3"), features=features, conditions=conditions)
    mine = {d.provision: d for d in declarations if d.statement.edition == chosen}
    filler.provisions(rows, mine)
    text = tomlkit.dumps(doc)
    parse_ics(TomlFile(path=target, text=text, data=tomllib.loads(text), locations=locate_keys(text)))
    write_text(target, text)
    return report


def existing_text(path: Path) -> str:
    from trustroot.compliance._tomlfile import read_toml

    return read_toml(path, "ICS").text
