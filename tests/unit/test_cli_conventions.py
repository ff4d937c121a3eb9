"""CLI conventions every command follows: common options after the verb, an example in --help."""

from __future__ import annotations

from typing import Any

import pytest
import typer.main

from trustroot.cli import image_cmd
from trustroot.cli._common import int_option
from trustroot.cli.app import build_app
from trustroot.errors import UsageError


def _leaf_commands() -> list[tuple[str, Any]]:
    root = typer.main.get_command(build_app())
    found: list[tuple[str, Any]] = []

    def walk(prefix: str, command: Any) -> None:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(f"{prefix} {name}".strip(), sub)
        else:
            found.append((prefix, command))

    walk("", root)
    return found


# `trustroot image sign|verify|info` run on argparse (a lean start, cli/image_cmd.py); their Typer
# entries only forward, so they are checked through their argparse parsers below.
ARGPARSE_COMMANDS = {f"image {name}" for name in image_cmd.COMMANDS}
COMMANDS = [(name, command) for name, command in _leaf_commands() if name not in ARGPARSE_COMMANDS]


def test_the_issue_two_commands_exist() -> None:
    names = {name for name, _ in COMMANDS}
    for expected in (
        "init",
        "doctor",
        "demo",
        "context check",
        "context set",
        "context schema",
        "context security-txt",
        "keys create",
        "keys list",
        "keys import",
        "keys export-public",
        "keys rotate",
        "keys revoke",
        "keys backup",
        "keys restore",
        "evidence verify",
        "evidence show",
        "evidence checkpoint",
    ):
        assert expected in names


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_command_takes_the_common_options(name: str, command: Any) -> None:
    options = {opt for param in command.params for opt in getattr(param, "opts", [])}
    assert {"--context", "--quiet", "--json"} <= options, name


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_command_help_has_an_example(name: str, command: Any) -> None:
    assert "Example: trustroot " in (command.help or ""), name


@pytest.mark.parametrize(("text", "value"), [("4096", 4096), ("0x1000", 4096), ("0X20", 32), ("1_000", 1000)])
def test_sizes_accept_decimal_and_hex(text: str, value: int) -> None:
    assert int_option(text, "--slot-size") == value


@pytest.mark.parametrize("text", ["0xZZ", "ten", "-1", ""])
def test_bad_sizes_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="--slot-size"):
        int_option(text, "--slot-size")


def _argparse_commands() -> dict[str, Any]:
    sub = next(a for a in image_cmd.build_parser()._actions if a.dest == "command")
    return {f"image {name}": parser for name, parser in sub.choices.items()}  # type: ignore[attr-defined]


def test_the_argparse_commands_are_listed_by_typer() -> None:
    assert set(_argparse_commands()) == ARGPARSE_COMMANDS
    assert {name for name, _ in _leaf_commands()} >= ARGPARSE_COMMANDS


@pytest.mark.parametrize("name", sorted(ARGPARSE_COMMANDS))
def test_argparse_commands_follow_the_conventions(name: str) -> None:
    parser = _argparse_commands()[name]
    options = {opt for action in parser._actions for opt in action.option_strings}
    assert {"--context", "--quiet", "--json"} <= options, name
    assert "Example: trustroot " in parser.format_help(), name
