#!/usr/bin/env bash
# The whole test suite, from a fresh machine: set-up, static checks, then pytest on two workers.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --tools
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff check"; ruff check src tests scripts benchmarks
echo "== ruff format --check"; ruff format --check src tests scripts benchmarks
echo "== mypy --strict src"; mypy --strict src
echo "== pytest"
mkdir -p test-artifacts
# --dist loadgroup: tests marked xdist_group("simulated-fleet") share one worker (timing-sensitive)
pytest -n 2 --dist loadgroup --durations=30 "$@"
