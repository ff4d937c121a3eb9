"""Assessment cost against its floor: verifying the evidence it reads.

A product with N devices provisioned (one ``device.provisioned`` record each) is assessed in-process;
the baseline is :meth:`EvidenceLog.verify` of the same log alone (hash chain and checkpoints), which
every assessment must do first. Reported: median seconds of each, the ratio, and the whole
``trustroot assess`` process with its peak memory. Goal: the assessment adds at most 1x the
verification time (ratio <= 2), and memory stays flat enough for 100,000-device products.

    python -m benchmarks assess_bench            # 1,000 and 10,000 devices
    python -m benchmarks.assess_bench --devices 2000,20000
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks._util import VENV_BIN, table, timed

STORE_PASSPHRASE = "bench-store-passphrase"  # noqa: S105 - a throwaway product's
ROOT_PASSPHRASE = "bench-root-passphrase"  # noqa: S105
RUNS = 3


def _product(work: Path, devices: int) -> Path:
    from trustroot.cli.main import main as cli
    from trustroot.keys.passphrase import fixed_secrets
    from trustroot.product import create_product

    root = work / f"acme-{devices}"
    create_product(root, "Bench Plug", secrets=fixed_secrets(STORE_PASSPHRASE, ROOT_PASSPHRASE))
    context = str(root / "security-context.toml")
    if cli(["provision", "batch", "--factory", "bench", "--count", str(devices), "--context", context, "-q"]) != 0:
        raise SystemExit("provisioning the benchmark product failed")
    return root


def main(argv: list[str]) -> str:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.assess_bench")
    parser.add_argument("--devices", default="1000,10000", help="comma-separated device counts")
    args = parser.parse_args(argv)
    os.environ.update(
        TRUSTROOT_PASSPHRASE=STORE_PASSPHRASE,
        TRUSTROOT_ROOT_PASSPHRASE=ROOT_PASSPHRASE,
        TRUSTROOT_INSECURE_TEST_KDF="1",  # key derivation is not what is measured here
    )
    from trustroot.compliance.assess import assess
    from trustroot.product import open_product

    rows = []
    with tempfile.TemporaryDirectory(prefix="assess-bench-") as tmp:
        work = Path(tmp)
        for devices in (int(n) for n in args.devices.split(",")):
            root = _product(work, devices)
            product = open_product(root / "security-context.toml")
            keys = product.evidence_public_keys()
            records = product.evidence.verify(keys).records
            verify_s = timed(RUNS, lambda p=product, k=keys: p.evidence.verify(k))
            assess_s = timed(RUNS, lambda p=product: assess(p, now=datetime.now(UTC)))
            process = _whole(root, work / f"out-{devices}")
            rows.append(
                [
                    devices,
                    records,
                    f"{verify_s * 1000:.0f}",
                    f"{assess_s * 1000:.0f}",
                    f"{assess_s / verify_s:.2f}",
                    f"{process[0]:.2f}",
                    f"{process[1]:.0f}",
                ]
            )
            shutil.rmtree(root)
    return table(
        "trustroot assess vs verifying its evidence (in-process medians of 3; whole process writes every artefact)",
        ["devices", "records", "verify ms", "assess ms", "ratio", "whole process s", "peak MiB"],
        rows,
    )


def _whole(root: Path, out: Path) -> tuple[float, float]:
    """One whole ``trustroot assess`` (exit 1 is expected: the bench product is not scanned)."""
    start = time.perf_counter()
    with tempfile.NamedTemporaryFile(prefix="rss-", suffix=".txt") as rss:
        subprocess.run(
            [
                "/usr/bin/time",
                "-q",
                "-f",
                "%M",
                "-o",
                rss.name,
                str(VENV_BIN / "trustroot"),
                "assess",
                "--out",
                str(out),
            ],
            cwd=root,
            check=False,
            capture_output=True,
        )
        seconds = time.perf_counter() - start
        peak = int(Path(rss.name).read_text().split()[-1]) / 1024
    return seconds, peak


if __name__ == "__main__":
    import sys

    sys.stdout.write(main(sys.argv[1:]) + "\n")
