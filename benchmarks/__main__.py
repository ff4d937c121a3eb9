"""Run every benchmark and print its comparison tables: ``python -m benchmarks [NAME ...]``.

One benchmark with its own options: ``python -m benchmarks NAME --option ...`` (the options after
the name go to that benchmark, e.g. ``python -m benchmarks checkin_bench --seconds 10``).

Each benchmark module has ``main(argv) -> str`` returning Markdown tables that compare trustroot
with the named baseline measured in the same run.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = [
    "image_bench",
    "provision_bench",
    "checkin_bench",
    "telemetry_bench",
    "simulate_bench",
    "checks_bench",
    "juliet_bench",
    "scan_bench",
    "assess_bench",
]


def main(argv: list[str]) -> int:
    if argv and not argv[0].startswith("-") and len(argv) > 1 and argv[1].startswith("-"):
        name, options = argv[0], argv[1:]
        if name not in BENCHMARKS:
            sys.stderr.write(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}\n")
            return 2
        sys.stdout.write(importlib.import_module(f"benchmarks.{name}").main(options) + "\n")
        return 0
    names = argv or BENCHMARKS
    for name in names:
        if name not in BENCHMARKS:
            sys.stderr.write(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}\n")
            return 2
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        sys.stdout.write(module.main([]) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
