"""Round-trip edits of security-context.toml that keep the user's comments (tomlkit)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import tomlkit
import tomlkit.exceptions
from tomlkit.items import Table

from trustroot._fsutil import atomic_write, read_bounded
from trustroot.context.load import parse_context
from trustroot.errors import ContextError, UsageError
from trustroot.limits import DEFAULT_LIMITS

__all__ = ["set_key"]

_KEY = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


def _parse_value(text: str) -> Any:
    """A TOML value (``"1.3"``, ``true``, ``[0, 60]``, ``2031-12-31``); a bare word is a string."""
    try:
        return tomlkit.parse(f"v = {text}")["v"]
    except tomlkit.exceptions.ParseError:
        if re.fullmatch(r"[A-Za-z0-9_.:/@+-]+", text):
            return text
        raise UsageError(f"value {text!r}: not a TOML value (quote strings: '\"text\"')") from None


def set_key(path: Path, key: str, value_text: str) -> tuple[str, str]:
    """Set dotted ``key`` to ``value_text`` in the context at ``path``; return (old, new) as text.

    The edited text is validated with the full schema before it replaces the file (atomically),
    so an edit can never leave an invalid context behind.
    """
    if not _KEY.match(key):
        raise UsageError(f"key {key!r}: use a dotted key such as communication.min_tls_version")
    text = read_bounded(path, DEFAULT_LIMITS.max_context_bytes, what="Security Context").decode("utf-8")
    document = tomlkit.parse(text)
    parts = key.split(".")
    table: Any = document
    for part in parts[:-1]:
        if part not in table or not isinstance(table[part], Table | dict):
            raise UsageError(f"key {key!r}: no table {part!r} in {path.name}")
        table = table[part]
    old = table.get(parts[-1])
    table[parts[-1]] = _parse_value(value_text)
    new_text = tomlkit.dumps(document)
    try:
        parse_context(new_text, path)
    except ContextError as error:
        raise ContextError(f"refused, the file is unchanged: {error}", issues=error.issues) from error
    atomic_write(path, new_text.encode("utf-8"), mode=path.stat().st_mode & 0o777)
    return ("(unset)" if old is None else tomlkit.item(old).as_string()), tomlkit.item(table[parts[-1]]).as_string()
