"""The shipped list of common passwords, for refusing them (EN 303 645 guideline 1, clause 5.1).

``trustroot/data/common-passwords.txt`` holds the 20,000 common passwords compiled by Royce
Williams as Django ships them (BSD-3-Clause), made by ``scripts/make_common_passwords.py`` from one
pinned Django wheel. The file starts with ``#`` header lines naming source, compiler and licence,
then one blank line, then one password per line taken verbatim (an entry may start with ``#``).

The list is read on first use with :mod:`importlib.resources` and kept for the life of the process.
Matching ignores case and surrounding white space, so ``" PassWord "`` counts as common.
"""

from __future__ import annotations

import functools
import unicodedata
from importlib import resources

from trustroot.errors import UnreadableInputError

__all__ = ["COMMON_PASSWORDS_SOURCE", "common_passwords", "is_common_password"]

_PACKAGE = "trustroot"
_RESOURCE = ("data", "common-passwords.txt")

#: Where the list comes from and under which licence (the data file's header says the same, with
#: the sha256 of the source file and the licence in full).
COMMON_PASSWORDS_SOURCE = (
    "20,000 common passwords compiled by Royce Williams, as shipped by Django 5.2.19 "
    "(django/contrib/auth/common-passwords.txt.gz), under Django's BSD-3-Clause licence"
)


def _key(text: str) -> str:
    """The form in which passwords are compared: trimmed, NFC, case-folded."""
    return unicodedata.normalize("NFC", text.strip()).casefold()


def _parse(text: str, origin: str) -> frozenset[str]:
    """The entries of the file: everything after the header and its blank line, one per line."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line == "":
            body = lines[index + 1 :]
            break
        if not line.startswith("#"):
            raise UnreadableInputError(f"{origin}: line {index + 1} is neither a '#' header line nor blank")
    else:
        raise UnreadableInputError(f"{origin}: no blank line ends the header; the file is damaged")
    entries = frozenset(_key(line) for line in body if line.strip())
    if not entries:
        raise UnreadableInputError(f"{origin}: the list holds no password; the file is damaged")
    return entries


@functools.cache
def common_passwords() -> frozenset[str]:
    """Every common password of the shipped list, trimmed and case-folded.

    Raises :class:`~trustroot.errors.UnreadableInputError` when the data file is missing or damaged
    (a broken installation).
    """
    resource = resources.files(_PACKAGE).joinpath(*_RESOURCE)
    origin = f"{_PACKAGE}/{'/'.join(_RESOURCE)}"
    try:
        text = resource.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UnreadableInputError(f"{origin}: cannot read the common-password list: {exc}") from exc
    return _parse(text, origin)


def is_common_password(candidate: str) -> bool:
    """Whether ``candidate`` is on the common-password list, ignoring case and surrounding blanks."""
    key = _key(candidate)
    return bool(key) and key in common_passwords()
