#!/usr/bin/env bash
# The main job on the embedded default (SQLite, file key store, in-process services): the whole life
# of a product in ./demo (or $DEMO_DIR). Set-up includes the tools environment, so that the demo's
# scan runs every engine (cppcheck, clang-tidy, flawfinder, semgrep, detect-secrets, unblob).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --tools
exec .venv/bin/trustroot demo --dir "${DEMO_DIR:-demo}" --replace "$@"
