"""The shipped common-password list: size, provenance header, and case-insensitive matching."""

from __future__ import annotations

import secrets
import string
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from trustroot.context import common_passwords as cp
from trustroot.errors import UnreadableInputError

REPO = Path(__file__).resolve().parents[2]


def _data_text() -> str:
    return resources.files("trustroot").joinpath("data", "common-passwords.txt").read_text(encoding="utf-8")


def _header(text: str) -> list[str]:
    return text.split("\n\n", 1)[0].splitlines()


def test_list_holds_at_least_ten_thousand_entries() -> None:
    assert len(cp.common_passwords()) >= 10_000


def test_header_names_source_compiler_licence_and_checksum() -> None:
    header = _header(_data_text())
    assert all(line.startswith("#") for line in header)
    joined = "\n".join(header)
    assert "django/contrib/auth/common-passwords.txt.gz" in joined
    assert "Django 5.2.19" in joined
    assert "Royce Williams" in joined
    assert "Licence: BSD-3-Clause" in joined
    assert "Neither the name of Django nor the names of its contributors" in joined
    assert any(line.startswith("# Source file sha256: ") and len(line.split()[-1]) == 64 for line in header)


def test_header_count_matches_the_entries() -> None:
    text = _data_text()
    first = _header(text)[0]
    count = int(first.split(":")[1].split()[0])
    assert count == len(text.split("\n\n", 1)[1].splitlines())


def test_source_constant_agrees_with_the_file() -> None:
    joined = "\n".join(_header(_data_text()))
    assert "Royce Williams" in cp.COMMON_PASSWORDS_SOURCE
    assert "BSD-3-Clause" in cp.COMMON_PASSWORDS_SOURCE
    assert "Django 5.2.19" in cp.COMMON_PASSWORDS_SOURCE
    assert "Django 5.2.19" in joined


@pytest.mark.parametrize(
    "candidate",
    ["123456", "password", "qwerty", "PASSWORD", "QwErTy", "  password  ", "Password\n", "ПАРОЛЬ"],
)
def test_known_common_passwords_are_found_in_any_case(candidate: str) -> None:
    assert cp.is_common_password(candidate)


def test_entries_starting_with_hash_are_data_not_header() -> None:
    # Royce Williams's list holds a few passwords that start with '#'.
    assert cp.is_common_password("#1pimp")


@pytest.mark.parametrize("candidate", ["", "   ", "header", "# Common passwords"])
def test_blank_and_header_text_is_not_a_password(candidate: str) -> None:
    assert not cp.is_common_password(candidate)


def test_random_sixteen_characters_are_not_common() -> None:
    alphabet = string.ascii_letters + string.digits
    candidate = "".join(secrets.choice(alphabet) for _ in range(16))
    assert not cp.is_common_password(candidate)


def test_list_is_loaded_once() -> None:
    assert cp.common_passwords() is cp.common_passwords()


def test_entries_are_case_folded() -> None:
    assert all(entry == entry.casefold() for entry in cp.common_passwords())


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("# header only\n", "no blank line"),
        ("# header\npassword\n\n123456\n", "neither"),
        ("# header\n\n\n   \n", "holds no password"),
    ],
)
def test_damaged_file_is_refused(text: str, fault: str) -> None:
    with pytest.raises(UnreadableInputError, match=fault):
        cp._parse(text, "test-list")


def test_unreadable_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cp, "_RESOURCE", ("data", "no-such-file.txt"))
    cp.common_passwords.cache_clear()
    try:
        with pytest.raises(UnreadableInputError, match="cannot read"):
            cp.common_passwords()
    finally:
        cp.common_passwords.cache_clear()


@pytest.mark.integration
def test_the_file_is_what_the_pinned_django_wheel_gives() -> None:
    # Downloads the pinned wheel from the package index and rebuilds the list in memory.
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_common_passwords.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
