"""``trustroot init``: a new product with its Security Context and root of trust."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trustroot.cli._common import JsonOpt, Output, QuietOpt


def init(
    directory: Annotated[Path, typer.Argument(help="Directory of the product (created if missing).")] = Path(),
    product: Annotated[str, typer.Option("--product", help="The product's name.")] = "",
    manufacturer: Annotated[str, typer.Option(help="Manufacturer's legal name.")] = "Example Manufacturer Ltd",
    contact: Annotated[str | None, typer.Option(help="Vulnerability report contact (mailto: or https:).")] = None,
    policy_url: Annotated[str | None, typer.Option(help="Published disclosure policy URL.")] = None,
    support_years: Annotated[int, typer.Option(min=1, max=30, help="Support period from today.")] = 5,
    backend: Annotated[str, typer.Option(help="Key store: file or pkcs11.")] = "file",
    pkcs11_module: Annotated[str | None, typer.Option(help="PKCS#11 module path (backend pkcs11).")] = None,
    token_label: Annotated[str | None, typer.Option(help="PKCS#11 token label (backend pkcs11).")] = None,
    context: Annotated[Path | None, typer.Option("--context", hidden=True)] = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Create a product: security-context.toml with secure defaults, and its root of trust in .trustroot/.

    Passphrases come from TRUSTROOT_PASSPHRASE (key store) and TRUSTROOT_ROOT_PASSPHRASE (offline
    root CA), or are asked for. Refuses to overwrite an existing product.

    Example: trustroot init demo --product "Acme Plug"
    """
    from trustroot.errors import UsageError
    from trustroot.product import create_product

    out = Output.of(json_flag=json_, quiet=quiet)
    if not product.strip():
        raise UsageError('--product NAME is required (e.g. --product "Acme Plug")')
    if backend not in ("file", "pkcs11"):
        raise UsageError(f"--backend {backend!r}: use file or pkcs11")
    options = {
        "manufacturer": manufacturer,
        "contact": contact,
        "policy_url": policy_url,
        "support_years": support_years,
        "backend": backend,
        "pkcs11_module": pkcs11_module,
        "pkcs11_token": token_label,
    }
    if out.json or out.quiet:
        made = create_product(directory, product.strip(), template_options=options)
    else:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=True) as bar:
            task = bar.add_task("root of trust", total=None)
            made = create_product(
                directory,
                product.strip(),
                template_options=options,
                progress=lambda text: bar.update(task, description=f"root of trust: {text}"),
            )
    keys = made.keys.list()
    rows = "\n".join(f"  {k.name:<22} {k.algorithm.value:<13} {k.backend}" for k in keys)
    out.result(
        f"[green]created[/green] {made.context.path}\nroot of trust in {made.state_dir}:\n{rows}\n"
        f"next: cd {directory} && trustroot context check",
        {
            "context": str(made.context.path),
            "state_dir": str(made.state_dir),
            "keys": [{"name": k.name, "role": k.role.value, "algorithm": k.algorithm.value} for k in keys],
        },
    )
    return 0
