"""The simulator's fleet: a scratch copy of the product, a batch of devices, releases, and the service.

Nothing of the user's product is changed: :func:`scratch_product` copies the Security Context
and its state directory (keys stay encrypted; a PKCS#11 token is shared) into a temporary
directory, without the fleet store (the scratch fleet starts empty). There, :func:`provision`
runs the real factory flow for N devices: a production token and batch (flow b, bundles sealed
to the station key), ``provision program`` for every device directory, the batch closed and its
signed manifest imported into the scratch fleet store, and :func:`publish` signs images with the
product's firmware key and publishes them over TUF. The agent layer never imports the fleet
service's code: what only the service side can do (publish a release, import a manifest, add an
operator, export the TUF root) goes through a :class:`FleetAdmin`: ``trustroot`` commands in child
processes (:class:`CliFleetAdmin`), or the in-process one ``trustroot simulate`` wires in, and
:class:`ServiceProcess` runs
``trustroot serve`` for the scratch product as a separate process on a fixed free loopback port
(real TLS), so that it can be stopped and started again on the same address.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from cryptography.hazmat.primitives import serialization

from trustroot.agent.device import enroll
from trustroot.agent.sim_behaviour import NORMAL_DESTINATIONS
from trustroot.context.edit import set_key
from trustroot.errors import AgentError
from trustroot.product import ROOT_CA_CERT, Product, open_product

__all__ = [
    "DEVICE_SECRET",
    "CliFleetAdmin",
    "FleetAdmin",
    "ProvisionedDevice",
    "ServiceProcess",
    "free_port",
    "program_devices",
    "provision",
    "publish",
    "scratch_product",
    "signed_image",
]

#: The device secret of simulated devices (each device directory also has its own random file secret).
DEVICE_SECRET: Final = b"trustroot-simulated-device-secret"
_LISTENING = re.compile(r"listening on https://127\.0\.0\.1:(\d+)")
_START_TIMEOUT_S: Final = 90.0
_FACTORY = "simulator"
_CLI_TIMEOUT_S: Final = 300.0
#: Device directories programmed at once.
_PROGRAMMERS: Final = 8


@dataclass(frozen=True)
class ProvisionedDevice:
    serial: str
    directory: Path
    claim_code: str


def scratch_product(product: Product, directory: Path) -> Product:
    """A copy of ``product`` in ``directory`` with an empty fleet store (secrets: the environment or a prompt).

    When the context declares no ``[telemetry] allowed_destinations``, the copy declares the simulated
    devices' normal hosts (:data:`~trustroot.agent.sim_behaviour.NORMAL_DESTINATIONS`), as a product
    declares where its devices talk; the monitor then judges destinations from the first point on.
    """
    source_ctx = product.context.path
    state = product.state_dir
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source_ctx, directory / source_ctx.name)
    skip = shutil.ignore_patterns("fleet.sqlite*", "*.lock")
    shutil.copytree(state, directory / state.name, symlinks=True, ignore=skip)
    if not product.context.model.telemetry.allowed_destinations:
        # the simulated devices' hosts, declared as a product would declare its own (the copy only)
        set_key(directory / source_ctx.name, "telemetry.allowed_destinations", json.dumps(list(NORMAL_DESTINATIONS)))
    return open_product(directory / source_ctx.name)


def signed_image(product: Product, version: str, counter: int, size: int = 4096) -> bytes:
    """A firmware image signed with the product's firmware key (the payload is filler)."""
    from trustroot.image.sign import sign_image_bytes
    from trustroot.keys._interface import KeyRole

    boot = product.context.model.boot
    handle = product.keys.unlock(product.keys.active(KeyRole.FIRMWARE_SIGNING).name)
    body = hashlib.sha256(version.encode()).digest() * (size // 32)
    return sign_image_bytes(
        b"\x00" * boot.header_size + body,
        handle,
        version=version,
        header_size=boot.header_size,
        security_counter=counter,
    )


class FleetAdmin(Protocol):
    """What only the service side can do for the simulator (the agent layer never imports the fleet's code)."""

    def publish(self, image: Path, name: str) -> int:
        """Publish the signed image at ``image`` on the product's first channel; the release id."""
        ...

    def import_batch(self, manifest: Path) -> None:
        """Import a closed batch's signed manifest into the fleet."""
        ...

    def operator_token(self, scopes: str) -> str:
        """A new operator API token with ``scopes``."""
        ...

    def tuf_root(self) -> bytes:
        """The TUF root metadata devices trust."""
        ...


@dataclass(frozen=True)
class CliFleetAdmin:
    """:class:`FleetAdmin` through ``trustroot`` commands in child processes."""

    product: Product

    def _run(self, *args: str) -> bytes:
        command = [sys.executable, "-m", "trustroot.cli", *args, "--context", str(self.product.context.path)]
        done = subprocess.run(
            command,
            capture_output=True,
            env=dict(os.environ),
            cwd=self.product.root,
            check=False,
            timeout=_CLI_TIMEOUT_S,
        )
        if done.returncode != 0:
            raise AgentError(f"trustroot {' '.join(args[:2])} failed: {done.stderr.decode(errors='replace')[-500:]}")
        return done.stdout

    def _json(self, *args: str) -> dict[str, Any]:
        found = json.loads(self._run(*args, "--json"))
        if not isinstance(found, dict):
            raise AgentError(f"trustroot {' '.join(args[:2])} did not answer a JSON object")
        return found

    def publish(self, image: Path, name: str) -> int:
        channel = self.product.context.model.update.channels[0]
        done = self._json("release", "publish", str(image), "--channel", channel, "--name", name)
        return int(done["release"]["id"])

    def import_batch(self, manifest: Path) -> None:
        self._json("fleet", "import-batch", str(manifest))

    def operator_token(self, scopes: str) -> str:
        return str(self._json("operator", "add", f"simulator-{secrets.token_hex(4)}", "--scope", scopes)["token"])

    def tuf_root(self) -> bytes:
        return self._run("release", "root")


def publish(admin: FleetAdmin, image: bytes, name: str, workdir: Path) -> int:
    """Publish ``image`` (written to ``workdir`` first); the release id."""
    path = workdir / f"{name}-{hashlib.sha256(image).hexdigest()[:12]}.img"
    path.write_bytes(image)
    return admin.publish(path, name)


def provision(
    product: Product, admin: FleetAdmin, count: int, out_dir: Path, factory_image: bytes
) -> list[ProvisionedDevice]:
    """Provision ``count`` devices (the real factory flow; module docstring) and enroll them."""
    from trustroot.keys._interface import public_key_fingerprint
    from trustroot.provision.batch import open_batch, run_batch, station_public_key
    from trustroot.provision.manifest import close_batch
    from trustroot.provision.tokens import authorize_here, production_store

    store = production_store(product)
    bundles = out_dir / "bundles"
    try:
        token = authorize_here(product, store, factory=_FACTORY, count=count)
        recipient = station_public_key(product)
        record = open_batch(
            product,
            store,
            token.token_id,
            count=count,
            out_dir=bundles,
            station_key=public_key_fingerprint(recipient),
        )
        run_batch(product, store, record.batch_id, station_key=recipient)
        closed = close_batch(product, store, record.batch_id, out_dir=out_dir / "manifest")
    finally:
        store.close()
    admin.import_batch(closed.manifest)
    devices = program_devices(product, sorted(bundles.glob("*.bundle")), out_dir, factory_image, admin.tuf_root())
    if len(devices) != count:
        raise AgentError(f"provisioned {len(devices)} devices, {count} were asked for")
    return devices


def program_devices(
    product: Product,
    bundles: Sequence[Path],
    out_dir: Path,
    factory_image: bytes,
    tuf_root: bytes,
    *,
    progress: Callable[[], object] | None = None,
) -> list[ProvisionedDevice]:
    """Program a device directory from each sealed bundle (``provision program``) and enroll its agent.

    ``out_dir/devices/<bundle name>`` receives each device; ``factory_image`` is the signed image in
    its slot, ``tuf_root`` the update repository's root it trusts.
    """
    from trustroot.image.recipes import product_verification_keys
    from trustroot.provision.device_dir import program
    from trustroot.provision.tokens import STATION_KEY

    station = product.keys.unlock(STATION_KEY)
    anchor = product.certificate(ROOT_CA_CERT)
    keys_pem = b"".join(
        key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        for key in product_verification_keys(product)
    )

    def one(bundle: Path) -> ProvisionedDevice:
        directory = out_dir / "devices" / bundle.stem
        done = program(bundle.read_bytes(), station, directory, device_secret=DEVICE_SECRET, trust_anchor=anchor)
        enroll(directory, tuf_root=tuf_root, image_keys_pem=keys_pem, factory_image=factory_image)
        if progress is not None:
            progress()
        return ProvisionedDevice(serial=done.serial, directory=directory, claim_code=done.label.claim_code)

    # the stations of a line work in parallel; here mostly waiting for fsync, which releases the GIL
    # (a key on a PKCS#11 token is used from one thread only: its sessions are not shared)
    workers = _PROGRAMMERS if station.info.backend == "file" else 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, bundles))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServiceProcess:
    """``trustroot serve`` for the scratch product, as a separate process on a fixed loopback port."""

    def __init__(
        self,
        product: Product,
        log_dir: Path,
        *,
        port: int | None = None,
        max_inflight: int = 64,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.product = product
        #: Added to the environment of ``trustroot serve`` (e.g. the passphrases of a product made here).
        self.env = dict(env or {})
        self.port = port or free_port()
        self.log_dir = log_dir
        self.max_inflight = max_inflight
        self.process: subprocess.Popen[bytes] | None = None
        self._starts = 0
        #: Wall seconds the last start took (until the service answered a TLS handshake).
        self.start_wall_s = 0.0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _ready(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.product.pki_dir / ROOT_CA_CERT))
        try:
            with (
                socket.create_connection(("127.0.0.1", self.port), timeout=2) as raw,
                context.wrap_socket(raw, server_hostname="127.0.0.1"),
            ):
                return True
        except OSError:
            return False

    def start(self) -> None:
        began = time.monotonic()
        self._start()
        self.start_wall_s = time.monotonic() - began

    def _start(self) -> None:
        self._starts += 1
        log = self.log_dir / f"serve-{self.port}-{self._starts}.log"
        with log.open("wb") as handle:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "trustroot.cli",
                    "serve",
                    "--context",
                    str(self.product.context.path),
                    "--port",
                    str(self.port),
                    "--max-inflight",
                    str(self.max_inflight),
                ],
                stdout=handle,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                cwd=self.product.context.path.parent,
            )
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AgentError(f"trustroot serve exited with {self.process.returncode}: {log.read_text()[-2000:]}")
            if _LISTENING.search(log.read_text(errors="replace")) and self._ready():
                return
            time.sleep(0.05)
        self.stop()
        raise AgentError(f"trustroot serve did not come up within {_START_TIMEOUT_S:g} s (log: {log})")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def kill(self) -> None:
        """An outage: the service dies at once (SIGKILL), connections drop."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=5)

    @contextlib.contextmanager
    def running(self) -> Iterator[ServiceProcess]:
        self.start()
        try:
            yield self
        finally:
            self.stop()
