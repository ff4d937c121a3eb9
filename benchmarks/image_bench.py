"""Image signing and verification: trustroot vs imgtool 2.5.0 vs ``openssl dgst -sha256``.

Whole-process figures include start-up (each command is one process, as in a build script);
in-process figures are trustroot's library throughput against the hashing limit of the same
bytes. Peak memory is the child's maximum resident set size. Each whole-process figure also
gives the CPU time the command used (user + system, from ``getrusage(RUSAGE_CHILDREN)``): on a
machine shared with other work the wall time mostly measures the scheduler, the CPU time much
less so, and the CPU speed-up is the steadier comparison.

Run: ``python -m benchmarks image_bench`` (or ``python -m benchmarks.image_bench --sizes 1,32``).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks._util import VENV_BIN, Run, best_of, run_process, table, timed, tool

MIB = 1 << 20
HEADER = "0x200"
ALIGN = "8"


def _keys(work: Path) -> dict[str, Path]:
    """Signing and encryption keys as PEM files, made by openssl."""
    specs = {
        "ecdsa-p256": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "ed25519": ["-algorithm", "ED25519"],
        "enc-p256": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "enc-x25519": ["-algorithm", "X25519"],
    }
    keys = {}
    for name, args in specs.items():
        path = work / f"{name}.pem"
        run_process([tool("openssl"), "genpkey", *args, "-out", str(path)])
        keys[name] = path
    return keys


def _slot_size(size: int) -> str:
    return hex((size + 0x10000 + 0xFFFF) // 0x10000 * 0x10000)


def _imgtool_sign(src: Path, out: Path, key: Path, size: int, enc: Path | None) -> Run:
    argv = [
        tool("imgtool"),
        "sign",
        "--key",
        str(key),
        "--header-size",
        HEADER,
        "--pad-header",
        "--align",
        ALIGN,
        "--version",
        "1.0.0",
        "--slot-size",
        _slot_size(size),
    ]
    if enc is not None:
        argv += ["--encrypt", str(enc)]
    return run_process([*argv, str(src), str(out)])


def _trustroot_sign(src: Path, out: Path, key: Path, size: int, enc: Path | None) -> Run:
    argv = [
        str(VENV_BIN / "trustroot"),
        "image",
        "sign",
        str(src),
        str(out),
        "--key",
        str(key),
        "--header-size",
        HEADER,
        "--pad-header",
        "--align",
        ALIGN,
        "--version",
        "1.0.0",
        "--slot-size",
        _slot_size(size),
    ]
    if enc is not None:
        argv += ["--encrypt", "--enc-key", str(enc)]
    return run_process(argv)


def _imgtool_verify(image: Path, key: Path) -> Run:
    return run_process([tool("imgtool"), "verify", "--key", str(key), str(image)])


def _trustroot_verify(image: Path, key: Path, enc: Path | None) -> Run:
    argv = [str(VENV_BIN / "trustroot"), "image", "verify", str(image), "--key", str(key)]
    if enc is not None:
        argv += ["--enc-key", str(enc)]
    return run_process(argv)


def _ratio(base: float, ours: float) -> str:
    return f"{base / ours:.2f}x"


@dataclass(frozen=True)
class _Measured:
    seconds: float  # median wall time
    cpu: float  # median CPU seconds (user + system of the command and its children)
    peak_mib: float


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _measure(runs: int, fn: Callable[[], Run]) -> _Measured:
    """Median wall and median CPU time of ``runs`` whole-process runs (peak memory the largest)."""
    walls, cpus, peaks = [], [], []
    for _ in range(runs):
        before = _children_cpu()
        run = fn()
        cpus.append(_children_cpu() - before)
        walls.append(run.seconds)
        peaks.append(run.peak_mib)
    return _Measured(statistics.median(walls), statistics.median(cpus), max(peaks))


def _case(
    work: Path, keys: dict[str, Path], src: Path, size_mib: int, alg: str, enc_name: str | None, runs: int
) -> tuple[list[str], list[str]]:
    """One row of the sign table and one of the verify table."""
    size = size_mib * MIB
    key, enc = keys[alg], (keys[enc_name] if enc_name else None)
    label = f"{size_mib} MiB {alg}" + (f" + {enc_name.removeprefix('enc-')}" if enc_name else "")
    img_i, img_t = work / "i.img", work / "t.img"
    i_sign = _measure(runs, lambda: _imgtool_sign(src, img_i, key, size, enc))
    t_sign = _measure(runs, lambda: _trustroot_sign(src, img_t, key, size, enc))
    sign_row = [
        label,
        f"{i_sign.seconds * 1000:.0f} ms",
        f"{t_sign.seconds * 1000:.0f} ms",
        _ratio(i_sign.seconds, t_sign.seconds),
        f"{i_sign.cpu * 1000:.0f} ms",
        f"{t_sign.cpu * 1000:.0f} ms",
        _ratio(i_sign.cpu, t_sign.cpu),
        f"{i_sign.peak_mib:.0f}",
        f"{t_sign.peak_mib:.0f}",
    ]
    t_ver = _measure(runs, lambda: _trustroot_verify(img_t, key, enc))
    t_cells = [f"{t_ver.seconds * 1000:.0f} ms", f"{t_ver.cpu * 1000:.0f} ms", f"{t_ver.peak_mib:.0f}"]
    if enc is None:
        i_ver = _measure(runs, lambda: _imgtool_verify(img_i, key))
        verify_row = [
            label,
            f"{i_ver.seconds * 1000:.0f} ms",
            t_cells[0],
            _ratio(i_ver.seconds, t_ver.seconds),
            f"{i_ver.cpu * 1000:.0f} ms",
            t_cells[1],
            _ratio(i_ver.cpu, t_ver.cpu),
            f"{i_ver.peak_mib:.0f}",
            t_cells[2],
        ]
    else:  # imgtool cannot verify encrypted images at all
        verify_row = [label, "cannot", t_cells[0], "-", "-", t_cells[1], "-", "-", t_cells[2]]
    return sign_row, verify_row


def main(argv: list[str]) -> str:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.image_bench")
    parser.add_argument("--sizes", default="1,32", help="payload sizes in MiB, comma-separated")
    parser.add_argument("--runs", type=int, default=3, help="repetitions per figure (median)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    out: list[str] = []
    cases = (("ecdsa-p256", None), ("ed25519", None), ("ecdsa-p256", "enc-p256"), ("ed25519", "enc-x25519"))
    with tempfile.TemporaryDirectory(prefix="trustroot-bench-") as tmp:
        work = Path(tmp)
        keys = _keys(work)
        rows_sign, rows_verify, rows_hash = [], [], []
        for size_mib in sizes:
            src = work / f"payload-{size_mib}.bin"
            src.write_bytes(os.urandom(size_mib * MIB))
            digest = best_of(args.runs, lambda src=src: run_process([tool("openssl"), "dgst", "-sha256", str(src)]))
            rate = size_mib / digest.seconds
            rows_hash.append([f"{size_mib} MiB", f"{digest.seconds * 1000:.0f} ms", f"{rate:.0f} MiB/s"])
            for alg, enc_name in cases:
                sign_row, verify_row = _case(work, keys, src, size_mib, alg, enc_name, args.runs)
                rows_sign.append(sign_row)
                rows_verify.append(verify_row)
        out.append(table("hashing limit: openssl dgst -sha256 (whole process)", ["input", "time", "rate"], rows_hash))
        heads = [
            "image",
            "imgtool",
            "trustroot",
            "speed-up",
            "imgtool CPU",
            "trustroot CPU",
            "CPU speed-up",
            "imgtool MiB",
            "trustroot MiB",
        ]
        out.append(table("image sign, whole process (imgtool 2.5.0 vs trustroot, --key FILE)", heads, rows_sign))
        out.append(table("image verify, whole process", heads, rows_verify))
        out.append(_in_process(work, sizes, args.runs))
    return "\n".join(out)


def _in_process(work: Path, sizes: list[int], runs: int) -> str:
    """Library throughput against hashlib over the same bytes (the hashing limit in-process)."""
    import hashlib

    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from trustroot.image import sign_image, verify_image

    key = load_pem_private_key((work / "ecdsa-p256.pem").read_bytes(), None)
    rows = []
    for size_mib in sizes:
        src = work / f"payload-{size_mib}.bin"
        size = size_mib * MIB
        out = work / f"inproc-{size_mib}.img"
        slot = int(_slot_size(size), 16)

        def hash_file(src: Path = src) -> None:
            with src.open("rb") as handle:
                hashlib.file_digest(handle, "sha256")

        def sign(src: Path = src, out: Path = out, slot: int = slot) -> None:
            sign_image(src, out, key, version="1.0.0", header_size=0x200, pad_header=True, slot_size=slot, align=8)

        def verify(out: Path = out) -> None:
            verify_image(out, keys=[key.public_key()])

        base = timed(runs, hash_file)
        t_sign = timed(runs, sign)
        t_verify = timed(runs, verify)
        rows.append(
            [
                f"{size_mib} MiB ecdsa-p256",
                f"{size / base / MIB:.0f} MiB/s",
                f"{size / t_sign / MIB:.0f} MiB/s",
                f"{t_sign / base:.2f}x",
                f"{size / t_verify / MIB:.0f} MiB/s",
                f"{t_verify / base:.2f}x",
            ]
        )
    heads = ["image", "sha256 limit", "sign", "sign / limit", "verify", "verify / limit"]
    return table("in-process throughput (goal: within 1.5x of the hashing limit)", heads, rows)


if __name__ == "__main__":
    sys.stdout.write(main(sys.argv[1:]) + "\n")
