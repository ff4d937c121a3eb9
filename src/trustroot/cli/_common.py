"""What every command shares: the common options, output, and opening the product."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from trustroot.product import Product

__all__ = [
    "ContextOpt",
    "FormatOpt",
    "JsonOpt",
    "Output",
    "QuietOpt",
    "command",
    "exit_code",
    "int_option",
    "open_product_for_cli",
]

ContextOpt = Annotated[
    Path | None,
    typer.Option("--context", metavar="PATH", help="The security-context.toml (default: found upward from here)."),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors and the result.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output (alias of --format json).")]
FormatOpt = Annotated[str, typer.Option("--format", help="Output format: text or json.")]
DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database",
        metavar="URL",
        help="Fleet store: sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB"
        " (default: .trustroot/fleet.sqlite).",
    ),
]


def exit_code(function: Callable[..., int]) -> Callable[..., None]:
    """Turn a command's returned exit code into ``typer.Exit`` (Typer discards return values)."""

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> None:
        code = function(*args, **kwargs)
        if code:
            raise typer.Exit(code)

    return run


def command(app: typer.Typer, name: str) -> Callable[[Callable[..., int]], Callable[..., None]]:
    """Register ``function`` as command ``name`` of ``app``; its return value is the exit code."""

    def register(function: Callable[..., int]) -> Callable[..., None]:
        wrapped = exit_code(function)
        app.command(name)(wrapped)
        return wrapped

    return register


def int_option(value: str, name: str) -> int:
    """Parse a size or offset option given in decimal or 0x hex."""
    from trustroot.errors import UsageError

    text = value.strip().lower().replace("_", "")
    try:
        number = int(text, 16) if text.startswith("0x") else int(text, 10)
    except ValueError:
        raise UsageError(f"{name} {value!r}: not a decimal or 0x-hex number") from None
    if number < 0:
        raise UsageError(f"{name} {value!r}: must not be negative")
    return number


@dataclass
class Output:
    """Renders a command's result as text (Rich) or JSON, honouring --quiet."""

    json: bool = False
    quiet: bool = False

    @classmethod
    def of(cls, *, json_flag: bool, quiet: bool, fmt: str = "text") -> Output:
        from trustroot.errors import UsageError

        if fmt not in ("text", "json"):
            raise UsageError(f"--format {fmt!r}: use text or json")
        return cls(json=json_flag or fmt == "json", quiet=quiet)

    @property
    def console(self) -> Console:
        from rich.console import Console

        return Console(highlight=False, soft_wrap=True)

    def info(self, text: str) -> None:
        """A progress or context line: shown in text mode unless --quiet, on stderr."""
        if not self.quiet and not self.json:
            from rich.console import Console

            Console(stderr=True, highlight=False).print(text)

    def result(self, text: str, data: Any) -> None:
        """The command's result: ``data`` as JSON, or ``text`` (Rich markup)."""
        if self.json:
            sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
        else:
            self.console.print(text)


def open_product_for_cli(context: Path | None) -> Product:
    from trustroot.product import open_product

    return open_product(context)
