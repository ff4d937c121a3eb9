"""``trustroot agent``: the reference device agent (run, enroll, reset, status).

``trustroot agent --device DIR`` runs the agent on a device directory until stopped; the verbs
below it prepare a device (``enroll``), wipe it (``reset``) or show what it last said (``status``).
The device secret comes from TRUSTROOT_DEVICE_SECRET.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Annotated

import typer

from trustroot.cli._common import ContextOpt, JsonOpt, Output, QuietOpt, command, open_product_for_cli
from trustroot.errors import UsageError

__all__ = ["app"]

app = typer.Typer(
    invoke_without_command=True,
    help="The device agent: check-ins, verified A/B updates, telemetry, factory reset.",
)

DeviceOpt = Annotated[Path, typer.Option("--device", help="The device directory 'provision program' wrote.")]
_HEALTH_TIMEOUT_S = 120


def _command_health(command_line: str):  # type: ignore[no-untyped-def]
    import shlex

    from trustroot.agent.slots import SlotImage

    argv = shlex.split(command_line)
    if not argv:
        raise UsageError("--health-command is empty")

    async def check(image: SlotImage) -> bool:
        def run() -> bool:
            try:
                done = subprocess.run(
                    [*argv, image.version], timeout=_HEALTH_TIMEOUT_S, check=False, capture_output=True
                )
            except (OSError, subprocess.TimeoutExpired):
                return False
            return done.returncode == 0

        return await asyncio.to_thread(run)

    return check


@app.callback()
def agent(
    ctx: typer.Context,
    device: Annotated[Path | None, typer.Option("--device", help="The device directory to run.")] = None,
    url: Annotated[str | None, typer.Option("--url", help="The service (default: device.json's service_url).")] = None,
    status_port: Annotated[
        int, typer.Option("--status-port", min=0, max=65535, help="Loopback port of the status endpoint (0: any).")
    ] = 0,
    health_command: Annotated[
        str | None,
        typer.Option(
            "--health-command",
            help="Run after switching to a new image (its version as argument); exit 0 = healthy "
            "(default: a check-in from the new image succeeds).",
        ),
    ] = None,
    no_jitter: Annotated[bool, typer.Option("--no-jitter", help="Back off without jitter (tests only).")] = False,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Run the device agent until stopped (Ctrl+C or SIGTERM).

    Writes status.json in DIR/agent and serves it on http://127.0.0.1:PORT/status.
    Example: trustroot agent --device /var/lib/trustroot/device
    """
    if ctx.invoked_subcommand is not None:
        return
    if device is None:
        raise UsageError("give --device DIR (or a verb: enroll, reset, status)")
    from trustroot.agent.core import Agent, AgentSettings
    from trustroot.agent.device import AgentDevice
    from trustroot.agent.telemetry import LinuxSampler
    from trustroot.provision.device_dir import device_secret_from_env

    out = Output.of(json_flag=json_, quiet=quiet)
    loaded = AgentDevice.load(device, device_secret_from_env(), service_url=url)
    settings = AgentSettings(jitter=not no_jitter)
    runner = Agent(loaded, settings=settings, sampler=LinuxSampler())
    if health_command is not None:
        runner.health_check = _command_health(health_command)
    else:

        async def checkin_health(_image: object) -> bool:
            answer, _ = await runner.check_in()
            return answer is not None

        runner.health_check = checkin_health

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        out.info(f"agent for {loaded.serial} -> {loaded.service_url}; status in {loaded.state_dir / 'status.json'}")
        await runner.run(stop, status_port=status_port)

    asyncio.run(main())
    out.result(f"agent for {loaded.serial} stopped", runner.status())


@command(app, "enroll")
def enroll(
    device: DeviceOpt,
    image: Annotated[Path, typer.Option("--image", help="The factory image (signed) for slot a.")],
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """At the station: give a programmed device its TUF root, the image keys and its factory image.

    Example: trustroot agent enroll --device /mnt/device --image build/plug-1.0.0.signed.bin
    """
    from cryptography.hazmat.primitives import serialization

    from trustroot._fsutil import read_bounded
    from trustroot.agent.device import enroll as run
    from trustroot.fleet.releases.publish import open_repository, repository_path
    from trustroot.fleet.releases.repository import ReleaseRepository
    from trustroot.image.recipes import product_verification_keys

    out = Output.of(json_flag=json_, quiet=quiet)
    product = open_product_for_cli(context)
    if not ReleaseRepository.exists(repository_path(product)):
        raise UsageError(
            "the product has no TUF repository yet", hint="publish a first release: trustroot release publish IMAGE"
        )
    repo, _ = open_repository(product)
    keys = product_verification_keys(product)
    pem = b"".join(
        k.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo) for k in keys
    )
    slot = run(
        device,
        tuf_root=repo.root_bytes(),
        image_keys_pem=pem,
        factory_image=read_bounded(image, product.context.model.boot.slot_size, what="factory image"),
    )
    out.result(
        f"enrolled {device}: TUF root v{repo.root_version()}, {len(keys)} image key(s), factory image "
        f"{slot.version} (counter {slot.security_counter}) in slot a",
        {"device": str(device), "tuf_root_version": repo.root_version(), "image": slot.to_json()},
    )
    return 0


@command(app, "reset")
def reset(
    device: DeviceOpt,
    url: Annotated[str | None, typer.Option("--url", help="The service (default: device.json's service_url).")] = None,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Factory reset on the device: wipe the context's personal-data categories, report to the service.

    The report is sent now if the service answers, else at the agent's next check-in.
    Example: trustroot agent reset --device /var/lib/trustroot/device
    """
    from trustroot.agent.core import Agent, lock_state
    from trustroot.agent.device import AgentDevice
    from trustroot.provision.device_dir import device_secret_from_env

    out = Output.of(json_flag=json_, quiet=quiet)
    loaded = AgentDevice.load(device, device_secret_from_env(), service_url=url)
    lock = lock_state(loaded.state_dir)  # a running agent would overwrite the report: refused then
    runner = Agent(loaded)

    async def main() -> tuple[list[str], bool]:
        import httpx

        wiped = await runner.factory_reset(reason="local", command_id=None)
        async with httpx.AsyncClient(base_url=loaded.service_url, verify=runner._ssl, timeout=10.0) as client:
            runner._client = client
            await runner.flush_reports()
        return wiped, not runner.state.reports

    try:
        wiped, reported = asyncio.run(main())
    finally:
        runner.queue.close()
        os.close(lock)
    text = f"personal data wiped: {', '.join(wiped) or '(no category declared)'}; " + (
        "reported to the service" if reported else "the report waits for the next check-in"
    )
    out.result(text, {"serial": loaded.serial, "wiped": wiped, "reported": reported})
    return 0


@command(app, "status")
def status(
    device: DeviceOpt,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Show what the agent last wrote to status.json (online or not, running image, queue).

    Example: trustroot agent status --device /var/lib/trustroot/device --json
    """
    from trustroot._fsutil import read_bounded
    from trustroot.agent.device import AGENT_DIR
    from trustroot.agent.state import STATUS_FILE

    out = Output.of(json_flag=json_, quiet=quiet)
    data = json.loads(read_bounded(device / AGENT_DIR / STATUS_FILE, 1 << 20, what="agent status"))
    queue = data.get("telemetry_queue", {})
    text = (
        f"{data.get('serial')}: {'online' if data.get('online') else 'OFFLINE'} — {data.get('message')}\n"
        f"  running {data.get('running', {}).get('version')} (last known good {data.get('last_known_good')}); "
        f"telemetry queued {queue.get('pending')}, dropped {queue.get('dropped')}"
    )
    out.result(text, data)
    return 0
