#!/usr/bin/env bash
# Set up everything trustroot needs on a fresh Debian machine, idempotently:
#   1. Debian packages (SoftHSM2, OpenSSL, ...), installed when missing;
#   2. the project's virtual environment .venv with trustroot and its dev tools;
#   3. (with --tools) the separate tools environment .tools of external engines.
# Re-running with nothing changed takes about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

with_tools=0
for arg in "$@"; do
  case "$arg" in
    --tools) with_tools=1 ;;
    *) echo "usage: scripts/setup.sh [--tools]" >&2; exit 2 ;;
  esac
done

# Debian packages the product and its tests use (one per line in scripts/debian-packages.txt).
mapfile -t packages < <(grep -Ev '^\s*(#|$)' scripts/debian-packages.txt | awk '{print $1}')
missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The project's virtual environment.
python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup: trustroot needs Python 3.11 or newer ($python is $("$python" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$python" -m venv .venv
fi
if [ ! -x .venv/bin/uv ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check uv
fi
stamp=.venv/.trustroot-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing trustroot and its development tools into .venv"
  # --compile-bytecode: with PYTHONDONTWRITEBYTECODE set (as on these machines) nothing would ever
  # be cached, and every command would recompile cryptography and trustroot from source.
  .venv/bin/uv pip install -q --compile-bytecode --python .venv/bin/python -e '.[dev]'
  echo "$want" >"$stamp"
fi
# trustroot's own modules are an editable install: compile them too (cheap when up to date).
.venv/bin/python -m compileall -q -j 2 src/trustroot >/dev/null

if ((with_tools)); then
  scripts/tools-env.sh
fi
