"""``trustroot demo``: the whole life of a product on the embedded default."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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
        if self._task is not None and self._counted:
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
    if "simulation" in steps:
        lines += _simulation_lines(steps["simulation"])
    if "scan" in steps:
        scan = steps["scan"]
        counts = ", ".join(f"{n} {severity}" for severity, n in scan["findings"].items() if n)
        lines.append(f"  scan of the sample source and firmware trees: {counts or 'no findings'}")
        lines.append(f"  SARIF: {scan['sarif']}")
    lines.append(
        f"  evidence: {result.evidence_records} records, last signed checkpoint at seq {result.last_signed_seq}"
    )
    if "assessment" in steps:
        assessed = steps["assessment"]
        verdicts = ", ".join(f"{n} {verdict}" for verdict, n in assessed["verdicts"].items() if n)
        gate = assessed["gate"]
        state = "passed" if gate["passed"] else f"blocked by {', '.join(gate['blocking'])}"
        lines += [
            f"  EN 303 645 V2.1.1: {verdicts}; release gate {state}",
            f"[green]report:[/green] {assessed['report_html']}",
        ]
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
        lines += [f"  export {name}='{value}'" for name, value in result.generated_secrets.items()]
    lines.append(f"explore: cd {result.directory} && trustroot fleet devices && trustroot evidence verify")
    return lines


def _simulation_lines(sim: dict[str, Any]) -> list[str]:
    figures = sim["figures"]
    lines = [
        f"  fleet run: {sim['devices']} agents, {figures['simulated_s']:g} s simulated in {figures['wall_s']:g} s, "
        f"{figures['requests']} requests, {figures['lost_messages']} telemetry records lost"
    ]
    rollout = sim.get("rollout") or {}
    if rollout:
        reason = f" ({rollout['reason']})" if rollout.get("reason") else ""
        lines.append(
            f"  rollout of 1.1.0: {rollout.get('state')}{reason}; {rollout.get('succeeded')} installed, "
            f"{rollout.get('failed')} rolled back"
        )
    if figures.get("detection_rate") is not None:
        latency = figures.get("detection_latency_s")
        lines.append(
            f"  compromised device detected: {figures['detection_rate']:.0%}"
            + (f" after {latency:g} s" if latency is not None else "")
            + f"; false alarms {figures['false_alarm_rate']:.1%}"
        )
    deletion = sim.get("deletion") or {}
    if deletion:
        lines.append(
            f"  owner data deletion: {deletion.get('deleted')} deleted in the service, "
            f"{deletion.get('devices_wiped')} device(s) wiped and reported"
        )
    return lines


def demo(
    directory: Annotated[Path, typer.Option("--dir", help="Directory of the demo product.")] = Path("demo"),
    replace: Annotated[bool, typer.Option("--replace", help="Start an earlier demo in --dir afresh.")] = False,
    devices: Annotated[int, typer.Option("--devices", min=1, max=10_000, help="Devices to provision.")] = 200,
    time_scale: Annotated[
        float | None,
        typer.Option(
            "--time-scale", min=1.0, max=500.0, help="Simulated seconds per wall second of the fleet run (default 8)."
        ),
    ] = None,
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
        result = run_demo(directory, replace=replace, progress=bars, devices=devices, time_scale=time_scale)
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
