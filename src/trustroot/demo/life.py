"""The demo's steps after the product exists: firmware, factory, fleet, service, simulation, scan, assessment."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from trustroot._fsutil import atomic_write

if TYPE_CHECKING:
    from trustroot.demo import DemoProgress, DemoResult
    from trustroot.product import Product

__all__ = ["FACTORY", "run"]

FACTORY = "demo-factory-1"
FIRMWARE = (("1.0.0", 1), ("1.1.0", 2))


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


def run(product: Product, result: DemoResult, report: DemoProgress, *, devices: int) -> None:
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
