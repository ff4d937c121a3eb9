"""``trustroot demo``: the whole life of a product on the embedded default."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from trustroot.cli._common import JsonOpt, Output, QuietOpt

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from trustroot.demo import DemoResult


class _Bars:
    """The demo's steps as Rich progress bars: one line per step, kept on screen when done."""

    def __init__(self, bar: Progress) -> None:
        self._bar = bar
        self._task: TaskID | None = None

    def step(self, title: str, total: int | None = None) -> None:
        if self._task is not None:
            self._finish()
        self._task = self._bar.add_task(title, total=total if total is not None else 1)
        self._counted = total is not None

    def advance(self, count: int = 1) -> None:
        if self._task is not None:
            self._bar.advance(self._task, count)

    def _finish(self) -> None:
        if self._task is not None:
            task = self._bar.tasks[self._bar.task_ids.index(self._task)]
            self._bar.update(self._task, completed=task.total)

    def close(self) -> None:
        self._finish()
        self._task = None


def _summary(result: DemoResult) -> list[str]:
    steps = result.steps
    errors = [f for f in result.findings if f.severity == "error"]
    lines = [
        f"[green]demo product[/green] {result.directory}",
        f"  root of trust: {len(result.keys)} keys ({', '.join(result.keys)})",
        f"  context check: {'OK' if not errors else f'{len(errors)} finding(s)'}"
        f" ({len(result.findings) - len(errors)} advice)",
    ]
    if "firmware" in steps:
        lines.append(
            "  firmware: "
            + ", ".join(f"{item['version']} (counter {item['security_counter']})" for item in steps["firmware"])
        )
    if "provisioning" in steps:
        made = steps["provisioning"]
        lines.append(f"  factory: {made['devices']} devices ({made['first_serial']}..{made['last_serial']})")
    if "fleet" in steps:
        fleet = steps["fleet"]
        lines.append(
            f"  fleet: {fleet['imported']} devices registered; releases "
            + ", ".join(f"{r['version']}" for r in fleet["releases"])
        )
    lines.append(
        f"  evidence: {result.evidence_records} records, last signed checkpoint at seq {result.last_signed_seq}"
    )
    if result.console_login:
        login = result.console_login
        lines += [
            "[yellow]console login of the demo operator, shown once:[/yellow]",
            f"  name {login['name']}  password {login['password']}",
            f"  TOTP secret {login['totp_secret']}  ({login['otpauth_uri']})",
            f"  console: cd {result.directory} && trustroot serve, then https://127.0.0.1:8443/console/",
        ]
    if result.generated_secrets:
        lines.append("[yellow]passphrases made for this demo, shown once, never stored:[/yellow]")
        names = {"store": "TRUSTROOT_PASSPHRASE", "root": "TRUSTROOT_ROOT_PASSPHRASE"}
        lines += [f"  export {names[k]}='{v}'" for k, v in result.generated_secrets.items()]
    lines.append(f"explore: cd {result.directory} && trustroot fleet devices && trustroot evidence verify")
    return lines


def demo(
    directory: Annotated[Path, typer.Option("--dir", help="Directory of the demo product.")] = Path("demo"),
    replace: Annotated[bool, typer.Option("--replace", help="Start an earlier demo in --dir afresh.")] = False,
    devices: Annotated[int, typer.Option("--devices", min=1, max=10_000, help="Devices to provision.")] = 200,
    context: Annotated[Path | None, typer.Option("--context", hidden=True)] = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Run the product's whole life in a demo directory and leave it to explore.

    Uses TRUSTROOT_PASSPHRASE / TRUSTROOT_ROOT_PASSPHRASE if set; otherwise makes random ones and
    shows them once (they are never written to disk).

    Example: trustroot demo --dir demo --replace
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from trustroot.demo import run_demo

    out = Output.of(json_flag=json_, quiet=quiet)
    with Progress(
        TextColumn("{task.description:<58}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=out.json or quiet,
    ) as bar:
        bars = _Bars(bar)
        result = run_demo(directory, replace=replace, progress=bars, devices=devices)
        bars.close()
    errors = [f for f in result.findings if f.severity == "error"]
    out.result(
        "\n".join(_summary(result)),
        {
            "directory": str(result.directory),
            "keys": result.keys,
            "findings": [f.as_dict() for f in result.findings],
            "evidence_records": result.evidence_records,
            "last_signed_seq": result.last_signed_seq,
            "steps": result.steps,
            # shown once, here as on the terminal: the demo operator's login (never written to disk)
            "console_login": result.console_login,
        },
    )
    return 1 if errors else 0
