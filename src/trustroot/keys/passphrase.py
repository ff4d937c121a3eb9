"""Where passphrases and PINs come from: the environment or a prompt, never the command line.

=========================  =========================================================
``TRUSTROOT_PASSPHRASE``   the key store passphrase (every key but the offline root)
``TRUSTROOT_ROOT_PASSPHRASE``  the offline root CA's own passphrase
``TRUSTROOT_PKCS11_PIN``   the PKCS#11 user PIN
=========================  =========================================================

A :class:`SecretSource` is injected into the backends, so tests and services pass their own.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable
from typing import Literal

from trustroot.errors import WrongSecretError

__all__ = ["ENV_VARS", "SecretKind", "SecretSource", "caching", "env_or_prompt", "fixed_secrets"]

SecretKind = Literal["store", "root", "pin"]

#: A callable that returns the secret of a kind; ``confirm`` asks twice when a new secret is set.
SecretSource = Callable[[SecretKind, bool], str]

ENV_VARS: dict[SecretKind, str] = {
    "store": "TRUSTROOT_PASSPHRASE",
    "root": "TRUSTROOT_ROOT_PASSPHRASE",
    "pin": "TRUSTROOT_PKCS11_PIN",
}

_LABELS: dict[SecretKind, str] = {
    "store": "key store passphrase",
    "root": "offline root CA passphrase",
    "pin": "PKCS#11 user PIN",
}

MIN_PASSPHRASE_LENGTH = 12


def env_or_prompt(kind: SecretKind, confirm: bool = False) -> str:
    """The secret from its environment variable, else asked on the terminal (twice when confirming)."""
    value = os.environ.get(ENV_VARS[kind])
    if value is None:
        if not sys.stdin.isatty():
            raise WrongSecretError(f"no {_LABELS[kind]}: set {ENV_VARS[kind]} or run on a terminal to be asked for it")
        value = getpass.getpass(f"{_LABELS[kind]}: ")
        if confirm and getpass.getpass(f"{_LABELS[kind]} (again): ") != value:
            raise WrongSecretError(f"the two entries of the {_LABELS[kind]} differ")
    if kind != "pin" and confirm and len(value) < MIN_PASSPHRASE_LENGTH:
        raise WrongSecretError(
            f"the {_LABELS[kind]} is shorter than {MIN_PASSPHRASE_LENGTH} characters",
            provision="5.4-1",
        )
    if not value:
        raise WrongSecretError(f"the {_LABELS[kind]} is empty")
    return value


def caching(source: SecretSource) -> SecretSource:
    """Ask ``source`` at most once per kind (a confirmed answer also serves later plain asks)."""
    answers: dict[SecretKind, str] = {}

    def cached(kind: SecretKind, confirm: bool = False) -> str:
        if kind not in answers:
            answers[kind] = source(kind, confirm)
        return answers[kind]

    return cached


def fixed_secrets(store: str, root: str | None = None, pin: str | None = None) -> SecretSource:
    """A source that returns fixed values (tests, services that read their secret elsewhere)."""
    values: dict[SecretKind, str | None] = {
        "store": store,
        "root": root if root is not None else store,
        "pin": pin,
    }

    def source(kind: SecretKind, confirm: bool = False) -> str:
        value = values[kind]
        if value is None:
            raise WrongSecretError(f"no {_LABELS[kind]} given")
        return value

    return source
