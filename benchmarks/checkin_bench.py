"""Device check-ins over keep-alive mutual TLS: ``trustroot serve`` vs a bare FastAPI endpoint.

Every device connection presents its OWN client certificate (``--devices`` certificates issued by
the product's issuing CA and registered in the fleet store), keeps its connection alive and posts
``POST /api/v1/device/check-in`` in a closed loop (one request in flight per connection), or in an
open loop at a fixed offered rate (``--rate``: the goal's 3,000/s by default, 2 workers).

Processes (two-core machine assumed)::

    generator   one process, ``taskset -c 0``: a selector loop over non-blocking ``ssl`` sockets
                with a canned HTTP/1.1 request and a minimal response parser ("raw"); or asyncio
                with one ``httpx.AsyncClient`` per device ("httpx", ceiling row only)
    server      ``taskset -c 1`` with 1 worker; with 2 workers ``taskset -c 0-1`` and the generator
                unpinned (it shares the two cores with the server: stated in the table)
    postgres    the throwaway cluster of tests/integration/postgres.py, unpinned

Figures per configuration, over a window of ``--seconds`` after a warm-up (every connection
handshaken and answered once): check-ins/s (responses completed in the window), p50/p99 latency of
the requests sent and answered in the window, SERVER CPU-seconds per 1,000 check-ins (utime+stime
of the server process and all its descendants from /proc/<pid>/stat, read by the generator at the
window's edges), and the generator's own CPU use (to see which side is the bottleneck).

The "generator ceiling" rows run the generator against a canned responder (selector loop, same TLS
listener context and mutual TLS, fixed 200 reply, no HTTP framework) on core 1.

Run: ``python -m benchmarks checkin_bench [--seconds S] [--devices N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import importlib.util
import json
import os
import re
import selectors
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._util import ROOT, table

STORE_PASSPHRASE = "benchmark-store-passphrase"  # noqa: S105 - a throwaway product's
ROOT_PASSPHRASE = "benchmark-root-passphrase"  # noqa: S105
PATH = "/api/v1/device/check-in"
BODY = b'{"firmware_version":"1.0.0","security_counter":1}'
REQUEST = (
    f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
).encode() + BODY
START_TIMEOUT_S = 90.0
WARMUP_S = 3.0
_LISTENING = re.compile(r"listening on https://127\.0\.0\.1:(\d+)")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------------- /proc


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (scan of /proc: ppid links)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo and len(found) < 10_000:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def cpu_seconds(pid: int) -> float:
    """utime+stime of ``pid`` and its live descendants, in seconds."""
    total = 0
    for each in _descendants(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return total / CLK_TCK


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


# ------------------------------------------------------------------------------------------ generator


@dataclass
class _Conn:
    tls: ssl.SSLSocket
    index: int
    buf: bytearray
    sent_at: float = 0.0


def _client_context(root_ca: str, cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=root_ca)
    context.load_cert_chain(cert, key)
    return context


def _connect(port: int, context: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
    tls.setblocking(False)
    return tls


def _take_response(buf: bytearray) -> int | None:
    """Remove one complete response from ``buf``; its status, or None if incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).lower()
    at = head.find(b"content-length:")
    length = 0
    if at >= 0:
        line_end = head.find(b"\r\n", at)
        length = int(head[at + 15 : line_end if line_end >= 0 else len(head)])
    total = end + 4 + length
    if len(buf) < total:
        return None
    status = int(buf[9:12])
    del buf[:total]
    return status


class _Window:
    """Counters of the measurement window (requests sent and answered inside it)."""

    def __init__(self, seconds: float, server_pid: int) -> None:
        self.seconds = seconds
        self.server_pid = server_pid
        self.start = self.end = float("inf")
        self.latencies: list[float] = []
        self.completed = 0
        self.statuses: dict[str, int] = {}
        self.errors = 0
        self.reconnects = 0
        self.marks: dict[str, float] = {}

    def open(self) -> None:
        self.marks["server0"] = cpu_seconds(self.server_pid)
        self.marks["gen0"] = _own_cpu()
        self.start = time.perf_counter()
        self.end = self.start + self.seconds

    def close(self) -> None:
        now = time.perf_counter()
        self.marks["server1"] = cpu_seconds(self.server_pid)
        self.marks["gen1"] = _own_cpu()
        self.marks["wall"] = now - self.start

    def record(self, sent_at: float, done_at: float, status: int) -> None:
        if self.start <= done_at <= self.end:
            self.completed += 1
            key = str(status)
            self.statuses[key] = self.statuses.get(key, 0) + 1
            if sent_at >= self.start:
                self.latencies.append(done_at - sent_at)

    def result(self) -> dict[str, Any]:
        wall = self.marks["wall"]
        lat = sorted(self.latencies)
        ok = self.statuses.get("200", 0)
        return {
            "completed": self.completed,
            "ok": ok,
            "statuses": self.statuses,
            "errors": self.errors,
            "reconnects": self.reconnects,
            "wall": wall,
            "rate": self.completed / wall,
            "p50_ms": 1000 * statistics.median(lat) if lat else float("nan"),
            "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan"),
            "server_cpu": self.marks["server1"] - self.marks["server0"],
            "gen_cpu": self.marks["gen1"] - self.marks["gen0"],
        }


def run_raw(spec: dict[str, Any]) -> dict[str, Any]:
    """The selector-loop generator: canned request, minimal parser, one request in flight per connection.

    Closed loop (``rate`` None): each connection sends its next request as soon as the answer came.
    Open loop (``rate`` R): each connection sends every N/R seconds (N connections, starts spread
    evenly), still one request in flight; a request that could not be sent on time (its
    connection still waited for the previous answer) is timed from when it was due, so a slow
    server's queueing shows in the latency (no coordinated omission).
    """
    port = spec["port"]
    rate = spec.get("rate")
    contexts = [_client_context(spec["root_ca"], cert, key) for cert, key in spec["devices"]]
    window = _Window(spec["seconds"], spec["server_pid"])
    sel = selectors.DefaultSelector()
    conns: list[_Conn] = []
    for index, context in enumerate(contexts):
        conn = _Conn(_connect(port, context), index, bytearray())
        conns.append(conn)
        sel.register(conn.tls, selectors.EVENT_READ, conn)

    interval = len(conns) / rate if rate else 0.0
    waiting: list[tuple[float, int]] = []  # open loop: (due time, connection index), a heap

    def send(conn: _Conn, due: float | None = None) -> None:
        conn.sent_at = time.perf_counter() if due is None else due
        conn.tls.sendall(REQUEST)  # 170 bytes: fits the socket buffer of a kept-alive connection

    def reconnect(conn: _Conn) -> None:
        with contextlib.suppress(OSError, KeyError, ValueError):
            sel.unregister(conn.tls)
        with contextlib.suppress(OSError):
            conn.tls.close()
        window.reconnects += 1
        if window.reconnects > 10 * len(conns):
            raise RuntimeError("too many reconnections: the server keeps closing connections")
        conn.tls = _connect(port, contexts[conn.index])
        conn.buf.clear()
        sel.register(conn.tls, selectors.EVENT_READ, conn)
        send(conn)

    begin = time.perf_counter()
    for position, conn in enumerate(conns):
        if rate:
            heapq.heappush(waiting, (begin + position * interval / len(conns), position))
        else:
            send(conn)
    warm_until = time.perf_counter() + spec["warmup"]
    hard_stop = warm_until + spec["seconds"] + 30
    while True:
        now = time.perf_counter()
        if window.start == float("inf") and now >= warm_until:
            window.open()
        if now >= window.end or now >= hard_stop:
            break
        while waiting and waiting[0][0] <= now:
            due, position = heapq.heappop(waiting)
            send(conns[position], due)
        timeout = min(0.05, max(0.0, waiting[0][0] - now)) if waiting else 0.05
        for key, _ in sel.select(timeout=timeout):
            conn = key.data
            closed = False
            while True:
                try:
                    chunk = conn.tls.recv(65536)
                except (ssl.SSLWantReadError, BlockingIOError):
                    break
                except (ssl.SSLError, OSError):
                    window.errors += 1
                    closed = True
                    break
                if not chunk:
                    closed = True
                    break
                conn.buf += chunk
            while (status := _take_response(conn.buf)) is not None:
                window.record(conn.sent_at, time.perf_counter(), status)
                if closed:
                    continue
                if rate:
                    heapq.heappush(waiting, (conn.sent_at + interval, conn.index))
                else:
                    send(conn)
            if closed:
                reconnect(conn)
    window.close()
    for conn in conns:
        with contextlib.suppress(OSError):
            conn.tls.close()
    sel.close()
    return window.result()


def run_httpx(spec: dict[str, Any]) -> dict[str, Any]:
    """asyncio with one ``httpx.AsyncClient`` (one HTTP/1.1 keep-alive connection) per device."""
    import asyncio

    import httpx

    window = _Window(spec["seconds"], spec["server_pid"])
    url = f"https://127.0.0.1:{spec['port']}{PATH}"
    headers = {"content-type": "application/json"}

    async def device(client: httpx.AsyncClient, started: asyncio.Event) -> None:
        await client.post(url, content=BODY, headers=headers)  # the handshake, before the window
        await started.wait()
        while (now := time.perf_counter()) < window.end:
            try:
                response = await client.post(url, content=BODY, headers=headers)
                window.record(now, time.perf_counter(), response.status_code)
            except httpx.HTTPError:
                window.errors += 1

    async def main() -> None:
        started = asyncio.Event()
        clients = [
            httpx.AsyncClient(
                verify=_client_context(spec["root_ca"], cert, key),
                http1=True,
                http2=False,
                timeout=30.0,
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            )
            for cert, key in spec["devices"]
        ]
        try:
            tasks = [asyncio.create_task(device(c, started)) for c in clients]
            await asyncio.sleep(spec["warmup"])
            window.open()
            started.set()
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=spec["seconds"] + 30)
            window.close()
        finally:
            for client in clients:
                await client.aclose()

    asyncio.run(main())
    return window.result()


# ------------------------------------------------------------------------------------ child servers


def _listener_context(product_dir: Path) -> ssl.SSLContext:
    """The listener context ``trustroot serve`` uses (same TLS policy, mutual TLS, CRL)."""
    from trustroot.fleet.server_cert import ProductTlsSource, ensure_server_certificate, server_names
    from trustroot.fleet.tls import ServerTLS
    from trustroot.product import open_product

    product = open_product(product_dir / "security-context.toml")
    names = server_names(product.context.model.communication.service_url, ())
    ensure_server_certificate(product, names)
    source = ProductTlsSource(product, names)
    return ServerTLS(source, interval_s=3600.0, clock=product.clock).listener


def _bind() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def _report_model() -> Any:
    from pydantic import BaseModel

    class Report(BaseModel):
        firmware_version: str
        security_counter: int

    return Report


def bare_child(product_dir: Path, workers: int) -> None:
    """A bare FastAPI app, one POST route, on uvicorn with trustroot's settings and TLS listener.

    The same as ``trustroot serve``: httptools parser, uvloop, no uvicorn access log, the same TLS
    listener context (mutual TLS requested, CRL); no middleware, no database.
    """
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()
    Report = _report_model()

    async def check_in(report: Any) -> dict[str, Any]:
        return {"device_id": "bare", "next_checkin_in_s": 3600, "security_counter": report.security_counter}

    check_in.__annotations__ = {"report": Report, "return": dict[str, Any]}  # a local class: no string annotation
    app.post(PATH)(check_in)

    sock = _bind()
    print(f"bare listening on https://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    for _ in range(workers - 1):
        if os.fork() == 0:
            break
    listener = _listener_context(product_dir)
    config = uvicorn.Config(
        app,
        http="httptools",
        loop="auto",
        access_log=False,
        ws="none",
        lifespan="off",
        server_header=False,
        timeout_keep_alive=5,
        ssl_context_factory=lambda _c, _d: listener,
    )
    uvicorn.Server(config).run(sockets=[sock])


def canned_child(product_dir: Path) -> None:
    """A selector-loop responder with the same TLS listener: the generator's ceiling."""
    listener = _listener_context(product_dir)
    body = b'{"device_id":"canned","next_checkin_in_s":3600}'
    reply = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    sock = _bind()
    sock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, None)
    print(f"canned listening on https://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    deadline = time.monotonic() + 3600
    while not stop and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.2):
            if key.data is None:
                with contextlib.suppress(OSError):
                    raw, _addr = sock.accept()
                    raw.setblocking(True)
                    raw.settimeout(10)
                    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    tls = listener.wrap_socket(raw, server_side=True)
                    tls.setblocking(False)
                    sel.register(tls, selectors.EVENT_READ, bytearray())
                continue
            tls, buf = key.fileobj, key.data
            closed = False
            while True:
                try:
                    chunk = tls.recv(65536)  # type: ignore[union-attr]
                except (ssl.SSLWantReadError, BlockingIOError):
                    break
                except OSError:
                    closed = True
                    break
                if not chunk:
                    closed = True
                    break
                buf += chunk
            while (end := buf.find(b"\r\n\r\n")) >= 0:
                head = bytes(buf[:end]).lower()
                at = head.find(b"content-length:")
                length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
                if len(buf) < end + 4 + length:
                    break
                del buf[: end + 4 + length]
                with contextlib.suppress(OSError):
                    tls.sendall(reply)  # type: ignore[union-attr]
            if closed:
                sel.unregister(tls)
                tls.close()  # type: ignore[union-attr]


# ----------------------------------------------------------------------------------------- parent


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TRUSTROOT_INSECURE_TEST_KDF"}
    env["TRUSTROOT_PASSPHRASE"] = STORE_PASSPHRASE
    env["TRUSTROOT_ROOT_PASSPHRASE"] = ROOT_PASSPHRASE
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process and every descendant; SIGKILL what is left after 15 s."""
    if process.poll() is not None:
        return
    pids = _descendants(process.pid)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pass
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


@contextlib.contextmanager
def _server(argv: Sequence[str], log_path: Path, cwd: Path) -> Iterator[Server]:
    with log_path.open("wb") as log:
        process = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, env=_env(), cwd=cwd)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        port = 0
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{argv} exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            if found := _LISTENING.search(log_path.read_text(errors="replace")):
                port = int(found.group(1))
                if _handshake_ok(port):
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"{argv} did not come up in {START_TIMEOUT_S} s")
        time.sleep(1.0)  # workers other than the first finish their start-up
        yield Server(process, port, log_path)
    finally:
        _stop(process)


def _handshake_ok(port: int) -> bool:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                return tls.version() is not None
    except OSError:
        return False


def _generate(spec: dict[str, Any], cores: str | None, work: Path) -> dict[str, Any]:
    spec_path = work / "generator.json"
    spec_path.write_text(json.dumps(spec))
    argv = [sys.executable, "-m", "benchmarks.checkin_bench", "--generator", str(spec_path)]
    if cores is not None:
        argv = ["taskset", "-c", cores, *argv]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), cwd=ROOT)
    try:
        out, err = process.communicate(timeout=spec["warmup"] + spec["seconds"] + 180)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
    if process.returncode != 0:
        raise RuntimeError(f"generator failed ({process.returncode}): {err.decode(errors='replace')[-3000:]}")
    return json.loads(out.decode().strip().splitlines()[-1])


def _make_product(work: Path, devices: int) -> tuple[Path, list[tuple[str, str]], list[Any]]:
    """A product, ``devices`` device certificates from its issuing CA (files), and the certificates."""
    from datetime import UTC, datetime

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from trustroot.keys._interface import KeyRole
    from trustroot.keys.passphrase import fixed_secrets
    from trustroot.product import ISSUING_CA_CERT, create_product, open_product
    from trustroot.provision.identity import format_serial, issue_device_certificate

    secrets = fixed_secrets(STORE_PASSPHRASE, ROOT_PASSPHRASE)
    product_dir = work / "product"
    create_product(product_dir, "Bench Plug", secrets=secrets)
    product = open_product(product_dir / "security-context.toml", secrets=secrets)
    model = product.context.model
    issuing = product.keys.unlock(product.keys.active(KeyRole.ISSUING_CA).name)
    issuing_cert = product.certificate(ISSUING_CA_CERT)
    files, certs = [], []
    for seq in range(1, devices + 1):
        serial = format_serial(model.identity.serial_prefix, model.identity.serial_digits, seq)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = issue_device_certificate(
            issuing,
            issuing_cert,
            key.public_key(),
            serial,
            model=model.product.model,
            manufacturer=model.product.manufacturer,
            settings=model.identity.certificate,
            now=datetime.now(UTC),
        )
        directory = work / "devices" / serial
        directory.mkdir(parents=True)
        (directory / "device.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / "device.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        files.append((str(directory / "device.pem"), str(directory / "device.key")))
        certs.append((serial, cert))
    return product_dir, files, certs


def _register(url: str, certs: list[Any]) -> None:
    """Migrate the store at ``url`` and put the devices in it, as a production batch import would."""
    from datetime import UTC, datetime

    from cryptography.hazmat.primitives import serialization

    from trustroot.fleet.store.db import Store, make_engine
    from trustroot.fleet.store.migrate import open_store
    from trustroot.fleet.store.models import Batch, Device
    from trustroot.pki.certificates import certificate_fingerprint

    open_store(url).dispose()
    store = Store(make_engine(url))
    try:
        now = datetime.now(UTC)
        with store.transaction() as session:
            session.add(
                Batch(
                    id="bench-batch",
                    manifest_sha256="0" * 64,
                    factory="bench",
                    device_count=len(certs),
                    imported_at=now,
                )
            )
            for serial, cert in certs:
                session.add(
                    Device(
                        serial=serial,
                        certificate_fingerprint=certificate_fingerprint(cert),
                        certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
                        batch_id="bench-batch",
                        factory="bench",
                        status="active",
                        registered_at=now,
                    )
                )
    finally:
        store.dispose()


def _postgres_module() -> Any:
    path = ROOT / "tests" / "integration" / "postgres.py"
    spec = importlib.util.spec_from_file_location("_checkin_bench_postgres", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _postmaster_pid(pg: Any) -> int:
    return int((pg.data_dir / "postmaster.pid").read_text().split()[0])


def _row(name: str, cores: str, gen_cores: str, workers: int, r: dict[str, Any], db: str = "-") -> list[object]:
    per_k = 1000 / r["completed"] if r["completed"] else float("nan")
    errors = r["completed"] - r["ok"] + r["errors"]
    return [
        name,
        workers,
        cores,
        gen_cores,
        f"{r['rate']:,.0f}",
        f"{r['p50_ms']:.1f}",
        f"{r['p99_ms']:.1f}",
        f"{r['server_cpu'] * per_k:.3f}",
        f"{r['server_cpu'] / r['wall']:.2f}",
        f"{r['gen_cpu'] / r['wall']:.2f}",
        db,
        f"{errors}" + (f" ({r['reconnects']} reconn.)" if r["reconnects"] else ""),
    ]


HEADER = [
    "server",
    "workers",
    "server cores",
    "generator cores",
    "check-ins/s",
    "p50 ms",
    "p99 ms",
    "server CPU-s / 1k",
    "server CPU (cores)",
    "generator CPU (cores)",
    "postgres CPU-s / 1k",
    "non-200 / errors",
]


def run(seconds: float, devices: int, skip_postgres: bool, log: Any, rate: float = 0.0) -> str:
    os.environ.pop("TRUSTROOT_INSECURE_TEST_KDF", None)
    os.environ.update(TRUSTROOT_PASSPHRASE=STORE_PASSPHRASE, TRUSTROOT_ROOT_PASSPHRASE=ROOT_PASSPHRASE)
    py = sys.executable
    out: list[str] = []
    pg = None
    with tempfile.TemporaryDirectory(prefix="checkin-bench-") as tmp:
        work = Path(tmp)
        try:
            log(f"making the product and {devices} device certificates")
            product_dir, files, certs = _make_product(work, devices)
            from trustroot.product import ROOT_CA_CERT

            root_ca = str(product_dir / ".trustroot" / "pki" / ROOT_CA_CERT)
            sqlite = f"sqlite:///{product_dir / '.trustroot' / 'fleet.sqlite'}"
            _register(sqlite, certs)
            pg_url = None
            if not skip_postgres:
                log("starting PostgreSQL")
                pg = _postgres_module().start_server()
                pg_url = pg.url()
                _register(pg_url, certs)

            def spec(
                port: int, pid: int, secs: float = seconds, mode: str = "raw", offered: float | None = None
            ) -> dict[str, Any]:
                return {
                    "rate": offered,
                    "port": port,
                    "server_pid": pid,
                    "root_ca": root_ca,
                    "devices": files,
                    "seconds": secs,
                    "warmup": WARMUP_S,
                    "mode": mode,
                }

            serve = [py, "-m", "trustroot.cli", "serve", "--context", str(product_dir), "--port", "0"]
            ceiling_rows, rows = [], []

            canned = [py, "-m", "benchmarks.checkin_bench", "--canned-child", str(product_dir)]
            for mode in ("raw", "httpx"):
                log(f"generator ceiling ({mode}) against the canned responder")
                with _server(["taskset", "-c", "1", *canned], work / f"canned-{mode}.log", ROOT) as s:
                    r = _generate(spec(s.port, s.process.pid, min(seconds, 10.0), mode), "0", work)
                ceiling_rows.append(_row(f"canned responder, {mode} generator", "1", "0", 1, r))

            plan: list[tuple[int, float | None]] = [(1, None), (2, None)] + ([(2, rate)] if rate else [])
            for workers, offered in plan:
                cores, gen_cores = ("1", "0") if workers == 1 else ("0-1", None)
                load = "closed loop" if offered is None else f"open loop {offered:,.0f}/s"
                configs: list[tuple[str, list[str], str | None]] = [
                    (
                        "bare FastAPI (uvicorn httptools)",
                        [
                            py,
                            "-m",
                            "benchmarks.checkin_bench",
                            "--bare-child",
                            str(product_dir),
                            "--workers",
                            str(workers),
                        ],
                        None,
                    ),
                    ("trustroot serve, SQLite", [*serve, "--workers", str(workers)], None),
                ]
                if pg_url is not None:
                    configs.append(
                        (
                            "trustroot serve, PostgreSQL",
                            [*serve, "--workers", str(workers), "--database", pg_url],
                            pg_url,
                        )
                    )
                for name, argv, db in configs:
                    log(f"{name}, {workers} worker(s), {load}")
                    slug = re.sub(r"\W+", "-", f"{name} {load}".lower())
                    with _server(["taskset", "-c", cores, *argv], work / f"{slug}-{workers}.log", product_dir) as s:
                        db_before = cpu_seconds(_postmaster_pid(pg)) if db else 0.0
                        r = _generate(spec(s.port, s.process.pid, offered=offered), gen_cores, work)
                        db_cpu = (cpu_seconds(_postmaster_pid(pg)) - db_before) if db else None
                    # the postgres window includes the generator's warm-up (3 s): CPU per check-in of the window
                    db_cell = "-" if db_cpu is None else f"{db_cpu / max(r['completed'], 1) * 1000:.3f}*"
                    rows.append(_row(f"{name}, {load}", cores, gen_cores or "0-1 (unpinned)", workers, r, db_cell))
                    if r["completed"] - r["ok"]:
                        log(f"  statuses: {r['statuses']}")
        finally:
            if pg is not None:
                pg.stop()
    out.append(
        table(
            f"Generator ceiling: canned mTLS responder on core 1, {devices} device connections, "
            f"{min(seconds, 10.0):g} s",
            HEADER,
            ceiling_rows,
        )
    )
    out.append(
        table(
            f"Check-ins over keep-alive mutual TLS: {devices} devices (own certificates), {seconds:g} s "
            "per configuration",
            HEADER,
            rows,
        )
    )
    out.append(
        "server CPU-s / 1k: utime+stime of the server process tree (/proc) over the window, per 1,000 completed "
        "check-ins. 1 worker: server `taskset -c 1`, generator `taskset -c 0`. 2 workers: server `taskset -c 0-1`, "
        "generator unpinned (shares both cores). Closed loop: each connection sends its next check-in when the "
        f"answer came (saturation; latency is queueing: {devices} in flight / rate). Open loop: each connection "
        "sends at a fixed pace (offered rate over all connections), latency timed from when a check-in was due. "
        "*postgres CPU includes the 3 s warm-up, divided by the window's "
        "check-ins (an upper bound).\n"
    )
    return "\n".join(out)


def main(argv: list[str]) -> str:
    parser = argparse.ArgumentParser(prog="python -m benchmarks checkin_bench")
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window per configuration")
    parser.add_argument("--devices", type=int, default=200, help="device certificates = keep-alive connections")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL configurations")
    parser.add_argument(
        "--rate", type=float, default=3000.0, help="offered check-ins/s of the open-loop rows (2 workers); 0: none"
    )
    parser.add_argument("--generator", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bare-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--canned-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.generator is not None:
        spec = json.loads(args.generator.read_text())
        return json.dumps(run_raw(spec) if spec["mode"] == "raw" else run_httpx(spec))
    if args.bare_child is not None:
        bare_child(args.bare_child, args.workers)
        return ""
    if args.canned_child is not None:
        canned_child(args.canned_child)
        return ""
    if not 1 <= args.devices <= 1000 or not 1 <= args.seconds <= 600 or not 0 <= args.rate <= 100_000:
        parser.error("--devices 1..1000, --seconds 1..600, --rate 0..100000")

    def log(message: str) -> None:
        sys.stderr.write(f"[checkin_bench] {message}\n")
        sys.stderr.flush()

    return run(args.seconds, args.devices, args.no_postgres, log, args.rate)


if __name__ == "__main__":
    sys.stdout.write(main(sys.argv[1:]) + "\n")
