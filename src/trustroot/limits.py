"""Every limit in one place, with safe defaults (in the spirit of TUF's ``UpdaterConfig``).

Limits are plain frozen dataclasses so a caller can pass a tightened copy
(``dataclasses.replace(DEFAULT_LIMITS, max_context_bytes=...)``). An unsafe setting has an
alarming name and logs a warning when used.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "INSECURE_TEST_KDF_ENV", "Limits", "ScryptCost", "scrypt_cost"]

_log = logging.getLogger(__name__)

#: Environment variable that selects the test-only key-derivation cost. Never set it in production.
INSECURE_TEST_KDF_ENV = "TRUSTROOT_INSECURE_TEST_KDF"


@dataclass(frozen=True)
class ScryptCost:
    """scrypt parameters (RFC 7914) for encrypting key files; ``n`` is a power of two."""

    n: int
    r: int = 8
    p: int = 1

    @property
    def memory_bytes(self) -> int:
        return 128 * self.r * self.n


#: Default cost for every key file: 128 MiB, about half a second here.
PRODUCTION_SCRYPT = ScryptCost(n=2**17, r=8, p=1)
#: Test-only cost. Orders of magnitude cheaper to brute-force: never use outside a test suite.
INSECURE_TEST_SCRYPT = ScryptCost(n=2**10, r=8, p=1)


_warned: list[bool] = []


def scrypt_cost() -> ScryptCost:
    """The scrypt cost for new key files: production unless the test-only variable is set."""
    if os.environ.get(INSECURE_TEST_KDF_ENV) == "1":
        if not _warned:
            _warned.append(True)
            _log.warning(
                "%s=1: key files use the INSECURE test-only key-derivation cost (N=2^10); never in production",
                INSECURE_TEST_KDF_ENV,
            )
        return INSECURE_TEST_SCRYPT
    return PRODUCTION_SCRYPT


@dataclass(frozen=True)
class Limits:
    """Maximum sizes and counts accepted at trustroot's boundaries."""

    max_context_bytes: int = 1 << 20
    max_key_file_bytes: int = 64 << 10
    max_certificate_bytes: int = 64 << 10
    max_evidence_record_bytes: int = 1 << 20
    max_evidence_data_bytes: int = 256 << 10
    max_share_file_bytes: int = 16 << 10
    max_backup_bytes: int = 1 << 20
    #: Upper bound on scrypt memory accepted when *reading* a key file (refuses resource bombs).
    max_scrypt_memory_bytes: int = 1 << 30
    evidence_checkpoint_every: int = 1000


DEFAULT_LIMITS = Limits()
