"""The scanning gate: source speed on eclipse/mosquitto, its secret yardstick, raw blob throughput.

Figures, each beside a baseline measured in the same run:

- **source gate speed** in s/KLOC on mosquitto (C/C++ lines, ``.c``/``.h``): cppcheck over the
  tree's compile database + flawfinder + trustroot's own rules and checks, engines in parallel
  (goal: at most 2 s/KLOC); baseline: cppcheck alone over the same compile database;
- **secret yardstick** on mosquitto: its 11 private key files found, with at most 10 other secret
  findings (CWE-798/259/321 outside those files); baseline: detect-secrets alone (raw counts);
  and whether ``SSL_VERIFY_NONE`` in ``lib/net_mosq.c`` is flagged (CWE-295);
- **raw blob throughput** in MB/s of the image path (unblob + fallbacks + blob checks) on a
  synthetic image of random data, zero padding, a SquashFS root file system and a gzip'd tar
  (goal: at least 50 MB/s); baseline: unblob alone on the same image.

mosquitto is read from a path (never committed): ``git archive`` of eclipse/mosquitto into a
directory. When the tree has no compile database the benchmark runs ``cmake
-DCMAKE_EXPORT_COMPILE_COMMANDS=ON`` into ``<tree>-build`` beside it and copies
``compile_commands.json`` into the tree.

Run: ``python -m benchmarks.scan_bench --mosquitto /tmp/mosquitto [--blob-mb 64]``
(``python -m benchmarks scan_bench`` reads the path from ``$TRUSTROOT_BENCH_MOSQUITTO``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from benchmarks._util import ROOT, table, tool
from trustroot.scan.gate import ScanRequest, ScanResult, run_scan

TOOLS = ROOT / ".tools"
SOURCE_ENGINES = ("cppcheck", "flawfinder", "semgrep", "trustroot")
SECRET_CWES = frozenset({259, 321, 798, 256, 260, 522, 1391})
CMAKE = ("cmake", "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON", "-DWITH_CJSON=OFF", "-DDOCUMENTATION=OFF", "-DWITH_TESTS=OFF")
CPPCHECK_ARGS = ("--enable=warning,portability", "--suppress=missingIncludeSystem", "--suppress=missingInclude")
QUIET_ENV = {**os.environ, "SEMGREP_ENABLE_VERSION_CHECK": "0", "SEMGREP_SEND_METRICS": "off"}


def _kloc(tree: Path) -> float:
    lines = 0
    for path in tree.rglob("*"):
        if path.suffix in (".c", ".h") and "build" not in path.relative_to(tree).parts and path.is_file():
            lines += path.read_bytes().count(b"\n")
    return lines / 1000


def _compile_database(tree: Path) -> Path:
    for candidate in (tree / "compile_commands.json", tree / "build" / "compile_commands.json"):
        if candidate.is_file():
            return candidate
    build = tree.parent / f"{tree.name}-build"  # outside the tree: the scan must not see CMake's files
    subprocess.run([*CMAKE, "-S", tree, "-B", build], check=True, capture_output=True)
    database = tree / "compile_commands.json"
    shutil.copyfile(build / "compile_commands.json", database)
    return database


def _scan(paths: tuple[Path, ...], engines: tuple[str, ...]) -> tuple[ScanResult, float]:
    start = time.perf_counter()
    result = run_scan(ScanRequest(paths=paths, engines=engines, tools_dir=TOOLS))
    return result, time.perf_counter() - start


def _cppcheck_alone(database: Path) -> float:
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        subprocess.run(
            [
                tool("cppcheck"),
                f"--project={database}",
                "--xml",
                f"--output-file={scratch}/out.xml",
                "-q",
                "-j2",
                *CPPCHECK_ARGS,
            ],
            check=False,
            capture_output=True,
        )
        return time.perf_counter() - start


def source_speed(tree: Path) -> str:
    database = _compile_database(tree)
    kloc = _kloc(tree)
    alone = _cppcheck_alone(database)
    result, seconds = _scan((tree,), SOURCE_ENGINES)
    outcomes = result.targets[0].outcomes
    engines = ", ".join(f"{n} {o.status} {o.seconds:.0f} s" for n, o in outcomes.items())
    rows = [
        ["cppcheck alone (compile database)", f"{alone:.1f}", f"{alone / kloc:.2f}", "-"],
        [f"trustroot source gate ({engines})", f"{seconds:.1f}", f"{seconds / kloc:.2f}", "<= 2.00"],
    ]
    return table(f"mosquitto source gate, {kloc:.1f} KLOC of C", ["run", "seconds", "s/KLOC", "goal"], rows)


def _key_files(tree: Path) -> set[str]:
    return {p.relative_to(tree).as_posix() for p in tree.rglob("*.key") if "build" not in p.parts}


def _detect_secrets_alone(tree: Path, keys: set[str]) -> tuple[int, int, float]:
    start = time.perf_counter()
    out = subprocess.run(
        [tool("detect-secrets"), "scan", "--all-files", "."], cwd=tree, capture_output=True, check=True, env=QUIET_ENV
    ).stdout
    seconds = time.perf_counter() - start
    results = json.loads(out)["results"]
    found_keys = {f for f, hits in results.items() if any(h["type"] == "Private Key" for h in hits)} & keys
    others = sum(1 for f, hits in results.items() for h in hits if f not in keys or h["type"] != "Private Key")
    return len(found_keys), others, seconds


def secrets_yardstick(tree: Path) -> str:
    keys = _key_files(tree)
    ds_keys, ds_others, ds_seconds = _detect_secrets_alone(tree, keys)
    result, seconds = _scan((tree,), ("detect-secrets", "trustroot", "semgrep"))
    prefix = tree.as_posix() + "/"
    secret = [m.finding for m in result.findings if set(m.finding.cwe) & SECRET_CWES]
    in_keys = {f.location.path.removeprefix(prefix) for f in secret} & keys
    others = [f for f in secret if f.location.path.removeprefix(prefix) not in keys]
    verify = [
        m.finding
        for m in result.findings
        if m.finding.location.path == prefix + "lib/net_mosq.c" and 295 in m.finding.cwe
    ]
    rows = [
        ["detect-secrets alone", f"{ds_keys} of {len(keys)}", ds_others, "-", f"{ds_seconds:.1f}"],
        [
            "trustroot (detect-secrets + own checks and rules)",
            f"{len(in_keys)} of {len(keys)}",
            len(others),
            "yes" if verify else "no",
            f"{seconds:.1f}",
        ],
        ["goal", f"{len(keys)} of {len(keys)}", "<= 10", "yes", "-"],
    ]
    return table(
        "mosquitto yardstick: private key files, other secret findings, SSL_VERIFY_NONE in lib/net_mosq.c",
        ["run", "key files found", "other secret findings", "SSL_VERIFY_NONE flagged", "seconds"],
        rows,
    )


def _blob(directory: Path, megabytes: int) -> Path:
    rootfs = directory / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "bin").mkdir()
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (rootfs / "bin" / "busybox").write_bytes(os.urandom(2 * 2**20))
    squashfs = directory / "rootfs.sqsh"
    subprocess.run(["mksquashfs", rootfs, squashfs, "-quiet", "-noappend", "-no-progress"], check=True)
    with tarfile.open(directory / "config.tar.gz", "w:gz") as archive:
        archive.add(rootfs / "etc", arcname="etc")
    image = directory / "firmware.bin"
    size = megabytes * 2**20
    with image.open("wb") as out:
        seed = hashlib.sha256(b"scan-bench").digest()
        written = 0
        while written < size // 2:  # pseudo-random: a compressed kernel or encrypted payload
            seed = hashlib.sha256(seed).digest()
            block = seed * 2048
            out.write(block)
            written += len(block)
        out.write(squashfs.read_bytes())
        out.write((directory / "config.tar.gz").read_bytes())
        out.write(b"\xff" * (size - out.tell()))  # erased flash
    return image


def _blob_checks(image: Path) -> float:
    from trustroot.scan import checks

    start = time.perf_counter()
    checks.run_blob(image)
    return time.perf_counter() - start


def _sha256(image: Path) -> float:
    start = time.perf_counter()
    digest = hashlib.sha256()
    with image.open("rb") as handle:
        while block := handle.read(2**20):
            digest.update(block)
    return time.perf_counter() - start


def blob_throughput(megabytes: int) -> str:
    with tempfile.TemporaryDirectory(prefix="scan-bench-") as scratch:
        image = _blob(Path(scratch), megabytes)
        mb = image.stat().st_size / 1e6
        hashing = _sha256(image)
        own = _blob_checks(image)
        start = time.perf_counter()
        subprocess.run(
            [
                tool("unblob"),
                "-e",
                f"{scratch}/alone",
                "--report",
                f"{scratch}/r.json",
                "--log",
                f"{scratch}/u.log",
                image,
            ],
            capture_output=True,
            check=False,
            env=QUIET_ENV,
        )
        alone = time.perf_counter() - start
        result, seconds = _scan((image,), ("unblob", "trustroot"))
        gaps = sum(1 for m in result.findings if m.finding.rule_id == "trustroot.not-inspected")
        fallback = "unsquashfs fallback used" if any("unsquashfs" in n for n in result.targets[0].notes) else ""
    rows = [
        ["read + SHA-256 of the image (I/O baseline)", f"{hashing:.2f}", f"{mb / hashing:.0f}", "-"],
        ["trustroot blob checks (checks.run_blob)", f"{own:.2f}", f"{mb / own:.0f}", ">= 50"],
        ["unblob alone", f"{alone:.1f}", f"{mb / alone:.1f}", "-"],
        [
            f"whole image path: unblob + fallbacks + checks ({gaps} gaps; {fallback})",
            f"{seconds:.1f}",
            f"{mb / seconds:.1f}",
            "-",
        ],
    ]
    return table(f"raw blob throughput, {mb:.0f} MB image", ["run", "seconds", "MB/s", "goal"], rows)


def main(argv: list[str]) -> str:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scan_bench")
    parser.add_argument("--mosquitto", type=Path, default=os.environ.get("TRUSTROOT_BENCH_MOSQUITTO"))
    parser.add_argument("--blob-mb", type=int, default=64)
    parser.add_argument("--only", choices=("speed", "secrets", "blob"), action="append")
    args = parser.parse_args(argv)
    parts = set(args.only or ("speed", "secrets", "blob"))
    out = ["## Scanning gate (issue 7)", ""]
    if args.mosquitto is None:
        out.append("(mosquitto figures skipped: give --mosquitto PATH or set TRUSTROOT_BENCH_MOSQUITTO)\n")
    else:
        tree = args.mosquitto.resolve()
        if "speed" in parts:
            out.append(source_speed(tree))
        if "secrets" in parts:
            out.append(secrets_yardstick(tree))
    if "blob" in parts:
        out.append(blob_throughput(args.blob_mb))
    if shutil.which("nproc"):
        cores = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
        out.append(f"({cores} cores, shared with other work: figures from a loaded machine)\n")
    return "\n".join(out)


if __name__ == "__main__":
    import sys

    sys.stdout.write(main(sys.argv[1:]) + "\n")
