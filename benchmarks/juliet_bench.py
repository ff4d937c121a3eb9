"""Juliet C/C++ 1.3: how well the scanning gate tells a bad function from its fixed twin, per CWE.

``python -m benchmarks juliet_bench --juliet DIR`` where DIR is the suite's ``testcases`` folder (its
``../testcasesupport`` headers are used when present). Get it for reading only, never commit it::

    git --git-dir=<mirror of arichardson/juliet-test-suite-c> archive HEAD testcases/CWE259_Hard_Coded_Password \\
        testcasesupport | tar -x -C /tmp/juliet

A *case* is one test case (all files of ``CWE..._NN``, ``NN`` the flow variant). A finding counts
for a case when it carries the case's CWE or a CWE of the same family (``FAMILY``) and has a
severity of ``low`` or more (flawfinder's inventory does not count as a defect claim). It is placed
by the function holding its line: a function named ``*bad*`` (or a file ``*_bad.cpp``) is the bad
side, ``*good*`` the good side; ``main`` and helpers are neither. *TP* = bad side flagged, *FP* =
good side flagged, *disc.* = TP and not FP, the share the goals are about.

Columns: ``trustroot`` is the whole gate (own checks + every engine), then trustroot's own checks
alone, then each engine alone, all measured in this one run on the same cases. The development set
is flow variants 01, 31 and 41; the other variants are reported apart as the measure of
generalisation. ``--max-cases N`` samples N cases per CWE and set (evenly over the sorted names).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks._util import ROOT
from trustroot.scan.checks import run_tree
from trustroot.scan.checks._clex import CFile
from trustroot.scan.findings import SEVERITY_ORDER, Finding, Severity

CWES: dict[int, str] = {
    78: "CWE78_OS_Command_Injection", 121: "CWE121_Stack_Based_Buffer_Overflow",
    122: "CWE122_Heap_Based_Buffer_Overflow", 134: "CWE134_Uncontrolled_Format_String",
    190: "CWE190_Integer_Overflow", 256: "CWE256_Plaintext_Storage_of_Password", 259: "CWE259_Hard_Coded_Password",
    319: "CWE319_Cleartext_Tx_Sensitive_Info", 321: "CWE321_Hard_Coded_Cryptographic_Key",
    327: "CWE327_Use_Broken_Crypto", 328: "CWE328_Reversible_One_Way_Hash", 338: "CWE338_Weak_PRNG",
    415: "CWE415_Double_Free", 416: "CWE416_Use_After_Free", 476: "CWE476_NULL_Pointer_Dereference",
}  # fmt: skip
FAMILY: dict[int, frozenset[int]] = {
    78: frozenset({78, 77, 88}),
    121: frozenset({121, 119, 120, 787, 788, 805, 806, 125, 126, 127, 131, 170, 193, 785}),
    122: frozenset({122, 119, 120, 787, 788, 805, 806, 125, 126, 127, 131, 170, 193, 785}),
    134: frozenset({134}),
    190: frozenset({190, 191, 680, 128}),
    256: frozenset({256, 260, 522}),
    259: frozenset({259, 798}),
    319: frozenset({319, 311, 523}),
    321: frozenset({321, 798}),
    327: frozenset({327, 326, 780}),
    328: frozenset({328, 327, 916}),
    338: frozenset({338, 330}),
    415: frozenset({415, 416, 675}),
    416: frozenset({416, 825}),
    476: frozenset({476, 690}),
}
DEV_VARIANTS = frozenset({"01", "31", "41"})
OWN = "own checks"
GATE = "trustroot"
_CASE = re.compile(r"^(CWE\d+_.*_(\d\d))(?:[a-e]|_bad|_good\w*)?\.(?:c|cpp)$")
_LINE_STARTS = re.compile(r"\n")


@dataclass
class Case:
    cwe: int
    key: str
    variant: str
    files: list[Path] = field(default_factory=list)


@dataclass
class Score:
    cases: int = 0
    tp: int = 0
    fp: int = 0
    disc: int = 0

    def add(self, bad: bool, good: bool) -> None:
        self.cases += 1
        self.tp += bad
        self.fp += good
        self.disc += bad and not good

    def cell(self) -> str:
        rate = 100.0 * self.disc / self.cases if self.cases else 0.0
        return f"{rate:.0f}% ({self.tp}/{self.fp})"


def find_cases(testcases: Path, cwes: Iterable[int]) -> list[Case]:
    cases: dict[str, Case] = {}
    for cwe in cwes:
        folder = testcases / CWES[cwe]
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            m = _CASE.match(path.name)
            if m is None:
                continue
            case = cases.setdefault(m.group(1), Case(cwe, m.group(1), m.group(2)))
            case.files.append(path)
    return list(cases.values())


def sample(cases: list[Case], limit: int) -> list[Case]:
    if limit <= 0 or len(cases) <= limit:
        return cases
    step = len(cases) / limit
    return [cases[int(i * step)] for i in range(limit)]


def _side(function: str, filename: str) -> str:
    name = function.lower()
    if "bad" in name:
        return "bad"
    if "good" in name:
        return "good"
    if name == "main":
        return ""
    stem = filename.lower()
    return "bad" if "_bad." in stem else "good" if "_good" in stem else ""


class Attributor:
    """Which side (bad, good, neither) of its case a line of a case file belongs to."""

    def __init__(self) -> None:
        self._cache: dict[Path, list[tuple[int, int, str]]] = {}

    def side(self, path: Path, line: int) -> str:
        spans = self._cache.get(path)
        if spans is None:
            text = path.read_text(encoding="utf-8", errors="replace")
            cfile = CFile.parse(text)
            spans = [(cfile.line_of(f.start), cfile.line_of(f.end - 1), f.name) for f in cfile.functions]
            # A line just above a body (the signature) belongs to the function.
            spans = [(max(1, s - 3), e, n) for s, e, n in spans]
            self._cache[path] = spans
        best = ""
        for start, end, name in spans:
            if start <= line <= end:
                best = _side(name, path.name)
        return best


def _counts(f: Finding, cwe: int) -> bool:
    return SEVERITY_ORDER[f.severity] >= SEVERITY_ORDER[Severity.LOW] and bool(FAMILY[cwe] & set(f.cwe))


def _build_tree(cases: list[Case], support: Path | None, into: Path) -> dict[str, tuple[Case, Path]]:
    into.mkdir(parents=True)
    where: dict[str, tuple[Case, Path]] = {}
    for case in cases:
        for f in case.files:
            shutil.copy2(f, into / f.name)
            where[f.name] = (case, f)
            for header in f.parent.glob(case.key + "*.h"):
                shutil.copy2(header, into / header.name)
    if support is not None:
        for h in support.glob("*.h"):
            shutil.copy2(h, into / h.name)
    return where


def _engine_findings(tree_dir: Path, engines: list[str]) -> tuple[dict[str, list[Finding]], dict[str, str]]:
    """Findings per engine (and each engine's status note)."""
    from trustroot.scan.engines import RunContext, Tree, run_engines

    tools = Path(os.environ.get("TRUSTROOT_TOOLS_DIR", ROOT / ".tools"))
    with tempfile.TemporaryDirectory(prefix="juliet-scratch-") as scratch:
        ctx = RunContext(tools, Path(scratch))
        outcomes = run_engines(engines, Tree.walk(tree_dir), ctx)
    return {o.engine: o.findings for o in outcomes}, {o.engine: f"{o.status} {o.seconds:.0f}s" for o in outcomes}


def evaluate(
    cases: list[Case], support: Path | None, engines: list[str]
) -> tuple[dict[str, dict[int, Score]], dict[str, float], dict[str, str]]:
    tools = [GATE, OWN, *engines]
    scores: dict[str, dict[int, Score]] = {t: defaultdict(Score) for t in tools}
    seconds: dict[str, float] = defaultdict(float)
    notes: dict[str, str] = {}
    by_cwe: dict[int, list[Case]] = defaultdict(list)
    for c in cases:
        by_cwe[c.cwe].append(c)
    attr = Attributor()
    for cwe, group in sorted(by_cwe.items()):
        with tempfile.TemporaryDirectory(prefix=f"juliet-{cwe}-") as tmp:
            tree_dir = Path(tmp) / "tree"
            where = _build_tree(group, support, tree_dir)
            started = time.perf_counter()
            per_tool: dict[str, list[Finding]] = {OWN: run_tree(tree_dir)}
            seconds[OWN] += time.perf_counter() - started
            if engines:
                started = time.perf_counter()
                found, status = _engine_findings(tree_dir, engines)
                seconds["engines (parallel)"] += time.perf_counter() - started
                per_tool.update(found)
                for name, note in status.items():
                    notes[name] = f"{notes.get(name, '')} CWE-{cwe}: {note};".strip()
            per_tool[GATE] = [f for t in [OWN, *engines] for f in per_tool.get(t, [])]
            for tool in tools:
                flagged: dict[str, set[str]] = defaultdict(set)
                for f in per_tool.get(tool, []):
                    if not _counts(f, cwe):
                        continue
                    name = Path(f.location.path).name
                    if name not in where:
                        continue
                    case, original = where[name]
                    side = attr.side(original, f.location.line)
                    if side:
                        flagged[case.key].add(side)
                for case in group:
                    sides = flagged.get(case.key, set())
                    scores[tool][cwe].add("bad" in sides, "good" in sides)
    return scores, seconds, notes


def table(title: str, scores: dict[str, dict[int, Score]], tools: list[str]) -> str:
    lines = [f"### {title}", "", "| CWE | cases | " + " | ".join(tools) + " |", "|---|---:|" + "---:|" * len(tools)]
    cwes = sorted({c for t in tools for c in scores[t]})
    totals = {t: Score() for t in tools}
    for cwe in cwes:
        n = scores[tools[0]][cwe].cases
        lines.append(f"| {cwe} | {n} | " + " | ".join(scores[t][cwe].cell() for t in tools) + " |")
        for t in tools:
            s = scores[t][cwe]
            totals[t].cases += s.cases
            totals[t].tp += s.tp
            totals[t].fp += s.fp
            totals[t].disc += s.disc
    n = totals[tools[0]].cases
    lines.append(f"| **all** | {n} | " + " | ".join(f"**{totals[t].cell()}**" for t in tools) + " |")
    focus = [c for c in (259, 321, 256, 327, 328, 319) if c in cwes]
    if focus:
        sub = {t: Score() for t in tools}
        for t in tools:
            for c in focus:
                s = scores[t][c]
                sub[t].cases += s.cases
                sub[t].tp += s.tp
                sub[t].fp += s.fp
                sub[t].disc += s.disc
        label = "/".join(str(c) for c in focus)
        lines.append(f"| {label} | {sub[tools[0]].cases} | " + " | ".join(sub[t].cell() for t in tools) + " |")
    lines.append("")
    lines.append("Cells: discrimination rate (bad flagged and good clean), then (TP/FP) in cases.")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> str:
    parser = argparse.ArgumentParser(prog="python -m benchmarks juliet_bench")
    default_dir = os.environ.get("JULIET_DIR", "/tmp/juliet/testcases")  # noqa: S108 - a reading copy, never written
    parser.add_argument("--juliet", type=Path, default=Path(default_dir))
    parser.add_argument("--set", choices=("dev", "other", "both"), default="both")
    parser.add_argument("--cwes", default=",".join(str(c) for c in CWES))
    parser.add_argument("--engines", default="cppcheck,clang-tidy,flawfinder,semgrep,detect-secrets")
    parser.add_argument("--max-cases", type=int, default=40, help="cases per CWE and set (0: all)")
    args = parser.parse_args(argv)
    if not args.juliet.is_dir():
        return f"## Juliet C/C++ 1.3\n\nskipped: no Juliet testcases folder at {args.juliet} (--juliet DIR)\n"
    cwes = [int(c) for c in args.cwes.split(",") if c]
    engines = [e for e in args.engines.split(",") if e]
    support = args.juliet.parent / "testcasesupport"
    all_cases = find_cases(args.juliet, cwes)
    out = ["## Juliet C/C++ 1.3 (issue 7)", ""]
    sets = {"dev": ("development set: flow variants 01, 31, 41", lambda c: c.variant in DEV_VARIANTS),
            "other": ("other flow variants (generalisation)", lambda c: c.variant not in DEV_VARIANTS)}  # fmt: skip
    for key in ("dev", "other"):
        if args.set not in (key, "both"):
            continue
        title, keep = sets[key]
        chosen: list[Case] = []
        for cwe in cwes:
            chosen.extend(sample([c for c in all_cases if c.cwe == cwe and keep(c)], args.max_cases))
        scores, seconds, notes = evaluate(chosen, support if support.is_dir() else None, engines)
        out.append(table(f"{title}, {len(chosen)} cases", scores, [GATE, OWN, *engines]))
        out.append("Time: " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()) + "\n")
        if notes:
            out.append("Engines: " + " ".join(f"{k}: {v}" for k, v in notes.items()) + "\n")
    return "\n".join(out)


if __name__ == "__main__":
    import sys

    sys.stdout.write(main(sys.argv[1:]))
