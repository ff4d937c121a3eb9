"""The one error hierarchy of trustroot.

Every refusal names the input, what was wrong with it and, where a guideline is at stake, the
EN 303 645 provision it protects. Foreign exceptions are wrapped at the boundary with
``raise ... from``. Exit codes and the one-line rendering belong to the CLI (``trustroot.cli``).

::

    TrustrootError
    ├── UnreadableInputError          a file or token cannot be opened or read at all (CLI exit 2)
    │   ├── UntrustedEvidenceError    the evidence an assessment rests on does not verify (broken chain)
    │   └── ScanInputError            a scan target that cannot be used: malformed or unknown archive
    │       └── UnsafeArchiveError    an archive refused: path traversal, link escape, bomb, too many members
    ├── UsageError                    wrong arguments or options (CLI exit 2)
    │   ├── SerialError               a malformed device serial
    │   ├── BaselineError             a scan baseline file is malformed or an entry has no reason
    │   ├── ClaimCodeError            a malformed owner claim code
    │   ├── PersonalDataError         (fleet) an undeclared category, an oversized value, no data key
    │   └── RolloutNotFound           (fleet) no release or rollout with that id
    ├── ContextError                  security-context.toml is malformed or violates the schema
    │   ├── ContextNotFoundError      no context found upward from the directory (CLI exit 2)
    │   └── ComplianceFileError       compliance/ics.toml or ixit.toml is malformed or violates its schema
    ├── KeyStoreError                 key store failures
    │   ├── KeyNotFoundError
    │   ├── KeyExistsError
    │   ├── WrongSecretError          wrong passphrase or PIN (one message for every unlock failure)
    │   ├── KeyFileCorruptError       a key file is not a key file we wrote
    │   ├── TokenError                PKCS#11 module or token missing or failing
    │   ├── KeyNotExtractableError    export of a sensitive, non-extractable key refused
    │   ├── KeyStateError             e.g. signing with a revoked key
    │   ├── InvalidSignature          a signature does not verify under the key
    │   └── BackupError               backup, shares or restore refused
    ├── PKIError                      certificate issuance and chain validation
    │   ├── ChainValidationError
    │   └── CsrError                  a certificate signing request was refused
    ├── EvidenceError                 evidence log failures
    │   └── EvidenceChainError        an edited, removed or reordered record, or a bad checkpoint
    ├── PolicyRefusal                 an action that would break an EN 303 645 provision
    │   ├── OwnershipRefused          (fleet) a claim, transfer or release that may not happen (5.11-1)
    │   ├── OwnerAuthError            (fleet) no owner API key, or an unknown one
    │   ├── QuotaExceededError        a production token or batch has no room left
    │   ├── InvalidProductionToken    a forged, expired or foreign production token
    │   └── InvalidStationReport      a forged or malformed station report
    ├── InvalidManifest               a forged, altered or malformed batch manifest
    ├── InvalidOperatorToken          (fleet) not a valid, active operator token (one error for every reason)
    ├── OwnershipChainError           (fleet) an ownership chain that does not verify (names the link)
    ├── ReceiptError                  (fleet) a deletion receipt is malformed or its signature does not verify
    ├── ImageError                    firmware images
    │   ├── ImageFormatError          not a well-formed MCUboot image (HexFileError: a bad Intel HEX file)
    │   └── ImageVerificationError    an image does not verify (the one error of verify_image)
    ├── ImageDecryptionError          an encrypted image's key TLV does not open (one message: no oracle)
    ├── BootError                     the boot-manager model refused an operation
    │   ├── FlashError                simulated flash misused (a caller's bug)
    │   └── InvalidImageError         (boot/errors.py) an image failed boot-time verification
    ├── PasswordMismatchError         a device password does not match its verifier
    ├── BundleError                   a device bundle does not open (one message: no oracle)
    ├── DeclarationError              a signed declaration is malformed, forged, edited, or its key unknown
    ├── AgentError                    the device agent cannot do what was asked (no trust material, a
    │                                 service that refused a report, a simulation that cannot start)
    └── StateError                    product state on disk is inconsistent or already exists
        ├── DeviceDirectoryError      a device directory is incomplete or malformed
        ├── ProductionStateError      the production store is damaged or disagrees with the evidence
        ├── AgentStateError           the agent's persistent state (slots, queue, state file) is damaged
        └── DisclosureNotFound        (fleet) no vulnerability report has that tracking id

The fleet's device authentication and batch import errors (``DeviceAuthError``, ``BatchImportRefused``,
``DeviceUnknown``, all :class:`PolicyRefusal`) are still defined in ``trustroot.fleet.auth`` and
``trustroot.fleet.devices`` (the check-in path) until they move here.
"""

from __future__ import annotations

__all__ = [
    "AgentError",
    "AgentStateError",
    "BackupError",
    "BaselineError",
    "BootError",
    "BundleError",
    "ChainValidationError",
    "ClaimCodeError",
    "ComplianceFileError",
    "ContextError",
    "ContextNotFoundError",
    "CsrError",
    "DeclarationError",
    "DeviceDirectoryError",
    "DisclosureNotFound",
    "EvidenceChainError",
    "EvidenceError",
    "FlashError",
    "ImageDecryptionError",
    "ImageError",
    "ImageFormatError",
    "ImageVerificationError",
    "InvalidManifest",
    "InvalidOperatorToken",
    "InvalidProductionToken",
    "InvalidSignature",
    "InvalidStationReport",
    "KeyExistsError",
    "KeyFileCorruptError",
    "KeyNotExtractableError",
    "KeyNotFoundError",
    "KeyStateError",
    "KeyStoreError",
    "OwnerAuthError",
    "OwnershipChainError",
    "OwnershipRefused",
    "PKIError",
    "PasswordMismatchError",
    "PersonalDataError",
    "PolicyRefusal",
    "ProductionStateError",
    "QuotaExceededError",
    "ReceiptError",
    "RolloutNotFound",
    "ScanInputError",
    "SerialError",
    "StateError",
    "TokenError",
    "TrustrootError",
    "UnreadableInputError",
    "UnsafeArchiveError",
    "UntrustedEvidenceError",
    "UsageError",
    "WrongSecretError",
]


class TrustrootError(Exception):
    """Base of every error trustroot raises on purpose.

    ``provision`` is the EN 303 645 provision id (``"5.5-1"``) at stake, if any; ``hint`` is the
    fix in one sentence, if there is an obvious one.
    """

    def __init__(self, message: str, *, provision: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.provision = provision
        self.hint = hint

    def __str__(self) -> str:
        text = self.message
        if self.provision:
            text = f"{text} (EN 303 645 provision {self.provision})"
        return text


class UnreadableInputError(TrustrootError):
    """A file, directory or device cannot be opened or read at all."""


class UntrustedEvidenceError(UnreadableInputError):
    """The evidence an assessment rests on does not verify (an edited, removed or reordered record, a bad
    checkpoint, a scan report whose digest differs from its record): no verdict is given on it."""


class UsageError(TrustrootError):
    """The arguments or options of a call are wrong."""


class ContextError(TrustrootError):
    """The Security Context is malformed or violates its schema.

    ``issues`` holds one ``(key_path, line, message)`` per problem found, line 0 when unknown.
    """

    def __init__(
        self,
        message: str,
        *,
        issues: list[tuple[str, int, str]] | None = None,
        provision: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, provision=provision, hint=hint)
        self.issues = issues or []


class ContextNotFoundError(ContextError):
    """No ``security-context.toml`` upward from the directory, and none named."""


class ComplianceFileError(ContextError):
    """``compliance/ics.toml`` or ``compliance/ixit.toml`` is malformed or violates its schema."""


class KeyStoreError(TrustrootError):
    """Base of key store failures."""


class KeyNotFoundError(KeyStoreError):
    """No key of that name in the store."""


class KeyExistsError(KeyStoreError):
    """A key of that name exists already; keys are never silently replaced."""


class WrongSecretError(KeyStoreError):
    """The passphrase or PIN does not unlock the key (the one message for every unlock failure)."""


class KeyFileCorruptError(KeyStoreError):
    """A key file is not an encrypted key file of the expected form."""


class TokenError(KeyStoreError):
    """The PKCS#11 module cannot be loaded, or the token is missing or failing."""


class KeyNotExtractableError(KeyStoreError):
    """Export of a sensitive or non-extractable key was refused."""


class KeyStateError(KeyStoreError):
    """The key's state forbids the operation (revoked, retired for signing, wrong type)."""


class InvalidSignature(KeyStoreError):
    """A signature does not verify under the key (or the key cannot verify that algorithm)."""


class BackupError(KeyStoreError):
    """A backup, a custodian share or a restore was refused."""


class PKIError(TrustrootError):
    """Certificate issuance failed."""


class ChainValidationError(PKIError):
    """A certificate does not chain to the expected root, or is not valid for the use."""


class EvidenceError(TrustrootError):
    """The evidence log cannot be read or appended to."""


class EvidenceChainError(EvidenceError):
    """The evidence hash chain or a signed checkpoint does not verify."""


class PolicyRefusal(TrustrootError):
    """An action was refused because it would break an EN 303 645 provision."""


class StateError(TrustrootError):
    """Product state on disk is inconsistent, missing or already exists."""


class ImageError(TrustrootError):
    """Base of every refusal of a firmware image."""


class ImageFormatError(ImageError):
    """The bytes are not a well-formed MCUboot image; the message names what is wrong, in one line."""


class ImageVerificationError(ImageError):
    """An image does not verify: the one error of ``verify_image``, with the reason in one line."""


class ImageDecryptionError(TrustrootError):
    """The image's encryption TLV does not open (one message for every cause: no oracle)."""


class BootError(TrustrootError):
    """A boot-model operation was refused: bad layout, damaged trailer, out-of-order step."""


class FlashError(BootError):
    """The simulated flash was used in a way real flash forbids (a bug of the caller)."""


class SerialError(UsageError):
    """A device serial number, or the prefix, digit count or sequence number it is made of, is malformed."""


class CsrError(PKIError):
    """:func:`sign_csr` refused a certificate signing request."""


class PasswordMismatchError(TrustrootError):
    """:func:`verify_password`: the password is not the one the verifier was made from."""


class ClaimCodeError(UsageError):
    """A claim code is malformed, mistyped (its check symbol fails) or does not match its hash."""


class DeclarationError(TrustrootError):
    """A signed declaration is malformed, forged or edited, or its declarer key is unknown or revoked."""


class BundleError(TrustrootError):
    """A device bundle cannot be opened (:data:`OPEN_FAILED` for every failure before the tag verifies)."""


class DeviceDirectoryError(StateError):
    """A device directory is incomplete, malformed, of an unknown format or has too open permissions."""


class ProductionStateError(StateError):
    """The production store is damaged, of an unknown schema, or inconsistent with the evidence."""


class QuotaExceededError(PolicyRefusal):
    """A token or batch has no room left for the devices asked for."""


class InvalidProductionToken(PolicyRefusal):
    """A production token was refused: forged, malformed, expired, for another product or station."""


class InvalidStationReport(PolicyRefusal):
    """A station report was refused: forged or malformed."""


class InvalidManifest(TrustrootError):
    """A batch manifest was refused: forged, altered or malformed."""


class ScanInputError(UnreadableInputError):
    """A scan target cannot be used: a malformed archive, an unknown format, an unreadable file."""


class UnsafeArchiveError(ScanInputError):
    """An archive was refused before anything escaped: traversal, a link escape, a bomb, too many members."""


class BaselineError(UsageError):
    """A scan baseline file is malformed, or one of its entries has no reason."""


# -- the fleet service ---------------------------------------------------------------------------


class PersonalDataError(UsageError):
    """Personal data refused: undeclared category, value too large, or no data key for the owner."""


class RolloutNotFound(UsageError):
    """No release or rollout with the id given."""


class OwnershipRefused(PolicyRefusal):
    """A claim, transfer or release that may not happen (wrong or used code, not the owner, ...)."""

    #: The EN 303 645 provision at stake: ownership changes and deletion by the user (5.11-1).
    PROVISION = "5.11-1"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, provision=self.PROVISION, hint=hint)


class OwnerAuthError(PolicyRefusal):
    """No owner API key, or one the service does not know."""


class InvalidOperatorToken(TrustrootError):
    """A presented token is not a valid, active operator token (one error for every reason)."""


class OwnershipChainError(TrustrootError):
    """An ownership chain that does not verify; the message names the link and the reason."""


class ReceiptError(TrustrootError):
    """A deletion receipt is malformed or its signature does not verify under the given key."""


class DisclosureNotFound(StateError):
    """No vulnerability report has this tracking id."""


class AgentError(TrustrootError):
    """The device agent (or the fleet simulator) cannot do what was asked."""


class AgentStateError(StateError):
    """The agent's persistent state (slots, telemetry queue, state file) is damaged or of an unknown format."""
