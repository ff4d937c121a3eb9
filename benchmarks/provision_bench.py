"""Factory provisioning, flow (b): trustroot vs the ``openssl`` command line, in the same run.

What one device costs in trustroot: a P-256 key, its IDevID certificate from the issuing CA, a
derived password (HMAC of the factory secret), a claim code, the bundle sealed to the station key
and written to disk, the production record, and its ``device.provisioned`` evidence record, all
persisted (bundles synced and the record committed per chunk of 256 devices).

Figures:

- whole process: ``trustroot provision batch --factory F --count N --workers 2 --chunk 256`` as a
  separate process: start-up, key unlocks at the PRODUCTION key-derivation cost (scrypt N=2^17, in
  the parent and in each worker), the authorization and the batch;
- steady state: the same batch in a child process, timed from the end of its first chunk (keys
  unlocked, workers up) to its last;
- peak memory of the parent and of the workers (``ru_maxrss``) at several batch sizes;
- openssl: one ``openssl req -newkey ec`` (key + request) and one ``openssl x509 -req`` (certificate
  from a CA) process per device, key + certificate only (no password, bundle, record or
  evidence); a few hundred devices are measured, two loops in parallel (both cores), and the
  time for N devices extrapolated.

Run: ``python -m benchmarks.provision_bench [--devices N]`` (or ``python -m benchmarks provision_bench``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._util import VENV_BIN, run_process, table, tool

STORE_PASSPHRASE = "benchmark-store-passphrase"  # noqa: S105 - a throwaway product's
ROOT_PASSPHRASE = "benchmark-root-passphrase"  # noqa: S105
CHUNK = 256
WORKERS = 2


_PYCACHE: list[Path] = []


def _env() -> dict[str, str]:
    """The children's environment: production KDF cost, the throwaway passphrases, a warm bytecode cache.

    With PYTHONDONTWRITEBYTECODE set (as in this repository's shells) every process would compile
    every module it imports; a deployed station has its bytecode, so the children get a cache.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("TRUSTROOT_INSECURE_TEST_KDF", "PYTHONDONTWRITEBYTECODE")}
    env["TRUSTROOT_PASSPHRASE"] = STORE_PASSPHRASE
    env["TRUSTROOT_ROOT_PASSPHRASE"] = ROOT_PASSPHRASE
    if _PYCACHE:
        env["PYTHONPYCACHEPREFIX"] = str(_PYCACHE[0])
    return env


def _warm_bytecode(work: Path) -> None:
    _PYCACHE.append(work / "pycache")
    modules = "trustroot.cli.app, trustroot.cli.provision_cmd, trustroot.provision.batch, benchmarks.provision_bench"
    subprocess.run(
        [sys.executable, "-c", f"import rich.progress, {modules}"],
        check=True,
        env=_env(),
        cwd=Path(__file__).resolve().parent.parent,
    )


def _template(work: Path) -> Path:
    """A product made once, at the production key-derivation cost (copied for each run)."""
    from trustroot.keys.passphrase import fixed_secrets
    from trustroot.product import create_product

    directory = work / "template"
    create_product(directory, "Bench Plug", secrets=fixed_secrets(STORE_PASSPHRASE, ROOT_PASSPHRASE))
    return directory


def _copy(template: Path, work: Path, name: str) -> Path:
    target = work / name
    shutil.copytree(template, target, symlinks=True)
    return target


# ----------------------------------------------------------------------------------------- the child


def _own_peak_mib() -> float:
    """This process's own peak RSS since its exec (VmHWM; ``ru_maxrss`` would carry the forking parent's)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(product_dir: Path, devices: int) -> dict[str, float]:
    """One batch in this process (as the CLI does it), with timings and peak memory."""
    from trustroot.product import open_product
    from trustroot.provision.batch import open_batch, run_batch
    from trustroot.provision.tokens import authorize_here, production_store

    started = time.perf_counter()
    product = open_product(product_dir / "security-context.toml")
    marks: list[tuple[float, int]] = []
    done = 0

    def progress(count: int) -> None:
        nonlocal done
        done += count
        marks.append((time.perf_counter(), done))

    with production_store(product) as store:
        token = authorize_here(product, store, factory="bench", count=devices)
        batch = open_batch(product, store, token.token_id, count=devices)
        run_batch(product, store, batch.batch_id, chunk=CHUNK, workers=WORKERS, progress=progress)
    ended = time.perf_counter()
    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime
    (first_time, first_done), (last_time, last_done) = marks[0], marks[-1]
    steady = (last_done - first_done) / (last_time - first_time) if last_time > first_time else 0.0
    return {
        "devices": devices,
        "in_process_seconds": ended - started,
        "steady_per_s": steady,
        "cpu_ms_per_device": 1000 * cpu / devices,
        "parent_peak_mib": _own_peak_mib(),
        "worker_peak_mib": workers.ru_maxrss / 1024,
    }


def _run_child(product_dir: Path, devices: int) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.provision_bench", "--child", str(product_dir), "--devices", str(devices)],
        check=True,
        capture_output=True,
        text=True,
        env=_env(),
        cwd=Path(__file__).resolve().parent.parent,
    )
    data: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


# ------------------------------------------------------------------------------------------ openssl


def _openssl_ca(work: Path) -> tuple[Path, Path, Path]:
    """A throwaway P-256 CA for openssl (never the product's key) and the leaf extensions file."""
    openssl = tool("openssl")
    key, cert, ext = work / "ca.key", work / "ca.pem", work / "leaf.ext"
    run_process([openssl, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key)])
    run_process(
        [
            openssl,
            "req",
            "-new",
            "-x509",
            "-key",
            str(key),
            "-subj",
            "/CN=Bench Issuing CA",
            "-days",
            "3650",
            "-addext",
            "basicConstraints=critical,CA:TRUE,pathlen:0",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            str(cert),
        ]
    )
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    return key, cert, ext


def _openssl_loop(work: Path, ca: tuple[Path, Path, Path], first: int, count: int) -> list[str]:
    """A shell loop: per device, openssl req -newkey (key + CSR) then openssl x509 -req (certificate)."""
    key, cert, ext = ca
    openssl = tool("openssl")
    lines = [
        "set -e",
        f"for i in $(seq {first} {first + count - 1}); do",
        f"  {openssl} req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {work}/d$i.key "
        f"-subj /CN=BENCH-$i/serialNumber=BENCH-$i -out {work}/d$i.csr 2>/dev/null",
        f"  {openssl} x509 -req -in {work}/d$i.csr -CA {cert} -CAkey {key} -set_serial $i -days 7300 "
        f"-extfile {ext} -out {work}/d$i.pem 2>/dev/null",
        "done",
    ]
    return ["bash", "-c", "\n".join(lines)]


def _openssl_rate(work: Path, devices: int) -> tuple[float, float]:
    """Devices per second with one loop, and with two loops in parallel (both cores)."""
    ca = _openssl_ca(work)
    one = work / "one"
    one.mkdir()
    start = time.perf_counter()
    run_process(_openssl_loop(one, ca, 1, devices))
    single = devices / (time.perf_counter() - start)
    two = [work / "two-a", work / "two-b"]
    for directory in two:
        directory.mkdir()
    start = time.perf_counter()
    procs = [
        subprocess.Popen(_openssl_loop(two[i], ca, 1 + i * devices, devices), stderr=subprocess.DEVNULL)
        for i in range(2)
    ]
    for proc in procs:
        if proc.wait() != 0:
            raise RuntimeError("openssl loop failed")
    parallel = 2 * devices / (time.perf_counter() - start)
    return single, parallel


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str]) -> str:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.provision_bench")
    parser.add_argument("--devices", type=int, default=20_000, help="devices in the big batch")
    parser.add_argument("--openssl-devices", type=int, default=200, help="devices per openssl loop (measured)")
    parser.add_argument("--memory-sizes", default="5000,10000", help="smaller batch sizes for the memory table")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        return json.dumps(child(args.child, args.devices))

    os.environ.pop("TRUSTROOT_INSECURE_TEST_KDF", None)
    os.environ.update(TRUSTROOT_PASSPHRASE=STORE_PASSPHRASE, TRUSTROOT_ROOT_PASSPHRASE=ROOT_PASSPHRASE)
    with tempfile.TemporaryDirectory(prefix="provision-bench-") as tmp:
        work = Path(tmp)
        _warm_bytecode(work)
        template = _template(work)
        n = args.devices

        whole_dir = _copy(template, work, "whole")
        cli = [
            str(VENV_BIN / "trustroot"),
            "provision",
            "batch",
            "--factory",
            "bench",
            "--count",
            str(n),
            "--workers",
            str(WORKERS),
            "--chunk",
            str(CHUNK),
            "--quiet",
            "--context",
            str(whole_dir / "security-context.toml"),
        ]
        whole = run_process(cli, env=_env())

        sizes = [int(s) for s in args.memory_sizes.split(",") if s.strip()] + [n]
        runs = {size: _run_child(_copy(template, work, f"child-{size}"), size) for size in sizes}

        ossl_work = work / "openssl"
        ossl_work.mkdir()
        single, parallel = _openssl_rate(ossl_work, args.openssl_devices)

    big = runs[n]
    rates = table(
        f"Flow (b), {n:,} devices, {WORKERS} workers, chunks of {CHUNK} (key + certificate + password + "
        "claim code + sealed bundle + record + evidence, persisted)",
        ["what", "seconds", "devices/s"],
        [
            [
                "trustroot, whole process (CLI, start-up + production-cost unlocks)",
                f"{whole.seconds:.1f}",
                f"{n / whole.seconds:,.0f}",
            ],
            [
                "trustroot, in one process, unlocks included",
                f"{big['in_process_seconds']:.1f}",
                f"{n / big['in_process_seconds']:,.0f}",
            ],
            [
                "trustroot, steady state (after the first chunk)",
                f"{n / big['steady_per_s']:.1f} (rate)",
                f"{big['steady_per_s']:,.0f}",
            ],
            [
                f"openssl req + x509 per device, 1 loop ({args.openssl_devices} measured, extrapolated)",
                f"{n / single:.1f}",
                f"{single:,.0f}",
            ],
            [
                f"openssl req + x509 per device, 2 loops in parallel ({2 * args.openssl_devices} measured, "
                "extrapolated)",
                f"{n / parallel:.1f}",
                f"{parallel:,.0f}",
            ],
        ],
    )
    memory = table(
        "Peak resident memory by batch size (flat = streaming); CPU per device (parent + workers, unlocks included)",
        ["devices", "parent MiB", "worker MiB", "steady devices/s", "CPU ms/device", "CPU-bound rate, 2 idle cores"],
        [
            [
                f"{size:,}",
                f"{r['parent_peak_mib']:.0f}",
                f"{r['worker_peak_mib']:.0f}",
                f"{r['steady_per_s']:,.0f}",
                f"{r['cpu_ms_per_device']:.2f}",
                f"{2000 / r['cpu_ms_per_device']:,.0f}/s",
            ]
            for size, r in sorted(runs.items())
        ],
    )
    return rates + "\n" + memory + (f"\nwhole-process CLI peak (parent or a worker): {whole.peak_mib:.0f} MiB\n")


if __name__ == "__main__":
    sys.stdout.write(main(sys.argv[1:]) + "\n")
