"""Fixtures for the integration tests: real external components, never mocks.

SoftHSM2: :func:`softhsm_token` makes one throwaway token for the whole test session in a
temporary directory of its own (its own ``softhsm2.conf``, pointed at by ``SOFTHSM2_CONF``).
When SoftHSM2 is not installed the fixture FAILS, naming the set-up script: a test that needs a
token is never skipped silently.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
from conftest_postgres import *  # noqa: F403  (PostgreSQL and store fixtures)

from trustroot.errors import TokenError
from trustroot.keys._softhsm import (
    SOFTHSM_CONF_ENV,
    SoftHsmInstall,
    SoftHsmToken,
    create_token,
    require_softhsm,
)
from trustroot.keys.passphrase import SecretSource, fixed_secrets
from trustroot.keys.pkcs11store import Pkcs11Backend

SOFTHSM_LABEL = "trustroot-test"
SOFTHSM_PIN = "4821-7730-test"
SOFTHSM_SO_PIN = "so-9917-2245-test"
#: Further tokens tests use for whole products on a token: label -> (user PIN, SO PIN).
EXTRA_TOKENS: dict[str, tuple[str, str]] = {
    "acme-hsm": ("7731-2208-acme", "so-4410-acme"),
    "acme-tls": ("5521-0961-tls", "so-1187-tls"),
}


@pytest.fixture(scope="session")
def softhsm_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsmToken]:
    """A SoftHSM2 token initialised for this test session; this process's SOFTHSM2_CONF points at it."""
    install: SoftHsmInstall | None = None
    problem = ""
    try:
        install = require_softhsm()
    except TokenError as exc:
        problem = str(exc)
    if install is None:  # fail, never skip: a missing SoftHSM2 must not look like a green run
        pytest.fail(
            f"the PKCS#11 integration tests cannot run: {problem}",
            pytrace=False,
        )
    previous = os.environ.get(SOFTHSM_CONF_ENV)
    token = create_token(
        tmp_path_factory.mktemp("softhsm2"),
        SOFTHSM_LABEL,
        pin=SOFTHSM_PIN,
        so_pin=SOFTHSM_SO_PIN,
        install=install,
    )
    # SoftHSM2 reads its token directory when the module is initialised, and trustroot cannot
    # re-initialise it while sessions are open: every token the suite uses is made here, up front.
    for label, (pin, so_pin) in EXTRA_TOKENS.items():
        subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", so_pin, "--pin", pin],
            check=True,
            capture_output=True,
            env={**os.environ, **token.environ()},
        )
    yield token
    if previous is None:
        os.environ.pop(SOFTHSM_CONF_ENV, None)
    else:
        os.environ[SOFTHSM_CONF_ENV] = previous


@pytest.fixture
def pin_secrets(softhsm_token: SoftHsmToken) -> SecretSource:
    """A secret source that answers the session token's user PIN."""
    return fixed_secrets("unused-store-passphrase", pin=softhsm_token.pin)


@pytest.fixture
def pkcs11_backend(softhsm_token: SoftHsmToken, pin_secrets: SecretSource) -> Iterator[Pkcs11Backend]:
    """A backend on the session token, closed after the test."""
    with Pkcs11Backend(softhsm_token.module_path, softhsm_token.label, pin_secrets) as backend:
        yield backend
