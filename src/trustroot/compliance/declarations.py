"""Signed declarations: a named person's judgement on a provision no tool can decide.

``trustroot declare 5.6-4A --by alice --justification "..."`` signs a *statement* with alice's
``declarer`` key from the key store and appends it to the evidence log as a ``declaration.signed``
record. The record alone, plus alice's public key in the store, proves who declared what::

    data = {
      "statement": {"format": "trustroot.declaration/1", "provision": "5.6-4A", "edition": "3.1.3",
                    "product": "Acme Plug", "by": "alice", "justification": "...",
                    "signed_at": "2026-11-22T03:00:00Z",
                    "key": {"name": "alice", "algorithm": "ed25519", "fingerprint": "<sha256 of SPKI>"}},
      "signature": "<base64 signature over SIGNING_PREFIX + canonical JSON of statement>"
    }

The evidence log's hash chain protects the order and presence of records; the declarer's signature
protects what the person said, even against whoever can rewrite the log. :func:`verify_declaration`
refuses a malformed record, an edited statement, a signature by another key, a key that is not a
declarer's, a revoked key, and a record whose subject is not the provision declared
(:class:`~trustroot.errors.DeclarationError`, naming the reason).
"""

from __future__ import annotations

import base64
import binascii
import json
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trustroot.compliance.catalogue import EDITIONS, Edition, load_catalogue
from trustroot.errors import DeclarationError, KeyStoreError, UsageError
from trustroot.keys._interface import KeyRole, KeyStatus
from trustroot.keys.store import validate_key_name

if TYPE_CHECKING:
    from trustroot.evidence import EvidenceRecord
    from trustroot.keys.store import KeyStore
    from trustroot.product import Product

__all__ = [
    "DECLARATION_FORMAT",
    "DECLARATION_TYPE",
    "MAX_JUSTIFICATION_CHARS",
    "MIN_JUSTIFICATION_CHARS",
    "SIGNING_PREFIX",
    "Declaration",
    "Statement",
    "declare",
    "signed_bytes",
    "verified_declarations",
    "verify_declaration",
]

DECLARATION_TYPE: Final = "declaration.signed"
DECLARATION_FORMAT: Final = "trustroot.declaration/1"
#: Domain separation: a declarer's signature can never be replayed as another kind of signature.
SIGNING_PREFIX: Final = b"trustroot declaration v1\n"
MIN_JUSTIFICATION_CHARS: Final = 10
MAX_JUSTIFICATION_CHARS: Final = 2000
_FINGERPRINT = r"^[0-9a-f]{64}$"
_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"
#: Longest base64 signature accepted (RSA-3072 is 512 characters).
_MAX_SIGNATURE_CHARS: Final = 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class KeyRef(_Strict):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
    algorithm: Literal["ecdsa-p256", "ecdsa-p384", "ed25519", "rsa-3072"]
    fingerprint: Annotated[str, Field(pattern=_FINGERPRINT)]


class Statement(_Strict):
    """What a declarer signs."""

    format: Literal["trustroot.declaration/1"]
    provision: Annotated[str, Field(pattern=r"^(4|5\.\d{1,2}|6)-\d{1,2}[AB]?$")]
    edition: Edition
    product: Annotated[str, Field(min_length=1, max_length=200)]
    by: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
    justification: Annotated[str, Field(min_length=MIN_JUSTIFICATION_CHARS, max_length=MAX_JUSTIFICATION_CHARS)]
    signed_at: Annotated[str, Field(pattern=_TIME)]
    key: KeyRef


class _RecordData(_Strict):
    statement: Statement
    signature: Annotated[str, Field(min_length=4, max_length=_MAX_SIGNATURE_CHARS)]


@dataclass(frozen=True)
class Declaration:
    """A declaration whose signature verified, with the record it came from."""

    statement: Statement
    record_hash: str
    seq: int

    @property
    def provision(self) -> str:
        return self.statement.provision

    @property
    def evidence_ref(self) -> str:
        """``declaration.signed:<hash>``: how an ICS row or a verdict cites it."""
        return f"{DECLARATION_TYPE}:{self.record_hash}"


def signed_bytes(statement: Statement) -> bytes:
    """The exact bytes a declarer signs: the prefix, then the statement's canonical JSON."""
    canonical = json.dumps(statement.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return SIGNING_PREFIX + canonical.encode("utf-8")


def _clean_justification(text: str) -> str:
    text = " ".join(text.split())
    if any(unicodedata.category(ch).startswith("C") for ch in text):
        raise UsageError("--justification: control characters are not allowed")
    if not MIN_JUSTIFICATION_CHARS <= len(text) <= MAX_JUSTIFICATION_CHARS:
        raise UsageError(
            f"--justification: {len(text)} characters; a declaration needs {MIN_JUSTIFICATION_CHARS} to "
            f"{MAX_JUSTIFICATION_CHARS} characters saying why the provision is met"
        )
    return text


def _provision(provision: str, edition: Edition) -> str:
    if edition not in EDITIONS:
        raise UsageError(f"--edition {edition!r}: use one of {', '.join(EDITIONS)}")
    catalogue = load_catalogue(edition)
    try:
        return catalogue.get(provision).id
    except KeyError:
        near = [pid for pid in catalogue.ids() if pid.startswith(provision.split("-", maxsplit=1)[0] + "-")]
        hint = f"provisions of that section: {', '.join(near)}" if near else "see docs/compliance-catalogue.md"
        raise UsageError(f"{provision!r} is not a provision of EN 303 645 V{edition}", hint=hint) from None


def declare(
    product: Product, provision: str, by: str, justification: str, *, edition: Edition = "3.1.3"
) -> Declaration:
    """Sign a declaration with ``by``'s declarer key and append it to the evidence log."""
    pid = _provision(provision, edition)
    name = validate_key_name(by)
    text = _clean_justification(justification)
    info = product.keys.get(name)
    if info.role is not KeyRole.DECLARER:
        raise UsageError(
            f"--by {name}: key '{name}' has role {info.role.value}, not declarer",
            hint=f"make a personal key with: trustroot keys create --role declarer --name {name}",
        )
    if info.status is not KeyStatus.ACTIVE:
        raise DeclarationError(f"--by {name}: the declarer key is {info.status.value}; it signs nothing")
    statement = Statement(
        format=DECLARATION_FORMAT,
        provision=pid,
        edition=edition,
        product=product.context.model.product.name,
        by=name,
        justification=text,
        signed_at=product.clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        key=KeyRef(name=name, algorithm=info.algorithm.value, fingerprint=info.fingerprint),  # type: ignore[arg-type]
    )
    signature = product.keys.unlock(name).sign(signed_bytes(statement))
    data: dict[str, Any] = {
        "statement": statement.model_dump(mode="json"),
        "signature": base64.b64encode(signature).decode("ascii"),
    }
    record = product.evidence.append(DECLARATION_TYPE, pid, data, product.actor)
    return verify_declaration(record, product.keys, product=statement.product)


def verify_declaration(record: EvidenceRecord, keys: KeyStore, *, product: str | None = None) -> Declaration:
    """Check one ``declaration.signed`` record against the declarer's public key in ``keys``.

    With ``product``, a declaration signed for another product (a record copied across logs) is
    refused too.
    """
    where = f"declaration record {record.seq}"
    if record.type != DECLARATION_TYPE:
        raise DeclarationError(f"{where}: type {record.type!r} is not {DECLARATION_TYPE}")
    try:
        data = _RecordData.model_validate(record.data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        path = ".".join(str(p) for p in first["loc"]) or "data"
        raise DeclarationError(f"{where}: malformed ({path}: {first['msg']})") from exc
    statement = data.statement
    if product is not None and statement.product != product:
        raise DeclarationError(f"{where}: signed for product {statement.product!r}, not {product!r}")
    if record.subject != statement.provision:
        raise DeclarationError(
            f"{where}: subject {record.subject!r} is not the provision signed ({statement.provision})"
        )
    try:
        signature = base64.b64decode(data.signature.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise DeclarationError(f"{where}: the signature is not base64") from exc
    try:
        info = keys.get(statement.key.name)
    except KeyStoreError as exc:
        raise DeclarationError(f"{where}: signed by '{statement.key.name}', a key the store does not hold") from exc
    if info.role is not KeyRole.DECLARER:
        raise DeclarationError(f"{where}: key '{info.name}' is not a declarer key (role {info.role.value})")
    if info.fingerprint != statement.key.fingerprint or info.algorithm.value != statement.key.algorithm:
        raise DeclarationError(f"{where}: the key named '{info.name}' in the store is not the key that signed")
    if statement.by != info.name:
        raise DeclarationError(f"{where}: declared by '{statement.by}' but signed with '{info.name}'s key")
    try:
        keys.verify(info.name, signed_bytes(statement), signature)
    except KeyStoreError as exc:  # InvalidSignature, or KeyStateError for a revoked key
        raise DeclarationError(f"{where}: {exc.message}", provision=statement.provision) from exc
    return Declaration(statement=statement, record_hash=record.hash, seq=record.seq)


def verified_declarations(
    records: Iterable[EvidenceRecord], keys: KeyStore, *, product: str | None = None
) -> tuple[list[Declaration], list[tuple[int, str]]]:
    """Every declaration in ``records``: the valid ones, and (seq, reason) for each refused one.

    A later declaration of the same provision replaces an earlier one.
    """
    valid: dict[tuple[str, str], Declaration] = {}
    refused: list[tuple[int, str]] = []
    for record in records:
        if record.type != DECLARATION_TYPE:
            continue
        try:
            declaration = verify_declaration(record, keys, product=product)
        except DeclarationError as exc:
            refused.append((record.seq, exc.message))
            continue
        valid[(declaration.statement.edition, declaration.provision)] = declaration
    return list(valid.values()), refused
