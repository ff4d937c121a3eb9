"""The service's ownership key, and signed deletion receipts (guideline 11, provision 5.11-4).

The fleet service signs ownership links and deletion receipts with ONE Ed25519 key of its key store:
role ``other``, named ``ownership-N``, made on first use (:func:`service_signing_key`). Anyone holding
its public key checks a receipt offline with the pure :func:`verify_deletion_receipt`::

    {"receipt": {...body...}, "signature": base64(Ed25519(DOMAIN || canonical_json(body))),
     "key_id": SHA-256 of the public key (SPKI DER), "algorithm": "ed25519"}

    body = {"v": 1, "type": "trustroot.deletion-receipt", "reason": "owner-request" | "transfer" | ...,
            "owner_id_sha256": hex, "devices": [serials], "categories": {name: rows},
            "rows_deleted": n, "data_key_destroyed": bool, "factory_reset_queued": [serials],
            "time": ISO 8601 UTC}

A receipt names no personal data: only category names, counts, serials and the SHA-256 of the owner id.

Errors::

    TrustrootError
    └── ReceiptError      a receipt that is malformed, or whose signature does not verify (one type)

``ReceiptError`` is defined here until it moves to :mod:`trustroot.errors`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any, Final

from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from trustroot.errors import KeyExistsError, ReceiptError
from trustroot.keys._interface import Algorithm, KeyHandle, KeyRole, KeyStatus, public_key_fingerprint
from trustroot.keys.store import KeyStore

__all__ = [
    "RECEIPT_DOMAIN",
    "RECEIPT_TYPE",
    "SERVICE_KEY_PREFIX",
    "ReceiptError",
    "canonical_json",
    "service_signing_key",
    "sign_deletion_receipt",
    "verify_deletion_receipt",
]

#: Names of the service's ownership keys: ``ownership-1``, ``ownership-2``, ...
SERVICE_KEY_PREFIX: Final = "ownership-"
#: The ``type`` of a receipt body.
RECEIPT_TYPE: Final = "trustroot.deletion-receipt"
#: What a receipt signature covers before the body (domain separation from ownership links).
RECEIPT_DOMAIN: Final = b"trustroot/deletion-receipt/v1\n"
_FIELDS: Final = frozenset(
    {
        "v",
        "type",
        "reason",
        "owner_id_sha256",
        "devices",
        "categories",
        "rows_deleted",
        "data_key_destroyed",
        "factory_reset_queued",
        "time",
    }
)


def canonical_json(value: object) -> bytes:
    """Canonical JSON (sorted keys, no spaces, UTF-8): the bytes that are hashed and signed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def service_signing_key(keys: KeyStore) -> KeyHandle:
    """The service's active ``ownership-N`` Ed25519 key, created (``ownership-1``) when there is none."""
    for _attempt in range(2):
        found = [
            info
            for info in keys.list()
            if info.role is KeyRole.OTHER
            and info.status is KeyStatus.ACTIVE
            and info.name.startswith(SERVICE_KEY_PREFIX)
            and info.algorithm is Algorithm.ED25519
        ]
        if found:
            return keys.unlock(max(found, key=lambda info: info.generation))
        try:
            return keys.unlock(keys.create(KeyRole.OTHER, Algorithm.ED25519, name=f"{SERVICE_KEY_PREFIX}1"))
        except KeyExistsError:
            continue  # another worker made it meanwhile: read it back
    raise ReceiptError("the service's ownership key cannot be found or made")  # pragma: no cover


def sign_deletion_receipt(handle: KeyHandle, body: Mapping[str, Any]) -> dict[str, Any]:
    """The signed receipt of ``body`` (an Ed25519 ``handle``; see the module docstring)."""
    if set(body) != _FIELDS or body.get("type") != RECEIPT_TYPE:
        raise ReceiptError(f"a deletion receipt has exactly the fields {sorted(_FIELDS)}")
    signature = handle.sign(RECEIPT_DOMAIN + canonical_json(body))
    return {
        "receipt": dict(body),
        "signature": base64.b64encode(signature).decode("ascii"),
        "key_id": public_key_fingerprint(handle.public_key()),
        "algorithm": "ed25519",
    }


def verify_deletion_receipt(receipt: Mapping[str, Any], service_public_key: Ed25519PublicKey) -> dict[str, Any]:
    """Check a signed receipt under the service's public key; return its body. Raises :class:`ReceiptError`."""
    body = receipt.get("receipt")
    if not isinstance(body, dict):
        raise ReceiptError("the deletion receipt does not verify under the service's key")
    try:
        signature = base64.b64decode(receipt["signature"], validate=True)
        service_public_key.verify(signature, RECEIPT_DOMAIN + canonical_json(body))
    except (KeyError, TypeError, ValueError, binascii.Error, _CryptoInvalidSignature) as exc:
        raise ReceiptError("the deletion receipt does not verify under the service's key") from exc
    if set(body) != _FIELDS or body["type"] != RECEIPT_TYPE or body["v"] != 1:
        raise ReceiptError("the deletion receipt is signed but not of a format this version knows")
    return dict(body)
