"""The demo's steps after the product exists: firmware, factory, fleet, service, simulation, scan, assessment."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from trustroot._fsutil import atomic_write

if TYPE_CHECKING:
    from trustroot.demo import DemoProgress, DemoResult
    from trustroot.product import Product

__all__ = ["DEMO_TIME_SCALE", "FACTORY", "configure", "run"]

FACTORY = "demo-factory-1"
FIRMWARE = (("1.0.0", 1), ("1.1.0", 2))
#: Simulated seconds per wall second of the demo's fleet run (about 290 s simulated: 36 s of wall time).
DEMO_TIME_SCALE: Final = 8.0
#: The demo's edits of the new product's context: its devices check in every two minutes (the
#: template says an hour) so that one short run shows a deletion reaching the device.
CONTEXT_EDITS: Final = (("update.checkin_interval_s", "120"), ("update.checkin_jitter_s", "[0, 15]"))
#: The demo's scan targets: the template's application source, and the root file system it ships.
SCAN_TARGETS: Final = (
    '[{name = "firmware-src", path = "firmware/src", kind = "source"},'
    ' {name = "rootfs", path = "sample-rootfs", kind = "rootfs"}]'
)


def configure(product: Product) -> None:
    """Apply :data:`CONTEXT_EDITS` and declare where the simulated devices talk (the monitor judges by it)."""
    from trustroot.agent.sim_behaviour import NORMAL_DESTINATIONS
    from trustroot.context.edit import set_key

    for key, value in CONTEXT_EDITS:
        set_key(product.context.path, key, value)
    set_key(product.context.path, "telemetry.allowed_destinations", json.dumps(list(NORMAL_DESTINATIONS)))
    set_key(product.context.path, "code_quality.targets", SCAN_TARGETS)


def sign_firmware(product: Product, work: Path, report: DemoProgress) -> list[dict[str, Any]]:
    """Sign firmware 1.0.0 (counter 1) and 1.1.0 (counter 2) with the product's firmware key."""
    from trustroot.demo.firmware import sample_payload
    from trustroot.image.recipes import SignRequest, evidence_data, sign_request

    report.step("sign firmware 1.0.0 and 1.1.0", total=len(FIRMWARE))
    signed = []
    for version, counter in FIRMWARE:
        source = work / f"acme-plug-{version}.bin"
        atomic_write(source, sample_payload(version))
        request = SignRequest(
            source=source,
            destination=work / f"acme-plug-{version}.signed.bin",
            version=version,
            security_counter=counter,
            pad_header=True,
        )
        made = sign_request(request, product)
        signed.append({**evidence_data(made), "path": str(made.path)})
        report.advance()
    return signed


def provision_devices(product: Product, count: int, report: DemoProgress) -> dict[str, Any]:
    """Authorize, make and close one factory batch of ``count`` devices; return where its manifest is."""
    from trustroot.keys._interface import public_key_fingerprint
    from trustroot.provision import batch as batches
    from trustroot.provision.manifest import close_batch
    from trustroot.provision.tokens import authorize_here, production_store

    report.step(f"provision {count} devices at {FACTORY}", total=count)
    store = production_store(product)
    try:
        recipient = batches.station_public_key(product, None)
        token = authorize_here(product, store, factory=FACTORY, count=count)
        record = batches.open_batch(
            product, store, token.token_id, count=count, station_key=public_key_fingerprint(recipient)
        )
        made = batches.run_batch(product, store, record.batch_id, station_key=recipient, progress=report.advance)
        closed = close_batch(product, store, record.batch_id)
    finally:
        store.close()
    return {
        "batch": record.batch_id,
        "devices": made.made,
        "first_serial": made.first_serial,
        "last_serial": made.last_serial,
        "bundles": str(made.out_dir),
        "manifest": str(closed.manifest),
    }


def fleet_and_releases(product: Product, manifest: Path, images: list[Path], report: DemoProgress) -> dict[str, Any]:
    """Register the batch's devices in the fleet store and publish both images on the stable channel."""
    from trustroot._fsutil import read_bounded
    from trustroot.fleet.devices import import_batch
    from trustroot.fleet.releases.publish import publish_release
    from trustroot.fleet.service import product_service
    from trustroot.provision.manifest import MAX_MANIFEST_BYTES

    report.step("import the batch into the fleet and publish the releases over TUF", total=1 + len(images))
    with product_service(product, None) as service:
        imported = import_batch(
            service, read_bounded(manifest, MAX_MANIFEST_BYTES, what="batch manifest"), actor=product.actor
        )
        report.advance()
        releases = []
        for image in images:
            done = publish_release(product, image, channel="stable", store=service.store)
            releases.append(
                {"id": done.release.id, "version": done.release.version, "target": done.release.target_path}
            )
            report.advance()
    return {"imported": imported.devices, "releases": releases}


def console_operator(product: Product, name: str, report: DemoProgress) -> dict[str, str]:
    """A console login for the demo operator (every scope), with a generated password."""
    from trustroot.fleet.console_users import create_console_user
    from trustroot.fleet.service import product_service

    report.step("create the demo operator's console login")
    with product_service(product, None) as service:
        made = create_console_user(
            service, name, "read,release,device-admin,disclosure", actor=product.actor, issuer="trustroot demo"
        )
    return {
        "name": made.name,
        "password": made.password or "",
        "totp_secret": made.totp_secret,
        "otpauth_uri": made.otpauth_uri,
        "api_token": made.api_token or "",
    }


def simulate_fleet(
    product: Product,
    signed: list[dict[str, Any]],
    factory: dict[str, Any],
    releases: list[dict[str, Any]],
    report: DemoProgress,
    *,
    service_env: dict[str, str],
    time_scale: float = DEMO_TIME_SCALE,
) -> dict[str, Any]:
    """Program and enroll every device, start ``trustroot serve``, and run the simulator's life scenario.

    The agents are real (mutual TLS, TUF updates into A/B slots, telemetry), as coroutines of this
    process on an accelerated clock; the service is a separate ``trustroot serve`` on a free loopback
    port, stopped when the run ends. Its store is the product's own: the console shows the run after.
    """
    from trustroot.agent import sim_fleet
    from trustroot.agent.simulator import SimFleet, Simulation
    from trustroot.fleet.inprocess_admin import InProcessFleetAdmin

    started = time.monotonic()
    bundles = sorted(Path(factory["bundles"]).glob("*.bundle"))
    report.step("program the device directories and enroll their agents", total=len(bundles))
    admin = InProcessFleetAdmin(product)
    work = product.root / "simulation"
    devices = sim_fleet.program_devices(
        product, bundles, work, Path(signed[0]["path"]).read_bytes(), admin.tuf_root(), progress=report.advance
    )
    fleet = SimFleet(
        product=product,
        admin=admin,
        devices=devices,
        workdir=work,
        name="demo",
        token=admin.operator_token("read,release,device-admin"),
        setup_s=time.monotonic() - started,
    )
    report.step(f"start the fleet service; simulate {len(devices)} devices (rollout of 1.1.0, an attack, a deletion)")
    simulation = Simulation(
        product,
        devices=len(devices),
        scenario="life",
        time_scale=time_scale,
        admin=InProcessFleetAdmin,
        rollout_release=int(releases[-1]["id"]),
        service_env=service_env,
    )
    done = simulation.run(fleet)
    details = done.details
    return {
        "devices": len(devices),
        "figures": done.figures,
        "rollout": details.get("rollout"),
        "installs": details.get("installs"),
        "detections": details.get("detections"),
        "deletion": details.get("deletion"),
        "devices_dir": str(work / "devices"),
    }


class _ScanSteps:
    """The scanning gate's progress (targets, then engines) as steps of the demo's bar."""

    def __init__(self, report: DemoProgress) -> None:
        self.report = report

    def add(self, steps: int, label: str) -> None:
        return None

    def step(self, label: str) -> None:
        self.report.advance()


def scan_samples(product: Product, report: DemoProgress) -> dict[str, Any]:
    """Scan the sample source and firmware trees (the context's targets) and record them as evidence."""
    from trustroot.components import default_tools_dir
    from trustroot.demo.firmware import write_sample_rootfs, write_sample_source
    from trustroot.scan.gate import request_for, run_scan
    from trustroot.scan.record import record_scan
    from trustroot.scan.sarif import sarif_bytes

    report.step("scan the sample source and firmware trees (the scanning gate)")
    targets = (
        write_sample_source(product.root / "firmware" / "src"),
        write_sample_rootfs(product.root / "sample-rootfs"),
    )
    request = request_for(targets, product.context.model.code_quality, tools_dir=default_tools_dir())
    result = run_scan(request, _ScanSteps(report))
    recorded = record_scan(product, result, sarif_bytes(result))
    return {
        "targets": {name: str(path) for name, path in zip(recorded.targets, targets, strict=True)},
        "findings": result.counts(),
        "failing": len(result.failing),
        "engines": dict(result.versions),
        "sarif": str(recorded.sarif_path),
        "seconds": round(result.seconds, 2),
    }


def assess_product(product: Product, report: DemoProgress) -> dict[str, Any]:
    """Assess the product against EN 303 645 from its evidence and the fleet's; write every report."""
    from trustroot.compliance.assess import assess
    from trustroot.compliance.outputs import write_assessment

    report.step("assess against ETSI EN 303 645 from the evidence")
    assessment = assess(product, now=product.clock())
    written = write_assessment(product, assessment, out_dir=product.root / "assessment", fail_on="mandatory")
    summary = written.report["summary"]
    return {
        "out": str(written.out_dir),
        "report_html": str(written.out_dir / "report.html"),
        "verdicts": summary["verdicts"],
        "mandatory": summary["mandatory"],
        "gate": summary["gate"],
    }


def run(
    product: Product,
    result: DemoResult,
    report: DemoProgress,
    *,
    devices: int,
    time_scale: float = DEMO_TIME_SCALE,
) -> None:
    """Every step after the product exists, in order; each step's figures go to ``result.steps``."""
    from trustroot.demo import DEMO_OPERATOR

    work = product.root / "firmware"
    work.mkdir(exist_ok=True)
    signed = sign_firmware(product, work, report)
    result.steps["firmware"] = signed
    factory = provision_devices(product, devices, report)
    result.steps["provisioning"] = factory
    result.steps["fleet"] = fleet_and_releases(
        product, Path(factory["manifest"]), [Path(item["path"]) for item in signed], report
    )
    result.console_login = console_operator(product, DEMO_OPERATOR, report)
    service_env = dict(result.generated_secrets)  # the service started for the run needs them
    releases = result.steps["fleet"]["releases"]
    result.steps["simulation"] = simulate_fleet(
        product, signed, factory, releases, report, service_env=service_env, time_scale=time_scale
    )
    result.steps["scan"] = scan_samples(product, report)
    result.steps["assessment"] = assess_product(product, report)
