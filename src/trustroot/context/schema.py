"""The Security Context schema: one declarative description of a product's security.

Each section is a frozen pydantic model that refuses unknown keys and wrong types, so an invalid
context cannot be constructed (validation happens once, on load). Field descriptions are the
reference documentation: ``scripts/gen_context_docs.py`` renders them into docs/context.md and
:func:`json_schema` exports them as JSON Schema.

``schema_version`` is the major version of this format; a file with an unknown one is refused
before anything else is read. Values the schema accepts can still be insecure (TLS 1.0, a shared
password, anti-rollback off): those are findings of the EN 303 645 lint (``context/lint.py``), so
a user sees every problem with its provision rather than only the first.
"""

from __future__ import annotations

import re
import typing
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "SCHEMA_VERSION",
    "Boot",
    "CodeQuality",
    "Communication",
    "Component",
    "Data",
    "Declaration",
    "DeviceCertificate",
    "DevicePassword",
    "Disclosure",
    "Identity",
    "KeyAlgorithms",
    "PersonalDataCategory",
    "Pkcs11Config",
    "Product",
    "RolloutStage",
    "RootOfTrust",
    "ScanTarget",
    "SecurityContext",
    "SigningAlgorithm",
    "Telemetry",
    "TelemetryRule",
    "Update",
    "json_schema",
]

SCHEMA_VERSION = 1

SigningAlgorithm = Literal["ecdsa-p256", "ecdsa-p384", "ed25519", "rsa-3072"]
TlsVersion = Literal["1.0", "1.1", "1.2", "1.3"]
Metric = Literal[
    "auth_failures",
    "connection_attempts",
    "bytes_in",
    "bytes_out",
    "messages_in",
    "messages_out",
    "message_size_max",
    "listening_ports",
    "destinations",
    "firmware_version",
    "cpu_percent",
    "memory_percent",
    "update_auth_failures",
]
ALL_METRICS: tuple[Metric, ...] = typing.get_args(Metric)
Engine = Literal["cppcheck", "clang-tidy", "flawfinder", "semgrep", "detect-secrets", "unblob", "trustroot"]
ALL_ENGINES: tuple[Engine, ...] = (
    "cppcheck",
    "clang-tidy",
    "flawfinder",
    "semgrep",
    "detect-secrets",
    "unblob",
    "trustroot",
)

_SLUG = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_PROVISION_ID = re.compile(r"^(5\.(?:0|[1-9]|1[0-3])-[0-9]{1,2}[AB]?|6-[0-9][AB]?)$")
_CONTACT = re.compile(r"^(mailto:[^@\s]+@[^@\s]+\.[^@\s]+|https://\S+|tel:\+?[0-9 ()-]{5,30})$")

Text = Annotated[str, Field(min_length=1, max_length=200)]
LongText = Annotated[str, Field(min_length=1, max_length=2000)]
HttpsUrl = Annotated[str, Field(pattern=r"^https://[^\s/$.?#][^\s]*$", max_length=500)]
Slug = Annotated[str, Field(pattern=_SLUG)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, validate_default=True)


class Disclosure(_Section):
    """How to report a vulnerability (guideline 2). Served as security.txt (RFC 9116)."""

    contact: list[Annotated[str, Field(max_length=300)]] = Field(
        min_length=1,
        max_length=10,
        description="Where to report a vulnerability: `mailto:`, `https://` or `tel:` URIs, most preferred first.",
    )
    policy_url: HttpsUrl = Field(description="The published vulnerability disclosure policy (https URL).")
    preferred_languages: list[Annotated[str, Field(pattern=r"^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{1,8})*$")]] = Field(
        default_factory=lambda: ["en"],
        min_length=1,
        max_length=10,
        description="Languages reports may use (RFC 5646).",
    )
    canonical_url: HttpsUrl | None = Field(
        default=None, description="Where the security.txt is published (its Canonical field)."
    )
    acknowledge_within_days: int = Field(
        default=5, ge=1, le=90, description="The promised time to acknowledge a report, in days."
    )
    security_txt_validity_days: int = Field(
        default=180,
        ge=1,
        le=365,
        description="How far ahead security.txt's Expires is set (RFC 9116: under a year).",
    )

    @field_validator("contact")
    @classmethod
    def _contacts_are_uris(cls, value: list[str]) -> list[str]:
        for item in value:
            if not _CONTACT.match(item):
                raise ValueError(f"{item!r} is not a mailto:, https:// or tel: URI")
        return value


class Product(_Section):
    """What the product is and who stands behind it (PSTI statement of compliance, 5.3-13, 5.3-16)."""

    name: Text = Field(description="The product's name as sold.")
    manufacturer: Text = Field(description="The manufacturer's legal name.")
    manufacturer_address: LongText = Field(description="The manufacturer's postal address (PSTI statement).")
    model: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._/-]{0,63}$")] = Field(
        description="The model designation printed on the device (5.3-16)."
    )
    product_type: Text = Field(default="consumer connectable product", description="Product type (PSTI statement).")
    hardware_versions: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field(
        min_length=1, max_length=50, description="Hardware revisions this context covers."
    )
    support_period_end: date | None = Field(
        default=None,
        description="Last day security updates are provided (5.3-13); a TOML date, e.g. 2031-12-31.",
    )
    disclosure: Disclosure | None = Field(default=None, description="Vulnerability disclosure (5.2-1).")


class Pkcs11Config(_Section):
    """Where the PKCS#11 token is. The PIN comes from TRUSTROOT_PKCS11_PIN or a prompt, never from here."""

    module: Annotated[str, Field(min_length=1, max_length=500)] = Field(
        description="Path of the PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so)."
    )
    token_label: Annotated[str, Field(min_length=1, max_length=32)] = Field(description="Label of the token.")


class KeyAlgorithms(_Section):
    """Algorithms of the root-of-trust keys. Firmware signing and image encryption follow [boot]."""

    root_ca: SigningAlgorithm = Field(default="ecdsa-p384", description="Offline root CA.")
    issuing_ca: SigningAlgorithm = Field(default="ecdsa-p256", description="Issuing CA for device identities.")
    update: SigningAlgorithm = Field(default="ed25519", description="TUF keys (root, targets, snapshot, timestamp).")
    evidence: SigningAlgorithm = Field(default="ed25519", description="Evidence log checkpoints.")


class RootOfTrust(_Section):
    """The product's keys: where they live and what they are."""

    backend: Literal["file", "pkcs11"] = Field(
        default="file",
        description="`file`: scrypt-encrypted PKCS#8 files in .trustroot/keys; `pkcs11`: keys made on a token.",
    )
    pkcs11: Pkcs11Config | None = Field(default=None, description="Token settings, required for backend = pkcs11.")
    algorithms: KeyAlgorithms = Field(default_factory=KeyAlgorithms, description="Key algorithms per role.")
    root_ca_validity_years: int = Field(default=20, ge=1, le=50, description="Validity of the root CA certificate.")
    issuing_ca_validity_years: int = Field(default=10, ge=1, le=30, description="Validity of the issuing CA.")

    @model_validator(mode="after")
    def _pkcs11_needs_token(self) -> RootOfTrust:
        if self.backend == "pkcs11" and self.pkcs11 is None:
            raise ValueError("backend = 'pkcs11' needs a [root_of_trust.pkcs11] table with module and token_label")
        return self


class DeviceCertificate(_Section):
    """The per-device identity certificate (IEEE 802.1AR IDevID style)."""

    algorithm: Literal["ecdsa-p256", "ed25519"] = Field(default="ecdsa-p256", description="Device key algorithm.")
    no_expiry: bool = Field(
        default=False,
        description="Use 802.1AR's 'no expiration' notAfter (99991231235959Z) instead of validity_days.",
    )
    validity_days: int = Field(default=7300, ge=1, le=36500, description="Certificate validity in days.")


class DevicePassword(_Section):
    """Per-device passwords (guideline 1)."""

    mode: Literal["derived", "random", "user-set", "none", "shared"] = Field(
        default="derived",
        description="`derived`: HMAC-SHA256 of the factory secret, product and serial; `random`: drawn per device; "
        "`user-set`: the user must set one before use; `none`: no password authentication; "
        "`shared`: one password for every unit (refused by the lint, 5.1-1).",
    )
    alphabet: Literal["base32", "base58", "alnum", "digits"] = Field(
        default="base32", description="Characters of generated passwords."
    )
    length: int = Field(default=16, ge=6, le=64, description="Characters per generated password.")
    min_entropy_bits: int = Field(default=60, ge=0, le=256, description="Lower bound the lint enforces, in bits.")
    shared_value: Annotated[str, Field(max_length=128)] | None = Field(
        default=None, description="Only with mode = 'shared' (which the lint refuses)."
    )

    @property
    def entropy_bits(self) -> float:
        """Entropy of a generated password in bits (0 for modes that generate none)."""
        import math

        sizes = {"base32": 32, "base58": 58, "alnum": 62, "digits": 10}
        if self.mode not in ("derived", "random"):
            return 0.0
        return self.length * math.log2(sizes[self.alphabet])


class Identity(_Section):
    """Device identities made in the factory."""

    serial_prefix: Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9-]{0,15}$")] = Field(
        description="Prefix of device serial numbers (upper-case letters, digits, '-')."
    )
    serial_digits: int = Field(default=8, ge=4, le=16, description="Zero-padded digits after the prefix.")
    certificate: DeviceCertificate = Field(default_factory=DeviceCertificate, description="Device certificate.")
    password: DevicePassword = Field(default_factory=DevicePassword, description="Device password policy.")


class Boot(_Section):
    """Firmware image format and secure boot (guidelines 3 and 7)."""

    image_format: Literal["mcuboot"] = Field(default="mcuboot", description="Image format (MCUboot's).")
    signature: Literal["ecdsa-p256", "ecdsa-p384", "ed25519", "rsa-3072", "none"] = Field(
        default="ecdsa-p256", description="Image signature algorithm; `none` is refused by the lint."
    )
    encryption: Literal["none", "ecies-p256", "ecies-x25519"] = Field(
        default="none",
        description="Image encryption (IP protection); must pair with the signature as MCUboot allows.",
    )
    encryption_key_bits: Literal[128, 256] = Field(default=256, description="AES-CTR key size for encrypted images.")
    hash: Literal["sha256", "sha384", "sha512"] = Field(default="sha256", description="Image hash TLV.")
    anti_rollback: bool = Field(default=True, description="Enforce MCUboot's security counter (downgrade protection).")
    upgrade_mode: Literal["swap", "overwrite"] = Field(default="swap", description="How a new image is installed.")
    test_boot: bool = Field(default=True, description="Boot a new image once, revert unless it confirms itself.")
    header_size: int = Field(default=0x200, ge=0x20, le=0x10000, description="Image header size in bytes.")
    slot_size: int = Field(default=0x60000, ge=0x1000, le=0x10000000, description="Flash slot size in bytes.")
    sector_size: int = Field(default=0x1000, ge=0x80, le=0x40000, description="Flash erase sector size in bytes.")
    align: Literal[1, 2, 4, 8, 16, 32] = Field(default=8, description="Flash write alignment in bytes.")
    erased_value: Literal[0, 255] = Field(default=255, description="Value of erased flash (0xff or 0x00).")

    @model_validator(mode="after")
    def _geometry(self) -> Boot:
        if self.slot_size % self.sector_size:
            raise ValueError(f"slot_size 0x{self.slot_size:x} is not a multiple of sector_size 0x{self.sector_size:x}")
        if self.header_size % 8 or self.header_size >= self.slot_size:
            raise ValueError("header_size must be a multiple of 8 and smaller than slot_size")
        return self


class RolloutStage(_Section):
    """One stage of a staged rollout."""

    percent: float = Field(gt=0, le=100, description="Share of the channel's devices offered the release.")
    min_hours: float = Field(default=0, ge=0, le=24 * 90, description="Minimum time before the next stage.")


def _default_stages() -> list[RolloutStage]:
    return [RolloutStage(percent=p, min_hours=h) for p, h in ((1, 24), (10, 24), (50, 24), (100, 0))]


class Update(_Section):
    """Update distribution and device check-ins (guidelines 3 and 9)."""

    channels: list[Slug] = Field(
        default_factory=lambda: ["stable"], min_length=1, max_length=20, description="Channels."
    )
    automatic: bool = Field(default=True, description="Devices install security updates automatically (5.3-4A).")
    rollout_stages: list[RolloutStage] = Field(
        default_factory=_default_stages,
        min_length=1,
        max_length=20,
        description="Stages, ending at 100 percent.",
    )
    failure_pause_threshold: float = Field(
        default=0.05, gt=0, le=1, description="Share of failed installs that pauses a rollout."
    )
    checkin_interval_s: int = Field(default=3600, ge=10, le=7 * 86400, description="Mean time between check-ins.")
    checkin_jitter_s: list[int] = Field(
        default_factory=lambda: [0, 600],
        min_length=2,
        max_length=2,
        description="Random delay added to each check-in, [min, max] seconds (spreads load, 5.9-3).",
    )
    timestamp_expiry_hours: int = Field(default=24, ge=1, le=24 * 7, description="TUF timestamp metadata lifetime.")
    download_deadline_s: int = Field(default=600, ge=10, le=86400, description="Total deadline of an image download.")

    @model_validator(mode="after")
    def _stages_and_jitter(self) -> Update:
        percents = [s.percent for s in self.rollout_stages]
        if percents != sorted(percents) or percents[-1] != 100:
            raise ValueError("rollout_stages must rise and end at percent = 100")
        low, high = self.checkin_jitter_s
        if low < 0 or high < low or high > 86400:
            raise ValueError("checkin_jitter_s must be [min, max] with 0 <= min <= max <= 86400")
        return self


class Communication(_Section):
    """Secure communication (guideline 5)."""

    min_tls_version: TlsVersion = Field(default="1.2", description='Lowest TLS version accepted: "1.2" or "1.3".')
    mutual_tls: bool = Field(default=True, description="Devices authenticate with their identity certificate.")
    service_url: HttpsUrl = Field(default="https://127.0.0.1:8443", description="Where devices reach the service.")


class TelemetryRule(_Section):
    """A threshold rule over one metric."""

    metric: Metric = Field(description="The metric the rule watches.")
    max: float | None = Field(default=None, description="Alert above this value within the window.")
    min: float | None = Field(default=None, description="Alert below this value within the window.")
    window_s: int = Field(default=60, ge=1, le=86400, description="Window the value is summed over, in seconds.")

    @model_validator(mode="after")
    def _has_bound(self) -> TelemetryRule:
        if self.max is None and self.min is None:
            raise ValueError("a rule needs max or min")
        return self


class Telemetry(_Section):
    """Security telemetry and anomaly detection (guideline 10)."""

    enabled: bool = Field(default=True, description="Devices send security telemetry.")
    metrics: list[Metric] = Field(default_factory=lambda: list(ALL_METRICS), description="Metrics devices report.")
    rules: list[TelemetryRule] = Field(
        default_factory=lambda: [
            TelemetryRule(metric="auth_failures", max=10, window_s=60),
            TelemetryRule(metric="update_auth_failures", max=0, window_s=3600),
        ],
        max_length=100,
        description="Threshold rules.",
    )
    allowed_ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(
        default_factory=list, max_length=100, description="Ports a device may listen on; others alert."
    )
    allowed_destinations: list[Annotated[str, Field(max_length=253)]] = Field(
        default_factory=list,
        max_length=200,
        description="Hosts or CIDRs a device may contact; empty = the service.",
    )
    contains_personal_data: bool = Field(default=False, description="Telemetry carries personal data (6-4).")


class PersonalDataCategory(_Section):
    """A category of personal data the product processes (guidelines 8 and 11)."""

    name: Slug = Field(description="Identifier, e.g. `wifi-credentials`.")
    description: Text = Field(description="What it is, in the user's words.")
    sensitive: bool = Field(default=False, description="Sensitive personal data (5.8-2).")
    on_device: bool = Field(default=True, description="Stored on the device.")
    in_service: bool = Field(default=False, description="Stored by the fleet service.")
    retention_days: int = Field(default=365, ge=1, le=3650, description="How long the service keeps it.")


class Data(_Section):
    """Personal data and its deletion (guidelines 8 and 11)."""

    personal: list[PersonalDataCategory] = Field(default_factory=list, max_length=50, description="Categories.")
    delete_on_reset: bool = Field(default=True, description="A factory reset erases personal data (5.11-1).")
    delete_on_transfer: bool = Field(default=True, description="An ownership transfer erases personal data.")
    deletion_receipt: bool = Field(default=True, description="Deletions return a signed receipt (5.11-4).")


class ScanTarget(_Section):
    """Something the scanning gate covers."""

    name: Slug = Field(description="Identifier of the target.")
    path: Annotated[str, Field(min_length=1, max_length=500)] = Field(description="Path, relative to the context.")
    kind: Literal["source", "rootfs", "image"] = Field(description="Source tree, root file system or image.")


class CodeQuality(_Section):
    """The scanning gate (guidelines 1, 4, 5, 6, 13)."""

    targets: list[ScanTarget] = Field(default_factory=list, max_length=50, description="What to scan.")
    engines: list[Engine] = Field(
        default_factory=lambda: list(ALL_ENGINES),
        description="Engines the gate runs.",
    )
    fail_on: Literal["low", "medium", "high"] = Field(default="medium", description="Lowest severity that fails.")
    misra: bool = Field(default=False, description="Run cppcheck's MISRA C addon.")


class Declaration(_Section):
    """A statement for a provision no tool can check, made by a named person."""

    statement: LongText = Field(description="What the manufacturer declares.")
    by: Text = Field(description="Who stands behind it (role or name).")


class Component(_Section):
    """A software component of the product (for the SBOM)."""

    name: Text = Field(description="Component name.")
    version: Annotated[str, Field(min_length=1, max_length=100)] = Field(description="Version.")
    purl: Annotated[str, Field(pattern=r"^pkg:[a-z0-9.+-]+/\S+$", max_length=500)] | None = Field(
        default=None, description="Package URL."
    )
    license: Annotated[str, Field(max_length=200)] | None = Field(default=None, description="SPDX licence expression.")
    supplier: Annotated[str, Field(max_length=200)] | None = Field(default=None, description="Supplier.")


class SecurityContext(_Section):
    """The whole Security Context of one product (security-context.toml)."""

    schema_version: Literal[1] = Field(description="Format version of this file (1).")
    product: Product
    root_of_trust: RootOfTrust = Field(default_factory=RootOfTrust)
    identity: Identity
    boot: Boot = Field(default_factory=Boot)
    update: Update = Field(default_factory=Update)
    communication: Communication = Field(default_factory=Communication)
    telemetry: Telemetry = Field(default_factory=Telemetry)
    data: Data = Field(default_factory=Data)
    code_quality: CodeQuality = Field(default_factory=CodeQuality)
    declarations: dict[str, Declaration] = Field(
        default_factory=dict,
        description="Provision id (e.g. `5.6-4A`) to a declaration for what no tool can check.",
    )
    components: list[Component] = Field(default_factory=list, max_length=5000, description="SBOM components.")

    @field_validator("declarations")
    @classmethod
    def _provision_ids(cls, value: dict[str, Declaration]) -> dict[str, Declaration]:
        for key in value:
            if not _PROVISION_ID.match(key):
                raise ValueError(f"{key!r} is not an EN 303 645 provision id such as 5.6-4A or 6-1")
        return value


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of security-context.toml."""
    schema = SecurityContext.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://trustroot.dev/schemas/security-context-1.json"
    return schema
