"""``trustroot keys``: the key ceremonies (create, list, import, export-public, rotate, revoke, backup, restore)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from trustroot.cli._common import (
    ContextOpt,
    FormatOpt,
    JsonOpt,
    Output,
    QuietOpt,
    command,
    open_product_for_cli,
)
from trustroot.errors import UsageError
from trustroot.keys._interface import Algorithm, KeyInfo, KeyRole

app = typer.Typer(no_args_is_help=True, help="Key ceremonies of the root of trust.")


def _role(text: str) -> KeyRole:
    try:
        return KeyRole(text)
    except ValueError:
        raise UsageError(f"role {text!r}: use one of {', '.join(r.value for r in KeyRole)}") from None


def _algorithm(text: str) -> Algorithm:
    try:
        return Algorithm(text)
    except ValueError:
        raise UsageError(f"algorithm {text!r}: use one of {', '.join(a.value for a in Algorithm)}") from None


def _as_dict(k: KeyInfo) -> dict[str, object]:
    return {
        "name": k.name,
        "role": k.role.value,
        "algorithm": k.algorithm.value,
        "backend": k.backend,
        "status": k.status.value,
        "fingerprint": k.fingerprint,
        "generation": k.generation,
        "created": k.created.isoformat(),
        "labels": k.labels,
    }


@command(app, "list")
def list_keys(
    context: ContextOpt = None, quiet: QuietOpt = False, json_: JsonOpt = False, fmt: FormatOpt = "text"
) -> int:
    """List every key with role, algorithm, backend, status and fingerprint (nothing is unlocked).

    Example: trustroot keys list --json
    """
    out = Output.of(json_flag=json_, quiet=quiet, fmt=fmt)
    keys = open_product_for_cli(context).keys.list()
    lines = [
        f"{k.name:<24} {k.role.value:<18} {k.algorithm.value:<13} {k.backend:<7} {k.status.value:<8} "
        f"{k.fingerprint[:16]}"
        for k in keys
    ]
    out.result("\n".join(lines), [_as_dict(k) for k in keys])
    return 0


@command(app, "create")
def create(
    role: Annotated[str | None, typer.Argument(help="Role of the key, e.g. image-encryption or other.")] = None,
    role_option: Annotated[str | None, typer.Option("--role", help="The role, as an option (same as ROLE).")] = None,
    algorithm: Annotated[
        str | None, typer.Option("--algorithm", "-a", help="Key algorithm (declarer keys default to ed25519).")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Key name (default: ROLE-GENERATION; a declarer's own name).")
    ] = None,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Make a new key in the key store (on the token for backend pkcs11).

    A person who signs declarations gets a key of role declarer named after them.

    Example: trustroot keys create image-encryption --algorithm ecies-p256
    Example: trustroot keys create --role declarer --name alice
    """
    if (role is None) == (role_option is None):
        raise UsageError("name the role once: trustroot keys create ROLE ... or --role ROLE")
    chosen = _role(role or role_option or "")
    if chosen is KeyRole.DECLARER:
        if name is None:
            raise UsageError("a declarer key needs --name (the person's name, e.g. --name alice)")
        algorithm = algorithm or "ed25519"
        if not _algorithm(algorithm).is_signing:
            raise UsageError(f"--algorithm {algorithm}: a declarer key signs; use ed25519, ecdsa-p256/p384 or rsa-3072")
    if algorithm is None:
        raise UsageError("--algorithm is required for this role")
    out = Output.of(json_flag=json_, quiet=quiet)
    product = open_product_for_cli(context)
    info = product.keys.create(chosen, _algorithm(algorithm), name=name)
    product.record("key.created", info.name, _as_dict(info))
    out.result(
        f"created {info.name} ({info.algorithm.value}, {info.backend}) {info.fingerprint[:16]}",
        _as_dict(info),
    )
    return 0


@command(app, "import")
def import_key(
    role: Annotated[str, typer.Argument(help="Role the key takes, e.g. firmware-signing.")],
    path: Annotated[Path, typer.Argument(help="PEM private key file (PKCS#8, SEC1 or PKCS#1; encrypted or not).")],
    algorithm: Annotated[str, typer.Option("--algorithm", "-a", help="Algorithm the key must have.")],
    name: Annotated[str | None, typer.Option(help="Key name.")] = None,
    password_env: Annotated[
        str | None,
        typer.Option(help="Environment variable holding the PEM file's own password, if it has one."),
    ] = None,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Import an existing key (e.g. an imgtool key) into the store: encrypted on the way in, or onto the token.

    Example: trustroot keys import firmware-signing root-ec-p256.pem --algorithm ecdsa-p256
    """
    from trustroot.ceremony import import_key_file

    out = Output.of(json_flag=json_, quiet=quiet)
    password = None
    if password_env:
        if password_env not in os.environ:
            raise UsageError(f"--password-env {password_env}: no such environment variable")
        password = os.environ[password_env].encode()
    product = open_product_for_cli(context)
    info = import_key_file(product, _role(role), _algorithm(algorithm), path, name=name, key_password=password)
    out.result(f"imported {path} as {info.name} ({info.backend}); delete the clear original", _as_dict(info))
    return 0


@command(app, "export-public")
def export_public(
    name: Annotated[str, typer.Argument(help="Key name (see trustroot keys list).")],
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the PEM here instead of stdout.")] = None,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Export the public part of a key as PEM (the private part never leaves).

    Example: trustroot keys export-public firmware-signing-1 --out fw-signing.pub.pem
    """
    from trustroot._fsutil import atomic_write

    pem = open_product_for_cli(context).keys.export_public_pem(name)
    if json_:
        Output(json=True).result("", {"name": name, "public_pem": pem.decode()})
        return 0
    if out_file:
        atomic_write(out_file, pem)
    else:
        typer.echo(pem.decode(), nl=False)
    return 0


@command(app, "rotate")
def rotate(
    role: Annotated[str, typer.Argument(help="Role to rotate, e.g. firmware-signing.")],
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Make a new key for a role; the old one is retired (still verifies, never signs).

    Example: trustroot keys rotate firmware-signing
    """
    from trustroot.ceremony import rotate as do_rotate

    out = Output.of(json_flag=json_, quiet=quiet)
    old, new = do_rotate(open_product_for_cli(context), _role(role))
    out.result(
        f"{old.name} retired; {new.name} active ({new.fingerprint[:16]})",
        {"retired": _as_dict(old), "active": _as_dict(new)},
    )
    return 0


@command(app, "revoke")
def revoke(
    name: Annotated[str, typer.Argument(help="Key name.")],
    reason: Annotated[str, typer.Option(help="Why (e.g. 'key compromise').")] = "",
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Revoke a key: it never signs or anchors trust again.

    Example: trustroot keys revoke firmware-signing-1 --reason "laptop stolen"
    """
    from trustroot.ceremony import revoke as do_revoke

    out = Output.of(json_flag=json_, quiet=quiet)
    info = do_revoke(open_product_for_cli(context), name, reason)
    out.result(f"{info.name} revoked", _as_dict(info))
    return 0


@command(app, "backup")
def backup(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the backup file and the share files.")],
    threshold: Annotated[int, typer.Option("--threshold", "-m", min=2, max=255, help="Shares needed to restore.")] = 3,
    shares: Annotated[int, typer.Option("--shares", "-n", min=2, max=255, help="Shares made (one per custodian).")] = 5,
    key: Annotated[
        list[str] | None, typer.Option("--key", help="Key to include (default: the offline root keys).")
    ] = None,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Back up the offline root encrypted, with the backup key split M-of-N between custodians (Shamir).

    Hand each share file to a different custodian and delete it here.

    Example: trustroot keys backup --out /media/usb --threshold 3 --shares 5
    """
    from trustroot.ceremony import backup_offline_root

    out = Output.of(json_flag=json_, quiet=quiet)
    if threshold > shares:
        raise UsageError(f"--threshold {threshold} is larger than --shares {shares}")
    result = backup_offline_root(open_product_for_cli(context), out_dir, threshold=threshold, shares=shares, names=key)
    out.result(
        f"backup {result.backup_file} of {', '.join(result.keys)}; {threshold} of {shares} shares restore it:\n"
        + "\n".join(f"  {p}" for p in result.share_files),
        {
            "backup": str(result.backup_file),
            "shares": [str(p) for p in result.share_files],
            "keys": result.keys,
            "backup_id": result.backup_id,
        },
    )
    return 0


@command(app, "restore")
def restore(
    backup_file: Annotated[Path, typer.Argument(help="The .trb backup file.")],
    share: Annotated[list[Path], typer.Option("--share", help="A custodian's share file (repeat).")],
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Recover keys from a backup with at least M custodian shares; they are re-encrypted here.

    Example: trustroot keys restore backup-1a2b.trb --share s1.txt --share s3.txt --share s4.txt
    """
    from trustroot.ceremony import restore_backup

    out = Output.of(json_flag=json_, quiet=quiet)
    restored = restore_backup(open_product_for_cli(context), backup_file, share)
    out.result(
        f"restored {len(restored)} key(s): {', '.join(k.name for k in restored) or '(all already present)'}",
        [_as_dict(k) for k in restored],
    )
    return 0
