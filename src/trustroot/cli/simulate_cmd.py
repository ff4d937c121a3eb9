"""``trustroot simulate``: run a fleet of simulated devices (real agents) against the service."""

from __future__ import annotations

import json
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from trustroot.cli._common import ContextOpt, JsonOpt, Output, QuietOpt, open_product_for_cli

if TYPE_CHECKING:
    from trustroot.product import Product

__all__ = ["InProcessFleetAdmin", "simulate"]


@dataclass(frozen=True)
class InProcessFleetAdmin:
    """The simulator's fleet-side operations in this process (the CLI layer may use the fleet's code)."""

    product: Product

    def publish(self, image: Path, name: str) -> int:
        from trustroot.fleet.releases.publish import publish_release
        from trustroot.fleet.service import product_service

        channel = self.product.context.model.update.channels[0]
        with product_service(self.product, None) as service:
            return publish_release(self.product, image, channel=channel, store=service.store, name=name).release.id

    def import_batch(self, manifest: Path) -> None:
        from trustroot._fsutil import read_bounded
        from trustroot.fleet.devices import import_batch
        from trustroot.fleet.service import product_service
        from trustroot.provision.manifest import MAX_MANIFEST_BYTES

        data = read_bounded(manifest, MAX_MANIFEST_BYTES, what="batch manifest")
        with product_service(self.product, None) as service:
            import_batch(service, data, actor=self.product.actor, source=str(manifest))

    def operator_token(self, scopes: str) -> str:
        from trustroot.fleet.operators import add_operator
        from trustroot.fleet.service import product_service

        with product_service(self.product, None) as service:
            name = f"simulator-{secrets.token_hex(4)}"
            return add_operator(service, name, scopes, actor=self.product.actor).token

    def tuf_root(self) -> bytes:
        from trustroot.fleet.releases.publish import open_repository

        repo, _ = open_repository(self.product)
        return repo.root_bytes()


def simulate(
    devices: Annotated[int, typer.Option("--devices", min=1, max=10_000, help="How many devices.")] = 200,
    scenario: Annotated[
        str, typer.Option("--scenario", help="steady, rollout, outage, compromised or deletion.")
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
