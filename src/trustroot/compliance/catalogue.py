"""The provision catalogue of ETSI EN 303 645, shipped as data in the package.

Two editions: V2.1.1 (68 provisions; the one the UK PSTI regulations cite) and V3.1.3 (78 entries,
with conditions and feature letters, each mapped to its V2.1.1 equivalent). The data lives in
``compliance/data/provisions-v2.1.1.toml`` and ``provisions-v3.1.3.toml``; each file holds a
``[meta]`` table (edition, counts, conditions, features) and one ``[[provision]]`` table per
provision with the fields of :class:`Provision`. The paraphrases are the project's own words.
"""

from __future__ import annotations

import enum
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Final, Literal

from trustroot.errors import TrustrootError

__all__ = [
    "EDITIONS",
    "Catalogue",
    "CatalogueError",
    "Edition",
    "Provision",
    "Status",
    "TestUnit",
    "load_catalogue",
]

Edition = Literal["2.1.1", "3.1.3"]
EDITIONS: Final[tuple[Edition, ...]] = ("2.1.1", "3.1.3")


class CatalogueError(TrustrootError):
    """The shipped provision catalogue is damaged (a packaging bug, never a user mistake)."""


class Status(enum.StrEnum):
    """Mandatory (shall) or recommended (should)."""

    MANDATORY = "M"
    RECOMMENDED = "R"


@dataclass(frozen=True, slots=True)
class TestUnit:
    """One ETSI TS 103 701 test case of a provision's test group (``5.1-1-2``, functional).

    ``units`` are the lettered steps of the test case (``a``, ``b``...); a verdict can be given
    per test case and rolled up per provision.
    """

    id: str
    kind: Literal["conceptual", "functional", "conceptual/functional"]
    units: tuple[str, ...] = ()

    @property
    def functional(self) -> bool:
        """True when the test case exercises the device (not only its documentation)."""
        return "functional" in self.kind


@dataclass(frozen=True, slots=True)
class Provision:
    """One provision of one edition.

    ``conditions`` are the condition numbers of the edition's table (``C (12)``); ``features`` the
    V3 feature letters (``F (a)``). A provision may be N/A in an ICS only when it has either.
    ``v2_equivalent`` (V3 only) lists the V2.1.1 ids that the entry continues (may be empty).
    ``test_group`` is the ETSI TS 103 701 test group (``5.1-1``), ``test_units`` its test cases
    and ``ixit`` the IXIT table numbers it rests on. ``psti``, ``cra`` and ``nistir`` are
    cross-references: UK PSTI Schedule 1 paragraphs, EU CRA Annex I items (``I.2(a)``) and NISTIR 8259A capabilities.
    """

    id: str
    edition: Edition
    section: str
    guideline: int
    title: str
    text: str
    status: Status
    conditions: tuple[int, ...] = ()
    features: tuple[str, ...] = ()
    v2_equivalent: tuple[str, ...] = ()
    test_group: str = ""
    test_units: tuple[TestUnit, ...] = ()
    ixit: tuple[int, ...] = ()
    psti: tuple[str, ...] = ()
    cra: tuple[str, ...] = ()
    nistir: tuple[str, ...] = ()

    @property
    def conditional(self) -> bool:
        """True when a condition or feature may make the provision not applicable."""
        return bool(self.conditions or self.features)


@dataclass(frozen=True)
class Catalogue:
    """All provisions of one edition, in document order, with the edition's condition and feature texts."""

    edition: Edition
    provisions: tuple[Provision, ...]
    conditions: Mapping[int, str]
    features: Mapping[str, str]
    guidelines: Mapping[int, str]
    ixit_tables: Mapping[int, str] = field(default_factory=dict)
    psti_paragraphs: Mapping[str, str] = field(default_factory=dict)
    cra_items: Mapping[str, str] = field(default_factory=dict)
    nistir_capabilities: tuple[str, ...] = ()
    title: str = ""
    test_spec: str = ""

    def __iter__(self) -> Iterator[Provision]:
        return iter(self.provisions)

    def __len__(self) -> int:
        return len(self.provisions)

    def get(self, provision_id: str) -> Provision:
        for provision in self.provisions:
            if provision.id == provision_id:
                return provision
        raise KeyError(provision_id)

    def ids(self) -> list[str]:
        return [p.id for p in self.provisions]


@cache
def load_catalogue(edition: Edition = "2.1.1") -> Catalogue:
    """The shipped catalogue of ``edition`` (parsed once per process)."""
    if edition not in EDITIONS:
        raise CatalogueError(f"unknown EN 303 645 edition {edition!r}; known: {', '.join(EDITIONS)}")
    name = f"provisions-v{edition}.toml"
    try:
        raw = tomllib.loads(resources.files("trustroot.compliance").joinpath("data", name).read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CatalogueError(f"the shipped catalogue {name} cannot be read: {exc}") from exc
    try:
        meta = raw["meta"]
        provisions = tuple(
            Provision(
                id=str(item["id"]),
                edition=edition,
                section=str(item["section"]),
                guideline=int(item["guideline"]),
                title=str(item["title"]),
                text=str(item["text"]),
                status=Status(item["status"]),
                conditions=tuple(int(c) for c in item.get("conditions", ())),
                features=tuple(str(f) for f in item.get("features", ())),
                v2_equivalent=tuple(str(v) for v in item.get("v2_equivalent", ())),
                test_group=str(item.get("test_group", "")),
                test_units=tuple(_test_unit(u) for u in item.get("test_units", ())),
                ixit=tuple(int(i) for i in item.get("ixit", ())),
                psti=tuple(str(v) for v in item.get("psti", ())),
                cra=tuple(str(v) for v in item.get("cra", ())),
                nistir=tuple(str(v) for v in item.get("nistir", ())),
            )
            for item in raw["provision"]
        )
        return Catalogue(
            edition=edition,
            provisions=provisions,
            conditions={int(k): str(v) for k, v in meta.get("conditions", {}).items()},
            features={str(k): str(v) for k, v in meta.get("features", {}).items()},
            guidelines={int(k): str(v) for k, v in meta["guidelines"].items()},
            ixit_tables={int(k): str(v) for k, v in meta.get("ixit", {}).items()},
            psti_paragraphs={str(k): str(v) for k, v in meta.get("psti", {}).items()},
            cra_items={str(k): str(v) for k, v in meta.get("cra", {}).items()},
            nistir_capabilities=tuple(str(k) for k in meta.get("nistir", {})),
            title=str(meta.get("title", "")),
            test_spec=str(meta.get("test_spec", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CatalogueError(f"the shipped catalogue {name} is malformed: {exc!r}") from exc


_TEST_KINDS: Final = ("conceptual", "functional", "conceptual/functional")


def _test_unit(raw: Mapping[str, object]) -> TestUnit:
    kind = raw["kind"]
    if kind not in _TEST_KINDS:
        raise ValueError(f"test unit {raw.get('id')!r} has unknown kind {kind!r}")
    units = raw.get("units", [])
    if not isinstance(units, list):
        raise TypeError(f"test unit {raw.get('id')!r}: units must be a list")
    return TestUnit(id=str(raw["id"]), kind=kind, units=tuple(str(u) for u in units))
