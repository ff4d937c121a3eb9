"""The product's Implementation Conformance Statement: ``compliance/ics.toml`` beside the context.

One row per provision of one EN 303 645 edition (Table B.1 style): ``support`` Y, N or N/A with a
justification. N/A is accepted only for a provision that has a condition or a feature, and only
naming (``because``) a condition that does not hold or a feature that is absent; the file's own
``[conditions]`` and ``[features]`` tables say which hold, and an N/A that names one marked as
holding is refused. ::

    format = "trustroot.ics/1"
    edition = "3.1.3"

    [features.q]                      # V3 feature letters (V2.1.1 has none)
    present = false
    basis = "the board has no JTAG or SWD pads"
    source = "user"

    [provision."5.6-4A"]
    support = "N/A"
    because = ["F(q)"]
    justification = "no debug interface exists"
    source = "user"                   # derived | declared | user | pending
    note = "free text, never touched by trustroot"

``source`` says who owns a row: ``derived`` and ``declared`` rows are rewritten by
``trustroot compliance fill`` from the context and the signed declarations; ``user`` rows are never
touched; ``pending`` rows wait for a decision. ``digest`` is what fill wrote last: a derived row
edited by hand no longer matches it, and fill then keeps it as the user's (see
:mod:`trustroot.compliance.ics_fill`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trustroot.compliance._tomlfile import COMPLIANCE_DIR, Issue, TomlFile, raise_issues, read_toml, schema_error
from trustroot.compliance.catalogue import EDITIONS, Catalogue, Edition, Provision, load_catalogue
from trustroot.context.load import KeyPath

__all__ = [
    "ICS_FILE",
    "ICS_FORMAT",
    "ConditionRow",
    "FeatureRow",
    "Ics",
    "IcsEntry",
    "IcsModel",
    "Source",
    "Support",
    "ics_path",
    "load_ics",
    "parse_ics",
]

ICS_FILE: Final = "ics.toml"
ICS_FORMAT: Final = "trustroot.ics/1"
#: Longest justification or note accepted, in characters.
MAX_TEXT_CHARS: Final = 4000

Support = Literal["Y", "N", "N/A"]
Source = Literal["derived", "declared", "user", "pending"]
Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
_BECAUSE = re.compile(r"^(C\((\d{1,2})\)|F\(([a-z]{1,2})\))$")
_EVIDENCE = re.compile(r"^[a-z][a-z0-9._-]{0,63}:[0-9a-f]{16,64}$")


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class IcsEntry(_Row):
    """One row of the ICS."""

    support: Support | None = Field(default=None, description="Y, N or N/A; absent while pending.")
    justification: Text = Field(default="", description="Measures taken (Y), or why not (N, N/A).")
    because: list[Annotated[str, Field(pattern=_BECAUSE.pattern)]] = Field(
        default_factory=list, max_length=10, description='For N/A: "C(n)" or "F(x)" that does not apply.'
    )
    evidence: list[Annotated[str, Field(pattern=_EVIDENCE.pattern)]] = Field(
        default_factory=list, max_length=50, description="Evidence records the row rests on (type:hash)."
    )
    source: Source = Field(default="user", description="Who owns the row.")
    digest: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")] | None = Field(default=None)
    note: Text = Field(default="", description="The user's own text; never rewritten.")

    @property
    def effective_source(self) -> Source:
        """A pending row someone has decided is the user's."""
        return "user" if self.source == "pending" and self.support is not None else self.source


class FeatureRow(_Row):
    """Whether a V3 feature (capability) is present in the product."""

    present: bool | None = None
    basis: Text = ""
    source: Source = "user"
    digest: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")] | None = None


class ConditionRow(_Row):
    """Whether a condition of the edition's Table B.1 holds for the product."""

    holds: bool | None = None
    basis: Text = ""
    source: Source = "user"
    digest: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")] | None = None


class IcsModel(_Row):
    """The whole ``ics.toml``."""

    format: Literal["trustroot.ics/1"]
    edition: Edition
    product: Annotated[str, Field(max_length=200)] = ""
    features: dict[str, FeatureRow] = Field(default_factory=dict)
    conditions: dict[str, ConditionRow] = Field(default_factory=dict)
    provision: dict[str, IcsEntry] = Field(default_factory=dict)


@dataclass(frozen=True)
class Ics:
    """A validated ICS with the catalogue of its edition."""

    path: Path
    model: IcsModel
    catalogue: Catalogue

    @property
    def edition(self) -> Edition:
        return self.model.edition

    def entry(self, provision_id: str) -> IcsEntry | None:
        return self.model.provision.get(provision_id)

    def rows(self) -> Iterator[tuple[Provision, IcsEntry | None]]:
        """Every provision of the edition in document order, with its row (None if missing)."""
        for provision in self.catalogue:
            yield provision, self.model.provision.get(provision.id)

    def pending(self) -> list[str]:
        """Provisions not decided yet (missing, or pending without a support value)."""
        return [p.id for p, row in self.rows() if row is None or row.support is None]


def ics_path(context_path: Path) -> Path:
    """``compliance/ics.toml`` beside ``security-context.toml``."""
    return context_path.parent / COMPLIANCE_DIR / ICS_FILE


def _check_rows(model: IcsModel, catalogue: Catalogue) -> list[Issue]:
    issues: list[Issue] = []
    if model.edition == "2.1.1" and model.features:
        issues.append(Issue(("features",), "EN 303 645 V2.1.1 has no feature letters; use [conditions]"))
    for letter in model.features:
        if letter not in catalogue.features and model.edition != "2.1.1":
            issues.append(
                Issue(("features", letter), f"unknown feature letter; known: {', '.join(catalogue.features)}")
            )
    for number in model.conditions:
        if not number.isdigit() or int(number) not in catalogue.conditions:
            known = ", ".join(str(c) for c in catalogue.conditions)
            issues.append(Issue(("conditions", number), f"unknown condition of V{model.edition}; known: {known}"))
    for pid, row in model.provision.items():
        where: KeyPath = ("provision", pid)
        try:
            provision = catalogue.get(pid)
        except KeyError:
            issues.append(Issue(where, f"{pid!r} is not a provision of EN 303 645 V{model.edition}"))
            continue
        issues.extend(_check_row(model, provision, row, where))
    return issues


def _check_row(model: IcsModel, provision: Provision, row: IcsEntry, where: KeyPath) -> Iterator[Issue]:
    if row.support is None:
        if row.source != "pending":
            yield Issue((*where, "support"), 'required unless source = "pending"')
        return
    if not row.justification.strip():
        yield Issue((*where, "justification"), f"{row.support} needs a justification")
    if row.support != "N/A":
        if row.because:
            yield Issue((*where, "because"), "only an N/A row names the condition or feature that does not apply")
        return
    if not provision.conditional:
        yield Issue(
            (*where, "support"),
            f"N/A is allowed only for a provision with a condition or feature; {provision.id} has none",
        )
        return
    if not row.because:
        yield Issue((*where, "because"), 'N/A must name what does not apply, e.g. ["C(3)"] or ["F(q)"]')
    yield from _check_because(model, provision, row, where)


def _check_because(model: IcsModel, provision: Provision, row: IcsEntry, where: KeyPath) -> Iterator[Issue]:
    for index, item in enumerate(row.because):
        match = _BECAUSE.match(item)
        if match is None:  # the schema already refused it
            continue
        if match.group(2) is not None:
            number = int(match.group(2))
            if number not in provision.conditions:
                yield Issue((*where, "because", index), f"{provision.id} has no condition {number}")
            elif (cond := model.conditions.get(str(number))) is not None and cond.holds:
                yield Issue((*where, "because", index), f"condition {number} holds per [conditions.{number}]")
        else:
            letter = match.group(3)
            if letter not in provision.features:
                yield Issue((*where, "because", index), f"{provision.id} has no feature ({letter})")
            elif (feat := model.features.get(letter)) is not None and feat.present:
                yield Issue((*where, "because", index), f"feature ({letter}) is present per [features.{letter}]")


def parse_ics(file: TomlFile) -> Ics:
    """Validate a read ``ics.toml``: schema, then every row against the edition's catalogue."""
    edition = file.data.get("edition")
    if edition not in EDITIONS:
        raise_issues(file, [Issue(("edition",), f"unknown edition {edition!r}; known: {', '.join(EDITIONS)}")])
    try:
        model = IcsModel.model_validate(file.data)
    except ValidationError as exc:
        raise schema_error(file, exc) from exc
    catalogue = load_catalogue(model.edition)
    raise_issues(file, _check_rows(model, catalogue))
    return Ics(path=file.path, model=model, catalogue=catalogue)


def load_ics(path: Path) -> Ics:
    """Read and validate ``ics.toml`` at ``path``."""
    return parse_ics(read_toml(path, "ICS"))
