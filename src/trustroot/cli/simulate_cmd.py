"""``trustroot simulate``: run a fleet of simulated devices (real agents) against the service."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from trustroot.cli._common import ContextOpt, JsonOpt, Output, QuietOpt, open_product_for_cli

if TYPE_CHECKING:
    pass

__all__ = ["simulate"]


def simulate(
    devices: Annotated[int, typer.Option("--devices", min=1, max=10_000, help="How many devices.")] = 200,
    scenario: Annotated[
        str,
        typer.Option(
            "--scenario",
            help="steady, rollout, outage, compromised, deletion or life (all of it, as the demo runs it).",
        ),
    ] = "steady",
    time_scale: Annotated[
        float | None,
        typer.Option("--time-scale", help="Simulated seconds per wall second (default: the scenario ends in ~60 s)."),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option("--url", help="Use this running service (of this product) instead of starting one."),
    ] = None,
    no_jitter: Annotated[bool, typer.Option("--no-jitter", help="Agents back off without jitter.")] = False,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the simulation's random choices.")] = None,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Simulate a fleet: N real agents (one process, asyncio) on an accelerated clock.

    Without --url the simulator copies the product to a scratch directory, provisions the devices in a
    scratch batch there and starts 'trustroot serve' on a free loopback port itself. With --json the
    figures are one JSON object on the last line.

    Example: trustroot simulate --devices 200 --scenario outage --json
    """
    from trustroot.agent.simulator import Simulation
    from trustroot.fleet.inprocess_admin import InProcessFleetAdmin

    out = Output.of(json_flag=json_, quiet=quiet)
    product = open_product_for_cli(context)
    run = Simulation(
        product,
        devices=devices,
        scenario=scenario,
        time_scale=time_scale,
        url=url,
        jitter=not no_jitter,
        seed=seed,
        progress=out.info,
        admin=InProcessFleetAdmin,
    )
    report = run.run()
    figures = report.figures
    if out.json:
        sys.stdout.write(json.dumps({**figures, "details": report.details}, indent=2, sort_keys=True, default=str))
        sys.stdout.write("\n" + json.dumps(figures, sort_keys=True, default=str) + "\n")
        return 0
    lines = [
        f"scenario {figures['scenario']}: {figures['devices']} devices, time scale {figures['time_scale']:g}, "
        f"{figures['simulated_s']:g} s simulated in {figures['wall_s']:g} s wall (set-up {figures['setup_wall_s']:g} s)"
    ]
    for key in (
        "requests",
        "reconnect_peak_ratio",
        "rollout_paused",
        "detection_rate",
        "false_alarm_rate",
        "detection_latency_s",
        "lost_messages",
        "deletion_completed",
    ):
        if figures.get(key) is not None:
            lines.append(f"  {key:<22} {figures[key]}")
    out.result("\n".join(lines), figures)
    return 0
