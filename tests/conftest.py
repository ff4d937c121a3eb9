"""Suite-wide settings (test-only key-derivation cost, fixed passphrases) and shared product fixtures."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

# Key files written by the suite use the INSECURE test-only scrypt cost (trustroot.limits).
os.environ["TRUSTROOT_INSECURE_TEST_KDF"] = "1"
# No test may ever prompt: a missing secret is an error, never a hang.
os.environ.setdefault("TRUSTROOT_PASSPHRASE", "test-store-passphrase")
os.environ.setdefault("TRUSTROOT_ROOT_PASSPHRASE", "test-root-passphrase")

STORE_PASSPHRASE = os.environ["TRUSTROOT_PASSPHRASE"]
ROOT_PASSPHRASE = os.environ["TRUSTROOT_ROOT_PASSPHRASE"]


@pytest.fixture(scope="session")
def product_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One product per test worker, made once with the test-only KDF; copy it before changing it."""
    from trustroot.keys.passphrase import fixed_secrets
    from trustroot.product import create_product

    directory = tmp_path_factory.mktemp("template") / "acme"
    create_product(directory, "Acme Plug", secrets=fixed_secrets(STORE_PASSPHRASE, ROOT_PASSPHRASE))
    return directory


@pytest.fixture
def product_dir(product_template: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of the session's product, free to change."""
    target = tmp_path / "acme"
    shutil.copytree(product_template, target, symlinks=True)
    yield target
