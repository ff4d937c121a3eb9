"""A product on disk: its Security Context, state directory, key store, PKI and evidence log.

This is the one place that assembles the lower layers (context, keys, pki, evidence) for a
product; domain layers (image, provision, fleet, ...) and the CLI receive a :class:`Product`.

``create_product`` is the root-of-trust ceremony behind ``trustroot init``: it writes the context,
makes every key of the root of trust, the root and issuing CA certificates and the first CRL, and
records evidence. It refuses to touch an existing product, and a failure part-way removes what it
made, so no half-made product is left behind.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trustroot._fsutil import atomic_write
from trustroot.context.load import CONTEXT_FILE, STATE_DIR, LoadedContext, find_context, load_context
from trustroot.context.template import default_context_text
from trustroot.errors import StateError, TrustrootError
from trustroot.evidence import EvidenceLog
from trustroot.keys._interface import Algorithm, BackendName, KeyBackend, KeyHandle, KeyInfo, KeyRole
from trustroot.keys.filestore import FileBackend
from trustroot.keys.passphrase import SecretSource, caching, env_or_prompt
from trustroot.keys.store import KeyStore
from trustroot.pki.certificates import create_root_ca, issue_intermediate_ca
from trustroot.pki.crl import issue_crl

__all__ = [
    "Clock",
    "Product",
    "ProgressHook",
    "create_product",
    "default_actor",
    "open_product",
    "record_context_check",
]

Clock = Callable[[], datetime]
#: Called with a short description of each step of a long operation (the CLI drives a progress bar).
ProgressHook = Callable[[str], None]

ROOT_CA_CERT = "root-ca.pem"
ISSUING_CA_CERT = "issuing-ca.pem"
ISSUING_CA_CRL = "issuing-ca.crl.pem"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def default_actor() -> str:
    """Who acts, for evidence records: ``cli:user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


def record_context_check(path: Path, findings: int, actor: str | None = None) -> bool:
    """Leave a passing ``context.checked`` record for the context at ``path``, when its product exists.

    Needs no key (the record is signed at the next checkpoint); returns whether a record was written.
    """
    state = path.parent / STATE_DIR
    if not (state / "evidence.jsonl").exists():
        return False
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    EvidenceLog(state / "evidence.jsonl").append(
        "context.checked", path.name, {"sha256": digest, "findings": findings, "ok": True}, actor or default_actor()
    )
    return True


class _EvidenceSigner:
    """Adapts a key handle to the evidence log's ``CheckpointSigner``."""

    def __init__(self, handle: KeyHandle) -> None:
        self._handle = handle

    @property
    def key_id(self) -> str:
        return self._handle.info.fingerprint

    @property
    def algorithm(self) -> str:
        return str(self._handle.info.algorithm)

    def sign(self, data: bytes) -> bytes:
        return self._handle.sign(data)


@dataclass
class Product:
    """An opened product. Keys are unlocked lazily, each at most once per process."""

    context: LoadedContext
    keys: KeyStore
    clock: Clock = _utcnow
    actor: str = field(default_factory=default_actor)
    _evidence: EvidenceLog | None = None

    @property
    def root(self) -> Path:
        """The directory that holds security-context.toml."""
        return self.context.path.parent

    @property
    def state_dir(self) -> Path:
        return self.context.state_dir

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def evidence(self) -> EvidenceLog:
        if self._evidence is None:
            self._evidence = EvidenceLog(
                self.state_dir / "evidence.jsonl", signer_factory=self._evidence_signer, clock=self.clock
            )
        return self._evidence

    def _evidence_signer(self) -> _EvidenceSigner:
        return _EvidenceSigner(self.keys.unlock(self.keys.active(KeyRole.EVIDENCE).name))

    def record(self, type_: str, subject: str, data: dict[str, Any]) -> None:
        """Append an evidence record as this product's actor."""
        self.evidence.append(type_, subject, data, self.actor)

    def certificate(self, name: str) -> x509.Certificate:
        """A certificate from the product's PKI directory (``root-ca.pem``, ``issuing-ca.pem``)."""
        from trustroot.pki.certificates import load_pem_certificate

        return load_pem_certificate(self.pki_dir / name)

    def evidence_public_keys(self) -> dict[str, Any]:
        """Public keys of every evidence key ever made (rotated ones too), by fingerprint."""
        return {
            info.fingerprint: serialization.load_pem_public_key(info.public_pem.encode())
            for info in self.keys.list()
            if info.role is KeyRole.EVIDENCE and info.public_pem
        }


def _backends(ctx: LoadedContext, secrets: SecretSource) -> tuple[dict[BackendName, KeyBackend], BackendName]:
    keys_dir = ctx.state_dir / "keys"
    backends: dict[BackendName, KeyBackend] = {"file": FileBackend(keys_dir, secrets)}
    rot = ctx.model.root_of_trust
    if rot.backend == "pkcs11":
        from trustroot.keys.pkcs11store import Pkcs11Backend

        if rot.pkcs11 is None:  # the schema refuses this; kept for the type checker
            raise StateError(f"{ctx.path}: backend = 'pkcs11' without [root_of_trust.pkcs11]")
        backends["pkcs11"] = Pkcs11Backend(rot.pkcs11.module, rot.pkcs11.token_label, secrets)
    return backends, rot.backend


def open_product(
    context: Path | None = None,
    *,
    start: Path | None = None,
    secrets: SecretSource = env_or_prompt,
    clock: Clock = _utcnow,
) -> Product:
    """Open the product whose context is ``context`` or the first one found upward from ``start``."""
    secrets = caching(secrets)
    path = find_context(start, context)
    loaded = load_context(path)
    if not loaded.state_dir.is_dir():
        raise StateError(
            f"{loaded.state_dir}: no product state beside {path.name}",
            hint="run 'trustroot init' to create the root of trust",
        )
    backends, default = _backends(loaded, secrets)
    store = KeyStore(loaded.state_dir / "keys", backends, default)
    return Product(context=loaded, keys=store, clock=clock)


Domain = Literal["store", "root"]


# Keys of the root of trust: (role, algorithm from the context, passphrase domain).
def _root_of_trust_plan(ctx: LoadedContext) -> list[tuple[KeyRole, Algorithm, Domain]]:
    model = ctx.model
    algs = model.root_of_trust.algorithms
    plan: list[tuple[KeyRole, Algorithm, Domain]] = [
        (KeyRole.ROOT_CA, Algorithm(algs.root_ca), "root"),
        (KeyRole.ISSUING_CA, Algorithm(algs.issuing_ca), "store"),
    ]
    if model.boot.signature != "none":
        plan.append((KeyRole.FIRMWARE_SIGNING, Algorithm(model.boot.signature), "store"))
    if model.boot.encryption != "none":
        plan.append((KeyRole.IMAGE_ENCRYPTION, Algorithm(model.boot.encryption), "store"))
    plan += [
        (KeyRole.UPDATE_ROOT, Algorithm(algs.update), "root"),
        (KeyRole.UPDATE_TARGETS, Algorithm(algs.update), "store"),
        (KeyRole.UPDATE_SNAPSHOT, Algorithm(algs.update), "store"),
        (KeyRole.UPDATE_TIMESTAMP, Algorithm(algs.update), "store"),
        (KeyRole.FACTORY_SECRET, Algorithm.HMAC_SHA256, "store"),
        (KeyRole.EVIDENCE, Algorithm(algs.evidence), "store"),
    ]
    return plan


def _write_pem(path: Path, pem: bytes) -> None:
    atomic_write(path, pem, mode=0o644)


def issue_root_certificate(product: Product) -> x509.Certificate:
    """A self-signed root CA certificate for the active root-ca key, written to the PKI directory."""
    model = product.context.model
    handle = product.keys.unlock(product.keys.active(KeyRole.ROOT_CA).name)
    cert = create_root_ca(
        handle,
        f"{model.product.name} Root CA",
        model.product.manufacturer,
        model.root_of_trust.root_ca_validity_years * 365,
        now=product.clock(),
    )
    _write_pem(product.pki_dir / ROOT_CA_CERT, cert.public_bytes(serialization.Encoding.PEM))
    return cert


def issue_issuing_certificate(product: Product, root_cert: x509.Certificate) -> x509.Certificate:
    """The issuing CA certificate for the active issuing-ca key, signed by the active root key."""
    model = product.context.model
    root_handle = product.keys.unlock(product.keys.active(KeyRole.ROOT_CA).name)
    issuing = product.keys.unlock(product.keys.active(KeyRole.ISSUING_CA).name)
    cert = issue_intermediate_ca(
        root_handle,
        root_cert,
        issuing.public_key(),
        f"{model.product.name} Device Issuing CA",
        model.product.manufacturer,
        model.root_of_trust.issuing_ca_validity_years * 365,
        path_length=0,
        now=product.clock(),
    )
    _write_pem(product.pki_dir / ISSUING_CA_CERT, cert.public_bytes(serialization.Encoding.PEM))
    return cert


def create_product(
    directory: Path,
    product_name: str,
    *,
    secrets: SecretSource = env_or_prompt,
    clock: Clock = _utcnow,
    progress: ProgressHook | None = None,
    template_options: dict[str, Any] | None = None,
) -> Product:
    """Create a product in ``directory``: context, state, root of trust, CA certificates, evidence."""
    step = progress or (lambda _text: None)
    secrets = caching(secrets)
    directory = directory.resolve()
    context_path = directory / CONTEXT_FILE
    state_dir = directory / STATE_DIR
    for existing in (context_path, state_dir):
        if existing.exists():
            raise StateError(
                f"{existing} exists already; refusing to overwrite a product",
                hint="choose another directory, or remove the old product deliberately",
            )
    now = clock()
    today: date = now.date()
    text = default_context_text(product_name, today=today, **(template_options or {}))
    made_dir = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    created: list[KeyInfo] = []
    product: Product | None = None
    try:
        atomic_write(context_path, text.encode(), mode=0o644, exclusive=True)
        for sub in ("keys", "pki", "production", "releases"):
            (state_dir / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        state_dir.chmod(0o700)
        loaded = load_context(context_path)
        # Ask for both passphrases up front, confirmed, before any key is made.
        secrets("store", True)
        secrets("root", True)
        backends, default = _backends(loaded, secrets)
        store = KeyStore(state_dir / "keys", backends, default)
        product = Product(context=loaded, keys=store, clock=clock)
        for role, algorithm, domain in _root_of_trust_plan(loaded):
            step(f"key {role.value} ({algorithm.value})")
            created.append(store.create(role, algorithm, domain=domain))
        step("root and issuing CA certificates")
        model = loaded.model
        root_cert = issue_root_certificate(product)
        issuing_cert = issue_issuing_certificate(product, root_cert)
        issuing_handle = store.unlock(store.active(KeyRole.ISSUING_CA).name)
        crl = issue_crl(
            issuing_handle, issuing_cert, [], this_update=now, next_update=now + timedelta(days=30), crl_number=1
        )
        _write_pem(state_dir / "pki" / ISSUING_CA_CRL, crl.public_bytes(serialization.Encoding.PEM))
        step("evidence")
        for info in created:
            product.record(
                "key.created",
                info.name,
                {
                    "role": info.role.value,
                    "algorithm": info.algorithm.value,
                    "backend": info.backend,
                    "fingerprint": info.fingerprint,
                    "generation": info.generation,
                },
            )
        from trustroot.pki.certificates import certificate_fingerprint

        product.record(
            "rootoftrust.created",
            model.product.name,
            {
                "backend": model.root_of_trust.backend,
                "keys": {info.role.value: info.fingerprint for info in created},
                "root_ca_certificate": certificate_fingerprint(root_cert),
                "issuing_ca_certificate": certificate_fingerprint(issuing_cert),
            },
        )
        product.evidence.checkpoint()
    except BaseException:
        _roll_back(created, product, context_path, state_dir, directory if made_dir else None)
        raise
    return product


def _roll_back(
    created: list[KeyInfo],
    product: Product | None,
    context_path: Path,
    state_dir: Path,
    made_dir: Path | None,
) -> None:
    """Undo a failed ``create_product``: token keys, state, context, the directory if we made it."""
    if product is not None:
        for info in created:
            if info.backend == "pkcs11":
                with contextlib.suppress(TrustrootError, OSError):
                    product.keys.destroy(info.name)
    shutil.rmtree(state_dir, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        context_path.unlink()
    if made_dir is not None:
        with contextlib.suppress(OSError):
            made_dir.rmdir()
