"""Every outside component trustroot uses, with its version, or what is missing and how to get it.

This is the logic behind ``trustroot doctor``. :func:`discover` looks at four kinds of
component and returns one frozen :class:`Component` for each:

``debian``
    Debian packages (SoftHSM2, OpenSSL, PostgreSQL, Mosquitto, Chromium, unblob's extractors...),
    asked of ``dpkg-query`` in one call.
``engine``
    The external engines of the tools environment (``scripts/tools-env.sh``), run as
    ``<tools_dir>/bin/<engine> --version``; when the repository's ``scripts/tools-versions.txt`` is
    at hand, the version each reports is compared with its pin.
``pkcs11``
    The PKCS#11 module of the key store (SoftHSM2's by default), loaded in a child process.
``python``
    trustroot's own Python dependencies, from their installed metadata.

The probes run in parallel threads, each a child process with a time limit (5 s by default), so
the whole look takes about as long as the slowest engine. Nothing here raises because a component
is missing or broken: that is what the ``status`` of its :class:`Component` says.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from trustroot.errors import StateError, TrustrootError, UnreadableInputError

__all__ = [
    "DEBIAN_PACKAGES",
    "DEFAULT_PKCS11_MODULE",
    "ENGINES",
    "PROBE_TIMEOUT",
    "PYTHON_LIBRARIES",
    "TOOLS_DIR_ENV",
    "Component",
    "ComponentKind",
    "ComponentStatus",
    "DebianPackage",
    "Engine",
    "PythonLibrary",
    "ToolPin",
    "default_tools_dir",
    "discover",
    "find_repo_root",
    "load_tool_pins",
]

_log = logging.getLogger(__name__)

ComponentKind = Literal["debian", "engine", "pkcs11", "python"]
ComponentStatus = Literal["ok", "missing", "broken"]

#: Environment variable naming the tools environment (the directory holding ``bin/``).
TOOLS_DIR_ENV = "TRUSTROOT_TOOLS_DIR"
#: Where Debian's softhsm2 package puts its PKCS#11 module.
DEFAULT_PKCS11_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
#: Seconds each probe (one engine's ``--version``, ``dpkg-query``, the PKCS#11 load) may take.
PROBE_TIMEOUT = 5.0

_TOOLS_SCRIPT = "scripts/tools-env.sh"
_PINS_FILE = "scripts/tools-versions.txt"
_MAX_PROBE_THREADS = 8
_VERSION_RE = r"(\d+(?:\.\d+)+)"
# Engines must never phone home while probed (semgrep's update check waits ~100 s for a network
# that is not there) and must not colour their output.
_QUIET_ENV = {"SEMGREP_ENABLE_VERSION_CHECK": "0", "SEMGREP_SEND_METRICS": "off", "NO_COLOR": "1"}


@dataclass(frozen=True)
class Component:
    """One outside component: what it is for, whether it is there, and how to install it.

    ``version`` is what the component itself reports (``None`` when missing or unreadable);
    ``required`` is false for what only some deployments or the tests need (PostgreSQL, Chromium,
    the PKCS#11 module unless the product keeps its keys there); ``detail`` says why a component is
    missing or broken, in one line, or is empty.
    """

    name: str
    kind: ComponentKind
    purpose: str
    version: str | None
    status: ComponentStatus
    install_hint: str
    required_by: tuple[str, ...]
    required: bool = True
    detail: str = ""


@dataclass(frozen=True)
class DebianPackage:
    """A Debian package trustroot (or its tests) needs; ``required`` when trustroot cannot work without it."""

    name: str
    purpose: str
    required_by: tuple[str, ...]
    required: bool = False


@dataclass(frozen=True)
class Engine:
    """An external engine of the tools environment, and how to make it tell its version.

    ``version_pattern`` is searched in the output of ``<engine> *version_args``; its first group
    is the version.
    """

    name: str
    purpose: str
    required_by: tuple[str, ...]
    version_args: tuple[str, ...] = ("--version",)
    required: bool = True
    version_pattern: str = rf"(?m)^\s*v?{_VERSION_RE}\s*$"


@dataclass(frozen=True)
class PythonLibrary:
    """A Python distribution trustroot imports, and the top-level module it provides."""

    dist: str
    module: str
    purpose: str
    required_by: tuple[str, ...]
    required: bool = True


@dataclass(frozen=True)
class ToolPin:
    """One line of ``scripts/tools-versions.txt``: ``name==version [# reports X; override REQ]``.

    ``reports`` is the version the engine prints itself (the pinned version unless the line says
    otherwise); ``overrides`` are dependency overrides the installer applies.
    """

    name: str
    version: str
    reports: str
    overrides: tuple[str, ...] = field(default=())


_UNBLOB = ("scan: firmware unpacking (unblob)",)

DEBIAN_PACKAGES: tuple[DebianPackage, ...] = (
    DebianPackage("softhsm2", "PKCS#11 token (SoftHSM2) for the key store's PKCS#11 backend", ("keys",)),
    DebianPackage("openssl", "OpenSSL command line: cross-checks certificates, CRLs and TLS", ("pki", "tests")),
    DebianPackage("postgresql", "PostgreSQL server: the fleet store at scale, and its tests", ("fleet",)),
    DebianPackage("mosquitto", "MQTT broker for device telemetry over TLS", ("fleet", "monitor")),
    DebianPackage("chromium", "headless browser for the web console's end-to-end tests", ("web", "tests")),
    DebianPackage("e2fsprogs", "debugfs: unpacks ext2/3/4 file systems found in firmware", _UNBLOB),
    DebianPackage("squashfs-tools", "unsquashfs: unpacks SquashFS file systems found in firmware", _UNBLOB),
    DebianPackage("p7zip-full", "7z: unpacks 7-Zip, ISO, CAB and similar archives in firmware", _UNBLOB),
    DebianPackage("unar", "unar: unpacks RAR archives found in firmware", _UNBLOB),
    DebianPackage("zstd", "zstd: decompresses Zstandard streams found in firmware", _UNBLOB),
    DebianPackage("lz4", "lz4: decompresses LZ4 streams found in firmware", _UNBLOB),
    DebianPackage("lzop", "lzop: decompresses LZO streams found in firmware", _UNBLOB),
    DebianPackage("lziprecover", "lziprecover: decompresses lzip streams found in firmware", _UNBLOB),
    DebianPackage("android-sdk-libsparse-utils", "simg2img: converts Android sparse images found in firmware", _UNBLOB),
)

ENGINES: tuple[Engine, ...] = (
    Engine(
        "cppcheck",
        "C/C++ static analysis: CWE, CERT C and MISRA-style checks",
        ("scan",),
        version_pattern=rf"Cppcheck {_VERSION_RE}",
    ),
    Engine(
        "clang-tidy",
        "C/C++ linter from LLVM: CERT C and bug-prone checks",
        ("scan",),
        version_pattern=rf"LLVM version {_VERSION_RE}",
    ),
    Engine("flawfinder", "lexical scan of C/C++ for risky calls, tagged with CWE", ("scan",)),
    Engine("semgrep", "pattern rules over source code: trustroot's own IoT checks", ("scan",)),
    Engine("detect-secrets", "finds hard-coded keys, passwords and tokens", ("scan",)),
    Engine("unblob", "unpacks firmware images so that the other scanners can see inside", ("scan",)),
    Engine(
        "sslyze",
        "checks the TLS configuration of a device or service",
        ("scan", "fleet"),
        version_args=("--help",),  # sslyze has no --version; --help names it
        version_pattern=rf"SSLyze version {_VERSION_RE}",
    ),
    Engine(
        "imgtool",
        "MCUboot's image tool: cross-checks trustroot's signed images",
        ("image", "tests"),
        version_args=("version",),
    ),
)

PYTHON_LIBRARIES: tuple[PythonLibrary, ...] = (
    PythonLibrary("cryptography", "cryptography", "keys, signatures, certificates and TLS", ("keys", "pki", "image")),
    PythonLibrary("pydantic", "pydantic", "Security Context schema and typed parsing at boundaries", ("context",)),
    PythonLibrary("typer", "typer", "the command line", ("cli",)),
    PythonLibrary("rich", "rich", "terminal tables and progress bars", ("cli",)),
    PythonLibrary("python-pkcs11", "pkcs11", "PKCS#11 backend of the key store", ("keys",)),
    PythonLibrary("tomlkit", "tomlkit", "reads and edits security-context.toml, keeping comments", ("context",)),
)


# --- locating the tools environment and its pins -------------------------------------------------


def find_repo_root(start: Path | None = None) -> Path | None:
    """The trustroot checkout holding ``start`` (default: this package), or ``None``.

    A checkout is recognised by its ``scripts/tools-env.sh``; an installed wheel has none.
    """
    here = (start or Path(__file__)).resolve()
    for directory in (here, *here.parents):
        if (directory / _TOOLS_SCRIPT).is_file():
            return directory
    return None


def default_tools_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """The tools environment: ``$TRUSTROOT_TOOLS_DIR``, else ``<repo>/.tools`` if it exists, else ``None``."""
    env = os.environ if environ is None else environ
    configured = env.get(TOOLS_DIR_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    repo = find_repo_root()
    if repo is not None and (repo / ".tools").is_dir():
        return repo / ".tools"
    return None


_PIN_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)\s*(?:#(.*))?$")


def load_tool_pins(path: Path) -> dict[str, ToolPin]:
    """Read the engine pins from ``path`` (``scripts/tools-versions.txt``), keyed by name.

    Raises :class:`~trustroot.errors.UnreadableInputError` when the file cannot be read and
    :class:`~trustroot.errors.StateError` when a line is not ``name==version [# clauses]``.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UnreadableInputError(f"{path}: cannot read the engine pins: {exc}") from exc
    pins: dict[str, ToolPin] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _PIN_LINE.match(line)
        if match is None:
            raise StateError(f"{path}:{number}: expected 'name==version [# clauses]', got {raw!r}")
        name, version, comment = match.groups()
        if name in pins:
            raise StateError(f"{path}:{number}: {name} is pinned twice")
        reports, overrides = version, []
        for clause in (comment or "").split(";"):
            words = clause.split()
            if not words:
                continue
            if len(words) == 2 and words[0] == "reports":
                reports = words[1]
            elif len(words) == 2 and words[0] == "override":
                overrides.append(words[1])
            else:
                raise StateError(f"{path}:{number}: unknown clause {clause.strip()!r}")
        pins[name] = ToolPin(name, version, reports, tuple(overrides))
    return pins


def _default_pins() -> dict[str, ToolPin]:
    repo = find_repo_root()
    if repo is None or not (repo / _PINS_FILE).is_file():
        return {}
    try:
        return load_tool_pins(repo / _PINS_FILE)
    except TrustrootError as exc:
        _log.warning("engine pins ignored: %s", exc)
        return {}


# --- running probes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Run:
    """The outcome of one probe: exit code (``None`` when it could not start or timed out)."""

    returncode: int | None
    output: str
    failure: str = ""


def _run(argv: Sequence[str], timeout: float) -> _Run:
    """Run ``argv`` with no input and a time limit; stdout and stderr together."""
    env = {**os.environ, **_QUIET_ENV}
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # so that a timeout can end the engine's children too
        )
    except OSError as exc:
        return _Run(None, "", f"cannot run {argv[0]}: {exc.strerror or exc}")
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            proc.communicate(timeout=1)
        except subprocess.TimeoutExpired:  # a grandchild left the group and holds the pipe
            if proc.stdout is not None:
                proc.stdout.close()
            proc.wait()
        return _Run(None, "", f"no answer within {timeout:g} s")
    return _Run(proc.returncode, out.decode("utf-8", errors="replace"))


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:200]
    return ""


def _version_matches(reported: str, wanted: str) -> bool:
    return reported == wanted or reported.startswith(wanted + ".")


# --- the four kinds ------------------------------------------------------------------------------


def _debian_components(packages: Sequence[DebianPackage], timeout: float) -> list[Component]:
    """Ask dpkg-query once for every package."""
    if not packages:
        return []
    found: dict[str, str] = {}
    failure = ""
    dpkg_query = shutil.which("dpkg-query")
    if dpkg_query is None:
        failure = "dpkg-query not found: not a Debian system"
    else:
        run = _run(
            [
                dpkg_query,
                "-W",
                "-f",
                r"${Package}\t${db:Status-Abbrev}\t${Version}\n",
                *(p.name for p in packages),
            ],
            timeout,
        )
        if run.returncode is None:
            failure = f"dpkg-query: {run.failure}"
        for line in run.output.splitlines():
            parts = line.split("\t")
            # "ii " is installed; "rc " (removed, configuration left) and the like are not.
            if len(parts) == 3 and parts[1].startswith("ii") and parts[2]:
                found[parts[0]] = parts[2]
    components = []
    for package in packages:
        version = found.get(package.name)
        components.append(
            Component(
                name=package.name,
                kind="debian",
                purpose=package.purpose,
                version=version,
                status="ok" if version else "missing",
                install_hint=f"apt-get install {package.name}",
                required_by=package.required_by,
                required=package.required,
                detail="" if version else (failure or "not installed"),
            )
        )
    return components


def _engine_version(engine: Engine, executable: Path, timeout: float) -> tuple[str | None, str]:
    """The version the engine reports, or ``None`` and why not."""
    run = _run([str(executable), *engine.version_args], timeout)
    if run.returncode is None:
        return None, run.failure
    if run.returncode != 0:
        return None, f"exit {run.returncode}: {_first_line(run.output)}"
    match = re.search(engine.version_pattern, run.output)
    if match is None:
        return None, f"reports no version: {_first_line(run.output)}"
    return match.group(1), ""


def _engine_component(engine: Engine, tools_dir: Path | None, pin: ToolPin | None, timeout: float) -> Component:
    install = "scripts/tools-env.sh (in the trustroot repository; it builds .tools/)"
    repair = f"scripts/tools-env.sh --force {engine.name}"

    def result(status: ComponentStatus, version: str | None, detail: str, hint: str) -> Component:
        return Component(
            engine.name,
            "engine",
            engine.purpose,
            version,
            status,
            hint,
            engine.required_by,
            engine.required,
            detail,
        )

    if tools_dir is None:
        return result("missing", None, f"no tools environment (.tools/ or ${TOOLS_DIR_ENV})", install)
    executable = tools_dir / "bin" / engine.name
    if not executable.exists():
        return result("missing", None, f"{executable} does not exist", install)
    version, failure = _engine_version(engine, executable, timeout)
    if version is None:
        return result("broken", None, failure, repair)
    if pin is not None and not _version_matches(version, pin.reports):
        return result("broken", version, f"pinned {pin.name}=={pin.version}, which reports {pin.reports}", repair)
    return result("ok", version, "", install)


_PKCS11_PROBE = """
import sys
import pkcs11
lib = pkcs11.lib(sys.argv[1])
major, minor = lib.library_version
print(f"{lib.manufacturer_id.strip()} {major}.{minor}")
"""


def _pkcs11_component(module: Path, required: bool, timeout: float) -> Component:
    default = module == DEFAULT_PKCS11_MODULE
    hint = "apt-get install softhsm2" if default else "give the path of your HSM vendor's PKCS#11 module"

    def result(status: ComponentStatus, version: str | None, detail: str) -> Component:
        purpose = f"PKCS#11 module of the key store{' (SoftHSM2)' if default else ''}: {module}"
        return Component("pkcs11-module", "pkcs11", purpose, version, status, hint, ("keys",), required, detail)

    if not module.is_file():
        return result("missing", None, f"{module} does not exist")
    if not os.access(module, os.R_OK):
        return result("broken", None, f"{module} is not readable")
    if importlib.util.find_spec("pkcs11") is None:
        return result("ok", None, "python-pkcs11 is not installed: the module was not loaded")
    run = _run([sys.executable, "-c", _PKCS11_PROBE, str(module)], timeout)
    if run.returncode != 0:
        lines = run.output.strip().splitlines()  # a traceback's last line names the error
        reason = run.failure or (lines[-1].strip()[:200] if lines else f"exit {run.returncode}")
        return result("broken", None, f"does not load: {reason}")
    return result("ok", _first_line(run.output) or None, "")


def _python_component(library: PythonLibrary) -> Component:
    def result(status: ComponentStatus, version: str | None, detail: str) -> Component:
        hint = f"pip install {library.dist}"
        return Component(
            library.dist,
            "python",
            library.purpose,
            version,
            status,
            hint,
            library.required_by,
            library.required,
            detail,
        )

    try:
        version = importlib.metadata.version(library.dist)
    except importlib.metadata.PackageNotFoundError:
        return result("missing", None, "not installed")
    if importlib.util.find_spec(library.module) is None:
        return result("broken", version, f"installed, but module {library.module!r} cannot be found")
    return result("ok", version, "")


def discover(
    *,
    tools_dir: Path | None = None,
    pkcs11_module: Path | None = None,
    pkcs11_required: bool = False,
    pins: Mapping[str, ToolPin] | None = None,
    kinds: Collection[ComponentKind] | None = None,
    timeout: float = PROBE_TIMEOUT,
    debian_packages: Sequence[DebianPackage] = DEBIAN_PACKAGES,
    engines: Sequence[Engine] = ENGINES,
    python_libraries: Sequence[PythonLibrary] = PYTHON_LIBRARIES,
) -> tuple[Component, ...]:
    """Every component trustroot uses, in the order debian, engine, pkcs11, python.

    ``tools_dir`` defaults to :func:`default_tools_dir`; ``pkcs11_module`` to
    :data:`DEFAULT_PKCS11_MODULE`, which is ``required`` only with ``pkcs11_required`` (when the
    Security Context keeps its keys on a PKCS#11 token); ``pins`` to the repository's
    ``scripts/tools-versions.txt`` when trustroot runs from a checkout (an engine reporting another
    version than its pin is broken). ``kinds`` limits the look to some kinds; ``timeout`` bounds
    each probe. Never raises for a missing or broken component.
    """
    wanted = set(kinds) if kinds is not None else {"debian", "engine", "pkcs11", "python"}
    tools = tools_dir if tools_dir is not None else default_tools_dir()
    engine_pins = dict(pins) if pins is not None else (_default_pins() if "engine" in wanted else {})
    module = pkcs11_module if pkcs11_module is not None else DEFAULT_PKCS11_MODULE

    with concurrent.futures.ThreadPoolExecutor(max_workers=_MAX_PROBE_THREADS) as pool:
        # The engines go first: they are the slowest probes.
        engine_futures = [
            pool.submit(_engine_component, engine, tools, engine_pins.get(engine.name), timeout)
            for engine in (engines if "engine" in wanted else ())
        ]
        debian_future = pool.submit(_debian_components, debian_packages if "debian" in wanted else (), timeout)
        pkcs11_future = pool.submit(_pkcs11_component, module, pkcs11_required, timeout) if "pkcs11" in wanted else None
        python = [_python_component(library) for library in (python_libraries if "python" in wanted else ())]
        result: list[Component] = list(debian_future.result())
        result.extend(future.result() for future in engine_futures)
        if pkcs11_future is not None:
            result.append(pkcs11_future.result())
    result.extend(python)
    return tuple(result)
