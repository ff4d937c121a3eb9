"""The shipped provision catalogue is complete and self-consistent (issue 8, provision catalogue)."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from trustroot.compliance.catalogue import EDITIONS, Status, load_catalogue

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
            "5.0": 1, "5.1": 6, "5.2": 3, "5.3": 19, "5.4": 4, "5.5": 8, "5.6": 10, "5.7": 2, "5.8": 3,
            "5.9": 3, "5.10": 1, "5.11": 4, "5.12": 3, "5.13": 2, "6": 9,
        },
        # the 32 entries of Table B.1 with neither a condition nor a feature letter
        "unconditional": {
            "5.0-1", "5.1-2A", "5.2-1", "5.2-2", "5.2-3", "5.3-13", "5.3-16", "5.4-3", "5.5-1", "5.5-2",
            "5.5-3", "5.5-4", "5.6-2", "5.6-3", "5.6-5", "5.6-6", "5.6-7", "5.6-8", "5.6-9", "5.7-1",
            "5.9-1", "5.9-2", "5.9-3", "5.11-1", "5.11-3", "5.11-4", "5.12-1", "5.12-2", "5.12-3",
            "5.13-1A", "5.13-1B", "6-1",
        },
        # entries new in V3.1.3 (no V2.1.1 equivalent)
        "new": {"5.1-2A", "6-3B", "6-6", "6-7", "6-8"},
    },
}  # fmt: skip

_ID = re.compile(r"^(4|5\.\d{1,2}|6)-\d{1,2}[AB]?$")


@pytest.mark.parametrize("edition", EDITIONS)
def test_counts_per_section_and_status(edition: str) -> None:
    catalogue = load_catalogue(edition)  # type: ignore[arg-type]
    expected = EXPECTED[edition]
    assert len(catalogue) == expected["total"]
    assert Counter(p.status.value for p in catalogue) == expected["status"]
    assert Counter(p.section for p in catalogue) == expected["sections"]
    assert len(set(catalogue.ids())) == len(catalogue), "duplicate provision ids"
    clause5 = sum(1 for p in catalogue if p.section.startswith("5.") and p.section != "5.0")
    assert clause5 == (62 if edition == "2.1.1" else 68)


@pytest.mark.parametrize("edition", EDITIONS)
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
            # V3-only entries list the TS 103 701 V2.1.1 test cases without their lettered units
            assert unit.units or (not p.v2_equivalent and edition == "3.1.3"), f"{unit.id} has no lettered units"
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


def test_v3_conditions_features_and_v2_equivalents() -> None:
    v2 = load_catalogue("2.1.1")
    v3 = load_catalogue("3.1.3")
    expected = EXPECTED["3.1.3"]
    assert {p.id for p in v3 if not p.conditional} == expected["unconditional"]
    assert all(p.conditional == bool(p.conditions or p.features) for p in v3)
    assert sorted(v3.conditions) == [3, 12, 14, 15, 16]
    assert len(v3.features) == 27
    # every feature letter and condition of the edition is used by some entry
    assert {f for p in v3 for f in p.features} == set(v3.features)
    assert {c for p in v3 for c in p.conditions} == set(v3.conditions)
    # the V2 equivalents exist, cover every V2.1.1 provision, and only the new entries have none
    for p in v3:
        for old in p.v2_equivalent:
            v2.get(old)
    assert {old for p in v3 for old in p.v2_equivalent} == set(v2.ids())
    assert {p.id for p in v3 if not p.v2_equivalent} == expected["new"]
    assert v3.get("5.0-1").v2_equivalent == ("4-1",)
    assert v3.get("5.3-6B").v2_equivalent == ("5.3-6",)
    # the split entries keep the V2 provision's test units
    assert [u.id for u in v3.get("5.13-1B").test_units] == [u.id for u in v2.get("5.13-1").test_units]
    assert all(not p.v2_equivalent for p in v2)


def test_unknown_edition_is_refused() -> None:
    from trustroot.compliance.catalogue import CatalogueError

    with pytest.raises(CatalogueError, match="unknown EN 303 645 edition"):
        load_catalogue("9.9.9")  # type: ignore[arg-type]
