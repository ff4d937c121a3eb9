"""Masking of secrets in evidence snippets: a report shows where a secret is, never the secret."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["mask_secrets"]

_QUOTED: Final = re.compile(r"""(["'])([^"'\\]{2,})\1""")
_ASSIGNED: Final = re.compile(r"""(?P<key>[=:]\s*)(?P<value>[^\s"',;#]{2,})""")
_LONG_TOKEN: Final = re.compile(r"[A-Za-z0-9+/=_\-]{16,}")
_URL_CREDENTIAL: Final = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/\s@]*:)(?P<secret>[^@\s/]+)(?=@)", re.I)


def _hide(value: str) -> str:
    del value
    return "*" * 8


def mask_secrets(line: str) -> str:
    """``line`` with quoted strings, assigned values, URL passwords and long tokens masked."""
    text = _URL_CREDENTIAL.sub(lambda m: m["scheme"] + _hide(m["secret"]), line)
    text = _QUOTED.sub(lambda m: m[1] + _hide(m[2]) + m[1], text)
    text = _ASSIGNED.sub(lambda m: m["key"] + (m["value"] if "*" in m["value"] else _hide(m["value"])), text)
    return _LONG_TOKEN.sub(lambda m: m[0] if "*" in m[0] else _hide(m[0]), text)
