"""The one error hierarchy of trustroot.

Every refusal names the input, what was wrong with it and, where a guideline is at stake, the
EN 303 645 provision it protects. Foreign exceptions are wrapped at the boundary with
``raise ... from``. Exit codes and the one-line rendering belong to the CLI (``trustroot.cli``).

::

    TrustrootError
    ├── UnreadableInputError          a file or token cannot be opened or read at all (CLI exit 2)
    ├── UsageError                    wrong arguments or options (CLI exit 2)
    ├── ContextError                  security-context.toml is malformed or violates the schema
    │   └── ContextNotFoundError      no context found upward from the directory (CLI exit 2)
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
    │   └── ChainValidationError
    ├── EvidenceError                 evidence log failures
    │   └── EvidenceChainError        an edited, removed or reordered record, or a bad checkpoint
    ├── PolicyRefusal                 an action that would break an EN 303 645 provision
    └── StateError                    product state on disk is inconsistent or already exists
"""

from __future__ import annotations

__all__ = [
    "BackupError",
    "ChainValidationError",
    "ContextError",
    "ContextNotFoundError",
    "EvidenceChainError",
    "EvidenceError",
    "InvalidSignature",
    "KeyExistsError",
    "KeyFileCorruptError",
    "KeyNotExtractableError",
    "KeyNotFoundError",
    "KeyStateError",
    "KeyStoreError",
    "PKIError",
    "PolicyRefusal",
    "StateError",
    "TokenError",
    "TrustrootError",
    "UnreadableInputError",
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
