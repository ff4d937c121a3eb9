"""Signed declarations and the ICS, as the assessment reads them.

Declarations: ``declaration.signed`` records of the verified chains whose signature verifies under a
declarer key of the key store (:func:`trustroot.compliance.declarations.verified_declarations`);
a record that does not verify is ignored and listed with its reason. The latest declaration of a
provision (in the assessed edition) wins. A declaration turns an ``inconclusive`` provision (one no
evidence can decide) into ``declared``; it never overrides a ``fail``.

ICS: ``compliance/ics.toml`` beside the context (validated by ``compliance/ics.py``: N/A only where
a condition or feature allows it). A row marked N/A makes the provision ``not_applicable`` naming
its condition, unless evidence shows it fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trustroot.compliance.verdicts import EvidenceRef

if TYPE_CHECKING:
    from trustroot.compliance.catalogue import Edition
    from trustroot.compliance.ics import Ics
    from trustroot.compliance.sources import EvidenceSet
    from trustroot.product import Product

__all__ = ["Declaration", "Declarations", "load_declarations", "load_ics_if_any"]


@dataclass(frozen=True)
class Declaration:
    """One verified declaration of one provision."""

    provision: str
    by: str
    justification: str
    time: str
    key_id: str
    ref: EvidenceRef

    def as_dict(self) -> dict[str, Any]:
        return {
            "provision": self.provision,
            "by": self.by,
            "justification": self.justification,
            "time": self.time,
            "key_id": self.key_id,
            "evidence": self.ref.as_dict(),
        }


@dataclass
class Declarations:
    """The valid declarations by provision, and the refused records (seq, reason)."""

    valid: dict[str, Declaration] = field(default_factory=dict)
    refused: list[tuple[int, str]] = field(default_factory=list)

    def get(self, provision: str) -> Declaration | None:
        return self.valid.get(provision)


def load_declarations(ev: EvidenceSet, product: Product, edition: Edition) -> Declarations:
    """The verified declarations of ``edition`` in the product's evidence."""
    from trustroot.compliance.declarations import verified_declarations

    sourced = {s.record.hash: s for s in ev.of_type("declaration.signed")}
    valid, refused = verified_declarations((s.record for s in sourced.values()), product.keys)
    out = Declarations(refused=refused)
    for declaration in sorted(valid, key=lambda d: d.seq):
        statement = declaration.statement
        if statement.edition != edition:
            continue
        origin = sourced[declaration.record_hash]
        out.valid[statement.provision] = Declaration(
            provision=statement.provision,
            by=statement.by,
            justification=statement.justification,
            time=statement.signed_at,
            key_id=statement.key.fingerprint,
            ref=origin.ref(f"signed by {statement.by} ({statement.key.algorithm} {statement.key.fingerprint[:16]})"),
        )
    return out


def load_ics_if_any(product: Product, edition: Edition) -> Ics | None:
    """The product's ICS when it exists and is of ``edition`` (a malformed ICS is an error)."""
    from trustroot.compliance.ics import ics_path, load_ics

    path = ics_path(product.context.path)
    if not path.exists():
        return None
    ics = load_ics(path)
    return ics if ics.edition == edition else None
