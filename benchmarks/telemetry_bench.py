"""Telemetry ingest: HTTPS batches and MQTT through Mosquitto, each beside a baseline measured in the same run.

``python -m benchmarks telemetry_bench [--seconds 15] [--devices 8] [--batch 500] [--messages 60000]``

HTTPS: ``trustroot serve --workers 2`` (SQLite) receives batches of ``--batch`` points from
``--devices`` keep-alive mutual-TLS clients (threads of one generator process; bodies pre-encoded
except seq and time) for ``--seconds``; every point is parsed, de-duplicated, stored and scored.
Baseline: a bare FastAPI endpoint behind the same TLS listener that reads the body and answers 202.
Also, in this process: parsing alone, and parse + score without the store (the CPU floor).

MQTT: a real Mosquitto (trustroot's configuration), ``--devices`` ``mosquitto_pub -l`` publishers
(each with its device certificate, QoS 1, one point per message) sending ``--messages`` messages in
all. Baseline: the broker alone with a null subscriber (``mosquitto_sub`` on the shared subscription,
QoS 1). trustroot: two ``trustroot monitor ingest`` workers; the rate is messages over the time
from the first publish to the last point stored, loss = published - stored, and each worker's
resident memory is sampled every 0.5 s (peak of the first and of the last quarter of the run).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import random
import re
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks._util import ROOT, table
from benchmarks.checkin_bench import _bind, _env, _listener_context, _make_product, _register, _server

PATH = "/api/v1/device/telemetry"
BARE_PATH = "/bare/telemetry"


# ----------------------------------------------------------------------------------------- bodies


class BodyMaker:
    """Batches of one device: the synthetic points pre-encoded, seq and time filled in per request."""

    def __init__(self, serial: str, batch: int, seed: int) -> None:
        from trustroot.monitor.synthetic import SyntheticDevice

        stream = SyntheticDevice(serial, random.Random(seed), datetime(2026, 11, 22, tzinfo=UTC))
        self.rests = []
        for _ in range(batch):
            point = stream.point().to_json()
            point.pop("time")
            point.pop("seq")
            self.rests.append(json.dumps(point, separators=(",", ":"))[1:].encode())
        self.start = datetime(2026, 11, 22, tzinfo=UTC)
        self.seq = 0

    def points(self, count: int) -> list[bytes]:
        items = []
        for rest in self.rests[:count]:
            moment = (self.start + timedelta(seconds=60 * self.seq)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            items.append(b'{"time":"%s","seq":%d,' % (moment.encode(), self.seq) + rest)
            self.seq += 1
        return items

    def body(self) -> bytes:
        return b'{"points":[' + b",".join(self.points(len(self.rests))) + b"]}"


# ------------------------------------------------------------------------------------------ HTTPS


def bare_child(product_dir: Path, workers: int) -> None:
    """The baseline: FastAPI on uvicorn (h11) behind the same TLS listener; reads the body, answers 202."""
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    app = FastAPI()

    async def bare(request):  # type: ignore[no-untyped-def]
        body = await request.body()
        return JSONResponse({"accepted": body.count(b'"seq"'), "duplicates": 0}, status_code=202)

    bare.__annotations__ = {"request": Request, "return": JSONResponse}  # local imports: no string annotations
    app.post(BARE_PATH)(bare)

    sock = _bind()
    print(f"bare listening on https://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    for _ in range(workers - 1):
        if os.fork() == 0:
            break
    listener = _listener_context(product_dir)
    config = uvicorn.Config(
        app, http="h11", ws="none", lifespan="off", server_header=False, ssl_context_factory=lambda _c, _d: listener
    )
    uvicorn.Server(config).run(sockets=[sock])


def generate(spec: dict[str, Any]) -> dict[str, Any]:
    """The HTTPS load: one thread per device, keep-alive mutual TLS, for spec["seconds"]."""
    import httpx

    deadline_holder: list[float] = []
    accepted = [0] * len(spec["devices"])
    requests = [0] * len(spec["devices"])
    failures: list[str] = []
    start_barrier = threading.Barrier(len(spec["devices"]) + 1)

    def device(index: int, serial: str, cert: str, key: str) -> None:
        maker = BodyMaker(serial, spec["batch"], index)
        context = ssl.create_default_context(cafile=spec["root_ca"])
        context.load_cert_chain(cert, key)
        with httpx.Client(base_url=f"https://127.0.0.1:{spec['port']}", verify=context, timeout=60) as client:
            client.post(spec["path"], content=maker.body())  # connect + warm up
            start_barrier.wait()
            while time.monotonic() < deadline_holder[0]:
                answer = client.post(spec["path"], content=maker.body(), headers={"content-type": "application/json"})
                if answer.status_code != 202:
                    failures.append(f"{answer.status_code} {answer.text[:200]}")
                    return
                accepted[index] += answer.json()["accepted"]
                requests[index] += 1

    threads = [
        threading.Thread(target=device, args=(i, serial, cert, key))
        for i, (serial, cert, key) in enumerate(spec["devices"])
    ]
    for thread in threads:
        thread.start()
    deadline_holder.append(time.monotonic() + 3600)
    start_barrier.wait()
    began = time.monotonic()
    deadline_holder[0] = began + spec["seconds"]
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    return {"points": sum(accepted), "requests": sum(requests), "seconds": elapsed, "failures": failures[:3]}


def _generate(spec: dict[str, Any], work: Path) -> dict[str, Any]:
    path = work / "https-spec.json"
    path.write_text(json.dumps(spec))
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.telemetry_bench", "--generator", str(path)],
        capture_output=True,
        env=_env(),
        cwd=ROOT,
        timeout=spec["seconds"] + 300,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"generator failed: {out.stderr.decode(errors='replace')[-2000:]}")
    return json.loads(out.stdout.decode().strip().splitlines()[-1])


def in_process_floor(batch: int, batches: int) -> list[list[object]]:
    """Parsing alone, and parse + score without the store, in this process (one core)."""
    from trustroot.context.schema import Telemetry
    from trustroot.monitor.detect import DeviceMonitor
    from trustroot.monitor.policy import MonitorPolicy
    from trustroot.monitor.wire import parse_batch_json

    makers = [BodyMaker(f"F{i}", batch, i) for i in range(8)]
    bodies = [makers[i % 8].body() for i in range(batches)]
    policy = MonitorPolicy.from_context(Telemetry())
    start = time.perf_counter()
    parsed = [parse_batch_json(body) for body in bodies]
    parse_s = time.perf_counter() - start
    monitors = [DeviceMonitor(f"F{i}") for i in range(8)]
    start = time.perf_counter()
    for index, points in enumerate(parsed):
        monitors[index % 8].observe(points, policy)
    score_s = time.perf_counter() - start
    total = batch * batches
    return [
        ["parse (pydantic-core + points), in process", "1", f"{total / parse_s:,.0f}", "-", "-"],
        ["parse + score (no HTTP, no store), in process", "1", f"{total / (parse_s + score_s):,.0f}", "-", "-"],
    ]


def run_https(work: Path, product_dir: Path, devices: list[tuple[str, str, str]], args: Any, log: Any) -> str:
    from trustroot.product import ROOT_CA_CERT

    root_ca = str(product_dir / ".trustroot" / "pki" / ROOT_CA_CERT)
    py = sys.executable
    rows: list[list[object]] = in_process_floor(args.batch, 40)
    configs = [
        ("bare FastAPI, reads the body (baseline)", [py, "-m", "benchmarks.telemetry_bench", "--bare-child",
                                                      str(product_dir)], BARE_PATH),
        ("trustroot serve --workers 2, SQLite", [py, "-m", "trustroot.cli", "serve", "--context", str(product_dir),
                                                 "--port", "0", "--workers", "2"], PATH),
    ]  # fmt: skip
    for name, argv, path in configs:
        log(f"HTTPS: {name}")
        with _server(argv, work / f"{path.replace('/', '_')}.log", product_dir) as server:
            spec = {
                "port": server.port,
                "root_ca": root_ca,
                "devices": devices,
                "seconds": args.seconds,
                "batch": args.batch,
                "path": path,
            }
            result = _generate(spec, work)
        if result["failures"]:
            log(f"  failures: {result['failures']}")
        rows.append(
            [
                name,
                "0-1",
                f"{result['points'] / result['seconds']:,.0f}",
                f"{result['requests'] / result['seconds']:,.1f}",
                len(result["failures"]),
            ]
        )
    return table(
        f"HTTPS telemetry: {len(devices)} devices, batches of {args.batch} points, {args.seconds:g} s each",
        ["configuration", "cores", "points/s", "requests/s", "failed requests"],
        rows,
    )


# ------------------------------------------------------------------------------------------- MQTT


def _mosquitto_module() -> Any:
    sys.path.insert(0, str(ROOT / "tests" / "integration"))
    spec = importlib.util.spec_from_file_location("_telemetry_bench_mosquitto", ROOT / "tests/integration/mosquitto.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _rss_mib(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _count(url: str) -> int:
    from sqlalchemy import func, select

    from trustroot.fleet.store.db import Store, make_engine
    from trustroot.fleet.telemetry_models import TelemetryPointRow

    store = Store(make_engine(url))
    try:
        with store.transaction() as session:
            return int(session.scalar(select(func.count()).select_from(TelemetryPointRow)) or 0)
    finally:
        store.dispose()


def _publishers(broker: Any, devices: list[tuple[str, str, str]], per_device: int, work: Path) -> list[Any]:
    files = []
    for index, (serial, _cert, _key) in enumerate(devices):
        maker = BodyMaker(serial, 1, 100 + index)
        maker.seq = 1_000_000
        path = work / f"mqtt-{serial}.txt"
        with path.open("wb") as out:
            for _ in range(per_device):
                out.write(b'{"points":[' + maker.points(1)[0] + b"]}\n")
        files.append(path)
    processes = []
    for (serial, cert, key), path in zip(devices, files, strict=True):
        argv = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "--cafile", str(broker.files.ca),
                "--cert", cert, "--key", key, "-i", f"pub-{serial}", "-q", "1", "-t",
                f"trustroot/{serial}/telemetry", "-l"]  # fmt: skip
        processes.append((argv, path))
    return processes


def _start_publishers(processes: list[Any]) -> list[subprocess.Popen[bytes]]:
    started = []
    for argv, path in processes:
        with path.open("rb") as source:
            started.append(subprocess.Popen(argv, stdin=source, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    return started


def _wait_line(process: subprocess.Popen[bytes], marker: bytes, timeout_s: float) -> None:
    found = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            if marker in line:
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    if not found.wait(timeout_s):
        raise RuntimeError(f"ingest worker {process.pid} did not subscribe within {timeout_s} s")


def run_mqtt(work: Path, product_dir: Path, devices: list[tuple[str, str, str]], url: str, args: Any, log: Any) -> str:
    from trustroot.product import open_product

    product = open_product(product_dir / "security-context.toml")
    broker = _mosquitto_module().start_broker(product)
    per_device = args.messages // len(devices)
    total = per_device * len(devices)
    rows: list[list[object]] = []
    try:
        files = broker.files
        publishers = _publishers(broker, devices, per_device, work)
        log(f"MQTT baseline: broker + mosquitto_sub null subscriber, {total} messages")
        sub = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "--cafile", str(files.ca), "--cert",
             str(files.ingest_cert), "--key", str(files.ingest_key), "-i", "null-sub", "-q", "1", "-t",
             "$share/ingest/trustroot/+/telemetry", "-C", str(total)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        time.sleep(1.0)
        began = time.monotonic()
        pubs = _start_publishers(publishers)
        try:
            sub.wait(timeout=600)
        finally:
            for pub in pubs:
                pub.wait(timeout=60)
        elapsed = time.monotonic() - began
        rows.append(["broker + null subscriber (mosquitto_sub, baseline)", f"{total / elapsed:,.0f}", 0, "-", "-"])

        log("MQTT: two trustroot monitor ingest workers (SQLite)")
        before = _count(url)
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "trustroot.cli",
                    "monitor",
                    "ingest",
                    "--context",
                    str(product_dir),
                    "--broker",
                    f"127.0.0.1:{broker.port}",
                    "--broker-dir",
                    str(files.directory),
                    "--database",
                    url,
                    "--client-id",
                    f"bench-ingest-{n}",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=_env(),
                cwd=product_dir,
            )
            for n in range(2)
        ]
        samples: list[tuple[float, float]] = []
        try:
            for worker in workers:  # until each says it subscribed (stderr), at most 60 s
                _wait_line(worker, b"subscribed", 60.0)
            began = time.monotonic()
            pubs = _start_publishers(publishers)
            stored = before
            deadline = began + 600
            while time.monotonic() < deadline:
                samples.append((time.monotonic() - began, sum(_rss_mib(w.pid) for w in workers)))
                stored = _count(url)
                if stored - before >= total:
                    break
                time.sleep(0.5)
            elapsed = time.monotonic() - began
            for pub in pubs:
                pub.wait(timeout=60)
        finally:
            for worker in workers:
                worker.terminate()
            outputs = [worker.communicate(timeout=60) for worker in workers]
        stats = [
            {"messages": int(found.group(1))} if (found := re.search(rb"stopped: (\d+) messages", out)) else {}
            for out, _ in outputs
        ]
        lost = total - (stored - before)
        quarter = max(1, len(samples) // 4)
        first = max(m for _, m in samples[:quarter])
        last = max(m for _, m in samples[-quarter:])
        rows.append(
            [
                "trustroot monitor ingest x2, SQLite (parse, store, score)",
                f"{(stored - before) / elapsed:,.0f}",
                lost,
                f"{first:.0f} -> {last:.0f}",
                " / ".join(str(s.get("messages", "?")) for s in stats),
            ]
        )
    finally:
        broker.stop()
    return table(
        f"MQTT telemetry through Mosquitto: {len(devices)} publishers (mosquitto_pub, QoS 1, 1 point per message), "
        f"{total} messages",
        ["configuration", "messages/s", "lost", "workers' RSS MiB (first -> last quarter)", "messages per worker"],
        rows,
    )


def run(args: Any, log: Any) -> str:
    os.environ.update(_env())
    os.environ.pop("TRUSTROOT_INSECURE_TEST_KDF", None)
    out = []
    with tempfile.TemporaryDirectory(prefix="telemetry-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        log(f"making the product and {args.devices} device certificates")
        product_dir, files, certs = _make_product(work, args.devices)
        devices = [(serial, cert, key) for (serial, _), (cert, key) in zip(certs, files, strict=True)]
        url = f"sqlite:///{product_dir / '.trustroot' / 'fleet.sqlite'}"
        _register(url, certs)
        if not args.no_https:
            out.append(run_https(work, product_dir, devices, args, log))
        if not args.no_mqtt:
            out.append(run_mqtt(work, product_dir, devices, url, args, log))
    out.append(
        "Measured on the shared 2-core machine while other work ran on it: figures move by tens of per cent "
        "between runs. Server, broker, workers and load generators share both cores.\n"
    )
    return "\n".join(out)


def main(argv: list[str]) -> str:
    parser = argparse.ArgumentParser(prog="python -m benchmarks telemetry_bench")
    parser.add_argument("--seconds", type=float, default=15.0, help="HTTPS window per configuration")
    parser.add_argument("--devices", type=int, default=8, help="devices (HTTPS clients, MQTT publishers)")
    parser.add_argument("--batch", type=int, default=500, help="points per HTTPS batch (at most ~600: 256 KiB)")
    parser.add_argument("--messages", type=int, default=60_000, help="MQTT messages in all")
    parser.add_argument("--no-https", action="store_true")
    parser.add_argument("--no-mqtt", action="store_true")
    parser.add_argument("--generator", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bare-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.generator is not None:
        return json.dumps(generate(json.loads(args.generator.read_text())))
    if args.bare_child is not None:
        bare_child(args.bare_child, 2)
        return ""
    if not (1 <= args.devices <= 64 and 1 <= args.seconds <= 300 and 1 <= args.batch <= 1000):
        parser.error("--devices 1..64, --seconds 1..300, --batch 1..1000")
    if not 1000 <= args.messages <= 2_000_000:
        parser.error("--messages 1000..2000000")

    def log(message: str) -> None:
        sys.stderr.write(f"[telemetry_bench] {message}\n")
        sys.stderr.flush()

    return run(args, log)


if __name__ == "__main__":
    sys.stdout.write(main(sys.argv[1:]) + "\n")
