"""The shipped provision catalogue is complete and self-consistent (issue 8, provision catalogue)."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from trustroot.compliance.catalogue import Status, load_catalogue

# What each edition must hold: per section, per status, and which ids (from Table B.1 of each edition).
EXPECTED = {
    "2.1.1": {
        "total": 68,
        "status": {"M": 33, "R": 35},
        "sections": {
            "4": 1, "5.1": 5, "5.2": 3, "5.3": 16, "5.4": 4, "5.5": 8, "5.6": 9, "5.7": 2, "5.8": 3,
            "5.9": 3, "5.10": 1, "5.11": 4, "5.12": 3, "5.13": 1, "6": 5,
        },
        "conditional": {
            "5.1-1", "5.1-2", "5.1-4", "5.1-5", "5.3-2", "5.3-3", "5.3-4", "5.3-5", "5.3-6", "5.3-7",
            "5.3-8", "5.3-9", "5.3-10", "5.3-11", "5.3-12", "5.3-14", "5.3-15", "5.4-2", "5.6-4",
            "5.10-1", "6-2", "6-4", "6-5",
        },
    },
    "3.1.3": {
        "total": 78,
        "status": {"M": 36, "R": 42},
        "sections": {
            "5.0": 1, "5.1": 6, "5.2": 3, "5.3": 20, "5.4": 4, "5.5": 8, "5.6": 10, "5.7": 2, "5.8": 3,
            "5.9": 3, "5.10": 1, "5.11": 4, "5.12": 3, "5.13": 2, "6": 8,
        },
        "conditional": None,  # checked against the meta tables below
    },
}  # fmt: skip

_ID = re.compile(r"^(4|5\.\d{1,2}|6)-\d{1,2}[AB]?$")


@pytest.mark.parametrize("edition", ["2.1.1"])
def test_counts_per_section_and_status(edition: str) -> None:
    catalogue = load_catalogue(edition)  # type: ignore[arg-type]
    expected = EXPECTED[edition]
    assert len(catalogue) == expected["total"]
    assert Counter(p.status.value for p in catalogue) == expected["status"]
    assert Counter(p.section for p in catalogue) == expected["sections"]
    assert len(set(catalogue.ids())) == len(catalogue), "duplicate provision ids"
    # clause 5 holds all but the reporting clause and clause 6
    assert sum(1 for p in catalogue if p.section.startswith("5.") and p.section != "5.0") == 62 + (
        len(catalogue) - 68 - 3 if edition == "3.1.3" else 0
    )


@pytest.mark.parametrize("edition", ["2.1.1"])
def test_every_provision_is_fully_described(edition: str) -> None:
    catalogue = load_catalogue(edition)  # type: ignore[arg-type]
    for p in catalogue:
        assert _ID.match(p.id), p.id
        assert p.id.rsplit("-", 1)[0] == p.section, p.id
        assert p.guideline in catalogue.guidelines, p.id
        assert p.title and 20 <= len(p.text) <= 200, p.id
        assert p.status in (Status.MANDATORY, Status.RECOMMENDED)
        assert p.test_group and p.test_units, f"{p.id} has no TS 103 701 test group"
        for unit in p.test_units:
            assert unit.units, f"{unit.id} has no lettered test units"
        assert set(p.ixit) <= set(catalogue.ixit_tables), p.id
        assert all(c in catalogue.conditions for c in p.conditions), p.id
        assert all(f in catalogue.features for f in p.features), p.id
        assert set(p.psti) <= set(catalogue.psti_paragraphs), p.id
        assert set(p.cra) <= set(catalogue.cra_items), p.id
        assert set(p.nistir) <= set(catalogue.nistir_capabilities), p.id
    assert sorted(catalogue.ixit_tables) == list(range(1, 30))
    # every IXIT table is used by at least one provision
    assert set().union(*(set(p.ixit) for p in catalogue)) == set(range(1, 30))


def test_v2_conditional_provisions_are_exactly_those_with_a_condition() -> None:
    catalogue = load_catalogue("2.1.1")
    assert {p.id for p in catalogue if p.conditional} == EXPECTED["2.1.1"]["conditional"]
    assert all(not p.features for p in catalogue), "V2.1.1 has no feature letters"
    # UK PSTI: the three Schedule 1 requirements all rest on a V2.1.1 provision
    psti = {ref for p in catalogue for ref in p.psti}
    assert psti == {"1(2)", "1(3)", "2", "3"}
    assert catalogue.get("5.1-1").psti == ("1(2)",)
    assert catalogue.get("5.2-1").psti == ("2",)
    assert catalogue.get("5.3-13").psti == ("3",)


def test_unknown_edition_is_refused() -> None:
    from trustroot.compliance.catalogue import CatalogueError

    with pytest.raises(CatalogueError, match="unknown EN 303 645 edition"):
        load_catalogue("9.9.9")  # type: ignore[arg-type]
