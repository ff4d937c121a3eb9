"""Signed declarations as the assessment reads them: ``declaration.signed`` records of the verified chains.

``trustroot declare PROVISION --by NAME --justification TEXT`` appends one record per declaration,
signed with that person's key from the key store. The latest declaration of a provision wins; a
declaration turns an ``inconclusive`` provision (one no evidence can decide) into ``declared``, it
never overrides a ``fail``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trustroot.compliance.verdicts import EvidenceRef

if TYPE_CHECKING:
    from trustroot.compliance.sources import EvidenceSet
    from trustroot.product import Product

__all__ = ["Declaration", "Declarations", "load_declarations"]


@dataclass(frozen=True)
class Declaration:
    """One signed declaration of one provision."""

    provision: str
    by: str
    justification: str
    time: str
    key_id: str | None
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


Declarations = dict[str, Declaration]


def load_declarations(ev: EvidenceSet, product: Product) -> Declarations:
    """The latest signed declaration of each provision, from the verified evidence."""
    found: Declarations = {}
    for sourced in ev.of_type("declaration.signed"):
        data = sourced.data
        provision = data.get("provision")
        by = data.get("by") or data.get("signatory")
        justification = data.get("justification") or data.get("statement")
        if not isinstance(provision, str) or not isinstance(by, str) or not isinstance(justification, str):
            continue
        key_id = data.get("key_id") or data.get("key")
        found[provision] = Declaration(
            provision=provision,
            by=by,
            justification=justification,
            time=sourced.record.time,
            key_id=str(key_id) if key_id else None,
            ref=sourced.ref(f"declared by {by}"),
        )
    return found
