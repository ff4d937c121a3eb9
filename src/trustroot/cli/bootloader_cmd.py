"""Boot-loader commands: ``keys export-bootloader-secret`` and ``image bootloader-config``.

Plain functions that return an exit code; the application registers them (wrapped with
:func:`trustroot.cli._common.exit_code`) as ``trustroot keys export-bootloader-secret`` and
``trustroot image bootloader-config``. The work is in :mod:`trustroot.image.bootloader`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trustroot.cli._common import ContextOpt, JsonOpt, Output, QuietOpt, open_product_for_cli
from trustroot.errors import UsageError

__all__ = ["bootloader_config", "export_bootloader_secret"]


def export_bootloader_secret(
    out_file: Annotated[
        Path, typer.Option("--out", help="New C file for the boot loader build (never written over; mode 0600).")
    ],
    key: Annotated[
        str | None, typer.Option("--key", help="Key to export (default: the active image-encryption key).")
    ] = None,
    minimal: Annotated[
        bool, typer.Option("--minimal", help="Leave out the optional public key of a P-256 key (imgtool --minimal).")
    ] = False,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Write the image-encryption PRIVATE KEY IN CLEAR as C source, for building MCUboot.

    MCUboot decrypts encrypted images with this key compiled into the boot loader: the one
    sanctioned exception to "never in clear" (ADR 0007). The key store passphrase is asked again,
    the file is imgtool getpriv output with mode 0600, and the export is recorded as evidence.
    Keys on a PKCS#11 token cannot be exported. Delete the file once the boot loader is built.

    Example: trustroot keys export-bootloader-secret --out build/mcuboot-enc-key.c
    """
    from trustroot.image.bootloader import export_bootloader_secret as do_export
    from trustroot.keys.passphrase import env_or_prompt

    out = Output.of(json_flag=json_, quiet=quiet)
    product = open_product_for_cli(context)
    done = do_export(
        product,
        out_file,
        key_name=key,
        secrets=env_or_prompt,
        minimal=minimal,
        on_asking=lambda: out.info("exporting the boot loader secret: the key store passphrase is asked again"),
    )
    out.result(
        f"[bold red]wrote the private key {done.key.name} IN CLEAR[/] to {done.path} (mode 0600); "
        "compile it into the boot loader, then delete it",
        {
            "key": done.key.name,
            "algorithm": done.key.algorithm.value,
            "fingerprint": done.key.fingerprint,
            "file": str(done.path),
            "bytes": done.size,
        },
    )
    return 0


def bootloader_config(
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Directory for the files.")] = Path("mcuboot-config"),
    lang: Annotated[str, typer.Option("--lang", help="Language of the public key source: c or rust.")] = "c",
    downgrade_prevention: Annotated[
        str,
        typer.Option(
            "--downgrade-prevention",
            help="software (MCUboot compares with the running image) or hardware (a platform monotonic counter).",
        ),
    ] = "software",
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Write MCUboot's configuration for the product: signing public key (PEM, C or Rust, hash) and Kconfig.

    Nothing secret is written; for encrypted images add the file of
    'trustroot keys export-bootloader-secret' to the boot loader build.

    Example: trustroot image bootloader-config --out-dir build/mcuboot --lang c
    """
    from trustroot.image.bootloader import write_bootloader_config

    out = Output.of(json_flag=json_, quiet=quiet)
    if lang not in ("c", "rust"):
        raise UsageError(f"--lang {lang!r}: use c or rust")
    if downgrade_prevention not in ("software", "hardware"):
        raise UsageError(f"--downgrade-prevention {downgrade_prevention!r}: use software or hardware")
    written = write_bootloader_config(
        open_product_for_cli(context),
        out_dir,
        lang="c" if lang == "c" else "rust",
        downgrade_prevention="software" if downgrade_prevention == "software" else "hardware",
    )
    out.result(
        f"MCUboot configuration for key {written.signing_key.name} in {written.kconfig.parent}:\n"
        + "\n".join(f"  {path.name}" for path in written.files),
        {
            "signing_key": written.signing_key.name,
            "fingerprint": written.signing_key.fingerprint,
            "files": [str(path) for path in written.files],
            "kconfig": str(written.kconfig),
        },
    )
    return 0
