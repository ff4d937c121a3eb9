"""The fleet simulator's scenarios at 200 devices on the accelerated clock, figures asserted as behaviour.

One fleet of 200 devices is provisioned for the module (the real factory flow in a scratch copy of
the test product); each scenario starts its own ``trustroot serve`` on it and runs its agents as
coroutines. Scenarios run in the order below and share the devices (their slots, queues and
ownership carry over, as on a real fleet).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from service_fixtures import copy_product, open_test_product

from trustroot.agent.simulator import SimFleet, SimReport, Simulation, prepare_fleet
from trustroot.fleet.inprocess_admin import InProcessFleetAdmin

# the scenarios' figures are timings of a fleet on an accelerated clock: they run on one worker,
# one after the other, never beside the other fleet runs (the demo) that would starve the service
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("simulated-fleet")]
pytest_plugins = ["service_fixtures"]

DEVICES = 200
#: Time scales for CI: each scenario within about 25 s of wall time at 200 devices.
SCALE = {"steady": 20.0, "outage": 30.0, "compromised": 7.0, "rollout": 15.0, "deletion": 300.0}


@pytest.fixture(scope="module")
def fleet(product_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimFleet]:
    workdir = tmp_path_factory.mktemp("sim")
    product = open_test_product(copy_product(product_template, workdir / "acme"))
    yield prepare_fleet(product, DEVICES, workdir / "run", admin_for=InProcessFleetAdmin)


def run(fleet: SimFleet, scenario: str, *, jitter: bool = True) -> SimReport:
    simulation = Simulation(
        fleet.product, devices=DEVICES, scenario=scenario, time_scale=SCALE[scenario], jitter=jitter, seed=6
    )
    report = simulation.run(fleet)
    assert report.figures["devices"] == DEVICES and report.figures["scenario"] == scenario
    return report


def test_steady(fleet: SimFleet) -> None:
    report = run(fleet, "steady")
    events = report.details["events"]
    assert events["online"] >= DEVICES  # every device checked in over mutual TLS
    assert report.figures["lost_messages"] == 0
    assert report.details["telemetry"]["delivered"] > DEVICES  # every device reported, more than once


def test_outage(fleet: SimFleet) -> None:
    report = run(fleet, "outage")
    events = report.details["events"]
    assert events["offline"] >= DEVICES * 0.9  # the outage was noticed (status file: offline, last known good)
    assert events["online"] >= events["offline"]  # and every device came back
    assert report.figures["lost_messages"] == 0  # queued on disk during the outage, delivered after
    ratio = report.figures["reconnect_peak_ratio"]
    assert ratio is not None and ratio <= 4.0  # bounded: backoff with full jitter (goal 2 at 1,000: benchmark)


def test_compromised(fleet: SimFleet) -> None:
    report = run(fleet, "compromised")
    figures = report.figures
    assert figures["attacked"] >= 20 and set(figures["attacks"]) == {
        "port_scan",
        "exfiltration",
        "brute_force",
        "unexpected_firmware",
        "cloned_device",
    }
    assert figures["detection_rate"] == 1.0  # every attacked device alerted within 60 simulated seconds
    assert figures["false_alarm_rate"] <= 0.01
    assert figures["lost_messages"] == 0


def test_rollout(fleet: SimFleet) -> None:
    report = run(fleet, "rollout")
    assert report.figures["rollout_paused"] is True  # the service paused it by itself
    rollout = report.details["rollout"]
    assert rollout["state"] == "paused" and str(rollout["reason"]).startswith("automatic")
    installs = report.details["installs"]
    assert installs.get("rolled_back", 0) > 0  # failing devices went back to their last known good image
    assert installs.get("installed", 0) > 0


def test_deletion(fleet: SimFleet) -> None:
    report = run(fleet, "deletion")
    deletion = report.details["deletion"]
    assert deletion["deleted"] == deletion["owners"] == DEVICES // 4
    assert deletion["devices_wiped"] == deletion["deleted"]  # each device wiped its personal data
    assert deletion["reports_linked"] == deletion["deleted"]  # and its report names the service's receipt
    assert report.figures["deletion_completed"] == 1.0
