"""``trustroot demo``: the whole life of a product on the embedded default."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trustroot.cli._common import JsonOpt, Output, QuietOpt


def demo(
    directory: Annotated[Path, typer.Option("--dir", help="Directory of the demo product.")] = Path("demo"),
    replace: Annotated[bool, typer.Option("--replace", help="Start an earlier demo in --dir afresh.")] = False,
    context: Annotated[Path | None, typer.Option("--context", hidden=True)] = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Run the product's whole life in a demo directory and leave it to explore.

    Uses TRUSTROOT_PASSPHRASE / TRUSTROOT_ROOT_PASSPHRASE if set; otherwise makes random ones and
    shows them once (they are never written to disk).

    Example: trustroot demo --dir demo --replace
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from trustroot.demo import run_demo

    out = Output.of(json_flag=json_, quiet=quiet)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        transient=True,
        disable=out.json or quiet,
    ) as bar:
        task = bar.add_task("demo", total=None)
        result = run_demo(directory, replace=replace, progress=lambda t: bar.update(task, description=f"demo: {t}"))
    errors = [f for f in result.findings if f.severity == "error"]
    lines = [
        f"[green]demo product[/green] {result.directory}",
        f"  root of trust: {len(result.keys)} keys ({', '.join(result.keys)})",
        f"  context check: {'OK' if not errors else f'{len(errors)} finding(s)'}"
        f" ({len(result.findings) - len(errors)} advice)",
        f"  evidence: {result.evidence_records} records, last signed checkpoint at seq {result.last_signed_seq}",
    ]
    if result.generated_secrets:
        lines.append("[yellow]passphrases made for this demo, shown once, never stored:[/yellow]")
        names = {"store": "TRUSTROOT_PASSPHRASE", "root": "TRUSTROOT_ROOT_PASSPHRASE"}
        lines += [f"  export {names[k]}='{v}'" for k, v in result.generated_secrets.items()]
    lines.append(f"explore: cd {result.directory} && trustroot keys list && trustroot evidence verify")
    out.result(
        "\n".join(lines),
        {
            "directory": str(result.directory),
            "keys": result.keys,
            "findings": [f.as_dict() for f in result.findings],
            "evidence_records": result.evidence_records,
            "last_signed_seq": result.last_signed_seq,
        },
    )
    return 1 if errors else 0
