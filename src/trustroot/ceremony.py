"""Key ceremonies over a product's root of trust; each one leaves evidence.

- ``import_key_file``: an existing PEM key (e.g. an imgtool key) encrypted on the way in, or put
  onto the token;
- ``rotate``: a new generation becomes active, the old one is retired (still verifies); rotating a
  CA key also issues the CA certificate for the new key;
- ``revoke``: a key is withdrawn (never signs or anchors again);
- ``backup_offline_root`` / ``restore_backup``: the offline keys, encrypted and split M-of-N
  between custodians (Shamir), and their tested recovery.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from trustroot._fsutil import atomic_write, read_bounded
from trustroot.errors import BackupError, KeyExistsError, UsageError
from trustroot.keys._interface import Algorithm, KeyInfo, KeyRole, KeyStatus
from trustroot.keys.backup import create_backup, describe_backup, open_backup
from trustroot.keys.filestore import load_pem_private_key_file
from trustroot.keys.shamir import parse_share
from trustroot.limits import DEFAULT_LIMITS
from trustroot.pki.certificates import certificate_fingerprint
from trustroot.product import (
    ISSUING_CA_CERT,
    ROOT_CA_CERT,
    Product,
    issue_issuing_certificate,
    issue_root_certificate,
)

__all__ = [
    "BackupResult",
    "backup_offline_root",
    "import_key_file",
    "restore_backup",
    "revoke",
    "rotate",
]


def _key_data(info: KeyInfo) -> dict[str, object]:
    return {
        "role": info.role.value,
        "algorithm": info.algorithm.value,
        "backend": info.backend,
        "fingerprint": info.fingerprint,
        "generation": info.generation,
    }


def import_key_file(
    product: Product,
    role: KeyRole,
    algorithm: Algorithm,
    path: Path,
    *,
    name: str | None = None,
    key_password: bytes | None = None,
) -> KeyInfo:
    """Import a PEM private key file into the store (encrypted, or onto the token)."""
    der = load_pem_private_key_file(path, key_password)
    domain: Literal["store", "root"] = "root" if role in (KeyRole.ROOT_CA, KeyRole.UPDATE_ROOT) else "store"
    info = product.keys.import_key(role, algorithm, der, name=name, domain=domain)
    product.record("key.imported", info.name, {**_key_data(info), "source": path.name})
    return info


def _reissue_ca(product: Product, role: KeyRole) -> None:
    """Issue the CA certificate(s) for the newly active key of ``role``; keep the old issuing CA."""
    old = product.pki_dir / ISSUING_CA_CERT
    if old.exists():
        stamp = product.clock().strftime("%Y%m%dT%H%M%SZ")
        atomic_write(product.pki_dir / f"issuing-ca.retired-{stamp}.pem", old.read_bytes())
    if role is KeyRole.ROOT_CA:
        root_cert = issue_root_certificate(product)
        product.record("key.rotated", "root-ca-certificate", {"certificate": certificate_fingerprint(root_cert)})
    else:
        root_cert = product.certificate(ROOT_CA_CERT)
    issue_issuing_certificate(product, root_cert)  # the issuing CA must chain to the (new) root


def rotate(product: Product, role: KeyRole) -> tuple[KeyInfo, KeyInfo]:
    """Rotate the active key of ``role``; returns (retired, new)."""
    previous = product.keys.active(role)
    new = product.keys.rotate(role)
    old = product.keys.get(previous.name)
    product.record(
        "key.rotated", new.name, {**_key_data(new), "replaces": old.name, "old_fingerprint": old.fingerprint}
    )
    if role in (KeyRole.ROOT_CA, KeyRole.ISSUING_CA):
        _reissue_ca(product, role)
    return old, new


def revoke(product: Product, name: str, reason: str) -> KeyInfo:
    """Revoke key ``name`` with ``reason``."""
    if not reason.strip():
        raise UsageError("--reason is required: say why the key is revoked")
    info = product.keys.revoke(name, reason.strip())
    product.record("key.revoked", name, {**_key_data(info), "reason": reason.strip()})
    return info


class BackupResult:
    """What a backup wrote: the encrypted backup file and one share file per custodian."""

    def __init__(self, backup_file: Path, share_files: list[Path], backup_id: str, keys: list[str]) -> None:
        self.backup_file = backup_file
        self.share_files = share_files
        self.backup_id = backup_id
        self.keys = keys


def backup_offline_root(
    product: Product,
    out_dir: Path,
    *,
    threshold: int,
    shares: int,
    names: Sequence[str] | None = None,
) -> BackupResult:
    """Encrypt the offline keys (default: every active or retired root-domain key) and split M-of-N."""
    store = product.keys
    chosen = (
        [store.get(n) for n in names]
        if names
        else [k for k in store.list() if k.offline and k.status is not KeyStatus.REVOKED]
    )
    if not chosen:
        raise BackupError("no key to back up")
    items = [(info, store.export_private_der(info.name)) for info in chosen]
    blob, share_list = create_backup(items, threshold, shares, now=product.clock())
    backup_id = share_list[0].backup_id
    out_dir.mkdir(parents=True, exist_ok=True)
    backup_file = out_dir / f"backup-{backup_id[:12]}.trb"
    atomic_write(backup_file, blob, mode=0o600, exclusive=True)
    files = []
    for share in share_list:
        path = out_dir / f"share-{backup_id[:12]}-{share.index}-of-{share.count}.txt"
        atomic_write(path, (share.to_text() + "\n").encode(), mode=0o600, exclusive=True)
        files.append(path)
    product.record(
        "key.backup.created",
        backup_id,
        {
            "keys": [i.name for i in chosen],
            "threshold": threshold,
            "shares": shares,
            "file": backup_file.name,
        },
    )
    return BackupResult(backup_file, files, backup_id, [i.name for i in chosen])


def restore_backup(product: Product, backup_file: Path, share_files: Sequence[Path]) -> list[KeyInfo]:
    """Recover keys from a backup and at least ``threshold`` custodian shares; re-encrypt them here."""
    blob = read_bounded(backup_file, DEFAULT_LIMITS.max_backup_bytes, what="backup")
    header = describe_backup(blob, source=str(backup_file))
    shares = [
        parse_share(read_bounded(path, DEFAULT_LIMITS.max_share_file_bytes, what="share"), source=str(path))
        for path in share_files
    ]
    restored: list[KeyInfo] = []
    existing = {k.name: k for k in product.keys.list()}
    for meta, der in open_backup(blob, shares, source=str(backup_file)):
        name = meta["name"]
        if name in existing:
            if existing[name].fingerprint != meta["public_fingerprint"]:
                raise KeyExistsError(f"key {name} exists with another fingerprint; restore refused for it")
            continue
        info = product.keys.import_key(
            KeyRole(meta["role"]), Algorithm(meta["algorithm"]), der, name=name, domain=meta["domain"]
        )
        restored.append(info)
    product.record("key.restored", header.backup_id, {"keys": [i.name for i in restored], "file": backup_file.name})
    return restored
