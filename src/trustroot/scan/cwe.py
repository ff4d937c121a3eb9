"""CWE facts the gate needs: the family of a CWE (for merging) and the EN 303 645 provision it bears on."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

__all__ = ["family", "provisions_for"]

# Members of one family describe the same defect at different precision (an engine says CWE-120,
# another CWE-787 for the same strcpy): merged into one finding when at the same place.
_FAMILIES: Final[dict[str, frozenset[int]]] = {
    "buffer": frozenset({119, 120, 121, 122, 124, 125, 126, 127, 131, 170, 193, 242, 676, 680, 786, 787, 788, 805}),
    "null": frozenset({476, 690}),
    "lifetime": frozenset({415, 416, 562, 590, 761, 825}),
    "leak": frozenset({400, 401, 404, 772, 775}),
    "integer": frozenset({128, 190, 191, 194, 195, 196, 197, 369, 681, 682}),
    "format": frozenset({134, 686, 685, 687, 688}),
    "credential": frozenset({256, 257, 258, 259, 260, 321, 522, 798, 1391, 521}),
    "crypto": frozenset({326, 327, 328, 330, 331, 338, 916, 1240}),
    "tls": frozenset({295, 296, 297, 319, 757}),
    "injection": frozenset({77, 78, 88, 89, 94}),
    "uninit": frozenset({457, 665, 908, 909}),
    "race": frozenset({362, 363, 367, 377}),
}
_FAMILY_OF: Final[dict[int, str]] = {cwe: name for name, members in _FAMILIES.items() for cwe in members}

# (provisions, guideline) per family; anything else is a code-quality defect (5.6-9, guideline 6).
_PROVISIONS: Final[dict[str, tuple[tuple[str, ...], int]]] = {
    "credential": (("5.1-1", "5.4-3"), 4),
    "crypto": (("5.5-1",), 5),
    "tls": (("5.5-1",), 5),
    "buffer": (("5.13-1", "5.6-9"), 13),
    "format": (("5.13-1", "5.6-9"), 13),
    "injection": (("5.13-1", "5.6-9"), 13),
    "integer": (("5.13-1", "5.6-9"), 13),
}
_DEFAULT: Final = (("5.6-9",), 6)


def family(cwe: int) -> str:
    """The family name of ``cwe`` (``buffer``, ``credential``...), or ``cwe-NNN`` for a lone CWE."""
    return _FAMILY_OF.get(cwe, f"cwe-{cwe}")


def provisions_for(cwes: Iterable[int]) -> tuple[tuple[str, ...], int]:
    """The EN 303 645 provisions and guideline a finding with these CWE ids bears on."""
    provisions: list[str] = []
    guideline: int | None = None
    for cwe in cwes:
        found = _PROVISIONS.get(_FAMILY_OF.get(cwe, ""))
        if found is None:
            continue
        for provision in found[0]:
            if provision not in provisions:
                provisions.append(provision)
        guideline = guideline or found[1]
    if not provisions:
        return _DEFAULT
    return tuple(provisions), guideline or _DEFAULT[1]
