"""Throwaway SoftHSM2 tokens: locate the installation, make a token in a directory of its own.

Used by the integration tests, by environment checks (``trustroot doctor``) and by the demo. A
token made here lives in ``<directory>/tokens`` with its own ``softhsm2.conf``; SoftHSM2 finds it
through the ``SOFTHSM2_CONF`` environment variable, read when the module is initialised.

These helpers are for throwaway tokens only: the PINs given to :func:`create_token` pass on the
command line of ``softhsm2-util``, where other local users can see them. A production token is
initialised by its owner with the HSM vendor's own tools.

SoftHSM2 reads its token directory once, when the module is initialised. A token created after a
process has loaded the module is invisible to it until the module is initialised again;
:class:`trustroot.keys.pkcs11store.Pkcs11Backend` does that by itself when it has no session open.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from trustroot.errors import TokenError

__all__ = [
    "MODULE_CANDIDATES",
    "SETUP_SCRIPT",
    "SOFTHSM_CONF_ENV",
    "SoftHsmInstall",
    "SoftHsmToken",
    "create_token",
    "locate_softhsm",
    "require_softhsm",
    "write_config",
]

#: The repository script that installs SoftHSM2 and the other system dependencies.
SETUP_SCRIPT = "scripts/setup.sh"

#: Environment variable through which SoftHSM2 finds its configuration file.
SOFTHSM_CONF_ENV = "SOFTHSM2_CONF"

#: Where distributions put the SoftHSM2 PKCS#11 module (Debian first).
MODULE_CANDIDATES: tuple[str, ...] = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/lib/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)

_UTIL_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class SoftHsmInstall:
    """Where SoftHSM2 is installed: its PKCS#11 module and its ``softhsm2-util`` tool."""

    module_path: str
    util_path: str


@dataclass(frozen=True)
class SoftHsmToken:
    """A token made by :func:`create_token` (its PINs included: it is a throwaway)."""

    directory: Path
    config_path: Path
    module_path: str
    label: str
    pin: str
    so_pin: str

    def environ(self) -> dict[str, str]:
        """The environment entries a process needs to see this token."""
        return {SOFTHSM_CONF_ENV: str(self.config_path)}

    def activate(self) -> None:
        """Point this process's SoftHSM2 at this token's configuration."""
        os.environ[SOFTHSM_CONF_ENV] = str(self.config_path)


def locate_softhsm() -> SoftHsmInstall | None:
    """The SoftHSM2 installation on this machine, or None when the module or tool is missing."""
    util = shutil.which("softhsm2-util")
    module = next((c for c in MODULE_CANDIDATES if Path(c).is_file()), None)
    if util is None or module is None:
        return None
    return SoftHsmInstall(module_path=module, util_path=util)


def require_softhsm() -> SoftHsmInstall:
    """The SoftHSM2 installation, or :class:`TokenError` saying how to install it."""
    found = locate_softhsm()
    if found is None:
        missing = []
        if shutil.which("softhsm2-util") is None:
            missing.append("the softhsm2-util tool (not on PATH)")
        if not any(Path(c).is_file() for c in MODULE_CANDIDATES):
            missing.append(f"the PKCS#11 module (looked in {', '.join(MODULE_CANDIDATES)})")
        raise TokenError(
            f"SoftHSM2 is not installed: missing {' and '.join(missing)}; run {SETUP_SCRIPT}",
            hint=f"run {SETUP_SCRIPT} (it installs the Debian package softhsm2)",
        )
    return found


def write_config(directory: Path) -> Path:
    """Write ``softhsm2.conf`` with its own token directory under ``directory``; return its path."""
    tokens = directory / "tokens"
    tokens.mkdir(parents=True, exist_ok=True, mode=0o700)
    config = directory / "softhsm2.conf"
    config.write_text(
        "# SoftHSM2 configuration for a throwaway trustroot token\n"
        f"directories.tokendir = {tokens}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
        "slots.removable = false\n"
        "slots.mechanisms = ALL\n"
        "library.reset_on_fork = false\n",
        encoding="utf-8",
    )
    return config


def create_token(
    directory: Path,
    label: str,
    *,
    pin: str,
    so_pin: str,
    install: SoftHsmInstall | None = None,
    activate: bool = True,
) -> SoftHsmToken:
    """Initialise a new SoftHSM2 token ``label`` with its own configuration in ``directory``.

    With ``activate`` (the default) this process's ``SOFTHSM2_CONF`` points at the new
    configuration afterwards. Raises :class:`TokenError` when SoftHSM2 is missing or refuses.
    """
    found = install or require_softhsm()
    config = write_config(directory)
    env = {**os.environ, SOFTHSM_CONF_ENV: str(config)}
    command = [
        found.util_path,
        "--init-token",
        "--free",
        "--label",
        label,
        "--so-pin",
        so_pin,
        "--pin",
        pin,
    ]
    try:
        result = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=_UTIL_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TokenError(f"softhsm2-util could not initialise token {label!r} in {directory}: {exc}") from exc
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip() or f"exit status {result.returncode}"
        raise TokenError(f"softhsm2-util refused to initialise token {label!r} in {directory}: {detail}")
    token = SoftHsmToken(
        directory=directory,
        config_path=config,
        module_path=found.module_path,
        label=label,
        pin=pin,
        so_pin=so_pin,
    )
    if activate:
        token.activate()
    return token
