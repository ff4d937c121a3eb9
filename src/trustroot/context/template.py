"""The Security Context ``trustroot init`` writes: secure defaults, every section commented."""

from __future__ import annotations

import json
import re
from datetime import date

__all__ = ["default_context_text", "product_slug"]


def _toml_str(value: str) -> str:
    """A TOML basic string (JSON string escaping is a subset TOML accepts)."""
    return json.dumps(value, ensure_ascii=False)


def product_slug(name: str) -> str:
    """``"Acme Plug"`` -> ``"acme-plug"``."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:40] or "product"


def _add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def default_context_text(
    product: str,
    *,
    today: date,
    manufacturer: str = "Example Manufacturer Ltd",
    address: str = "1 Example Street, Example Town, EX1 1EX, United Kingdom",
    contact: str | None = None,
    policy_url: str | None = None,
    support_years: int = 5,
    backend: str = "file",
    pkcs11_module: str | None = None,
    pkcs11_token: str | None = None,
) -> str:
    """The text of a new, secure ``security-context.toml`` for ``product``."""
    slug = product_slug(product)
    prefix = re.sub(r"[^A-Z0-9]", "", product.upper())[:6] or "DEV"
    contact = contact or f"mailto:security@{slug}.example"
    policy_url = policy_url or f"https://{slug}.example/security/disclosure-policy"
    pkcs11 = ""
    if backend == "pkcs11":
        pkcs11 = (
            "\n[root_of_trust.pkcs11]\n"
            f"module = {_toml_str(pkcs11_module or '/usr/lib/softhsm/libsofthsm2.so')}\n"
            f"token_label = {_toml_str(pkcs11_token or 'trustroot')}\n"
        )
    return f"""\
# Security Context of {product}: the one description of this product's security.
# trustroot reads it for every action; `trustroot context check` lints it against ETSI EN 303 645.
# Reference of every key: docs/context.md. State (keys, certificates, evidence) lives in .trustroot/.
schema_version = 1

[product]
name = {_toml_str(product)}
manufacturer = {_toml_str(manufacturer)}
manufacturer_address = {_toml_str(address)}
model = {_toml_str(slug.upper()[:64])}
hardware_versions = ["1.0"]
# Last day security updates are provided (EN 303 645 5.3-13).
support_period_end = {_add_years(today, support_years).isoformat()}

[product.disclosure]
# Where to report a vulnerability (5.2-1). Replace the placeholders with real addresses.
contact = [{_toml_str(contact)}]
policy_url = {_toml_str(policy_url)}
preferred_languages = ["en"]
acknowledge_within_days = 5

[root_of_trust]
# "file": scrypt-encrypted PKCS#8 files in .trustroot/keys; "pkcs11": keys made on a token.
backend = {_toml_str(backend)}
root_ca_validity_years = 20
issuing_ca_validity_years = 10
{pkcs11}
[root_of_trust.algorithms]
root_ca = "ecdsa-p384"
issuing_ca = "ecdsa-p256"
update = "ed25519"
evidence = "ed25519"

[identity]
serial_prefix = {_toml_str(prefix + "-")}
serial_digits = 8

[identity.certificate]
algorithm = "ecdsa-p256"
no_expiry = false
validity_days = 7300

[identity.password]
# Unique per device: HMAC-SHA256 of the factory secret, the product and the serial (5.1-1).
mode = "derived"
alphabet = "base32"
length = 16
min_entropy_bits = 60

[boot]
image_format = "mcuboot"
signature = "ecdsa-p256"
encryption = "none"
hash = "sha256"
anti_rollback = true
upgrade_mode = "swap"
test_boot = true
header_size = 0x200
slot_size = 0x60000
sector_size = 0x1000
align = 8
erased_value = 0xff

[update]
channels = ["stable"]
automatic = true
failure_pause_threshold = 0.05
checkin_interval_s = 3600
checkin_jitter_s = [0, 600]
timestamp_expiry_hours = 24
download_deadline_s = 600

[[update.rollout_stages]]
percent = 1
min_hours = 24

[[update.rollout_stages]]
percent = 10
min_hours = 24

[[update.rollout_stages]]
percent = 50
min_hours = 24

[[update.rollout_stages]]
percent = 100

[communication]
min_tls_version = "1.2"
mutual_tls = true
service_url = "https://127.0.0.1:8443"

[telemetry]
enabled = true
allowed_ports = []
contains_personal_data = false

[data]
delete_on_reset = true
delete_on_transfer = true
deletion_receipt = true

[[data.personal]]
name = "wifi-credentials"
description = "The owner's Wi-Fi network name and password"
sensitive = true
on_device = true
in_service = false
retention_days = 30

[[data.personal]]
name = "owner-account"
description = "The owner's account identifier and e-mail address"
on_device = false
in_service = true
retention_days = 365

[code_quality]
fail_on = "medium"
misra = false

[[code_quality.targets]]
name = "firmware-src"
path = "firmware/src"
kind = "source"

[declarations]
# Provisions no tool can check, e.g.:
# "5.6-4A" = {{ statement = "JTAG is disabled by eFuse in production", by = "Head of Hardware" }}
"""
