"""Factory provisioning: per-device identity material and production control (EN 303 645 5.1, 5.4, 5.5).

Per-device identity material (this package's recipes; formats in ``docs/provisioning.md``)::

    identity     serials, device keys, IDevID-style certificates (flow a: CSR; flow b: key made here)
    passwords    derived (HMAC-SHA256 of the factory secret) or random passwords, policy, verifier
    claim        one-time owner claim codes and the hash the records keep
    bundle       DeviceMaterial sealed to a programming station's key (ECDH + HKDF + AES-256-GCM)
    device_dir   the device directory a station writes and the agent reads (trustroot.device/1)

Production control (batches, quotas, tokens, manifests, revocation) lives in the sibling modules
``store``, ``tokens``, ``batch``, ``manifest`` and ``revoke``, which call the recipes above.
"""

from __future__ import annotations

from trustroot.provision.bundle import (
    BundleError,
    ContextExcerpt,
    DeviceMaterial,
    bundle_header,
    context_excerpt,
    make_bundle,
    open_bundle,
)
from trustroot.provision.claim import ClaimCodeError, claim_code_hash, generate_claim_code, verify_claim_code
from trustroot.provision.device_dir import (
    DeviceDirectoryError,
    DeviceLabel,
    ProgrammedDevice,
    load_device_config,
    load_device_identity,
    program,
    program_device,
)
from trustroot.provision.identity import (
    CsrError,
    SerialError,
    format_serial,
    generate_device_key,
    issue_device_certificate,
    parse_serial,
    sign_csr,
)
from trustroot.provision.passwords import (
    PasswordMismatchError,
    check_password_policy,
    derive_device_password,
    password_entropy_bits,
    password_verifier,
    random_device_password,
    verify_password,
)

__all__ = [
    "BundleError",
    "ClaimCodeError",
    "ContextExcerpt",
    "CsrError",
    "DeviceDirectoryError",
    "DeviceLabel",
    "DeviceMaterial",
    "PasswordMismatchError",
    "ProgrammedDevice",
    "SerialError",
    "bundle_header",
    "check_password_policy",
    "claim_code_hash",
    "context_excerpt",
    "derive_device_password",
    "format_serial",
    "generate_claim_code",
    "generate_device_key",
    "issue_device_certificate",
    "load_device_config",
    "load_device_identity",
    "make_bundle",
    "open_bundle",
    "parse_serial",
    "password_entropy_bits",
    "password_verifier",
    "program",
    "program_device",
    "random_device_password",
    "sign_csr",
    "verify_claim_code",
    "verify_password",
]
