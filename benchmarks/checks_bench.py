"""Speed of trustroot's own checks on a raw blob: ``python -m benchmarks checks_bench [--mib N]``.

The blob is synthetic and rebuilt each run: half random bytes (like compressed data), a quarter
erased flash (``0xff``), a quarter text (shell scripts and configuration lines), with a PEM key,
a DER key and a BusyBox banner planted. The baseline is SHA-256 over the same bytes in the same
run (the speed of one pass that reads every byte in C), so the figure can be read on a loaded
machine; the issue's goal is at least 50 MB/s for ``run_blob``.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ec

from trustroot.scan.checks import run_blob

_TEXT = (b"#!/bin/sh\n[ -x /usr/sbin/dropbear ] && /usr/sbin/dropbear -s -w -p 22\n"
         b"option ssid 'Home'\noption encryption 'sae'\nlan_ipaddr=192.168.1.1\n")  # fmt: skip


def _blob(path: Path, mib: int) -> int:
    rnd = random.Random(42)
    quarter = mib * 1024 * 1024 // 4
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    der = key.private_bytes(ser.Encoding.DER, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    with path.open("wb") as fh:
        fh.write(rnd.randbytes(quarter) + pem + b"\xff" * quarter + der)
        fh.write((_TEXT * (quarter // len(_TEXT) + 1))[:quarter] + b"\0BusyBox v1.36.1 (2024)\0")
        fh.write(rnd.randbytes(quarter))
    return path.stat().st_size


def main(argv: list[str]) -> str:
    parser = argparse.ArgumentParser(prog="python -m benchmarks checks_bench")
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="checks-bench-") as tmp:
        blob = Path(tmp) / "fw.bin"
        size = _blob(blob, args.mib)
        data = blob.read_bytes()
        base, own = [], []
        found = 0
        for _ in range(args.runs):
            t = time.perf_counter()
            hashlib.sha256(data).digest()
            base.append(time.perf_counter() - t)
            t = time.perf_counter()
            found = len(run_blob(blob))
            own.append(time.perf_counter() - t)
    mb = size / 1e6
    b, o = sorted(base)[len(base) // 2], sorted(own)[len(own) // 2]
    return (
        "## Own checks on a raw blob (issue 7)\n\n"
        f"`python -m benchmarks checks_bench --mib {args.mib}` (median of {args.runs}; {found} findings: "
        "the two keys and BusyBox)\n\n"
        "| what | seconds | MB/s |\n|---|---:|---:|\n"
        f"| baseline: SHA-256 of the blob | {b:.3f} | {mb / b:.0f} |\n"
        f"| trustroot run_blob | {o:.3f} | {mb / o:.1f} |\n"
    )


if __name__ == "__main__":
    import sys

    sys.stdout.write(main(sys.argv[1:]))
