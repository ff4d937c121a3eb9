"""What the writer processes of ``test_audit_chain`` run: kept apart from the test module so that a
forkserver child imports only this (and the forkserver can preload it), not pytest and the tests."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from trustroot.evidence import key_id_of
from trustroot.fleet.store.audit import AuditLog
from trustroot.fleet.store.db import Store, make_engine
from trustroot.limits import DEFAULT_LIMITS

SEED = bytes(range(40, 72))


class Ed25519Signer:
    """A checkpoint signer over a fixed test key."""

    algorithm = "ed25519"

    def __init__(self, seed: bytes = SEED) -> None:
        self._private = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
        self.key_id = key_id_of(self._private.public_key())

    def public_keys(self) -> dict[str, PublicKeyTypes]:
        return {self.key_id: self._private.public_key()}

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)


def append_records(url: str, writer: int, count: int, every: int, start: Any) -> None:
    """Runs in a child process: wait for the others, then append ``count`` records to the store at ``url``."""
    store = Store(make_engine(url))
    log = AuditLog(
        store,
        signer_factory=Ed25519Signer,
        limits=replace(DEFAULT_LIMITS, evidence_checkpoint_every=every),
    )
    start.wait()
    try:
        for i in range(count):
            log.append("device.provisioned", f"writer-{writer}", {"writer": writer, "i": i}, f"worker:{writer}")
    finally:
        store.dispose()
