"""Production batches: flow (b) devices made in chunks, and flow (a) certificates for device-made keys.

A batch belongs to one token and one factory; opening it reserves its count of the token's quota
(``batch.opened`` evidence). Flow (b) then makes the devices in *chunks*, each chunk ONE
transaction of the production store, so the batch streams: memory is flat in the batch size::

    BEGIN IMMEDIATE
      token: not expired at now, clock not set back; batch: open, room for k more
      allocate k sequence numbers (allocator += k)
      per device (in this process, or split over worker processes with their own unlocked keys):
          key -> certificate (issuing CA) -> password (factory secret, or random) -> claim code
          -> DeviceMaterial sealed to the station key -> <out>/<serial>.bundle (a new file, 0600)
      syncfs: the chunk's bundle files and directory entries are durable
      INSERT k device records (evidence pending); batch.provisioned += k; token.spent += k,
      re-signed by the station's signing key
    COMMIT
    append k device.provisioned evidence records (flags cleared in the next transaction)

Crash consistency (a process killed at any point):

- before COMMIT: the chunk rolls back; its sequence numbers are not consumed (the next run makes
  the same serials again) and its bundle files are *orphans*: a run removes every bundle of a serial
  at or beyond the allocator, under the write lock, before it makes devices;
- after COMMIT: every recorded device has its complete bundle on disk (written and synced before
  the commit); evidence still pending is appended by the next run, once the run that made the devices
  is known dead (its ``runs/<run>.lock`` is free), skipping records already in the log.

``chunk`` trades throughput for what a crash costs: a larger chunk commits (fsyncs) less often and
holds the write lock longer; a crash loses at most one chunk of work, never a device record.

Flow (a): a device made its key and sends a PKCS#10 request naming its serial, which must be either
a serial reserved for the factory (``reserve_serials``, e.g. by ``trustroot provision batch --csr``)
or the next serial the allocator gives (allocated in the same transaction as the certificate).

Errors: :class:`~trustroot.provision.store.QuotaExceededError`,
:class:`~trustroot.provision.tokens.InvalidProductionToken`,
:class:`~trustroot.provision.store.ProductionStateError`, :class:`~trustroot.errors.PolicyRefusal`
(a duplicate or foreign serial, a missing factory secret), ``CsrError`` (identity.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import fcntl
import hashlib
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import NameOID

from trustroot._fsutil import fsync_dir
from trustroot.errors import (
    KeyFileCorruptError,
    KeyNotFoundError,
    KeyStateError,
    PolicyRefusal,
    StateError,
    TrustrootError,
    UnreadableInputError,
    UsageError,
)
from trustroot.evidence import format_time
from trustroot.keys._interface import KeyHandle, KeyRole
from trustroot.product import ISSUING_CA_CERT, ROOT_CA_CERT, Product, open_product
from trustroot.provision.bundle import BundleSealer, DeviceMaterial, context_excerpt
from trustroot.provision.claim import claim_code_hash, generate_claim_code
from trustroot.provision.identity import (
    MAX_CSR_BYTES,
    CsrError,
    DeviceCertificateIssuer,
    SerialError,
    format_serial,
    generate_device_key,
    parse_serial,
    sign_csr,
    validate_serial,
)
from trustroot.provision.passwords import derive_device_password, password_verifier, random_device_password
from trustroot.provision.store import (
    BatchRecord,
    DeviceRecord,
    NewDevice,
    ProductionStateError,
    ProductionStore,
    QuotaExceededError,
    TokenRecord,
    Transaction,
)
from trustroot.provision.tokens import (
    STATION_KEY,
    STATION_SIGNING_KEY,
    InvalidProductionToken,
    authorize_here,
    check_clock,
    check_token_state,
    ensure_station_keys,
    evidence_records,
    import_token,
    sign_token_state,
    validate_factory,
)

__all__ = [
    "BUNDLE_SUFFIX",
    "DEFAULT_CHUNK",
    "TEST_PAUSE_ENV",
    "BatchResult",
    "CsrResult",
    "DeviceMaker",
    "flush_pending_evidence",
    "missing_bundles",
    "open_batch",
    "production_run",
    "reserve_serials",
    "run_batch",
    "sign_device_csr",
    "station_public_key",
    "sync_directory",
    "unlock_role",
]

_log = logging.getLogger(__name__)

#: Devices per transaction unless the caller says otherwise.
DEFAULT_CHUNK: Final = 64
#: Every bundle file is ``<serial>`` + this suffix in the batch's output directory.
BUNDLE_SUFFIX: Final = ".bundle"
#: TEST ONLY: seconds to sleep inside each chunk's transaction after its bundles are written, before
#: the commit (lets the crash tests kill a batch at the worst moment). Logs a warning when set.
TEST_PAUSE_ENV: Final = "TRUSTROOT_TEST_ONLY_CHUNK_PAUSE_S"
_MAX_WORKERS = 64

ProgressHook = Callable[[int], None]


# ------------------------------------------------------------------------------------------ the maker


def station_public_key(product: Product, pem_path: Path | None = None) -> PublicKeyTypes:
    """The key bundles are sealed to: ``pem_path`` (another station's public key) or this station's ``station`` key."""
    if pem_path is None:
        ensure_station_keys(product)
        return product.keys.public_key(STATION_KEY)
    try:
        data = pem_path.read_bytes()
    except OSError as exc:
        raise UnreadableInputError(f"station key {pem_path}: cannot be read ({exc.strerror})") from exc
    try:
        return serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise UsageError(f"station key {pem_path}: not a PEM public key") from exc


def unlock_role(product: Product, role: KeyRole, purpose: str, provision: str | None = None) -> KeyHandle:
    """Unlock the active key of ``role`` once, turning a missing or unusable key into one clear refusal."""
    try:
        info = product.keys.active(role)
        return product.keys.unlock(info.name)
    except (KeyNotFoundError, KeyFileCorruptError, UnreadableInputError, KeyStateError) as exc:
        raise PolicyRefusal(
            f"the {role.value} key cannot be used, so {purpose}: {exc.message}",
            provision=provision,
            hint=f"restore the {role.value} key from its backup (trustroot keys restore) before provisioning",
        ) from exc


class DeviceMaker:
    """Makes one device's material with keys unlocked ONCE (issuing CA; factory secret when derived).

    No database here: :meth:`make` writes the device's bundle and returns what the store records.
    """

    def __init__(self, product: Product, out_dir: Path | None, station_key: PublicKeyTypes | None) -> None:
        model = product.context.model
        self.product_name = model.product.name
        self.model = model.product.model
        self.manufacturer = model.product.manufacturer
        self.prefix = model.identity.serial_prefix
        self.digits = model.identity.serial_digits
        self.settings = model.identity.certificate
        self.password = model.identity.password
        self.service_url = model.communication.service_url
        self.excerpt = context_excerpt(model)
        if self.password.mode == "shared":
            raise PolicyRefusal(
                "[identity.password] mode = 'shared' gives every device the same password: refused",
                provision="5.1-1",
                hint="use mode = 'derived' (the default) or 'random'",
            )
        self.issuing = unlock_role(product, KeyRole.ISSUING_CA, "no device certificate can be issued")
        self.issuing_cert = product.certificate(ISSUING_CA_CERT)
        self.issuing_pem = self.issuing_cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
        self.root_pem = product.certificate(ROOT_CA_CERT).public_bytes(serialization.Encoding.PEM).decode("ascii")
        self.factory: KeyHandle | None = None
        if self.password.mode == "derived":
            self.factory = unlock_role(
                product, KeyRole.FACTORY_SECRET, "device passwords cannot be derived", provision="5.1-1"
            )
        self.out_dir = out_dir
        self.station_key = station_key
        self.ca_chain_pem = (self.issuing_pem, self.root_pem)
        self.certificates = DeviceCertificateIssuer(
            self.issuing,
            self.issuing_cert,
            model=self.model,
            manufacturer=self.manufacturer,
            settings=self.settings,
        )
        self.sealer = BundleSealer(station_key) if station_key is not None else None

    def serial(self, sequence: int) -> str:
        return format_serial(self.prefix, self.digits, sequence)

    def credentials(self, serial: str) -> tuple[str | None, str | None, str, str]:
        """(password, verifier, claim code, claim-code hash) of a device.

        A derived password keeps no verifier: the factory secret re-derives it, and a scrypt
        verifier per device would cost more than making the device. A random one keeps a verifier.
        """
        mode = self.password.mode
        password: str | None = None
        verifier: str | None = None
        if mode == "derived" and self.factory is not None:
            password = derive_device_password(
                self.factory,
                self.product_name,
                serial,
                alphabet=self.password.alphabet,
                length=self.password.length,
                min_entropy_bits=self.password.min_entropy_bits,
            )
        elif mode == "random":
            password = random_device_password(
                serial,
                alphabet=self.password.alphabet,
                length=self.password.length,
                min_entropy_bits=self.password.min_entropy_bits,
            )
            verifier = password_verifier(password)
        claim = generate_claim_code()
        return password, verifier, claim, claim_code_hash(claim)

    def make(self, sequence: int, now: datetime) -> NewDevice:
        """Flow (b): key, certificate, credentials, sealed bundle written to the output directory."""
        if self.out_dir is None or self.sealer is None:
            raise UsageError("this device maker has no output directory or station key (flow (a) only)")
        serial = self.serial(sequence)
        key = generate_device_key(self.settings.algorithm)
        cert = self.certificates.issue(key.public_key(), serial, now=now)
        password, verifier, claim, claim_hash = self.credentials(serial)
        material = DeviceMaterial.for_new_device(
            serial=serial,
            private_key=key,
            certificate=cert,
            ca_chain_pem=self.ca_chain_pem,
            password=password,
            claim_code=claim,
            service_url=self.service_url,
            context=self.excerpt,
        )
        name = serial + BUNDLE_SUFFIX
        _write_bundle(self.out_dir, name, self.sealer.seal(material))
        der = cert.public_bytes(serialization.Encoding.DER)
        return NewDevice(
            sequence=sequence,
            serial=serial,
            cert_fingerprint=hashlib.sha256(der).hexdigest(),
            cert_serial=format(cert.serial_number, "x"),
            certificate=der,
            claim_hash=claim_hash,
            password_verifier=verifier,
            bundle=name,
        )

    def make_range(self, first: int, count: int, now: datetime) -> list[NewDevice]:
        return [self.make(sequence, now) for sequence in range(first, first + count)]


def _write_bundle(directory: Path, name: str, data: bytes) -> None:
    """Write one new bundle file (0600, never over an existing file); made durable per chunk by
    :func:`sync_directory`.

    No temp file and rename: a file cut short by a crash belongs to a chunk that was never
    committed, and the next run removes it with the other orphans before it makes that serial again.
    """
    path = directory / name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise ProductionStateError(
            f"bundle {path} exists already: refusing to overwrite a device's bundle",
            hint="another batch writes to the same directory with overlapping serials, or the store was restored",
        ) from None
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function: Callable[[int], int] = libc.syncfs
    except (OSError, AttributeError):  # not Linux
        return None
    return function


_SYNCFS = _load_syncfs()


def sync_directory(directory: Path) -> None:
    """Make every file written in ``directory`` durable, with one call instead of one fsync per file.

    ``syncfs(2)`` flushes the file system holding the directory (Linux); elsewhere ``sync(2)``.
    Per-file fsync costs a journal commit each (milliseconds on many disks); one sync per chunk of
    bundles costs the same once. The directory entries (the renames) are flushed with it.
    """
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _SYNCFS is None or _SYNCFS(fd) != 0:
            os.sync()
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------- the engines


@dataclass(frozen=True)
class _WorkerSettings:
    context: Path
    out_dir: Path
    station_pem: bytes


_WORKER: dict[str, DeviceMaker] = {}
_WORKER_FAILURE: list[TrustrootError] = []


def _worker_init(settings: _WorkerSettings) -> None:
    """In a worker process: open the product and unlock its keys once (secrets from the environment).

    A refusal is kept and raised by every task (an initializer that raises would break the pool
    and lose the message).
    """
    try:
        product = open_product(settings.context)
        station = serialization.load_pem_public_key(settings.station_pem)
        _WORKER["maker"] = DeviceMaker(product, settings.out_dir, station)
    except TrustrootError as exc:
        _WORKER_FAILURE.append(exc)


def _worker_ready() -> None:
    if _WORKER_FAILURE:
        raise _WORKER_FAILURE[0]


def _worker_make(first: int, count: int, now: datetime) -> list[NewDevice]:
    _worker_ready()
    return _WORKER["maker"].make_range(first, count, now)


class _Engine:
    """Makes the devices of a chunk: here (``workers`` = 1) or over worker processes."""

    def __init__(self, product: Product, out_dir: Path, station_key: PublicKeyTypes, workers: int) -> None:
        self._maker: DeviceMaker | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._workers = workers
        if workers == 1:
            self._maker = DeviceMaker(product, out_dir, station_key)
            return
        pem = station_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        settings = _WorkerSettings(product.context.path, out_dir, pem)
        self._pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=get_context("spawn"), initializer=_worker_init, initargs=(settings,)
        )
        try:  # start every worker and unlock its keys now, before any transaction holds the store
            for future in [self._pool.submit(_worker_ready) for _ in range(workers)]:
                future.result()
        except BaseException:
            self.close()
            raise

    def submit(self, first: int, count: int, now: datetime) -> Callable[[], list[NewDevice]]:
        """Start making ``count`` devices from sequence ``first``; the returned call waits for them."""
        if self._maker is not None:
            maker = self._maker
            return lambda: maker.make_range(first, count, now)
        if self._pool is None:  # pragma: no cover - one of the two is always set
            raise StateError("device engine closed")
        share, extra = divmod(count, self._workers)
        futures: list[Future[list[NewDevice]]] = []
        start = first
        for index in range(self._workers):
            size = share + (1 if index < extra else 0)
            if size:
                futures.append(self._pool.submit(_worker_make, start, size, now))
                start += size

        def collect() -> list[NewDevice]:
            made: list[NewDevice] = []
            try:
                for future in futures:
                    made.extend(future.result())
            except BrokenProcessPool as exc:
                raise ProductionStateError(f"a device worker process died ({exc})") from exc
            return made

        return collect

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


# ------------------------------------------------------------------------------ runs and the evidence outbox


@contextlib.contextmanager
def production_run(product: Product, store: ProductionStore) -> Iterator[str]:
    """A run of this process (an id whose lock it holds while it lives); flushes dead runs' evidence first."""
    runs = store.path.parent / "runs"
    runs.mkdir(parents=True, exist_ok=True, mode=0o700)
    run_id = secrets.token_hex(8)
    lock_path = runs / f"{run_id}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        flush_pending_evidence(product, store, own_run=run_id)
        yield run_id
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock_path.unlink()
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _run_is_dead(runs: Path, run_id: str | None) -> bool:
    if run_id is None:
        return True
    lock_path = runs / f"{run_id}.lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    with contextlib.suppress(FileNotFoundError):
        lock_path.unlink()
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    return True


def _device_evidence(
    product: Product,
    device: DeviceRecord | NewDevice,
    *,
    batch: str,
    token: str,
    factory: str,
    when: datetime,
    flow: str,
) -> dict[str, object]:
    return {
        "serial": device.serial,
        "sequence": device.sequence,
        "certificate": device.cert_fingerprint,
        "certificate_serial": device.cert_serial,
        "claim_code_hash": device.claim_hash,
        "password": product.context.model.identity.password.mode,
        "batch": batch,
        "token": token,
        "factory": factory,
        "flow": flow,
        "provisioned": format_time(when),
    }


def _append_evidence(
    product: Product, devices: Sequence[NewDevice], *, batch: BatchRecord, when: datetime, flow: str
) -> None:
    items = [
        (
            "device.provisioned",
            device.serial,
            _device_evidence(
                product, device, batch=batch.batch_id, token=batch.token_id, factory=batch.factory, when=when, flow=flow
            ),
        )
        for device in devices
    ]
    _record_many(product, items)


def _record_many(product: Product, items: Sequence[tuple[str, str, dict[str, object]]]) -> None:
    """Append evidence records; with ``EvidenceLog.append_many`` (one lock, one write, one fsync) when it exists."""
    append_many = getattr(product.evidence, "append_many", None)
    if append_many is not None:
        append_many(items, product.actor)
        return
    for type_, subject, data in items:
        product.record(type_, subject, data)


def flush_pending_evidence(product: Product, store: ProductionStore, *, own_run: str | None = None) -> int:
    """Append the ``device.provisioned`` records that dead runs committed but did not log; return how many.

    Records already in the log (a run killed after appending, before clearing its flags) are not
    appended twice.
    """
    pending = [d for d in store.pending_evidence() if d.run != own_run]
    if not pending:
        return 0
    runs = store.path.parent / "runs"
    dead = {run for run in {d.run for d in pending} if _run_is_dead(runs, run)}
    pending = [d for d in pending if d.run in dead]
    if not pending:
        return 0
    wanted = {d.cert_fingerprint for d in pending}
    logged = {
        str(r["data"].get("certificate"))
        for r in evidence_records(product, "device.provisioned")
        if r["data"].get("certificate") in wanted
    }
    items = [
        (
            "device.provisioned",
            device.serial,
            _device_evidence(
                product,
                device,
                batch=device.batch_id,
                token=device.token_id,
                factory=device.factory,
                when=device.time,
                flow="bundle" if device.bundle else "csr",
            ),
        )
        for device in pending
        if device.cert_fingerprint not in logged
    ]
    _record_many(product, items)
    appended = len(items)
    with store.transaction() as txn:
        txn.mark_evidence_done([d.sequence for d in pending])
    if appended:
        _log.warning("appended %d device.provisioned evidence records a crashed run had left pending", appended)
    return appended


# ------------------------------------------------------------------------------------------- batches


@dataclass(frozen=True)
class BatchResult:
    """What one run of a batch made."""

    batch: BatchRecord
    made: int
    first_serial: str | None
    last_serial: str | None
    out_dir: Path
    removed_orphans: int


def _usable_token(txn: Transaction, token_id: str, now: datetime) -> TokenRecord:
    token = txn.token(token_id)
    if token is None:
        raise ProductionStateError(f"production store: token {token_id} is not in the store")
    if now > token.expires:
        raise InvalidProductionToken(
            f"token {token_id} expired on {format_time(token.expires)}: no device is made with it",
            hint="ask the root-of-trust holder for a new token (trustroot provision authorize)",
        )
    check_clock(token, now)
    return token


def _open_batch_of(txn: Transaction, batch_id: str) -> BatchRecord:
    batch = txn.batch(batch_id)
    if batch is None:
        raise UsageError(f"no batch {batch_id} in the production store")
    if batch.state != "open":
        raise StateError(f"batch {batch_id} is closed: no device is added to it")
    return batch


def open_batch(
    product: Product,
    store: ProductionStore,
    token_id: str,
    *,
    count: int,
    out_dir: Path | None = None,
    flow: str = "bundle",
    station_key: str | None = None,
) -> BatchRecord:
    """Open a batch of ``count`` devices on a token this station holds: its quota is reserved now."""
    if count < 1:
        raise UsageError(f"--count {count}: a batch has at least one device")
    batch_id = f"batch-{secrets.token_hex(6)}"
    target = (out_dir or store.path.parent / "batches" / batch_id).resolve()
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    ensure_station_keys(product)
    signing = product.keys.unlock(STATION_SIGNING_KEY)
    with store.transaction() as txn:
        now = product.clock()
        token = _usable_token(txn, token_id, now)
        if count > token.remaining:
            open_ids = [b.batch_id for b in store.batches(token_id=token_id) if b.state == "open" and b.room]
            raise QuotaExceededError(
                f"token {token_id} has {token.remaining} of {token.count} devices left; {count} asked for",
                hint=(
                    f"resume the open batch with: trustroot provision batch --resume {open_ids[0]}"
                    if open_ids
                    else "ask the root-of-trust holder for a new token"
                ),
            )
        record = BatchRecord(
            batch_id=batch_id,
            token_id=token_id,
            factory=token.factory,
            state="open",
            requested=count,
            provisioned=0,
            out_dir=str(target),
            opened=now,
            closed=None,
            manifest_sha256=None,
        )
        txn.add_batch(record)
        updated = dataclasses.replace(token, reserved=token.reserved + count, last_seen=max(token.last_seen, now))
        txn.set_token_state(sign_token_state(store.store_id, updated, signing))
    product.record(
        "batch.opened",
        batch_id,
        {
            "batch": batch_id,
            "token": token_id,
            "factory": record.factory,
            "count": count,
            "flow": flow,
            "station_key": station_key,
        },
    )
    return record


def _remove_orphans(store: ProductionStore, prefix: str, digits: int, out_dir: Path) -> int:
    """Remove the bundles in ``out_dir`` that no recorded device owns: those a killed run wrote for
    serials it never committed (complete or cut short), whatever batch it was making.

    Runs under the write lock: no live process is between writing a chunk's bundles and its commit.
    """
    if not out_dir.is_dir():
        return 0
    removed = 0
    directories: dict[str, Path | None] = {}
    with store.transaction() as txn:
        for path in out_dir.iterdir():
            name = path.name
            if not name.endswith(BUNDLE_SUFFIX):
                continue
            try:
                parse_serial(name[: -len(BUNDLE_SUFFIX)], prefix, digits)
            except SerialError:
                continue  # not a file this product's production writes
            owner = txn.device(name[: -len(BUNDLE_SUFFIX)])
            if owner is not None and owner.bundle == name:
                if owner.batch_id not in directories:
                    batch = txn.batch(owner.batch_id)
                    directories[owner.batch_id] = Path(batch.out_dir) if batch and batch.out_dir else None
                if directories[owner.batch_id] == out_dir:
                    continue
            path.unlink(missing_ok=True)
            removed += 1
    if removed:
        fsync_dir(out_dir)
        _log.warning("removed %d bundle files of a crashed run that were never recorded (%s)", removed, out_dir)
    return removed


def missing_bundles(store: ProductionStore, batch_id: str) -> list[str]:
    """Serials of the batch's recorded flow (b) devices whose bundle file is not in the output directory."""
    batch = store.batch(batch_id)
    if batch is None:
        raise UsageError(f"no batch {batch_id} in the production store")
    directory = Path(batch.out_dir or ".")
    return [
        d.serial
        for d in store.iter_devices(batch_id=batch_id, issued=True)
        if d.bundle and not (directory / d.bundle).is_file()
    ]


def _test_pause() -> None:
    value = os.environ.get(TEST_PAUSE_ENV)
    if value:
        _log.warning("%s=%s: pausing inside a production transaction (TEST ONLY)", TEST_PAUSE_ENV, value)
        time.sleep(float(value))


def run_batch(
    product: Product,
    store: ProductionStore,
    batch_id: str,
    *,
    count: int | None = None,
    chunk: int = DEFAULT_CHUNK,
    workers: int = 1,
    station_key: PublicKeyTypes | None = None,
    progress: ProgressHook | None = None,
) -> BatchResult:
    """Make the batch's devices (all that are left, or ``count`` of them), streaming in chunks.

    ``workers`` > 1 makes the devices in that many worker processes (each opens the product and
    unlocks its keys once; secrets come from the environment). See the module docstring for what a
    crash at any point leaves.
    """
    if chunk < 1:
        raise UsageError(f"--chunk {chunk}: at least one device per transaction")
    if not 1 <= workers <= _MAX_WORKERS:
        raise UsageError(f"--workers {workers}: use 1 to {_MAX_WORKERS}")
    batch = store.batch(batch_id)
    if batch is None:
        raise UsageError(f"no batch {batch_id} in the production store")
    if batch.state != "open":
        raise StateError(f"batch {batch_id} is closed: no device is added to it")
    token = store.token(batch.token_id)
    if token is None:
        raise ProductionStateError(f"production store: token {batch.token_id} of batch {batch_id} is missing")
    ensure_station_keys(product)
    recipient = station_key if station_key is not None else station_public_key(product)
    out_dir = Path(batch.out_dir or store.path.parent / "batches" / batch_id)
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    identity = product.context.model.identity
    step = progress or (lambda _n: None)
    with production_run(product, store) as run_id:
        check_token_state(product, store, token)
        removed = _remove_orphans(store, identity.serial_prefix, identity.serial_digits, out_dir)
        batch = store.batch(batch_id) or batch
        todo = batch.room if count is None else min(count, batch.room)
        engine = _Engine(product, out_dir, recipient, workers)
        chunks = _Chunks(product, store, batch, run_id, engine, product.keys.unlock(STATION_SIGNING_KEY), out_dir)
        made = 0
        first_serial: str | None = None
        last_serial: str | None = None
        try:
            while made < todo:
                devices = chunks.make(min(chunk, todo - made))
                made += len(devices)
                first_serial = first_serial or devices[0].serial
                last_serial = devices[-1].serial
                step(len(devices))
        except BaseException:
            with contextlib.suppress(Exception):  # best effort; else the next run appends it
                chunks.finish()
            raise
        else:
            chunks.finish()
        finally:
            engine.close()
    final = store.batch(batch_id) or batch
    return BatchResult(
        batch=final,
        made=made,
        first_serial=first_serial,
        last_serial=last_serial,
        out_dir=out_dir,
        removed_orphans=removed,
    )


@dataclass
class _Chunks:
    """The chunk transactions of one run of a batch (module docstring)."""

    product: Product
    store: ProductionStore
    batch: BatchRecord
    run_id: str
    engine: _Engine
    signing: KeyHandle
    out_dir: Path
    previous: tuple[list[NewDevice], datetime] | None = None

    def make(self, size: int) -> list[NewDevice]:
        """One chunk of ``size`` devices, made and recorded in one transaction."""
        batch_id = self.batch.batch_id
        with self.store.transaction() as txn:
            now = self.product.clock()
            token = _usable_token(txn, self.batch.token_id, now)
            current = _open_batch_of(txn, batch_id)
            if size > current.room or token.spent + size > token.reserved:
                raise QuotaExceededError(
                    f"batch {batch_id} has room for {current.room} more devices "
                    f"(token {token.token_id}: {token.spent} of {token.count} spent); {size} asked for"
                )
            first = txn.allocate(size)
            pending = self.engine.submit(first, size, now)
            if self.previous is not None:  # log the last chunk while this one is being made
                self._log(txn, *self.previous)
            devices = pending()
            _test_pause()
            sync_directory(self.out_dir)
            txn.add_devices(
                devices, batch_id=batch_id, token_id=token.token_id, factory=current.factory, time=now, run=self.run_id
            )
            txn.set_batch_provisioned(batch_id, current.provisioned + size)
            updated = dataclasses.replace(token, spent=token.spent + size, last_seen=max(token.last_seen, now))
            txn.set_token_state(sign_token_state(self.store.store_id, updated, self.signing))
        self.previous = (devices, now)
        return devices

    def _log(self, txn: Transaction, devices: list[NewDevice], when: datetime) -> None:
        _append_evidence(self.product, devices, batch=self.batch, when=when, flow="bundle")
        txn.mark_evidence_done([d.sequence for d in devices])
        self.previous = None

    def finish(self) -> None:
        """Log the last chunk's evidence."""
        if self.previous is not None:
            with self.store.transaction() as txn:
                self._log(txn, *self.previous)


def reserve_serials(product: Product, store: ProductionStore, batch_id: str, count: int) -> list[str]:
    """Allocate ``count`` serials to an open batch for flow (a) (the devices make their keys later)."""
    if count < 1:
        raise UsageError("reserve at least one serial")
    identity = product.context.model.identity
    signing = product.keys.unlock(STATION_SIGNING_KEY)
    with store.transaction() as txn:
        now = product.clock()
        batch = _open_batch_of(txn, batch_id)
        token = _usable_token(txn, batch.token_id, now)
        if count > batch.room or token.spent + count > token.reserved:
            raise QuotaExceededError(f"batch {batch_id} has room for {batch.room} more devices; {count} asked for")
        first = txn.allocate(count)
        serials = [format_serial(identity.serial_prefix, identity.serial_digits, first + i) for i in range(count)]
        txn.reserve_devices(first, serials, batch_id=batch_id, token_id=token.token_id, factory=batch.factory, time=now)
        txn.set_batch_provisioned(batch_id, batch.provisioned + count)
        updated = dataclasses.replace(token, spent=token.spent + count, last_seen=max(token.last_seen, now))
        txn.set_token_state(sign_token_state(store.store_id, updated, signing))
    return serials


# ------------------------------------------------------------------------------------------ flow (a)


@dataclass(frozen=True)
class CsrResult:
    """A certificate issued for a device-made key, and the label data (never written to the store)."""

    serial: str
    certificate: x509.Certificate
    chain_pem: bytes
    fingerprint: str
    batch_id: str
    password: str | None = dataclasses.field(repr=False)
    claim_code: str = dataclasses.field(repr=False)


def _csr_serial(csr_pem: bytes, source: str) -> str:
    """The serial a request names (serialNumber, else CN), read only after its signature verified."""
    if len(csr_pem) > MAX_CSR_BYTES:
        raise CsrError(f"{source}: larger than the limit of {MAX_CSR_BYTES} bytes")
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
        valid = csr.is_signature_valid
    except (ValueError, TypeError) as exc:
        raise CsrError(f"{source}: not a PEM certificate signing request ({exc})") from exc
    if not valid:
        raise CsrError(
            f"{source}: the signature does not verify: the request was altered or not made with the key it carries"
        )
    for oid in (NameOID.SERIAL_NUMBER, NameOID.COMMON_NAME):
        values = csr.subject.get_attributes_for_oid(oid)
        if values and isinstance(values[0].value, str):
            try:
                return validate_serial(values[0].value)
            except SerialError as exc:
                raise CsrError(f"{source}: {exc.message}") from exc
    raise CsrError(f"{source}: the subject names no device serial (serialNumber or CN)")


def _csr_batch(
    product: Product,
    store: ProductionStore,
    *,
    factory: str,
    token_data: bytes | None,
    token_source: str,
    batch_id: str | None,
) -> BatchRecord:
    """The batch a next-serial request goes into: the one named, an open one of the factory, or a new one."""
    token_id: str | None = None
    if token_data is not None:
        token_id = import_token(product, store, token_data, source=token_source).token_id
    if batch_id is not None:
        batch = store.batch(batch_id)
        if batch is None:
            raise UsageError(f"no batch {batch_id} in the production store")
        if batch.factory != factory:
            raise PolicyRefusal(f"batch {batch_id} is for factory {batch.factory}, not {factory}")
        return batch
    for batch in store.batches(token_id=token_id):
        if batch.state == "open" and batch.factory == factory and batch.room > 0:
            return batch
    if token_id is not None:
        record = store.token(token_id)
        if record is None or record.remaining < 1:
            raise QuotaExceededError(f"token {token_id} has no device left")
        return open_batch(product, store, token_id, count=record.remaining, flow="csr")
    record = authorize_here(product, store, factory=factory, count=1)
    return open_batch(product, store, record.token_id, count=1, flow="csr")


def sign_device_csr(
    product: Product,
    store: ProductionStore,
    csr_pem: bytes,
    *,
    factory: str,
    token_data: bytes | None = None,
    token_source: str = "production token",  # noqa: S107 - a label for messages, not a secret
    batch_id: str | None = None,
    source: str = "CSR",
) -> CsrResult:
    """Flow (a): issue the certificate of a device-made key, within quota, as one transaction.

    The serial the request names must be one reserved for ``factory`` (it then goes into the batch
    that reserved it) or the next serial the allocator gives (into ``batch_id``, an open batch of
    the factory with room, or a new batch: on the token given, else authorized here).
    """
    validate_factory(factory)
    serial = _csr_serial(csr_pem, source)
    existing = store.device(serial)
    if existing is not None:
        _refuse_taken(existing, serial, factory)
        batch = store.batch(existing.batch_id)
        if batch is None:  # pragma: no cover - a foreign key
            raise ProductionStateError(f"production store: batch {existing.batch_id} is missing")
    else:
        batch = _csr_batch(
            product, store, factory=factory, token_data=token_data, token_source=token_source, batch_id=batch_id
        )
    token = store.token(batch.token_id)
    if token is None:
        raise ProductionStateError(f"production store: token {batch.token_id} is missing")
    maker = DeviceMaker(product, None, None)
    signing = product.keys.unlock(STATION_SIGNING_KEY)
    with production_run(product, store) as run_id:
        check_token_state(product, store, token)
        with store.transaction() as txn:
            now = product.clock()
            current = _open_batch_of(txn, batch.batch_id)
            token = _usable_token(txn, current.token_id, now)
            reserved = txn.device(serial)
            if reserved is not None:
                _refuse_taken(reserved, serial, factory)
            else:
                expected = maker.serial(txn.next_sequence())
                if serial != expected:
                    raise PolicyRefusal(
                        f"{source} names serial {serial}, which is neither the next serial ({expected}) nor one "
                        f"reserved for factory {factory}: refusing a serial out of order",
                        hint="reserve serials first: trustroot provision batch --csr --factory F --count N",
                    )
                if current.room < 1 or token.spent + 1 > token.reserved:
                    raise QuotaExceededError(f"batch {current.batch_id} has no room for another device")
            cert = sign_csr(
                csr_pem,
                maker.issuing,
                maker.issuing_cert,
                expected_serial=serial,
                model=maker.model,
                manufacturer=maker.manufacturer,
                settings=maker.settings,
                now=now,
            )
            password, verifier, claim, claim_hash = maker.credentials(serial)
            der = cert.public_bytes(serialization.Encoding.DER)
            device = NewDevice(
                sequence=reserved.sequence if reserved is not None else txn.next_sequence(),
                serial=serial,
                cert_fingerprint=hashlib.sha256(der).hexdigest(),
                cert_serial=format(cert.serial_number, "x"),
                certificate=der,
                claim_hash=claim_hash,
                password_verifier=verifier,
                bundle=None,
            )
            if reserved is not None:
                txn.issue_reserved(device, time=now, run=run_id)
            else:
                txn.allocate(1)
                txn.add_devices(
                    [device], batch_id=current.batch_id, token_id=token.token_id, factory=factory, time=now, run=run_id
                )
                txn.set_batch_provisioned(current.batch_id, current.provisioned + 1)
                updated = dataclasses.replace(token, spent=token.spent + 1, last_seen=max(token.last_seen, now))
                txn.set_token_state(sign_token_state(store.store_id, updated, signing))
        _append_evidence(product, [device], batch=current, when=now, flow="csr")
        with store.transaction() as txn:
            txn.mark_evidence_done([device.sequence])
    chain = cert.public_bytes(serialization.Encoding.PEM) + maker.issuing_pem.encode() + maker.root_pem.encode()
    return CsrResult(
        serial=serial,
        certificate=cert,
        chain_pem=chain,
        fingerprint=device.cert_fingerprint,
        batch_id=current.batch_id,
        password=password,
        claim_code=claim,
    )


def _refuse_taken(device: DeviceRecord, serial: str, factory: str) -> None:
    if device.status != "reserved":
        raise PolicyRefusal(
            f"serial {serial} is already issued (status {device.status}, certificate "
            f"{(device.cert_fingerprint or '')[:16]}): a serial is never issued twice"
        )
    if device.factory != factory:
        raise PolicyRefusal(f"serial {serial} is reserved for factory {device.factory}, not for {factory}")
