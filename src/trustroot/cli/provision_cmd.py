"""``trustroot provision``: production control (tokens, batches, manifests, revocation) and programming.

The root-of-trust holder authorizes (``authorize``), reconciles (``reconcile``) and revokes; the
station spends tokens (``batch``, ``sign-csr``), reports (``report``), programs devices
(``program``) and closes batches (``close``, signed by the authority key). On one machine,
``trustroot init`` then ``trustroot provision batch --factory F --count N`` does it all.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from trustroot.cli._common import ContextOpt, JsonOpt, Output, QuietOpt, command, open_product_for_cli
from trustroot.errors import UsageError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

    from trustroot.product import Product
    from trustroot.provision.batch import BatchResult
    from trustroot.provision.store import BatchRecord, ProductionStore

app = typer.Typer(no_args_is_help=True, help="Factory provisioning under production control (guidelines 1 and 4).")

_MAX_INPUT_BYTES = 1 << 30


def _esc(text: object) -> str:
    from rich.markup import escape

    return escape(str(text))


def _read(path: Path, what: str, limit: int) -> bytes:
    from trustroot._fsutil import read_bounded

    return read_bounded(path, limit, what=what)


@contextlib.contextmanager
def _opened(context: Path | None) -> Iterator[tuple[Product, ProductionStore]]:
    from trustroot.provision.tokens import production_store

    product = open_product_for_cli(context)
    store = production_store(product)
    try:
        yield product, store
    finally:
        store.close()


def _batch_json(batch: BatchRecord) -> dict[str, object]:
    from trustroot.evidence import format_time

    return {
        "batch": batch.batch_id,
        "token": batch.token_id,
        "factory": batch.factory,
        "state": batch.state,
        "requested": batch.requested,
        "provisioned": batch.provisioned,
        "out_dir": batch.out_dir,
        "opened": format_time(batch.opened),
        "closed": None if batch.closed is None else format_time(batch.closed),
        "manifest_sha256": batch.manifest_sha256,
    }


def _station_fingerprint(path: Path | None) -> str | None:
    if path is None:
        return None
    from cryptography.hazmat.primitives import serialization

    from trustroot.keys._interface import public_key_fingerprint

    data = _read(path, "station key", 64 << 10)
    try:
        return public_key_fingerprint(serialization.load_pem_public_key(data))
    except ValueError:
        raise UsageError(f"--station-key {path}: not a PEM public key") from None


@command(app, "authorize")
def authorize(
    factory: Annotated[str, typer.Option("--factory", help="The factory (production line) the token is for.")],
    count: Annotated[int, typer.Option("--count", min=1, help="Devices the token allows.")],
    expires: Annotated[str, typer.Option("--expires", help="Last day (UTC) or time with zone it may be spent.")],
    station_key: Annotated[
        Path | None, typer.Option("--station-key", help="PEM public key of the one station that may spend it.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Token file (default: token-<id>.json here).")] = None,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Sign a production token for N devices (root-of-trust holder); hand the file to the station.

    Example: trustroot provision authorize --factory shenzhen-1 --count 5000 --expires 2026-12-31
    """
    from trustroot._fsutil import atomic_write
    from trustroot.provision.tokens import authorize as do_authorize
    from trustroot.provision.tokens import parse_expiry, validate_factory

    output = Output.of(json_flag=json_, quiet=quiet)
    validate_factory(factory)
    deadline = parse_expiry(expires)
    pinned = _station_fingerprint(station_key)
    with _opened(context) as (product, store):
        token, data = do_authorize(product, store, factory=factory, count=count, expires=deadline, station_key=pinned)
    path = out or Path(f"token-{token.token_id}.json")
    atomic_write(path, data, mode=0o644, exclusive=True)
    output.result(
        f"token {token.token_id}: {count} devices for {_esc(factory)} until {deadline.isoformat()} -> {_esc(path)}",
        {**token.as_json(), "file": str(path)},
    )
    return 0


@command(app, "batch")
def batch(
    token: Annotated[Path | None, typer.Option("--token", help="Production token file to spend.")] = None,
    factory: Annotated[
        str | None, typer.Option("--factory", help="Factory (with no --token: authorize here, as the holder).")
    ] = None,
    count: Annotated[
        int | None, typer.Option("--count", min=1, help="Devices (default: what the token has left).")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Directory for the bundle files.")] = None,
    resume: Annotated[str | None, typer.Option("--resume", help="Continue this open batch.")] = None,
    csr: Annotated[bool, typer.Option("--csr", help="Flow (a): reserve serials for device-made keys.")] = False,
    chunk: Annotated[int, typer.Option("--chunk", min=1, max=100000, help="Devices per transaction.")] = 64,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Worker processes (secrets from env).")] = 1,
    station_key: Annotated[
        Path | None, typer.Option("--station-key", help="PEM key to seal bundles to (default: this station's).")
    ] = None,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Make a batch of devices (flow b): one encrypted bundle per device, streamed in transactions.

    With --token the station spends a token; with no --token the root-of-trust holder authorizes
    exactly --count for --factory itself. --csr reserves serials for devices that make their own
    keys (flow a, then sign-csr). --resume continues a batch a crash or a stop interrupted.

    Example: trustroot provision batch --factory shenzhen-1 --count 100
    """
    from trustroot.provision import batch as batches
    from trustroot.provision.tokens import authorize_here, import_token, validate_factory

    output = Output.of(json_flag=json_, quiet=quiet)
    if resume is not None and (token is not None or factory is not None or csr):
        raise UsageError("--resume continues an open batch: give no --token, --factory or --csr with it")
    with _opened(context) as (product, store):
        from trustroot.keys._interface import public_key_fingerprint

        recipient = batches.station_public_key(product, station_key)  # the key bundles are sealed to
        if resume is not None:
            record = store.batch(resume)
            if record is None:
                raise UsageError(f"--resume {resume}: no such batch")
        else:
            if token is not None:
                taken = import_token(
                    product, store, _read(token, "production token", 64 << 10), source=f"production token {token}"
                )
                if factory is not None and factory != taken.factory:
                    raise UsageError(f"--factory {factory}: the token is for factory {taken.factory}")
            else:
                if factory is None or count is None:
                    raise UsageError("give --token FILE, or --factory F and --count N (root-of-trust holder)")
                validate_factory(factory)
                taken = authorize_here(product, store, factory=factory, count=count)
            wanted = count if count is not None else taken.remaining
            record = batches.open_batch(
                product,
                store,
                taken.token_id,
                count=wanted,
                out_dir=out,
                flow="csr" if csr else "bundle",
                station_key=None if csr else public_key_fingerprint(recipient),
            )
        if csr:
            serials = batches.reserve_serials(product, store, record.batch_id, record.requested)
            from trustroot._fsutil import atomic_write

            listing = Path(record.out_dir or ".") / "serials.txt"
            atomic_write(listing, ("\n".join(serials) + "\n").encode("ascii"))
            done = store.batch(record.batch_id) or record
            output.result(
                f"batch {done.batch_id}: {len(serials)} serials reserved ({serials[0]}..{serials[-1]}) -> "
                f"{_esc(listing)}\nnext: trustroot provision sign-csr DEVICE.csr --factory {_esc(done.factory)}",
                {**_batch_json(done), "serials": serials, "serials_file": str(listing)},
            )
            return 0
        result = _run_with_progress(output, product, store, record, recipient, chunk=chunk, workers=workers)
    done = result.batch
    made = (
        f"{result.made} devices made ({result.first_serial}..{result.last_serial})"
        if result.made
        else "no device left to make"
    )
    output.result(
        f"batch {done.batch_id}: {made}, "
        f"{done.provisioned} of {done.requested} in the batch; bundles in {_esc(result.out_dir)}"
        + (f"\n{result.removed_orphans} bundle files of a crashed run removed" if result.removed_orphans else "")
        + f"\nnext: trustroot provision close {done.batch_id}",
        {
            **_batch_json(done),
            "made": result.made,
            "first_serial": result.first_serial,
            "last_serial": result.last_serial,
            "removed_orphans": result.removed_orphans,
        },
    )
    return 0


def _run_with_progress(
    output: Output,
    product: Product,
    store: ProductionStore,
    record: BatchRecord,
    key: PublicKeyTypes,
    *,
    chunk: int,
    workers: int,
) -> BatchResult:
    from trustroot.provision.batch import run_batch

    if output.json or output.quiet:
        return run_batch(product, store, record.batch_id, chunk=chunk, workers=workers, station_key=key)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
    ) as bar:
        task = bar.add_task(f"batch {record.batch_id}", total=record.room, completed=0)
        return run_batch(
            product,
            store,
            record.batch_id,
            chunk=chunk,
            workers=workers,
            station_key=key,
            progress=lambda n: bar.advance(task, n),
        )


@command(app, "status")
def status(
    batch_id: Annotated[str | None, typer.Option("--batch", help="Also check this batch's bundle files.")] = None,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Show tokens, batches, counts and remaining quota; exit 1 if the store is inconsistent.

    Example: trustroot provision status --json
    """
    from trustroot.evidence import format_time
    from trustroot.provision.batch import missing_bundles

    output = Output.of(json_flag=json_, quiet=quiet)
    with _opened(context) as (product, store):
        tokens = store.tokens()
        batches = store.batches()
        authorizations = store.authorizations()
        problems = store.check_consistency()
        missing = missing_bundles(store, batch_id) if batch_id else []
        problems += [f"batch {batch_id}: the bundle of {serial} is missing" for serial in missing]
        counts = {s: store.count_devices(status=s) for s in ("active", "revoked", "reserved", "void")}
        next_serial = store.next_sequence()
        prefix = product.context.model.identity
        from trustroot.provision.identity import format_serial

        data: dict[str, object] = {
            "store": str(store.path),
            "next_serial": format_serial(prefix.serial_prefix, prefix.serial_digits, next_serial),
            "devices": counts,
            "tokens": [
                {
                    "token": t.token_id,
                    "factory": t.factory,
                    "count": t.count,
                    "reserved": t.reserved,
                    "spent": t.spent,
                    "remaining": t.remaining,
                    "expires": format_time(t.expires),
                    "station_key": t.station_key,
                }
                for t in tokens
            ],
            "batches": [_batch_json(b) for b in batches],
            "authorizations": [
                {"token": a.token_id, "factory": a.factory, "count": a.count, "expires": format_time(a.expires)}
                for a in authorizations
            ],
            "problems": problems,
            "ok": not problems,
        }
    lines = [f"production store {_esc(store.path)}; next serial {data['next_serial']}"]
    lines.append("devices: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    lines.append("tokens (spent here):" if tokens else "tokens: none")
    lines += [
        f"  {t.token_id}  {_esc(t.factory):<14} {t.spent:>7} spent {t.reserved:>7} reserved of {t.count:<7} "
        f"{t.remaining} left, expires {format_time(t.expires)[:10]}"
        for t in tokens
    ]
    lines.append("batches:" if batches else "batches: none")
    lines += [
        f"  {b.batch_id}  {b.state:<6} {_esc(b.factory):<14} {b.provisioned:>7} of {b.requested:<7} token {b.token_id}"
        for b in batches
    ]
    if authorizations:
        lines.append("authorized here:")
        lines += [f"  {a.token_id}  {_esc(a.factory):<14} {a.count}" for a in authorizations]
    lines += [f"[red]problem[/red]: {_esc(p)}" for p in problems]
    output.result("\n".join(lines), data)
    return 1 if problems else 0


@command(app, "report")
def report(
    out: Annotated[Path, typer.Option("--out", help="Where to write the signed station report.")],
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Write this station's signed report of what it spent per token (for the holder's reconcile).

    Example: trustroot provision report --out station-report.json
    """
    from trustroot._fsutil import atomic_write
    from trustroot.provision.tokens import make_station_report

    output = Output.of(json_flag=json_, quiet=quiet)
    with _opened(context) as (product, store):
        data = make_station_report(product, store)
        tokens = len(store.tokens())
    atomic_write(out, data)
    output.result(f"station report of {tokens} token(s) -> {_esc(out)}", {"file": str(out), "tokens": tokens})
    return 0


@command(app, "reconcile")
def reconcile(
    station_report: Annotated[Path, typer.Option("--station-report", help="A station's report file.")],
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Compare what a station says it spent with what was authorized; exit 1 on any discrepancy.

    Example: trustroot provision reconcile --station-report station-report.json
    """
    from trustroot.evidence import format_time
    from trustroot.provision.tokens import MAX_REPORT_BYTES
    from trustroot.provision.tokens import reconcile as do_reconcile

    output = Output.of(json_flag=json_, quiet=quiet)
    with _opened(context) as (product, store):
        result = do_reconcile(
            product,
            store,
            _read(station_report, "station report", MAX_REPORT_BYTES),
            source=f"station report {station_report}",
        )
    lines = [
        f"station {result.station_key[:16]} (signing key {result.signing_key[:16]}), report of "
        f"{format_time(result.generated)}"
    ]
    for line in result.lines:
        authorized = "unknown" if line.authorized is None else str(line.authorized)
        mark = "[red]PROBLEM[/red]" if line.problems else "[green]ok[/green]"
        lines.append(
            f"  {line.token}  {_esc(line.factory):<14} spent {line.spent:>7} reserved {line.reserved:>7} "
            f"authorized {authorized:<7} {mark}"
        )
        lines += [f"      {_esc(p)}" for p in line.problems]
    if result.unreported:
        lines.append("authorized but not reported: " + ", ".join(result.unreported))
    output.result(
        "\n".join(lines),
        {
            "station_key": result.station_key,
            "signing_key": result.signing_key,
            "store": result.store,
            "generated": format_time(result.generated),
            "tokens": [
                {
                    "token": line.token,
                    "factory": line.factory,
                    "authorized": line.authorized,
                    "reserved": line.reserved,
                    "spent": line.spent,
                    "expires": line.expires,
                    "problems": list(line.problems),
                }
                for line in result.lines
            ],
            "unreported": list(result.unreported),
            "ok": not result.problems,
        },
    )
    return 1 if result.problems else 0


@command(app, "sign-csr")
def sign_csr(
    csr: Annotated[Path, typer.Argument(help="The device's PKCS#10 request (PEM).")],
    factory: Annotated[str, typer.Option("--factory", help="The factory the device is made at.")],
    token: Annotated[Path | None, typer.Option("--token", help="Production token file to spend.")] = None,
    batch_id: Annotated[str | None, typer.Option("--batch", help="Open batch to add the device to.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Directory for the chain and label files.")] = None,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Flow (a): issue the certificate for a device-made key; the serial must be reserved or the next one.

    Writes SERIAL.chain.pem (device, issuing CA, root CA) and SERIAL.label.json (claim code and
    password for the label, mode 0600).

    Example: trustroot provision sign-csr device.csr --factory shenzhen-1
    """
    from trustroot._fsutil import atomic_write
    from trustroot.provision.batch import sign_device_csr
    from trustroot.provision.identity import MAX_CSR_BYTES

    output = Output.of(json_flag=json_, quiet=quiet)
    with _opened(context) as (product, store):
        result = sign_device_csr(
            product,
            store,
            _read(csr, "CSR", MAX_CSR_BYTES),
            factory=factory,
            token_data=None if token is None else _read(token, "production token", 64 << 10),
            token_source=f"production token {token}",
            batch_id=batch_id,
            source=f"CSR {csr}",
        )
        record = store.batch(result.batch_id)
        directory = out or Path(record.out_dir if record and record.out_dir else ".")
        model = product.context.model.product
    chain_path = directory / f"{result.serial}.chain.pem"
    label_path = directory / f"{result.serial}.label.json"
    label = {
        "serial": result.serial,
        "product": model.name,
        "model": model.model,
        "claim_code": result.claim_code,
        "password": result.password,
    }
    atomic_write(chain_path, result.chain_pem)
    atomic_write(label_path, (json.dumps(label, indent=2) + "\n").encode(), mode=0o600)
    output.result(
        f"{result.serial}: certificate {result.fingerprint[:16]} in batch {result.batch_id} -> {_esc(chain_path)}; "
        f"label data -> {_esc(label_path)}",
        {
            "serial": result.serial,
            "certificate_sha256": result.fingerprint,
            "batch": result.batch_id,
            "chain": str(chain_path),
            "label": str(label_path),
        },
    )
    return 0


@command(app, "program")
def program(
    bundle: Annotated[Path, typer.Option("--bundle", help="The device's bundle file.")],
    out: Annotated[Path, typer.Option("--out", help="The device directory to write (must not exist).")],
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Station side: open a bundle with the station key and write the device directory.

    The device secret comes from TRUSTROOT_DEVICE_SECRET. Prints the label (serial, claim code,
    password): it is not written anywhere.

    Example: trustroot provision program --bundle ACMEPL-00000001.bundle --out /mnt/device
    """
    from trustroot.provision.bundle import MAX_BUNDLE_BYTES
    from trustroot.provision.device_dir import device_secret_from_env
    from trustroot.provision.device_dir import program as do_program
    from trustroot.provision.tokens import STATION_KEY

    output = Output.of(json_flag=json_, quiet=quiet)
    secret = device_secret_from_env()
    product = open_product_for_cli(context)
    station = product.keys.unlock(STATION_KEY)
    done = do_program(
        _read(bundle, "bundle", MAX_BUNDLE_BYTES),
        station,
        out,
        device_secret=secret,
        trust_anchor=product.certificate("root-ca.pem"),
        now=product.clock(),
    )
    label = done.label
    output.result(
        f"programmed {done.serial} -> {_esc(done.directory)}\nlabel: {label.product} {label.model} "
        f"serial {label.serial} claim code {label.claim_code}"
        + (f" password {_esc(label.password)}" if label.password else ""),
        {
            "serial": done.serial,
            "directory": str(done.directory),
            "certificate_sha256": done.certificate_sha256,
            "label": {
                "serial": label.serial,
                "product": label.product,
                "model": label.model,
                "claim_code": label.claim_code,
                "password": label.password,
            },
        },
    )
    return 0


@command(app, "close")
def close(
    batch_id: Annotated[str, typer.Argument(help="The batch to close.")],
    out: Annotated[Path | None, typer.Option("--out", help="Directory for the manifest and CSV.")] = None,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Close a batch: write its signed manifest (for the fleet service) and the CSV for the line.

    Example: trustroot provision close batch-3f9c0a1b2c3d
    """
    from trustroot.provision.manifest import close_batch

    output = Output.of(json_flag=json_, quiet=quiet)
    with _opened(context) as (product, store):
        result = close_batch(product, store, batch_id, out_dir=out)
    output.result(
        f"batch {batch_id} closed: {result.devices} devices, {result.voided} serials void, {result.released} "
        f"devices of quota released\nmanifest {_esc(result.manifest)}\nCSV {_esc(result.csv)}",
        {
            **_batch_json(result.batch),
            "devices": result.devices,
            "voided": result.voided,
            "released": result.released,
            "manifest": str(result.manifest),
            "csv": str(result.csv),
        },
    )
    return 0


@command(app, "verify-manifest")
def verify_manifest(
    manifest: Annotated[Path, typer.Argument(help="The manifest file.")],
    authority_key: Annotated[
        Path | None, typer.Option("--authority-key", help="PEM of the authority key (default: this product's).")
    ] = None,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Verify a batch manifest's signature and content; exit 1 if it was altered.

    Example: trustroot provision verify-manifest manifest-batch-3f9c0a1b2c3d.json
    """
    from cryptography.hazmat.primitives import serialization

    from trustroot.provision.manifest import MAX_MANIFEST_BYTES
    from trustroot.provision.manifest import verify_manifest as do_verify
    from trustroot.provision.tokens import AUTHORITY_KEY

    output = Output.of(json_flag=json_, quiet=quiet)
    if authority_key is not None:
        try:
            public = serialization.load_pem_public_key(_read(authority_key, "authority key", 64 << 10))
        except ValueError:
            raise UsageError(f"--authority-key {authority_key}: not a PEM public key") from None
    else:
        public = open_product_for_cli(context).keys.public_key(AUTHORITY_KEY)
    verified = do_verify(_read(manifest, "manifest", MAX_MANIFEST_BYTES), public, source=f"manifest {manifest}")
    output.result(
        f"[green]manifest OK[/green]: batch {verified.batch}, {len(verified.devices)} devices, factory "
        f"{_esc(verified.factory)}",
        {"ok": True, "batch": verified.batch, "devices": len(verified.devices), "factory": verified.factory},
    )
    return 0


@command(app, "revoke")
def revoke(
    serials: Annotated[list[str] | None, typer.Argument(help="Serials of the devices to revoke.")] = None,
    batch_id: Annotated[str | None, typer.Option("--batch", help="Revoke every active device of this batch.")] = None,
    reason: Annotated[str, typer.Option("--reason", help="Why (e.g. keyCompromise).")] = "",
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Revoke devices and publish the issuing CA's next CRL (pki/issuing-ca.crl.pem).

    Example: trustroot provision revoke ACMEPL-00000042 --reason keyCompromise
    """
    from trustroot.provision.revoke import revoke_devices

    output = Output.of(json_flag=json_, quiet=quiet)
    with _opened(context) as (product, store):
        result = revoke_devices(product, store, serials=tuple(serials or ()), batch_id=batch_id, reason=reason)
    output.result(
        f"revoked {len(result.serials)} device(s); CRL number {result.crl_number} lists {result.listed} -> "
        f"{_esc(result.crl_path)}",
        {
            "revoked": list(result.serials),
            "crl_number": result.crl_number,
            "crl": str(result.crl_path),
            "listed": result.listed,
            "other_issuer": list(result.other_issuer),
        },
    )
    return 0
