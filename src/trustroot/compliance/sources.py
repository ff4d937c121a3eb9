"""The evidence an assessment reads, verified before anything is decided from it.

::

    load_evidence(product, fleet_evidence=FILE | database=URL, now)
      ├─ product log   .trustroot/evidence.jsonl: hash chain + every signed checkpoint verified FIRST
      ├─ fleet chain   an exported JSONL file (``trustroot fleet export-evidence``) or the store's
      │                audit chain read through its evidence interface (fleet/store/audit.py); verified
      │                with the product's evidence keys, exactly like the product log
      ├─ context       security-context.toml, its SHA-256 and its EN 303 645 lint
      └─ scans         the latest ``scan.completed`` of each target the context lists (scans.py)

A broken chain anywhere raises :class:`~trustroot.errors.UntrustedEvidenceError` (the CLI exits 2):
no verdict is ever given on evidence that does not verify.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trustroot.compliance.verdicts import EvidenceRef
from trustroot.context.lint import Finding, lint
from trustroot.context.load import LoadedContext, format_path
from trustroot.errors import EvidenceError, UnreadableInputError, UntrustedEvidenceError
from trustroot.evidence import EvidenceLog, EvidenceRecord, VerifyReport, verify_chain

if TYPE_CHECKING:
    from trustroot.compliance.scans import ScanEvidence
    from trustroot.product import Product

__all__ = ["ChainSummary", "EvidenceSet", "Sourced", "load_evidence"]


@dataclass(frozen=True, slots=True)
class Sourced:
    """An evidence record and the chain it came from."""

    record: EvidenceRecord
    source: str

    @property
    def data(self) -> dict[str, Any]:
        return self.record.data

    def ref(self, note: str = "") -> EvidenceRef:
        r = self.record
        return EvidenceRef(source=self.source, type=r.type, seq=r.seq, hash=r.hash, note=note)


@dataclass(frozen=True, slots=True)
class ChainSummary:
    """What verification of one chain established (for the report)."""

    source: str
    records: int
    head_seq: int
    head_hash: str
    last_signed_seq: int | None
    checkpoints: int
    unsigned_tail: int

    @classmethod
    def of(cls, source: str, report: VerifyReport) -> ChainSummary:
        return cls(
            source=source,
            records=report.records,
            head_seq=report.last_seq,
            head_hash=report.head_hash,
            last_signed_seq=report.last_signed_seq,
            checkpoints=report.checkpoints,
            unsigned_tail=report.unsigned_tail,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "records": self.records,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "last_signed_seq": self.last_signed_seq,
            "checkpoints": self.checkpoints,
            "unsigned_tail": self.unsigned_tail,
        }


@dataclass
class EvidenceSet:
    """Everything an evidence reader may look at: verified records, the context and its lint, scans."""

    context: LoadedContext
    context_source: str
    context_sha256: str
    lint: list[Finding]
    records: list[Sourced]
    chains: list[ChainSummary]
    now: datetime
    state_dir: Path
    scans: dict[str, ScanEvidence] = field(default_factory=dict)
    fleet_source: str | None = None

    def of_type(self, *types: str) -> list[Sourced]:
        return [s for s in self.records if s.record.type in types]

    def latest(self, record_type: str) -> Sourced | None:
        found = self.of_type(record_type)
        return found[-1] if found else None

    def setting(self, *path: str | int, note: str = "") -> EvidenceRef:
        """A reference to a key of the context (with its line)."""
        key = format_path(path) if path else None
        line = self.context.line_of(tuple(path)) if path else 0
        return EvidenceRef(
            source=self.context_source, type="context", key=key, line=line or None, hash=self.context_sha256, note=note
        )

    def chain_ref(self, note: str, *, fleet: bool = False) -> EvidenceRef:
        """A reference to a whole verified chain (up to its head): for what the chain does NOT contain."""
        chain = self.chains[-1] if fleet and len(self.chains) > 1 else self.chains[0]
        return EvidenceRef(
            source=chain.source, type="evidence-log", seq=chain.head_seq or None, hash=chain.head_hash, note=note
        )

    def lint_findings(self, provision: str, severity: str | None = "error") -> list[Finding]:
        return [f for f in self.lint if f.provision == provision and (severity is None or f.severity == severity)]

    def lint_ref(self, finding: Finding) -> EvidenceRef:
        return EvidenceRef(
            source=self.context_source,
            type="lint",
            key=finding.key,
            line=finding.line or None,
            hash=self.context_sha256,
            note=f"{finding.severity}: {finding.message}",
        )


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def _verify_log(log: EvidenceLog, keys: dict[str, Any], label: str) -> tuple[VerifyReport, list[EvidenceRecord]]:
    try:
        # One read and one parse of the file: each line is decoded (and checked canonical) once,
        # then the chain and checkpoints are verified over the parsed records.
        records = list(log.iter_records())
        report = verify_chain(records, keys)
    except EvidenceError as exc:
        raise UntrustedEvidenceError(
            f"{label} does not verify, so no assessment is made: {exc.message}",
            hint="run 'trustroot evidence verify' and restore the log from a copy you trust",
        ) from exc
    return report, records


def _fleet_from_store(database: str, keys: dict[str, Any]) -> tuple[VerifyReport, list[EvidenceRecord]]:
    from sqlalchemy.exc import SQLAlchemyError

    from trustroot.fleet.store.audit import AuditLog
    from trustroot.fleet.store.migrate import open_store

    try:
        store = open_store(database, migrate=False)
    except (SQLAlchemyError, OSError) as exc:
        raise UnreadableInputError(f"fleet store {database}: cannot be opened ({exc})") from exc
    try:
        audit = AuditLog(store)
        try:
            report = audit.verify(keys)
            records = list(audit.iter_records())
        except EvidenceError as exc:
            raise UntrustedEvidenceError(
                f"the fleet's audit chain in {database} does not verify, so no assessment is made: {exc.message}"
            ) from exc
        except SQLAlchemyError as exc:
            raise UnreadableInputError(f"fleet store {database}: its audit chain cannot be read ({exc})") from exc
    finally:
        with contextlib.suppress(SQLAlchemyError):
            store.dispose()
    return report, records


def _store_label(database: str, embedded: Path, root: Path) -> str:
    """How the report names the fleet store: never with a password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if database.startswith("sqlite"):
        path = database.split(":///", 1)[-1]
        return "fleet:" + _relative(Path(path), root) if path else "fleet:" + _relative(embedded, root)
    try:
        return "fleet:" + make_url(database).render_as_string(hide_password=True)
    except ArgumentError:
        return "fleet:(store)"


def _sourced(records: Iterable[EvidenceRecord], source: str) -> Iterator[Sourced]:
    for record in records:
        if record.type != "evidence.checkpoint":
            yield Sourced(record, source)


def load_evidence(
    product: Product,
    *,
    now: datetime,
    fleet_evidence: Path | None = None,
    database: str | None = None,
) -> EvidenceSet:
    """Verify and load the product's evidence (see the module docstring).

    The fleet chain comes from ``fleet_evidence`` (an exported JSONL file) if given, else from
    ``database`` if given, else from the product's embedded store ``.trustroot/fleet.sqlite`` when it
    exists; with none of these the assessment has no fleet evidence.
    """
    from trustroot.compliance.scans import load_scans

    root = product.root
    keys = product.evidence_public_keys()
    log_label = _relative(product.evidence.path, root)
    report, records = _verify_log(product.evidence, keys, f"the product's evidence log {log_label}")
    chains = [ChainSummary.of(log_label, report)]
    sourced = list(_sourced(records, log_label))
    fleet_source: str | None = None
    if fleet_evidence is not None:
        path = Path(fleet_evidence)
        if not path.is_file():
            raise UnreadableInputError(f"--fleet-evidence {path}: no such file")
        fleet_source = _relative(path, root)
        fleet_report, fleet_records = _verify_log(
            EvidenceLog(path), keys, f"the fleet's exported audit chain {fleet_source}"
        )
    else:
        embedded = product.state_dir / "fleet.sqlite"
        if database is None and embedded.is_file():
            from trustroot.fleet.config import sqlite_url

            database = sqlite_url(embedded)
        if database is not None:
            fleet_source = _store_label(database, embedded, root)
            fleet_report, fleet_records = _fleet_from_store(database, keys)
    if fleet_source is not None:
        chains.append(ChainSummary.of(fleet_source, fleet_report))
        sourced.extend(_sourced(fleet_records, fleet_source))
    loaded = product.context
    try:
        context_bytes = loaded.path.read_bytes()
    except OSError as exc:
        raise UnreadableInputError(f"{loaded.path}: cannot be read ({exc.strerror})") from exc
    evidence = EvidenceSet(
        context=loaded,
        context_source=_relative(loaded.path, root),
        context_sha256=hashlib.sha256(context_bytes).hexdigest(),
        lint=lint(loaded, today=now.date()),
        records=sourced,
        chains=chains,
        now=now,
        state_dir=product.state_dir,
        fleet_source=fleet_source,
    )
    evidence.scans = load_scans(evidence, root)
    return evidence
