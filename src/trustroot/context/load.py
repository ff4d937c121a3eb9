"""Find, read and validate ``security-context.toml``, keeping the line of every key.

TOML parsers do not report where a key stands, so :func:`locate_keys` scans the text once and
maps each key path (``("communication", "min_tls_version")``, ``("data", "personal", 0, "name")``)
to its line. Schema errors and lint findings use it to name the line a user has to edit.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from trustroot._fsutil import read_bounded
from trustroot.context.schema import SCHEMA_VERSION, SecurityContext
from trustroot.errors import ContextError, ContextNotFoundError, UnreadableInputError
from trustroot.limits import DEFAULT_LIMITS, Limits

__all__ = [
    "CONTEXT_FILE",
    "STATE_DIR",
    "KeyPath",
    "LoadedContext",
    "find_context",
    "format_path",
    "load_context",
    "locate_keys",
    "parse_context",
    "validation_message",
]

CONTEXT_FILE = "security-context.toml"
STATE_DIR = ".trustroot"

KeyPath = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class LoadedContext:
    """A validated context with where it came from and where each key stands."""

    path: Path
    text: str
    model: SecurityContext
    locations: Mapping[KeyPath, int]

    @property
    def state_dir(self) -> Path:
        """The product's state directory, ``.trustroot/`` beside the context."""
        return self.path.parent / STATE_DIR

    def line_of(self, path: Sequence[str | int]) -> int:
        """The line of ``path``, or of its nearest written ancestor; 0 if nothing of it is written."""
        probe: KeyPath = tuple(path)
        while probe:
            if probe in self.locations:
                return self.locations[probe]
            probe = probe[:-1]
        return 0


def format_path(path: Sequence[str | int]) -> str:
    """``("data", "personal", 0, "name")`` -> ``data.personal[0].name``; odd keys are quoted."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if _BARE_KEY.fullmatch(part) else '"' + part.replace('"', '\\"') + '"'
            out += f".{text}" if out else text
    return out


def _split_key(text: str) -> list[str]:
    """Split a dotted TOML key (``a."b.c".d``) into its parts."""
    parts: list[str] = []
    i = 0
    text = text.strip()
    while i < len(text):
        ch = text[i]
        if ch in "\"'":
            end = text.find(ch, i + 1)
            if end < 0:
                return parts
            parts.append(text[i + 1 : end])
            i = end + 1
        elif ch == "." or ch.isspace():
            i += 1
        else:
            match = _BARE_KEY.match(text, i)
            if not match:
                return parts
            parts.append(match.group())
            i = match.end()
    return parts


def _key_end(line: str) -> int:
    """Index of the ``=`` that ends the key part of ``line`` (outside quotes), or -1."""
    quote: str | None = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "=":
            return i
    return -1


def _bracket_balance(value: str) -> int:
    """Open minus closed brackets and braces in ``value``, ignoring strings and comments."""
    depth = 0
    quote: str | None = None
    for ch in value:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
    return depth


def _table_header(line: str, number: int, found: dict[KeyPath, int], counts: dict[KeyPath, int]) -> KeyPath:
    """Record a ``[table]`` or ``[[array.of.tables]]`` header; return the table it opens."""
    if line.startswith("[["):
        path = tuple(_split_key(line[2 : line.find("]]")]))
        index = counts.get(path, 0)
        counts[path] = index + 1
        if path:
            found.setdefault(path, number)
            found[(*path, index)] = number
        return (*path, index)
    table = tuple(_split_key(line[1 : line.find("]")]))
    if table:
        found.setdefault(table, number)
    return table


def locate_keys(text: str) -> dict[KeyPath, int]:
    """Map every key path written in ``text`` to its 1-based line."""
    found: dict[KeyPath, int] = {}
    table: KeyPath = ()
    array_counts: dict[KeyPath, int] = {}
    multiline: str | None = None
    depth = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if multiline:
            if line.count(multiline) % 2 == 1:
                multiline = None
            continue
        if depth > 0:
            depth += _bracket_balance(line)
            continue
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            table = _table_header(line, number, found, array_counts)
            continue
        eq = _key_end(line)
        if eq < 0:
            continue
        parts = _split_key(line[:eq])
        if parts:
            found.setdefault((*table, *parts), number)
        value = line[eq + 1 :].strip()
        for quote in ('"""', "'''"):
            if value.startswith(quote) and value.count(quote) == 1:
                multiline = quote
        if multiline is None:
            depth = max(0, _bracket_balance(value))
    return found


def find_context(start: Path | None = None, explicit: Path | None = None) -> Path:
    """The context file: ``explicit`` if given, else the first one upward from ``start`` (like git)."""
    if explicit is not None:
        candidate = explicit / CONTEXT_FILE if explicit.is_dir() else explicit
        if not candidate.exists():
            raise ContextNotFoundError(f"--context {explicit}: no such file")
        return candidate
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / CONTEXT_FILE
        if candidate.is_file():
            return candidate
    raise ContextNotFoundError(
        f"no {CONTEXT_FILE} in {here} or any parent directory",
        hint="run 'trustroot init DIR --product NAME', or name one with --context PATH",
    )


def validation_message(error: ErrorDetails, *, unknown: str = "unknown key") -> str:
    """One pydantic error as a person reads it in a TOML file: unknown key, missing key, or why (and the value)."""
    kind = error["type"]
    if kind == "extra_forbidden":
        return unknown
    if kind == "missing":
        return "required key is missing"
    message = error["msg"].removeprefix("Value error, ")
    if not isinstance(error.get("input"), dict | list | type(None)):
        message += f" (got {error['input']!r})"
    return message


def _schema_error(exc: ValidationError, locations: Mapping[KeyPath, int], source: str) -> ContextError:
    issues: list[tuple[str, int, str]] = []
    for error in exc.errors(include_url=False):
        loc: KeyPath = tuple(error["loc"])
        message = validation_message(error, unknown="unknown key (not part of the Security Context schema)")
        line = 0
        probe = loc
        while probe:
            if probe in locations:
                line = locations[probe]
                break
            probe = probe[:-1]
        issues.append((format_path(loc) or "(top level)", line, message))
    first = issues[0]
    where = f" (line {first[1]})" if first[1] else ""
    more = f"; {len(issues) - 1} more problem(s)" if len(issues) > 1 else ""
    return ContextError(f"{source}: {first[0]}{where}: {first[2]}{more}", issues=issues)


def parse_context(text: str, path: Path) -> LoadedContext:
    """Validate context ``text`` (read from ``path``) and return it with key locations."""
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ContextError(f"{path}: not valid TOML: {exc}") from exc
    locations = locate_keys(text)
    version = data.get("schema_version")
    if version is None:
        raise ContextError(
            f"{path}: schema_version is missing",
            issues=[("schema_version", 0, "required key is missing")],
            hint=f"add 'schema_version = {SCHEMA_VERSION}' at the top",
        )
    if version != SCHEMA_VERSION:
        line = locations.get(("schema_version",), 0)
        raise ContextError(
            f"{path}: schema_version (line {line}): unknown version {version!r}; this trustroot reads "
            f"version {SCHEMA_VERSION}",
            issues=[("schema_version", line, f"unknown version {version!r}")],
        )
    try:
        model = SecurityContext.model_validate(data)
    except ValidationError as exc:
        raise _schema_error(exc, locations, str(path)) from exc
    return LoadedContext(path=path, text=text, model=model, locations=locations)


def load_context(path: Path, *, limits: Limits = DEFAULT_LIMITS) -> LoadedContext:
    """Read and validate the context file at ``path``."""
    raw = read_bounded(path, limits.max_context_bytes, what="Security Context")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableInputError(f"Security Context {path}: not UTF-8 text (byte {exc.start})") from exc
    return parse_context(text, path)
