"""Reading, validating and round-trip writing of the compliance files (``ics.toml``, ``ixit.toml``).

Both files live in ``compliance/`` beside ``security-context.toml``. Errors name the file, the key
path and its line the way the context loader does (:mod:`trustroot.context.load`), and writes keep
a user's comments and formatting (tomlkit) and are atomic.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from trustroot._fsutil import atomic_write, read_bounded
from trustroot.context.load import KeyPath, format_path, locate_keys, validation_message
from trustroot.errors import ComplianceFileError, UnreadableInputError

__all__ = [
    "COMPLIANCE_DIR",
    "MAX_COMPLIANCE_FILE_BYTES",
    "Issue",
    "TomlFile",
    "digest_of",
    "raise_issues",
    "read_toml",
    "schema_error",
    "write_text",
]

#: The directory beside the context that holds ``ics.toml`` and ``ixit.toml``.
COMPLIANCE_DIR: Final = "compliance"
#: Upper bound on either file: 29 IXIT tables or 78 ICS rows of prose fit in far less.
MAX_COMPLIANCE_FILE_BYTES: Final = 4 << 20


@dataclass(frozen=True)
class Issue:
    """One problem in a compliance file: where (key path) and what."""

    path: KeyPath
    message: str


@dataclass(frozen=True)
class TomlFile:
    """A parsed compliance file with the line of every key."""

    path: Path
    text: str
    data: dict[str, Any]
    locations: Mapping[KeyPath, int]

    def line_of(self, path: Sequence[str | int]) -> int:
        probe: KeyPath = tuple(path)
        while probe:
            if probe in self.locations:
                return self.locations[probe]
            probe = probe[:-1]
        return 0


def read_toml(path: Path, what: str) -> TomlFile:
    """Read ``path`` (bounded, UTF-8, TOML) or raise :class:`ComplianceFileError` naming it."""
    raw = read_bounded(path, MAX_COMPLIANCE_FILE_BYTES, what=what)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableInputError(f"{what} {path}: not UTF-8 text (byte {exc.start})") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ComplianceFileError(f"{path}: not valid TOML: {exc}") from exc
    return TomlFile(path=path, text=text, data=data, locations=locate_keys(text))


def raise_issues(file: TomlFile, issues: Sequence[Issue], *, provision: str | None = None) -> None:
    """Raise one :class:`ComplianceFileError` for ``issues`` (first one in the message), if any."""
    if not issues:
        return
    rows = [(format_path(i.path) or "(top level)", file.line_of(i.path), i.message) for i in issues]
    key, line, message = rows[0]
    where = f" (line {line})" if line else ""
    more = f"; {len(rows) - 1} more problem(s)" if len(rows) > 1 else ""
    raise ComplianceFileError(f"{file.path}: {key}{where}: {message}{more}", issues=rows, provision=provision)


def schema_error(file: TomlFile, exc: ValidationError, prefix: KeyPath = ()) -> ComplianceFileError:
    """A :class:`ComplianceFileError` for a pydantic error, each issue with its key path and line."""
    issues: list[Issue] = []
    for error in exc.errors(include_url=False):
        loc: KeyPath = (*prefix, *error["loc"])
        issues.append(Issue(loc, validation_message(error)))
    try:
        raise_issues(file, issues)
    except ComplianceFileError as built:
        return built
    return ComplianceFileError(f"{file.path}: invalid")  # pragma: no cover (pydantic always names an error)


def digest_of(value: object) -> str:
    """A short fingerprint of what fill wrote (to notice a user's later edit of a derived item)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically, creating ``compliance/`` if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text.encode("utf-8"), mode=0o644)
