#!/usr/bin/env bash
# The main job on the embedded default (SQLite, file key store, in-process services).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/trustroot demo --dir "${DEMO_DIR:-demo}" --replace "$@"
