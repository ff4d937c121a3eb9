"""Signed releases over TUF, end to end: publish with the product's keys, serve with the REAL service
(``trustroot serve`` over HTTPS), fetch with python-tuf's own ngclient as the device does.

The attack matrix tampers with the files the running service serves (what a compromised mirror or
server could do) and asserts that ngclient refuses, with python-tuf's exception type and reason.
The download deadline is checked against slow-drip servers on loopback.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from securesystemslib.signer import CryptoSigner
from service_fixtures import (
    RunningService,
    issue_device,
    next_serial_number,
    open_test_product,
    raw_exchange,
    register_device,
)
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata
from tuf.ngclient.updater import Updater

from trustroot._tuf_api import MetaFile, Root, Timestamp
from trustroot.agent.tuf_client import (
    ClientTls,
    DeadlineExceededError,
    DeadlineFetcher,
    UpdateClient,
    UpdateClientConfig,
    UpdateClientLimits,
    UpdateRefused,
    UpdateUnavailable,
)
from trustroot.context.schema import RolloutStage
from trustroot.errors import PolicyRefusal, StateError, UsageError
from trustroot.fleet import rollouts
from trustroot.fleet.config import FleetConfig
from trustroot.fleet.releases.publish import publish_release, repository_path
from trustroot.fleet.releases.repository import ExpiryPolicy, ReleaseRepository, keystore_signers
from trustroot.fleet.releases.service import MaintenanceReport, ReleaseMaintenance
from trustroot.fleet.releases.signer import KeyHandleSigner
from trustroot.fleet.service import FleetService
from trustroot.fleet.store.migrate import open_store
from trustroot.image.sign import sign_image_bytes
from trustroot.image.verify import verify_image
from trustroot.keys._interface import Algorithm, KeyRole
from trustroot.keys.filestore import FileBackend
from trustroot.keys.passphrase import fixed_secrets
from trustroot.keys.pkcs11store import Pkcs11Backend
from trustroot.keys.store import KeyStore
from trustroot.product import Product

pytestmark = pytest.mark.integration
pytest_plugins = ["service_fixtures"]

HEADER = 0x200


def signed_image(product: Product, version: str, counter: int, *, size: int = 6000) -> bytes:
    handle = product.keys.unlock(product.keys.active(KeyRole.FIRMWARE_SIGNING).name)
    body = hashlib.sha256(version.encode()).digest() * (size // 32)
    return sign_image_bytes(
        b"\x00" * HEADER + body, handle, version=version, header_size=HEADER, security_counter=counter
    )


@dataclass
class Served:
    """The running service of this module, its product and what was published before it started."""

    running: RunningService
    product: Product
    images: dict[str, bytes]
    pristine: Path

    @property
    def repo(self) -> ReleaseRepository:
        return ReleaseRepository.open(repository_path(self.product), self.product.keys, _policy(self.product))

    @property
    def tls(self) -> ClientTls:
        device = self.running.device
        return ClientTls(ca_file=self.running.root_ca, cert_file=device.cert_path, key_file=device.key_path)

    def path(self, version: str) -> str:
        return f"stable/ap-100-{version}.img"


def _policy(product: Product) -> ExpiryPolicy:
    return ExpiryPolicy.from_context(product.context.model.update)


@pytest.fixture(scope="module")
def served(service: RunningService, tmp_path_factory: pytest.TempPathFactory) -> Served:
    """The session's running ``trustroot serve`` (``service_fixtures``), with two releases published in it."""
    product = open_test_product(service.product_dir)
    images = {"1.0.0+0": signed_image(product, "1.0.0", 1), "1.1.0+0": signed_image(product, "1.1.0", 2)}
    store = open_store(service.database_url)
    try:
        for version, image in images.items():
            path = service.product_dir / f"fw-{version}.bin"
            path.write_bytes(image)
            publish_release(product, path, channel="stable", store=store, name="ap-100")
    finally:
        store.dispose()
    pristine = tmp_path_factory.mktemp("pristine") / "tuf"
    shutil.copytree(repository_path(product), pristine)
    return Served(running=service, product=product, images=images, pristine=pristine)


@pytest.fixture
def tuf(served: Served) -> Iterator[Served]:
    """The module's service with its repository as published (restored after the test tampered with it)."""
    yield served
    live = repository_path(served.product)
    shutil.rmtree(live)
    shutil.copytree(served.pristine, live)


@dataclass
class Device:
    """A device's TUF client state: its metadata cache, and ngclient Updaters over the deadline fetcher."""

    served: Served
    directory: Path
    limits: UpdateClientLimits = field(default_factory=lambda: UpdateClientLimits(download_deadline_s=10))
    fetchers: list[DeadlineFetcher] = field(default_factory=list)

    def close(self) -> None:
        for fetcher in self.fetchers:
            fetcher.close()

    def updater(self) -> Updater:
        url = self.served.running.url
        (self.directory / "metadata").mkdir(parents=True, exist_ok=True)
        return Updater(
            metadata_dir=str(self.directory / "metadata"),
            metadata_base_url=f"{url}/tuf/metadata/",
            target_dir=str(self.directory / "targets"),
            target_base_url=f"{url}/tuf/targets/",
            fetcher=self._fetcher(),
            bootstrap=self.served.repo.root_bytes(1),
        )

    def _fetcher(self) -> DeadlineFetcher:
        self.fetchers.append(DeadlineFetcher.for_tls(self.served.tls, self.limits))
        return self.fetchers[-1]

    def update(self, version: str = "1.1.0+0") -> bytes:
        """One update check as the agent does it: refresh, look the target up, download and verify it."""
        updater = self.updater()
        updater.refresh()
        target = updater.get_targetinfo(self.served.path(version))
        assert target is not None
        return Path(updater.download_target(target)).read_bytes()

    def client(self) -> UpdateClient:
        config = UpdateClientConfig(
            service_url=self.served.running.url,
            metadata_dir=self.directory / "metadata",
            targets_dir=self.directory / "images",
            tls=self.served.tls,
            limits=self.limits,
        )
        return UpdateClient(config, self.served.repo.root_bytes(1))


@pytest.fixture
def device(tuf: Served, tmp_path: Path) -> Iterator[Device]:
    made = Device(tuf, tmp_path / "device")
    yield made
    made.close()


# --- the happy path --------------------------------------------------------------------------------


def test_a_device_downloads_a_verified_release_through_the_service(device: Device) -> None:
    served = device.served
    assert device.update() == served.images["1.1.0+0"]
    with device.client() as client:
        got = client.download(served.path("1.1.0+0"), min_counter=2)
        info = client.check(served.path("1.0.0+0"))
    assert got.path.read_bytes() == served.images["1.1.0+0"]
    assert (got.info.version, got.info.security_counter, got.info.channel) == ("1.1.0+0", 2, "stable")
    assert got.info.sha256 == hashlib.sha256(served.images["1.1.0+0"]).hexdigest()
    assert got.info.support_period_end == served.product.context.model.product.support_period_end.isoformat()  # type: ignore[union-attr]
    assert info.security_counter == 1
    verified = verify_image(
        got.path, keys=[served.product.keys.public_key(served.product.keys.active(KeyRole.FIRMWARE_SIGNING).name)]
    )
    assert verified.security_counter == 2
    assert not list(got.path.parent.glob(".download-*"))


def test_the_device_refuses_a_release_below_its_counter(device: Device) -> None:
    with device.client() as client, pytest.raises(UpdateRefused) as refused:
        client.download(device.served.path("1.0.0+0"), min_counter=2)
    assert refused.value.reason == "downgrade" and refused.value.provision == "5.3-7"
    assert not (device.directory / "images").exists() or not any((device.directory / "images").iterdir())


def test_an_unknown_target_is_refused(device: Device) -> None:
    with device.client() as client, pytest.raises(UpdateRefused, match="not in the signed targets metadata"):
        client.download("stable/ap-100-9.9.9+0.img", min_counter=0)


def test_the_device_follows_a_root_update(device: Device, tmp_path: Path) -> None:
    """Rotating an online key re-signs root (v2, by the offline root key) and every role; devices follow.

    The rotation happens in a copy of the key store (the running service's own keys stay as they are).
    """
    served = device.served
    assert device.update() == served.images["1.1.0+0"]
    shutil.copytree(served.product.keys.directory, tmp_path / "keys")
    secrets = fixed_secrets(os.environ["TRUSTROOT_PASSPHRASE"], os.environ["TRUSTROOT_ROOT_PASSPHRASE"])
    keys = KeyStore(tmp_path / "keys", {"file": FileBackend(tmp_path / "keys", secrets)}, "file")
    keys.rotate(KeyRole.UPDATE_TIMESTAMP)
    repo = ReleaseRepository.open(repository_path(served.product), keys, _policy(served.product))
    assert repo.update_root(keys, datetime.now(UTC)) == 2
    assert repo.update_root(keys, datetime.now(UTC)) is None  # nothing changed since
    assert device.update() == served.images["1.1.0+0"]
    assert (device.directory / "metadata" / "root_history" / "2.root.json").is_file()
    # the old timestamp key no longer counts: metadata it signs is refused
    with pytest.raises(StateError, match="is not the one root trusts"):
        served.repo.refresh(datetime.now(UTC), force=True)


# --- publishing refusals ---------------------------------------------------------------------------


def test_publish_refuses_a_downgrade_an_unsigned_image_and_a_replaced_version(tuf: Served, tmp_path: Path) -> None:
    product = tuf.product
    store = open_store(tuf.running.database_url)
    try:
        old = tmp_path / "old.bin"
        old.write_bytes(signed_image(product, "1.2.0", 1))
        with pytest.raises(PolicyRefusal, match="below 2, the highest already published") as low:
            publish_release(product, old, channel="stable", store=store, name="ap-100")
        assert low.value.provision == "5.3-7"
        foreign = tmp_path / "foreign.bin"
        key = ec.generate_private_key(ec.SECP256R1())
        foreign.write_bytes(
            sign_image_bytes(b"\x00" * HEADER + b"x" * 64, key, version="1.3.0", header_size=HEADER, security_counter=5)
        )
        with pytest.raises(PolicyRefusal, match="is not published") as unsigned:
            publish_release(product, foreign, channel="stable", store=store, name="ap-100")
        assert unsigned.value.provision == "5.3-10"
        again = tmp_path / "again.bin"
        again.write_bytes(signed_image(product, "1.1.0", 2, size=7000))
        with pytest.raises(PolicyRefusal, match="never replaced"):
            publish_release(product, again, channel="stable", store=store, name="ap-100")
        with pytest.raises(UsageError, match="not one of the product's update channels"):
            publish_release(product, old, channel="nightly", store=store)
        same = tmp_path / "same.bin"
        same.write_bytes(tuf.images["1.1.0+0"])
        assert publish_release(product, same, channel="stable", store=store, name="ap-100").already_published
    finally:
        store.dispose()
    records = [r for r in product.evidence.iter_records() if r.type == "release.published"]
    assert [r.subject for r in records] == [tuf.path("1.0.0+0"), tuf.path("1.1.0+0")]
    assert records[0].data["repository_created"] is True and records[1].data["security_counter"] == 2


# --- the attack matrix -----------------------------------------------------------------------------


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.attack")
    tmp.write_bytes(data)
    tmp.replace(path)


def _publish_another(served: Served) -> None:
    """A new release in TUF only (as a later publish does): new targets, snapshot and timestamp versions."""
    image = signed_image(served.product, "1.2.0", 3)
    served.repo.add_target(
        served.path("1.2.0+0"), image, channel="stable", version="1.2.0+0", security_counter=3, now=datetime.now(UTC)
    )


def _timestamp_signed_by(served: Served, sign: Callable[[Metadata[Timestamp]], None], snapshot_version: int) -> None:
    repo = served.repo
    current = repo.timestamp().signed
    metadata = Metadata(
        Timestamp(
            version=current.version + 1,
            expires=datetime.now(UTC) + timedelta(hours=1),
            snapshot_meta=MetaFile(snapshot_version),
        )
    )
    sign(metadata)
    _write(repo.metadata_dir / "timestamp.json", metadata.to_bytes())


def replayed_timestamp(served: Served, device: Device) -> None:
    old = (served.repo.metadata_dir / "timestamp.json").read_bytes()
    _publish_another(served)
    device.update()  # the device now trusts the newer timestamp
    _write(served.repo.metadata_dir / "timestamp.json", old)


def replayed_snapshot(served: Served, device: Device) -> None:
    repo = served.repo
    old = repo.timestamp().signed.snapshot_meta.version
    _publish_another(served)
    new = repo.timestamp().signed.snapshot_meta.version
    _write(repo.metadata_dir / f"{new}.snapshot.json", (repo.metadata_dir / f"{old}.snapshot.json").read_bytes())


def snapshot_rollback_with_stolen_timestamp_key(served: Served, _device: Device) -> None:
    repo = served.repo
    older = repo.timestamp().signed.snapshot_meta.version - 1
    signer = keystore_signers(served.product.keys)("timestamp")
    _timestamp_signed_by(served, lambda md: md.sign(signer), older)


def mix_and_match_targets(served: Served, _device: Device) -> None:
    repo = served.repo
    old = repo.targets().signed.version
    _publish_another(served)
    new = repo.targets().signed.version
    _write(repo.metadata_dir / f"{new}.targets.json", (repo.metadata_dir / f"{old}.targets.json").read_bytes())


def swapped_image(served: Served, _device: Device) -> None:
    """The older, validly signed image in place of the newer one (cut or padded to the same length)."""
    target = next(t for t in served.repo.release_targets() if t.version == "1.1.0+0")
    older = served.images["1.0.0+0"][: target.length].ljust(target.length, b"\xff")
    _write(served.repo.target_file(target), older)


def endless_image(served: Served, _device: Device) -> None:
    """More bytes than the signed length (an endless-data attack)."""
    target = next(t for t in served.repo.release_targets() if t.version == "1.1.0+0")
    _write(served.repo.target_file(target), served.images["1.1.0+0"] + b"\x00" * 4096)


def frozen_metadata(served: Served, _device: Device) -> None:
    """A server that stopped refreshing: its timestamp was signed two days ago for 24 hours."""
    served.repo.refresh(datetime.now(UTC) - timedelta(days=2), force=True)


def foreign_timestamp_key(served: Served, _device: Device) -> None:
    signer = CryptoSigner(ed25519.Ed25519PrivateKey.generate())
    _timestamp_signed_by(served, lambda md: md.sign(signer), served.repo.timestamp().signed.snapshot_meta.version)


def replayed_root(served: Served, _device: Device) -> None:
    _write(served.repo.metadata_dir / "2.root.json", served.repo.root_bytes(1))


ATTACKS: list[tuple[str, Callable[[Served, Device], None], type[Exception], str]] = [
    (
        "replayed-timestamp",
        replayed_timestamp,
        tuf_errors.BadVersionNumberError,
        r"New timestamp version \d+ must be >= \d+",
    ),
    ("replayed-snapshot", replayed_snapshot, tuf_errors.LengthOrHashMismatchError, r"does not match expected"),
    (
        "snapshot-rollback-stolen-timestamp-key",
        snapshot_rollback_with_stolen_timestamp_key,
        tuf_errors.BadVersionNumberError,
        r"New snapshot version must be >= \d+, got version \d+",
    ),
    ("mix-and-match-targets", mix_and_match_targets, tuf_errors.LengthOrHashMismatchError, r"does not match expected"),
    ("swapped-image", swapped_image, tuf_errors.LengthOrHashMismatchError, r"Observed hash \w+ does not match"),
    ("endless-image", endless_image, tuf_errors.DownloadLengthMismatchError, r"exceeding the maximum allowed length"),
    ("freeze-expired-timestamp", frozen_metadata, tuf_errors.ExpiredMetadataError, r"timestamp\.json is expired"),
    (
        "foreign-timestamp-key",
        foreign_timestamp_key,
        tuf_errors.UnsignedMetadataError,
        r"timestamp was signed by 0/1 keys",
    ),
    (
        "replayed-root",
        replayed_root,
        tuf_errors.BadVersionNumberError,
        r"Expected root version 2 instead got version 1",
    ),
]


@pytest.mark.parametrize(("attack", "error", "reason"), [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS])
def test_ngclient_refuses_the_attack(
    device: Device, attack: Callable[[Served, Device], None], error: type[Exception], reason: str
) -> None:
    served = device.served
    assert device.update() == served.images["1.1.0+0"]  # the device is up to date first
    attack(served, device)
    with pytest.raises(error, match=reason):
        device.update()


def test_the_agent_client_reports_an_attack_as_a_refusal(device: Device) -> None:
    swapped_image(device.served, device)
    with device.client() as client, pytest.raises(UpdateRefused) as refused:
        client.download(device.served.path("1.1.0+0"), min_counter=0)
    assert refused.value.reason == "length or hash mismatch" and refused.value.provision == "5.3-10"
    assert isinstance(refused.value.__cause__, tuf_errors.LengthOrHashMismatchError)
    frozen_metadata(device.served, device)
    with device.client() as client, pytest.raises(UpdateRefused, match="freeze"):
        client.check(device.served.path("1.1.0+0"))


def test_refresh_keeps_the_metadata_fresh(tuf: Served) -> None:
    """What the service's periodic refresh does: re-sign the timestamp once half its life is gone."""
    repo = tuf.repo
    before = {s.role: s for s in repo.status()}
    now = datetime.now(UTC)
    assert repo.refresh(now) == []
    assert repo.refresh(before["timestamp"].expires - timedelta(hours=11)) == ["timestamp"]
    assert repo.refresh(before["snapshot"].expires - timedelta(days=3)) == ["snapshot", "timestamp"]
    after = {s.role: s for s in repo.status()}
    assert after["timestamp"].version == before["timestamp"].version + 2
    assert after["snapshot"].version == before["snapshot"].version + 1
    assert after["targets"].version == before["targets"].version


def test_the_service_maintenance_refreshes_the_timestamp_and_advances_rollouts(tuf: Served) -> None:
    expires = {s.role: s.expires for s in tuf.repo.status()}
    now = [datetime.now(UTC)]
    service = FleetService(
        store=open_store(tuf.running.database_url),
        config=FleetConfig(database_url=tuf.running.database_url, state_dir=tuf.product.state_dir),
        context=tuf.product.context.model,
        pki_dir=tuf.product.pki_dir,
        keys=tuf.product.keys,
        clock=lambda: now[0],
    )
    try:
        maintenance = ReleaseMaintenance(service)
        assert maintenance.interval_s == 3 * 3600  # a quarter of the 12-hour renewal window of a 24-hour timestamp
        assert maintenance.tick() == MaintenanceReport([], [])
        now[0] = expires["timestamp"] - timedelta(hours=6)
        assert maintenance.tick() == MaintenanceReport(["timestamp"], [])
        ticking = ReleaseMaintenance(service, interval=timedelta(seconds=0.05))
        ticking.start()
        ticking.start()  # idempotent
        time.sleep(0.2)
        ticking.stop()
    finally:
        service.store.dispose()


# --- the /tuf/ routes ------------------------------------------------------------------------------


def test_the_routes_serve_metadata_and_targets_with_their_types(tuf: Served) -> None:
    target = next(t for t in tuf.repo.release_targets() if t.version == "1.1.0+0")
    image_url = f"/tuf/targets/stable/{target.sha256}.ap-100-1.1.0+0.img"
    with tuf.running.client() as client:  # no client certificate needed
        root = client.get("/tuf/metadata/1.root.json")
        timestamp = client.get("/tuf/metadata/timestamp.json")
        image = client.get(image_url)
        head = client.head(image_url)
    assert root.status_code == 200 and root.headers["content-type"] == "application/json"
    assert json.loads(root.content)["signed"]["_type"] == "root"
    assert root.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert timestamp.headers["cache-control"] == "no-cache"
    assert image.status_code == 200 and image.content == tuf.images["1.1.0+0"]
    assert image.headers["content-type"] == "application/octet-stream"
    assert image.headers["x-content-type-options"] == "nosniff"
    assert head.status_code == 200 and head.content == b""


@pytest.mark.parametrize(
    "path",
    [
        "/tuf/",
        "/tuf/metadata/",
        "/tuf/targets/",
        "/tuf/targets/stable",
        "/tuf/targets/stable/",
        "/tuf/metadata/99.root.json",
        "/tuf/metadata/root.json",
        "/tuf/metadata/1.timestamp.json",
        "/tuf/metadata/.lock",
        "/tuf/metadata/..%2F..%2Fkeys%2Findex.json",
        "/tuf/targets/..%2F..%2Fkeys%2Findex.json",
        "/tuf/targets/%2e%2e/%2e%2e/keys/index.json",
        "/tuf/targets/stable/../../metadata/1.root.json",
        "/tuf/targets/stable/%2e%2e/%2e%2e/%2e%2e/security-context.toml",
        "/tuf/targets/.lock",
        "/tuf/targets/stable/.hidden",
        "/tuf/targets/a/b/c/d/e",
    ],
)
def test_nothing_but_the_repository_is_served(tuf: Served, path: str) -> None:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    reply = raw_exchange(tuf.running.port, tuf.running.ssl_context(), request)
    status = reply.split(b"\r\n", 1)[0]
    assert status.split()[1] == b"404", (path, reply[:300])
    assert b"index.json" not in reply.split(b"\r\n\r\n", 1)[1]


def test_a_symlink_out_of_the_repository_is_not_followed(tuf: Served) -> None:
    link = repository_path(tuf.product) / "targets" / "stable" / "escape.img"
    link.symlink_to(tuf.product.keys.index_path)
    with tuf.running.client() as client:
        assert client.get("/tuf/targets/stable/escape.img").status_code == 404


# --- the whole loop: check-in offer, TUF download, result ------------------------------------------


def test_check_in_offers_the_rollout_and_the_device_fetches_it(device: Device) -> None:
    served = device.served
    own = issue_device(served.running.product_dir, next_serial_number(), product=served.product)
    register_device(served.running.database_url, own)
    service = FleetService(
        store=open_store(served.running.database_url),
        config=FleetConfig(database_url=served.running.database_url, state_dir=served.product.state_dir),
        context=served.product.context.model,
        pki_dir=served.product.pki_dir,
        keys=served.product.keys,
    )
    try:
        release = next(r for r in rollouts.list_releases(service) if r.version == "1.1.0+0")
        view = rollouts.start_rollout(service, release.id, actor="operator:test", stages=[RolloutStage(percent=100)])
        body = {"firmware_version": "1.0.0+0", "security_counter": 1}
        with served.running.client(own) as client:
            answer = client.post("/api/v1/device/check-in", json=body)
            assert answer.status_code == 200, answer.text
            offer = answer.json()["offer"]
            assert offer["release_id"] == release.id and offer["rollout_id"] == view.id, offer
            with device.client() as updates:
                got = updates.download(offer["target_path"], min_counter=body["security_counter"])
            assert got.info.sha256 == offer["sha256"]
            result = {"version": "1.1.0+0", "security_counter": 2, "status": "installed"}
            done = client.post(
                "/api/v1/device/check-in",
                json={"firmware_version": "1.1.0+0", "security_counter": 2, "install_results": [result]},
            )
            assert done.status_code == 200 and done.json()["offer"] is None
        status = rollouts.get_rollout(service, view.id)
        assert (status.offered, status.succeeded, status.failed) == (1, 1, 0)
    finally:  # the shared service's other devices must not be offered anything
        for active in rollouts.list_rollouts(service, active_only=True):
            rollouts.abort_rollout(service, active.id, actor="operator:test")
        service.store.dispose()


# --- the total download deadline -------------------------------------------------------------------


@dataclass
class SlowServer:
    """A TLS server on loopback that answers every request with a body sent one byte at a time."""

    context: ssl.SSLContext
    ca_file: Path
    delay_s: float = 0.05
    stall_after_s: float | None = None
    body_size: int = 100_000
    stop: threading.Event = field(default_factory=threading.Event)
    sock: socket.socket = field(init=False)
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                raw, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._answer, args=(raw,), daemon=True).start()

    def _answer(self, raw: socket.socket) -> None:
        try:
            with self.context.wrap_socket(raw, server_side=True) as tls:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += tls.recv(4096)
                tls.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {self.body_size}\r\n\r\n".encode())
                started = time.monotonic()
                for _ in range(self.body_size):
                    if self.stop.is_set():
                        return
                    if self.stall_after_s is not None and time.monotonic() - started > self.stall_after_s:
                        self.stop.wait(30)  # hold the connection open, send nothing
                        return
                    tls.sendall(b"x")
                    self.stop.wait(self.delay_s)
        except OSError:
            return

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture(scope="module")
def slow_tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    """A throwaway self-signed server certificate for 127.0.0.1."""
    directory = tmp_path_factory.mktemp("slow")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "slow drip")])
    now = datetime.now(UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path


@pytest.fixture
def slow_server(slow_tls: tuple[ssl.SSLContext, Path], request: pytest.FixtureRequest) -> Iterator[SlowServer]:
    options: dict[str, float] = getattr(request, "param", {})
    server = SlowServer(slow_tls[0], slow_tls[1], **options)  # type: ignore[arg-type]
    yield server
    server.close()


def _fetcher(server: SlowServer, deadline_s: float) -> DeadlineFetcher:
    client = httpx.Client(verify=ClientTls(ca_file=server.ca_file).ssl_context(), trust_env=False)
    return DeadlineFetcher(client, deadline_s=deadline_s, gap_timeout_s=5.0)


def test_a_slow_drip_download_stops_at_the_deadline(slow_server: SlowServer) -> None:
    """A byte every 50 ms never trips ngclient's gap timeout; the total deadline stops it."""
    fetcher = _fetcher(slow_server, deadline_s=1.0)
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError, match="not downloaded within the deadline of 1 s"):
        fetcher.download_bytes(f"{slow_server.url}/tuf/targets/stable/x.img", 200_000)
    elapsed = time.monotonic() - started
    fetcher.close()
    assert 0.9 <= elapsed < 2.0, elapsed


@pytest.mark.parametrize("slow_server", [{"stall_after_s": 0.5}], indirect=True)
def test_a_stalled_download_stops_at_the_deadline_not_the_gap_timeout(slow_server: SlowServer) -> None:
    """Silence after a drip: the watchdog ends the blocked read at the deadline (the gap timeout is 5 s)."""
    fetcher = _fetcher(slow_server, deadline_s=1.5)
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        fetcher.download_bytes(f"{slow_server.url}/tuf/targets/stable/x.img", 200_000)
    elapsed = time.monotonic() - started
    fetcher.close()
    assert 1.4 <= elapsed < 2.5, elapsed


def test_the_agent_client_speaks_https_only(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="https:// only"):
        UpdateClientConfig(
            service_url="http://127.0.0.1:1",
            metadata_dir=tmp_path,
            targets_dir=tmp_path,
            tls=ClientTls(ca_file=tmp_path / "ca.pem"),
        )


def test_the_agent_client_gives_up_on_a_slow_server(slow_server: SlowServer, tuf: Served, tmp_path: Path) -> None:
    limits = UpdateClientLimits(metadata_deadline_s=1.0, gap_timeout_s=5.0)
    config = UpdateClientConfig(
        service_url=slow_server.url,
        metadata_dir=tmp_path / "m",
        targets_dir=tmp_path / "t",
        tls=ClientTls(ca_file=slow_server.ca_file),
        limits=limits,
    )
    started = time.monotonic()
    with UpdateClient(config, tuf.repo.root_bytes(1)) as client, pytest.raises(UpdateUnavailable) as gave_up:
        client.check(tuf.path("1.1.0+0"))
    assert isinstance(gave_up.value.__cause__, DeadlineExceededError)
    assert time.monotonic() - started < 2.5


def _mock_fetcher(handler: Callable[[httpx.Request], httpx.Response]) -> DeadlineFetcher:
    return DeadlineFetcher(httpx.Client(transport=httpx.MockTransport(handler)), deadline_s=5.0)


def test_the_fetcher_asks_for_identity_and_reads_the_bytes_as_sent() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, stream=httpx.ByteStream(b"x" * 70_000))

    assert _mock_fetcher(handler).download_bytes("https://fleet.test/tuf/metadata/timestamp.json", 70_000) == (
        b"x" * 70_000
    )
    assert seen[0].headers["accept-encoding"] == "identity"


@pytest.mark.parametrize(
    ("response", "error", "reason"),
    [
        (httpx.Response(404), tuf_errors.DownloadHTTPError, "HTTP 404"),
        (
            httpx.Response(302, headers={"Location": "https://elsewhere.test/"}),
            tuf_errors.DownloadHTTPError,
            "HTTP 302",
        ),
        (
            httpx.Response(200, content=b"\x1f\x8b", headers={"Content-Encoding": "gzip"}),
            tuf_errors.DownloadError,
            "content-encoded",
        ),
        (httpx.Response(200, stream=httpx.ByteStream(b"y" * 101)), tuf_errors.DownloadLengthMismatchError, "exceeding"),
    ],
    ids=["not-found", "redirect", "compressed", "too-long"],
)
def test_the_fetcher_refuses(response: httpx.Response, error: type[Exception], reason: str) -> None:
    with pytest.raises(error, match=reason) as caught:
        _mock_fetcher(lambda _request: response).download_bytes("https://fleet.test/tuf/metadata/2.root.json", 100)
    if isinstance(caught.value, tuf_errors.DownloadHTTPError):
        assert caught.value.status_code == response.status_code


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (httpx.ConnectError("refused"), tuf_errors.DownloadError),
        (httpx.ConnectTimeout("slow"), tuf_errors.SlowRetrievalError),
    ],
    ids=["connect", "timeout"],
)
def test_the_fetcher_wraps_network_failures(failure: Exception, error: type[Exception]) -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        raise failure

    with pytest.raises(error):
        _mock_fetcher(handler).download_bytes("https://fleet.test/tuf/metadata/timestamp.json", 100)


def test_the_fetcher_deadline_can_be_changed_for_a_block() -> None:
    fetcher = _mock_fetcher(lambda _request: httpx.Response(200))
    with fetcher.deadline(600):
        assert fetcher.deadline_s == 600
    assert fetcher.deadline_s == 5.0
    with pytest.raises(UsageError, match="must be positive"):
        UpdateClientLimits(download_deadline_s=0)


# --- TUF metadata signed on a PKCS#11 token --------------------------------------------------------


@pytest.mark.parametrize("algorithm", [Algorithm.ED25519, Algorithm.ECDSA_P256], ids=str)
def test_tuf_metadata_signed_on_the_token_verifies(
    pkcs11_backend: Pkcs11Backend, tmp_path: Path, algorithm: Algorithm
) -> None:
    keys = KeyStore(tmp_path / "keys", {"pkcs11": pkcs11_backend}, "pkcs11")
    info = keys.create(KeyRole.OTHER, algorithm, name=f"tuf-{uuid.uuid4().hex[:12]}")
    signer = KeyHandleSigner(keys.unlock(info.name))
    root = Root(expires=datetime.now(UTC) + timedelta(days=1))
    root.add_key(signer.public_key, Timestamp.type)
    metadata = Metadata(Timestamp(expires=datetime.now(UTC) + timedelta(hours=1)))
    metadata.sign(signer)
    root.verify_delegate(Timestamp.type, metadata.signed_bytes, metadata.signatures)
    # and it round-trips through the serialised form a client reads
    again = Metadata.from_bytes(metadata.to_bytes())
    root.verify_delegate(Timestamp.type, again.signed_bytes, again.signatures)


# --- the command line ------------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """``trustroot`` with the release and rollout groups mounted as cli/app.py mounts them."""
    import typer

    from trustroot.cli import app as app_module
    from trustroot.cli import release_cmd
    from trustroot.cli.main import main

    original = app_module.build_app

    def build() -> typer.Typer:
        app = original()
        app.add_typer(release_cmd.app, name="release")
        app.add_typer(release_cmd.rollout_app, name="rollout")
        return app

    monkeypatch.setattr(app_module, "build_app", build)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_the_release_and_rollout_commands(cli: Callable[..., tuple[int, str, str]], product_dir: Path) -> None:
    product = open_test_product(product_dir)
    first, low = product_dir / "fw-1.2.0.bin", product_dir / "fw-1.0.1.bin"
    first.write_bytes(signed_image(product, "1.2.0", 3))
    low.write_bytes(signed_image(product, "1.0.1", 2))
    ctx = ("--context", str(product_dir / "security-context.toml"))
    code, out, _ = cli("release", "publish", str(first), "--channel", "stable", *ctx, "--json")
    assert code == 0, out
    published = json.loads(out)
    assert published["created_repository"] is True
    release_id = published["release"]["id"]
    assert published["release"]["target_path"] == "stable/acme-plug-1.2.0+0.img"  # the model, as a slug
    code, _, err = cli("release", "publish", str(low), *ctx)
    assert code == 1 and "below 3" in err and "5.3-7" in err
    code, _, err = cli("release", "publish", str(first), "--channel", "nightly", *ctx)
    assert code == 2 and "not one of the product's update channels" in err
    code, out, _ = cli("release", "list", *ctx, "--json")
    listed = json.loads(out)
    assert [r["version"] for r in listed["releases"]] == ["1.2.0+0"]
    assert [t["role"] for t in listed["tuf"]] == ["root", "targets", "snapshot", "timestamp"]
    code, out, _ = cli("rollout", "start", str(release_id), *ctx, "--json")
    assert code == 0 and json.loads(out)["state"] == "active"
    rollout_id = str(json.loads(out)["id"])
    assert cli("rollout", "pause", rollout_id, "--reason", "calls", *ctx)[0] == 0
    code, _, err = cli("rollout", "advance", rollout_id, *ctx)
    assert code == 1 and "is paused cannot be advanced" in err
    assert cli("rollout", "resume", rollout_id, *ctx)[0] == 0
    assert cli("rollout", "advance", rollout_id, *ctx)[0] == 0
    code, out, _ = cli("rollout", "status", rollout_id, *ctx)
    assert code == 0 and "stage 2/4 at 10%" in out
    assert cli("rollout", "abort", rollout_id, *ctx)[0] == 0
    code, out, _ = cli("rollout", "status", *ctx, "--json")
    assert json.loads(out) == []
    code, out, _ = cli("rollout", "status", "--all", *ctx, "--json")
    assert [r["state"] for r in json.loads(out)] == ["aborted"]
    code, out, _ = cli("release", "root", "--output", str(product_dir / "root.json"), *ctx)
    assert code == 0 and json.loads((product_dir / "root.json").read_bytes())["signed"]["version"] == 1
    code, out, err = cli("release", "root", "--resign", *ctx)
    assert code == 0 and "signed TUF root v2" in err and json.loads(out)["signed"]["version"] == 2


def test_every_release_command_follows_the_conventions() -> None:
    import typer.main

    from trustroot.cli import release_cmd

    for group in (release_cmd.app, release_cmd.rollout_app):
        for name, command in typer.main.get_command(group).commands.items():  # type: ignore[attr-defined]
            options = {opt for param in command.params for opt in getattr(param, "opts", [])}
            assert {"--context", "--quiet", "--json"} <= options, name
            assert "Example: trustroot " in (command.help or ""), name


def test_the_server_runs_the_release_maintenance(product_dir: Path) -> None:
    """``trustroot serve`` keeps the short-lived TUF timestamp fresh: its runtime carries the maintenance."""
    from service_fixtures import open_test_product

    from trustroot.fleet.releases.service import ReleaseMaintenance
    from trustroot.fleet.server import ServeSettings, build_runtime, prepare

    settings = ServeSettings(
        context=str(product_dir / "security-context.toml"), app_factory="trustroot.web.app:create_app"
    )
    product, config = prepare(settings, open_test_product(product_dir))  # what 'trustroot serve' does first
    runtime = build_runtime(settings, product, config)
    try:
        maintenance = runtime.service.parts["release_maintenance"]
        assert isinstance(maintenance, ReleaseMaintenance)
        assert 0 < maintenance.interval_s <= 24 * 3600 / 2  # at most half the timestamp's lifetime
    finally:
        runtime.service.store.dispose()
