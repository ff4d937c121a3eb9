"""The fleet simulator at full size: ``trustroot simulate`` with 1,000 devices, figures of issue 6.

Each row is one whole ``trustroot simulate ... --json`` process (it copies a throwaway product,
provisions the devices through the factory flow, starts ``trustroot serve`` on loopback, runs the
agents as coroutines and prints its figures on the last line). The outage scenario runs twice: with
the agents' full jitter, and with jitter off: the named baseline of the same run (a fleet that
retries on a fixed exponential schedule).

Goals: ``reconnect_peak_ratio`` at most 2 with 1,000 devices (issue 6); detection at least 95 %,
false alarms at most 1 %.

The throwaway product and the device keys use the test-only key-derivation cost
(``TRUSTROOT_INSECURE_TEST_KDF=1``): provisioning time is not what is measured here (see the
provisioning benchmark), and the figures are taken after it.

Run: ``python -m benchmarks simulate_bench [--devices N] [--scenarios outage,steady,...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._util import table

STORE_PASSPHRASE = "benchmark-store-passphrase"  # noqa: S105 - a throwaway product's
ROOT_PASSPHRASE = "benchmark-root-passphrase"  # noqa: S105
TIMEOUT_S = 1800


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "TRUSTROOT_INSECURE_TEST_KDF": "1",
        "TRUSTROOT_PASSPHRASE": STORE_PASSPHRASE,
        "TRUSTROOT_ROOT_PASSPHRASE": ROOT_PASSPHRASE,
    }


def _product(directory: Path) -> Path:
    os.environ.update({k: v for k, v in _env().items() if k.startswith("TRUSTROOT_")})
    from trustroot.keys.passphrase import fixed_secrets
    from trustroot.product import create_product

    create_product(directory, "Acme Plug", secrets=fixed_secrets(STORE_PASSPHRASE, ROOT_PASSPHRASE))
    return directory / "security-context.toml"


def _simulate(context: Path, devices: int, scenario: str, extra: list[str]) -> dict[str, Any]:
    command = [sys.executable, "-m", "trustroot.cli", "simulate", "--devices", str(devices)]
    command += ["--scenario", scenario, "--context", str(context), "--json", "--seed", "1", *extra]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, env=_env(), timeout=TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"simulate {scenario} failed: {done.stderr.decode(errors='replace')[-800:]}")
    figures: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    figures["process_s"] = round(time.monotonic() - started, 1)
    return figures


def main(argv: list[str]) -> str:
    parser = argparse.ArgumentParser(prog="simulate_bench")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--scenarios", default="outage,steady,rollout,compromised,deletion")
    parser.add_argument("--time-scale", type=float, default=None)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="simulate-bench-") as scratch:
        context = _product(Path(scratch) / "acme")
        extra = ["--time-scale", str(args.time_scale)] if args.time_scale else []
        for scenario in args.scenarios.split(","):
            runs = [("on", [])] + ([("off (baseline)", ["--no-jitter"])] if scenario == "outage" else [])
            for jitter, flags in runs:
                f = _simulate(context, args.devices, scenario, extra + flags)
                rows.append(
                    [
                        scenario,
                        jitter,
                        f["devices"],
                        f["time_scale"],
                        f["simulated_s"],
                        f["wall_s"],
                        f["setup_wall_s"],
                        f["requests"],
                        f["reconnect_peak_ratio"],
                        f["rollout_paused"],
                        f["detection_rate"],
                        f["false_alarm_rate"],
                        f["detection_latency_s"],
                        f["lost_messages"],
                        f.get("deletion_completed"),
                    ]
                )
    header = [
        "scenario",
        "jitter",
        "devices",
        "K",
        "simulated s",
        "wall s",
        "set-up s",
        "requests",
        "reconnect peak ratio",
        "rollout paused",
        "detection",
        "false alarms",
        "latency s",
        "lost",
        "deletion done",
    ]
    return table(f"trustroot simulate, {args.devices} devices (goal: reconnect peak ratio <= 2)", header, rows)


if __name__ == "__main__":
    sys.stdout.write(main(sys.argv[1:]) + "\n")
