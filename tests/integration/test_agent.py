"""The device agent for real: a provisioned device directory, the real service over mutual TLS, real processes.

The module provisions two devices through the factory flow (``trustroot.agent.sim_fleet``: token,
batch, bundles, ``provision program``, manifest imported into the fleet, enrolment with the TUF root
and the image keys) and starts ``trustroot serve`` on a loopback port.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from service_fixtures import copy_product, open_test_product

from trustroot.agent import sim_fleet
from trustroot.agent.core import Agent
from trustroot.agent.device import AgentDevice, enroll
from trustroot.agent.queue import TelemetryQueue
from trustroot.agent.slots import Slots
from trustroot.agent.state import AgentState
from trustroot.errors import AgentError
from trustroot.fleet.inprocess_admin import InProcessFleetAdmin
from trustroot.fleet.service import product_service
from trustroot.fleet.store.audit import audit_log
from trustroot.product import Product

pytestmark = pytest.mark.integration
pytest_plugins = ["service_fixtures"]

WORKER = Path(__file__).with_name("agent_kill_worker.py")
ROUNDS = 8
AGENT = (sys.executable, "-m", "trustroot.cli", "agent")
ENV = {"TRUSTROOT_DEVICE_SECRET": sim_fleet.DEVICE_SECRET.decode()}


@dataclass
class Fleet:
    product: Product
    devices: list[sim_fleet.ProvisionedDevice]
    service: sim_fleet.ServiceProcess
    workdir: Path


@pytest.fixture(scope="module")
def fleet(product_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    workdir = tmp_path_factory.mktemp("agent")
    product = open_test_product(copy_product(product_template, workdir / "acme"))
    admin = InProcessFleetAdmin(product)
    factory = sim_fleet.signed_image(product, "1.0.0", 1)
    sim_fleet.publish(admin, factory, "plug", workdir)
    devices = sim_fleet.provision(product, admin, 2, workdir / "fleet", factory)
    service = sim_fleet.ServiceProcess(product, workdir)
    service.start()
    try:
        yield Fleet(product=product, devices=devices, service=service, workdir=workdir)
    finally:
        service.stop()


def _status(directory: Path) -> dict[str, object]:
    path = directory / "agent" / "status.json"
    return json.loads(path.read_text()) if path.exists() else {}


def test_the_agent_process_checks_in_over_mutual_tls_and_tells_its_user(fleet: Fleet) -> None:
    device = fleet.devices[0]
    log = fleet.workdir / "agent.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*AGENT, "--device", str(device.directory), "--url", fleet.service.url],
            env={**os.environ, **ENV},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _status(device.directory).get("online") is not True:
            assert process.poll() is None, log.read_text()
            time.sleep(0.1)
        status = _status(device.directory)
        assert status["online"] is True and status["serial"] == device.serial
        assert status["running"]["version"] == "1.0.0+0"  # type: ignore[index]
        assert str(status["status_url"]).startswith("http://127.0.0.1:")
        with urllib.request.urlopen(str(status["status_url"]), timeout=5) as answer:  # noqa: S310 - loopback
            served = json.loads(answer.read())
        assert served["serial"] == device.serial and served["online"] is True
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
    assert process.returncode == 0


def test_a_device_without_its_trust_anchors_refuses_to_run(fleet: Fleet, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("device.json", "chain.pem", "identity.secret", "identity.key.enc"):
        (bare / name).write_bytes((fleet.devices[1].directory / name).read_bytes())
        (bare / name).chmod(0o600)
    with pytest.raises(AgentError, match="no TUF root") as refused:
        AgentDevice.load(bare, sim_fleet.DEVICE_SECRET)
    assert refused.value.provision == "5.3-10"


def test_a_forged_factory_image_is_refused_at_enrolment(fleet: Fleet, tmp_path: Path) -> None:
    image = bytearray(sim_fleet.signed_image(fleet.product, "1.0.0", 1))
    image[0x200 + 10] ^= 1
    trust = fleet.devices[1].directory / "trust"
    with pytest.raises(AgentError, match="factory image refused") as refused:
        enroll(
            fleet.devices[1].directory,
            tuf_root=(trust / "tuf-root.json").read_bytes(),
            image_keys_pem=(trust / "image-keys.pem").read_bytes(),
            factory_image=bytes(image),
            state_dir=tmp_path / "state",
        )
    assert refused.value.provision == "5.7-1"


def test_a_local_factory_reset_wipes_and_is_reported_with_a_signed_receipt(fleet: Fleet) -> None:
    device = fleet.devices[1]
    wifi = device.directory / "agent" / "data" / "wifi-credentials"
    wifi.mkdir(parents=True, exist_ok=True)
    (wifi / "psk").write_text("hunter2hunter2")
    done = subprocess.run(
        [*AGENT, "reset", "--device", str(device.directory), "--url", fleet.service.url, "--json"],
        env={**os.environ, **ENV},
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["reported"] is True and "wifi-credentials" in answer["wiped"]
    assert not wifi.exists()
    exported = fleet.workdir / "audit.jsonl"
    with product_service(fleet.product, None) as service:
        audit_log(service).export_jsonl(exported)
    records = [json.loads(line) for line in exported.read_text().splitlines() if line.strip()]
    resets = [r for r in records if r.get("type") == "device.reset"]
    assert resets and resets[-1]["subject"] == device.serial
    assert resets[-1]["data"]["trigger"] == "local" and resets[-1]["actor"] == f"device:{device.serial}"


def _lines(output: bytes) -> list[list[str]]:
    return [line.split() for line in output.decode(errors="replace").splitlines() if line.strip()]


def test_state_survives_sigkill_at_random_moments_during_installs_and_queue_writes(
    fleet: Fleet, tmp_path: Path
) -> None:
    source = fleet.devices[0]
    trust = source.directory / "trust"
    state_dir = tmp_path / "state"
    enroll(
        source.directory,
        tuf_root=(trust / "tuf-root.json").read_bytes(),
        image_keys_pem=(trust / "image-keys.pem").read_bytes(),
        factory_image=sim_fleet.signed_image(fleet.product, "1.0.0", 1),
        state_dir=state_dir,
    )
    images = tmp_path / "images"
    images.mkdir()
    for counter in range(2, 40):
        (images / f"{counter}.img").write_bytes(sim_fleet.signed_image(fleet.product, f"1.{counter}.0", counter))
    # the worker runs the device with its state in state_dir (a second host of the same identity)
    worker_dir = tmp_path / "device"
    worker_dir.mkdir()
    for item in source.directory.iterdir():
        if item.is_file():
            (worker_dir / item.name).write_bytes(item.read_bytes())
            (worker_dir / item.name).chmod(item.stat().st_mode & 0o777)
    (worker_dir / "trust").mkdir()
    for item in trust.iterdir():
        (worker_dir / "trust" / item.name).write_bytes(item.read_bytes())
    (worker_dir / "agent").symlink_to(state_dir)
    rng = random.Random(20261122)
    lines: list[list[str]] = []
    kills = 0
    for round_ in range(ROUNDS):
        process = subprocess.Popen(
            [sys.executable, str(WORKER), str(worker_dir), str(images), str(round_)],
            env={**os.environ, **ENV},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdout is not None
        first = process.stdout.readline()  # "booted": the kill falls into the working loop
        assert first.strip() == b"booted", process.stderr.read() if process.stderr else b""
        time.sleep(rng.uniform(0.05, 0.6))
        process.send_signal(signal.SIGKILL)
        out, _ = process.communicate(timeout=10)
        assert process.returncode == -signal.SIGKILL
        kills += 1
        lines += _lines(first + out)
    assert kills == ROUNDS
    queued = [int(parts[1]) for parts in lines if parts[0] == "queued" and len(parts) == 2]
    acking = [int(parts[1]) for parts in lines if parts[0] == "acking" and len(parts) == 2]
    installed = [
        (parts[1], int(parts[2]))
        for parts in lines
        if parts[0] == "installed" and len(parts) == 4 and parts[3] == "installed"
    ]
    assert len(queued) > 50 and installed, "the kills should fall among many queue writes and some installs"
    assert len(set(queued)) == len(queued), "a seq was given twice"

    # what the device finds at the next power-on
    slots = Slots(state_dir / "slots")
    boot = slots.boot()
    active = slots.active()  # verified against its meta's SHA-256
    assert boot.counter_floor == active.security_counter >= max(counter for _, counter in installed)
    device = AgentDevice.load(worker_dir, sim_fleet.DEVICE_SECRET, service_url="https://127.0.0.1:9")
    agent = Agent(device)
    agent.boot()
    assert agent.state.install is None and slots.boot().trial is None
    state = AgentState.load(state_dir)
    assert all(r["status"] in {"installed", "rolled_back", "failed"} for r in state.results)
    queue = TelemetryQueue(state_dir)
    pending = {record["seq"] for record in queue.peek(100_000)}
    acked_through = max(acking, default=0)
    lost = [seq for seq in queued if seq > acked_through and seq not in pending]
    assert lost == [], f"queued records lost: {lost[:10]}"
    assert queue.stats().dropped == 0
    agent.queue.close()
    queue.close()
