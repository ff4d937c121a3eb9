#!/usr/bin/env bash
# Build trustroot's tools environment: the external engines it runs as subprocesses.
#
# Each engine pinned in scripts/tools-versions.txt gets a virtual environment of its own under
# .tools/venvs/<name>/, installed with uv. Engines are never resolved together with trustroot's
# dependencies (that would drag cryptography, fastapi and friends back years), nor with each other.
# Their console scripts are linked into .tools/bin/, which is where trustroot looks for them.
#
# A stamp per engine (.tools/stamps/<name>) records what was installed; a re-run with unchanged pins
# and interpreter does nothing and takes well under a second. Installs run in parallel, bounded.
#
# Usage: scripts/tools-env.sh [--check] [--force] [--jobs N] [ENGINE...]
#   --check    also run every engine's --version when nothing needs installing
#   --force    reinstall even when the stamp says the engine is up to date
#   --jobs N   installs at a time (default: the number of cores, at most 4)
#   ENGINE     only these engines (default: every line of tools-versions.txt)
#
# Environment: TRUSTROOT_TOOLS_DIR (default <repo>/.tools), TOOLS_PYTHON (default python3),
# TOOLS_JOBS, UV (a uv executable to use), TOOLS_PINS_FILE (default scripts/tools-versions.txt).
# Exit status: 0 when every engine is installed and runs, 1 when one failed, 2 on bad usage.
set -euo pipefail

readonly LAYOUT=2 # bump when the layout of .tools/ changes, to force a reinstall everywhere
readonly UV_BOOTSTRAP="uv==0.13.9" # only when no uv is found (the project's .venv has one)

ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
PINS_FILE="${TOOLS_PINS_FILE:-${ROOT}/scripts/tools-versions.txt}"
TOOLS_DIR="$(realpath -m -- "${TRUSTROOT_TOOLS_DIR:-${ROOT}/.tools}")"
readonly PINS_FILE TOOLS_DIR
PYTHON="${TOOLS_PYTHON:-python3}"
VERSION_TIMEOUT=120 # seconds; the first run of an engine compiles its bytecode

die() {
    printf 'tools-env: %s\n' "$*" >&2
    exit 2
}

fail() {
    printf 'tools-env: %s\n' "$*" >&2
    exit 1
}

say() {
    printf 'tools-env: %s\n' "$*"
}

usage() {
    sed -n '/^# Usage:/,/^# Exit status:/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

# --- arguments -----------------------------------------------------------------------------------

CHECK=0
FORCE=0
JOBS="${TOOLS_JOBS:-}"
SELECTED=()
while (($# > 0)); do
    case "$1" in
    --check) CHECK=1 ;;
    --force) FORCE=1 ;;
    --jobs)
        (($# >= 2)) || die "--jobs needs a number"
        JOBS="$2"
        shift
        ;;
    --jobs=*) JOBS="${1#--jobs=}" ;;
    -h | --help)
        usage
        exit 0
        ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) SELECTED+=("$1") ;;
    esac
    shift
done

if [[ -z "${JOBS}" ]]; then
    JOBS="$(nproc 2>/dev/null || echo 2)"
    ((JOBS <= 4)) || JOBS=4
fi
[[ "${JOBS}" =~ ^[1-9][0-9]*$ ]] || die "--jobs wants a positive number, not '${JOBS}'"

# --- pins ----------------------------------------------------------------------------------------

[[ -r "${PINS_FILE}" ]] || die "cannot read ${PINS_FILE}"

declare -A PIN=()     # name -> version
declare -A REPORTS=() # name -> the version the engine prints with --version
declare -A OVERRIDES=() # name -> dependency overrides, space-separated requirements
ORDER=()
RESOLVE_AS_OF=""
lineno=0
while IFS= read -r raw || [[ -n "${raw}" ]]; do
    lineno=$((lineno + 1))
    line="${raw#"${raw%%[![:space:]]*}"}" # strip leading blanks
    if [[ "${line}" =~ ^#[[:space:]]*resolve-as-of[[:space:]]+([0-9TZ:.+-]+)[[:space:]]*$ ]]; then
        RESOLVE_AS_OF="${BASH_REMATCH[1]}"
        continue
    fi
    [[ -z "${line}" || "${line}" == \#* ]] && continue
    if [[ ! "${line}" =~ ^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)[[:space:]]*(#(.*))?$ ]]; then
        die "${PINS_FILE}:${lineno}: expected 'name==version [# clauses]', got '${raw}'"
    fi
    name="${BASH_REMATCH[1]}"
    comment="${BASH_REMATCH[4]}"
    [[ -z "${PIN[${name}]:-}" ]] || die "${PINS_FILE}:${lineno}: ${name} is pinned twice"
    PIN["${name}"]="${BASH_REMATCH[2]}"
    REPORTS["${name}"]="${BASH_REMATCH[2]}"
    OVERRIDES["${name}"]=""
    IFS=';' read -ra clauses <<<"${comment}"
    for clause in "${clauses[@]}"; do
        read -ra words <<<"${clause}"
        ((${#words[@]} > 0)) || continue
        case "${words[0]}:${#words[@]}" in
        reports:2) REPORTS["${name}"]="${words[1]}" ;;
        override:2) OVERRIDES["${name}"]+="${words[1]} " ;;
        *) die "${PINS_FILE}:${lineno}: unknown clause '${clause}' (want 'reports X' or 'override REQ')" ;;
        esac
    done
    ORDER+=("${name}")
done <"${PINS_FILE}"
((${#ORDER[@]} > 0)) || die "${PINS_FILE} pins no engine"

if ((${#SELECTED[@]} > 0)); then
    for name in "${SELECTED[@]}"; do
        [[ -n "${PIN[${name}]:-}" ]] || die "${name} is not pinned in ${PINS_FILE}"
    done
    ORDER=("${SELECTED[@]}")
fi

# --- the interpreter the engines run on ----------------------------------------------------------

command -v "${PYTHON}" >/dev/null 2>&1 || die "no Python interpreter '${PYTHON}' (set TOOLS_PYTHON)"
# Resolve shims (pyenv) to the real interpreter; its path and version go into every stamp.
PY_INFO="$("${PYTHON}" -c 'import os, platform, sys; print(os.path.realpath(sys.executable), platform.python_version())')"
PY_EXE="${PY_INFO% *}"
readonly PY_INFO PY_EXE

stamp_text() {
    printf 'pin=%s==%s\nreports=%s\noverrides=%s\npython=%s\nresolve-as-of=%s\nlayout=%s\n' \
        "$1" "${PIN[$1]}" "${REPORTS[$1]}" "${OVERRIDES[$1]}" "${PY_INFO}" "${RESOLVE_AS_OF:-none}" "${LAYOUT}"
}

up_to_date() {
    local name="$1" stamp="${TOOLS_DIR}/stamps/$1"
    [[ -f "${stamp}" && -x "${TOOLS_DIR}/venvs/${name}/bin/python" && -x "${TOOLS_DIR}/bin/${name}" ]] || return 1
    [[ "$(<"${stamp}")" == "$(stamp_text "${name}")" ]]
}

# --- uv ------------------------------------------------------------------------------------------

find_uv() {
    if [[ -n "${UV:-}" ]]; then
        [[ -x "${UV}" ]] || die "UV=${UV} is not an executable"
        return 0
    fi
    if [[ -x "${ROOT}/.venv/bin/uv" ]]; then
        UV="${ROOT}/.venv/bin/uv"
    elif command -v uv >/dev/null 2>&1; then
        UV="$(command -v uv)"
    else
        # A throwaway environment holding nothing but uv, next to the engines.
        local boot="${TOOLS_DIR}/uv-bootstrap"
        if [[ ! -x "${boot}/bin/uv" ]]; then
            say "no uv found: installing ${UV_BOOTSTRAP} into ${boot}"
            rm -rf "${boot}"
            "${PY_EXE}" -m venv "${boot}" ||
                fail "cannot make a virtual environment for uv: apt-get install python3-venv, or put uv on PATH"
            "${boot}/bin/python" -m pip install --quiet --disable-pip-version-check "${UV_BOOTSTRAP}" ||
                fail "cannot install ${UV_BOOTSTRAP}: put uv on PATH, or set UV"
        fi
        UV="${boot}/bin/uv"
    fi
}

# --- one engine ----------------------------------------------------------------------------------

# Remove the links in .tools/bin that point into an engine's environment.
unlink_engine() {
    local name="$1" link target
    for link in "${TOOLS_DIR}/bin/"*; do
        [[ -L "${link}" ]] || continue
        target="$(readlink "${link}")"
        [[ "${target}" == "../venvs/${name}/bin/"* ]] && rm -f "${link}"
    done
    return 0
}

# Print the console scripts that the engine's own distribution installed (not its dependencies').
engine_scripts() {
    local name="$1"
    "${TOOLS_DIR}/venvs/${name}/bin/python" - "${name}" <<'PY'
import importlib.metadata as metadata
import os
import sys
import sysconfig

dist = metadata.distribution(sys.argv[1])
bindir = os.path.realpath(sysconfig.get_path("scripts"))
names = {ep.name for ep in dist.entry_points if ep.group == "console_scripts"}
for item in dist.files or []:
    path = os.path.realpath(item.locate())
    if os.path.dirname(path) == bindir:
        names.add(os.path.basename(path))
for script in sorted(names):
    if os.access(os.path.join(bindir, script), os.X_OK):
        print(script)
PY
}

# Run the engine with one argument, without telemetry or update checks.
engine_run() {
    SEMGREP_ENABLE_VERSION_CHECK=0 SEMGREP_SEND_METRICS=off \
        timeout "${VERSION_TIMEOUT}" "${TOOLS_DIR}/bin/$1" "$2" 2>&1 </dev/null
}

# Check that the engine runs and reports the expected version; print the line that says it.
# Most engines answer --version; imgtool has a `version` command and sslyze names its version
# only in --help.
check_version() {
    local name="$1" want="${REPORTS[$1]}" arg out first=""
    for arg in --version version --help; do
        if out="$(engine_run "${name}" "${arg}")" && [[ "${out}" == *"${want}"* ]]; then
            grep -m 1 -F -- "${want}" <<<"${out}"
            return 0
        fi
        [[ -n "${first}" ]] || first="${out}"
    done
    printf '%s does not run, or does not report %s; its --version said:\n%s\n' \
        "${name}" "${want}" "${first}" >&2
    return 1
}

# Install one engine from scratch; writes the stamp only when everything worked.
install_engine() {
    local name="$1" venv="${TOOLS_DIR}/venvs/$1" script target
    local -a resolve=() overrides
    [[ -z "${RESOLVE_AS_OF}" ]] || resolve=(--exclude-newer "${RESOLVE_AS_OF}")
    read -ra overrides <<<"${OVERRIDES[${name}]}"
    if ((${#overrides[@]} > 0)); then
        printf '%s\n' "${overrides[@]}" >"${TOOLS_DIR}/logs/${name}.overrides"
        resolve+=(--override "${TOOLS_DIR}/logs/${name}.overrides")
    fi

    rm -f "${TOOLS_DIR}/stamps/${name}"
    unlink_engine "${name}"
    rm -rf "${venv}"
    UV_PYTHON_DOWNLOADS=never "${UV}" venv --quiet --python "${PY_EXE}" "${venv}"
    # Bytecode is compiled now: PYTHONDONTWRITEBYTECODE environments would otherwise compile every
    # module on every run (semgrep --version: 4 s instead of 1 s).
    UV_PYTHON_DOWNLOADS=never "${UV}" pip install --python "${venv}/bin/python" --compile-bytecode \
        "${resolve[@]}" "${name}==${PIN[${name}]}"

    local -a scripts
    mapfile -t scripts < <(engine_scripts "${name}")
    ((${#scripts[@]} > 0)) || {
        echo "${name} installed no console script" >&2
        return 1
    }
    for script in "${scripts[@]}"; do
        if [[ -L "${TOOLS_DIR}/bin/${script}" ]]; then
            target="$(readlink "${TOOLS_DIR}/bin/${script}")"
            if [[ "${target}" != "../venvs/${name}/bin/${script}" ]]; then
                echo "${script} is provided by ${name} and by ${target}" >&2
                return 1
            fi
        fi
        ln -sfn "../venvs/${name}/bin/${script}" "${TOOLS_DIR}/bin/${script}"
    done
    [[ -x "${TOOLS_DIR}/bin/${name}" ]] || {
        echo "${name} installed no '${name}' command (only: ${scripts[*]})" >&2
        return 1
    }
    echo "linked: ${scripts[*]}"
    check_version "${name}"
    stamp_text "${name}" >"${TOOLS_DIR}/stamps/${name}.tmp"
    mv -f "${TOOLS_DIR}/stamps/${name}.tmp" "${TOOLS_DIR}/stamps/${name}"
}

# --- main ----------------------------------------------------------------------------------------

mkdir -p "${TOOLS_DIR}/bin" "${TOOLS_DIR}/venvs" "${TOOLS_DIR}/stamps" "${TOOLS_DIR}/logs"

# One run at a time per tools environment (parallel CI jobs, a test running the script).
if command -v flock >/dev/null 2>&1; then
    exec 9>"${TOOLS_DIR}/.lock"
    flock 9
fi

# Engines that are no longer pinned go away (only on a full run: a run for some engines keeps the rest).
if ((${#SELECTED[@]} == 0)); then
    for venv in "${TOOLS_DIR}/venvs/"*/; do
        [[ -d "${venv}" ]] || continue
        name="$(basename -- "${venv}")"
        [[ -z "${PIN[${name}]:-}" ]] || continue
        say "removing ${name}: no longer pinned"
        unlink_engine "${name}"
        rm -rf -- "${venv}" "${TOOLS_DIR}/stamps/${name}"
    done
fi

TODO=()
for name in "${ORDER[@]}"; do
    if ((FORCE)) || ! up_to_date "${name}"; then
        TODO+=("${name}")
    fi
done

if ((${#TODO[@]} == 0)); then
    if ((CHECK)); then
        failed=0
        for name in "${ORDER[@]}"; do
            if first="$(check_version "${name}")"; then
                say "ok ${name}==${PIN[${name}]}: ${first}"
            else
                say "FAILED ${name}: it does not run (re-run with --force ${name})"
                failed=1
            fi
        done
        exit "${failed}"
    fi
    say "${#ORDER[@]} engines up to date in ${TOOLS_DIR}"
    exit 0
fi

find_uv
say "installing ${#TODO[@]} engine(s) with $("${UV}" --version), ${JOBS} at a time, on Python ${PY_INFO#* }"
start_all=${SECONDS}
running=0
for name in "${TODO[@]}"; do
    if ((running >= JOBS)); then
        wait -n || true
        running=$((running - 1))
    fi
    say "installing ${name}==${PIN[${name}]}"
    (
        started=${SECONDS}
        log="${TOOLS_DIR}/logs/${name}.log"
        # Run the install as a job of its own, not as an `if` condition, where bash would ignore
        # `set -e` inside the function.
        (install_engine "${name}") >"${log}" 2>&1 &
        rc=0
        wait "$!" || rc=$?
        if ((rc == 0)); then
            say "ok ${name}==${PIN[${name}]} in $((SECONDS - started)) s: $(tail -n 1 "${log}")"
        else
            say "FAILED ${name}==${PIN[${name}]} after $((SECONDS - started)) s; the end of ${log}:"
            tail -n 20 "${log}" | sed 's/^/    /' >&2
            exit 1
        fi
    ) &
    running=$((running + 1))
done
wait

failed=()
for name in "${TODO[@]}"; do
    up_to_date "${name}" || failed+=("${name}")
done
if ((${#failed[@]} > 0)); then
    say "FAILED: ${failed[*]} (logs in ${TOOLS_DIR}/logs/)" >&2
    exit 1
fi
say "${#TODO[@]} engine(s) installed in $((SECONDS - start_all)) s; commands in ${TOOLS_DIR}/bin"
