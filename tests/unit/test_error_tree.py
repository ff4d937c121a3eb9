"""The one error hierarchy: every class of trustroot.errors is drawn in its docstring tree, under its parent,
and the fleet's errors are those classes (importable from the fleet modules that raise them)."""

from __future__ import annotations

import re

import pytest

from trustroot import errors


def _tree() -> dict[str, str]:
    """child -> parent, read from the module docstring's drawing (4 columns a level)."""
    parents: dict[int, str] = {}
    found: dict[str, str] = {}
    for line in (errors.__doc__ or "").splitlines():
        match = re.match(r"^([ │├└─]*)([A-Z][A-Za-z]+)\b", line)
        if not match or match.group(2) not in errors.__all__:
            continue
        branch = max(match.group(1).find("├"), match.group(1).find("└"))
        depth = 0 if branch < 0 else (branch - 4) // 4 + 1
        parents[depth] = match.group(2)
        if depth:
            found[match.group(2)] = parents[depth - 1]
    return found


def test_every_error_is_drawn_under_its_parent() -> None:
    tree = _tree()
    for name in errors.__all__:
        cls = getattr(errors, name)
        if name == "TrustrootError":
            continue
        assert name in tree, f"{name} is not drawn in the trustroot.errors docstring"
        assert tree[name] == cls.__mro__[1].__name__, f"{name} drawn under {tree[name]}"


@pytest.mark.parametrize(
    ("module", "name", "canonical"),
    [
        ("trustroot.fleet.ownership", "OwnershipRefused", "OwnershipRefused"),
        ("trustroot.fleet.ownership", "OwnerAuthError", "OwnerAuthError"),
        ("trustroot.fleet.ownership", "OwnershipChainError", "OwnershipChainError"),
        ("trustroot.fleet.personal_data", "PersonalDataError", "PersonalDataError"),
        ("trustroot.fleet.receipts", "ReceiptError", "ReceiptError"),
        ("trustroot.fleet.disclosures", "DisclosureNotFound", "DisclosureNotFound"),
        ("trustroot.fleet.operators", "InvalidOperatorToken", "InvalidOperatorToken"),
        ("trustroot.fleet.rollouts", "NotFound", "RolloutNotFound"),
    ],
)
def test_fleet_errors_are_the_hierarchys_classes(module: str, name: str, canonical: str) -> None:
    import importlib

    assert getattr(importlib.import_module(module), name) is getattr(errors, canonical)


def test_an_ownership_refusal_names_its_provision() -> None:
    assert errors.OwnershipRefused("not the owner").provision == "5.11-1"
