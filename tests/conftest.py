"""Suite-wide settings: the test-only key-derivation cost and fixed passphrases."""

from __future__ import annotations

import os

# Key files written by the suite use the INSECURE test-only scrypt cost (trustroot.limits).
os.environ["TRUSTROOT_INSECURE_TEST_KDF"] = "1"
# No test may ever prompt: a missing secret is an error, never a hang.
os.environ.setdefault("TRUSTROOT_PASSPHRASE", "test-store-passphrase")
os.environ.setdefault("TRUSTROOT_ROOT_PASSPHRASE", "test-root-passphrase")
