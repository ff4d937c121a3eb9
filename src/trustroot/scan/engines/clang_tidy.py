"""clang-tidy (the PyPI wheel): CERT C, bug-prone patterns and the Clang static analyser's
security, taint, core and unix checks, each mapped to a CWE id.

The translation units come from ``compile_commands.json`` when the tree has one, else every C/C++
source file with the tree's root and its ``include/`` as include paths. They are split into
batches that run side by side, one clang-tidy process each.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
from pathlib import Path
from typing import Final

from trustroot.scan.cwe import family, provisions_for
from trustroot.scan.engines._base import (
    EngineFailure,
    EngineSkipped,
    LineCache,
    RunContext,
    ToolRun,
    Tree,
    run_tool,
)
from trustroot.scan.findings import Finding, Location, Severity

__all__ = ["CHECKS", "Clangtidy", "cwe_of"]

CHECKS: Final = ",".join(
    (
        "-*",
        "cert-*",
        "bugprone-*",
        "clang-analyzer-security.*",
        "clang-analyzer-optin.taint.*",
        "clang-analyzer-core.*",
        "clang-analyzer-unix.*",
        # style advice with no security bearing, and very noisy on C code bases
        "-bugprone-easily-swappable-parameters",
        "-bugprone-reserved-identifier",
        "-cert-dcl37-c",
        "-cert-dcl51-cpp",
        "-bugprone-assignment-in-if-condition",
    )
)

# Check name (exact, then longest prefix) -> CWE id.
_CWE: Final[dict[str, int]] = {
    "clang-analyzer-security.insecureAPI.strcpy": 120,
    "clang-analyzer-security.insecureAPI.gets": 242,
    "clang-analyzer-security.insecureAPI.rand": 338,
    "clang-analyzer-security.insecureAPI.mktemp": 377,
    "clang-analyzer-security.insecureAPI.mkstemp": 377,
    "clang-analyzer-security.insecureAPI.vfork": 676,
    "clang-analyzer-security.insecureAPI.getpw": 676,
    "clang-analyzer-security.insecureAPI.UncheckedReturn": 252,
    "clang-analyzer-security.insecureAPI.DeprecatedOrUnsafeBufferHandling": 120,
    "clang-analyzer-security.insecureAPI": 676,
    "clang-analyzer-security.ArrayBound": 119,
    "clang-analyzer-security.PutenvStackArray": 686,
    "clang-analyzer-security.SetgidSetuidOrder": 250,
    "clang-analyzer-security.cert.env.InvalidPtr": 416,
    "clang-analyzer-optin.taint.TaintedAlloc": 789,
    "clang-analyzer-optin.taint.TaintedDiv": 369,
    "clang-analyzer-optin.taint": 20,
    "clang-analyzer-core.NullDereference": 476,
    "clang-analyzer-core.NonNullParamChecker": 476,
    "clang-analyzer-core.DivideZero": 369,
    "clang-analyzer-core.StackAddressEscape": 562,
    "clang-analyzer-core.uninitialized": 457,
    "clang-analyzer-core.CallAndMessage": 457,
    "clang-analyzer-core.UndefinedBinaryOperatorResult": 457,
    "clang-analyzer-core.BitwiseShift": 1335,
    "clang-analyzer-unix.MallocSizeof": 131,
    "clang-analyzer-unix.cstring.NullArg": 476,
    "clang-analyzer-unix.cstring.BadSizeArg": 131,
    "clang-analyzer-unix.Stream": 775,
    "clang-analyzer-unix.Malloc": 401,
    "cert-err33-c": 252,
    "cert-msc30-c": 338,
    "cert-msc50-cpp": 338,
    "cert-msc32-c": 337,
    "cert-msc51-cpp": 337,
    "cert-env33-c": 78,
    "cert-err34-c": 20,
    "cert-str34-c": 704,
    "cert-flp30-c": 1339,
    "cert-sig30-c": 479,
    "cert-oop57-cpp": 665,
    "bugprone-sizeof-expression": 467,
    "bugprone-not-null-terminated-result": 170,
    "bugprone-unsafe-functions": 676,
    "bugprone-suspicious-memset-usage": 687,
    "bugprone-integer-division": 682,
    "bugprone-narrowing-conversions": 197,
    "bugprone-signed-char-misuse": 194,
    "bugprone-misplaced-widening-cast": 190,
    "bugprone-implicit-widening-of-multiplication-result": 190,
    "bugprone-suspicious-string-compare": 253,
    "bugprone-multi-level-implicit-pointer-conversion": 704,
    "bugprone-infinite-loop": 835,
    "bugprone-use-after-move": 416,
    "bugprone-command-processor": 78,
}
# The analyser's malloc checker says which lifetime bug it saw in its message.
_MALLOC_MESSAGES: Final = (("after it is freed", 416), ("released memory", 415), ("Potential leak", 401))
_LINE: Final = re.compile(
    r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<kind>warning|error): (?P<msg>.*) \[(?P<check>[\w.,-]+)\]$"
)
_HIGH_FAMILIES: Final = frozenset({"buffer", "lifetime", "injection", "format"})
_MAX_BATCH: Final = 40


def cwe_of(check: str, message: str) -> int | None:
    """The CWE id of a clang-tidy check (and, for the malloc checker, its message)."""
    if check == "clang-analyzer-unix.Malloc":
        for needle, cwe in _MALLOC_MESSAGES:
            if needle in message:
                return cwe
    name = check
    while name:
        if name in _CWE:
            return _CWE[name]
        name = name.rpartition(".")[0] if "." in name else ""
    return None


def _severity(check: str, cwe: int | None) -> Severity:
    if check.startswith("clang-analyzer-security.insecureAPI"):
        return Severity.LOW  # lexical: the call is there, whether it is misused or not
    if cwe is None:
        return Severity.LOW
    if check.startswith("clang-analyzer-") and family(cwe) in _HIGH_FAMILIES:
        return Severity.HIGH
    return Severity.MEDIUM


class Clangtidy:
    name = "clang-tidy"

    def __init__(self) -> None:
        self.broken_units = 0

    def run(self, tree: Tree, ctx: RunContext) -> list[Finding]:
        exe = ctx.executable("clang-tidy")
        database = tree.compile_database
        if database is not None:
            units = _database_files(database)
            base: list[object] = [exe, f"--checks={CHECKS}", "--quiet", "-p", str(database.parent)]
            tail: list[str] = []
        else:
            units = [str(tree.root / f) for f in tree.c_sources]
            base = [exe, f"--checks={CHECKS}", "--quiet"]
            tail = ["--", f"-I{tree.root}", f"-I{tree.root / 'include'}"]
        if not units:
            raise EngineSkipped("no C/C++ translation units")
        workers = max(ctx.jobs, 1)
        size = min(_MAX_BATCH, max(1, -(-len(units) // workers)))
        batches = [units[i : i + size] for i in range(0, len(units), size)]
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            runs = list(
                pool.map(
                    lambda batch: run_tool([*base, *batch, *tail], timeout=ctx.limits.engine_timeout, cwd=tree.root),
                    batches,
                )
            )
        return self.parse(runs, tree, ctx)

    def parse(self, runs: list[ToolRun], tree: Tree, ctx: RunContext) -> list[Finding]:
        lines = LineCache(tree.root)
        seen: set[tuple[str, int, int, str]] = set()
        findings: list[Finding] = []
        for run in runs:
            if run.returncode < 0:
                raise EngineFailure(f"clang-tidy was killed by signal {-run.returncode}")
            for text in run.stdout.decode("utf-8", "replace").splitlines():
                match = _LINE.match(text)
                if match is None or match["kind"] != "warning":
                    continue  # compile errors of a unit are not findings about the code
                rel = tree.relative(match["file"])
                if rel is None:
                    continue
                line, col = int(match["line"]), int(match["col"])
                check = match["check"].split(",")[0]
                key = (rel, line, col, check)
                if key in seen:
                    continue  # a header's warning repeats for every unit including it
                seen.add(key)
                message = match["msg"]
                cwe = cwe_of(check, message)
                cwes = (cwe,) if cwe else ()
                provisions, guideline = provisions_for(cwes)
                findings.append(
                    Finding(
                        rule_id=f"clang-tidy.{check}",
                        title=message.split(". ")[0][:160],
                        severity=_severity(check, cwe),
                        location=Location(path=rel, line=line, column=col),
                        cwe=cwes,
                        provisions=provisions,
                        guideline=guideline,
                        snippet=lines.line(rel, line)[: ctx.limits.max_snippet_chars],
                        engines=["clang-tidy"],
                        message=message[:1000],
                    )
                )
        self.broken_units = sum((run.stdout + run.stderr).count(b"Error while processing") for run in runs)
        return findings[: ctx.limits.max_findings_per_engine]

    def detail(self) -> str:
        if not self.broken_units:
            return ""
        return (
            f"{self.broken_units} translation units did not compile (missing headers?): their findings may be missing"
        )


def _database_files(database: Path) -> list[str]:
    try:
        entries = json.loads(database.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EngineFailure(f"{database}: not a readable compile database ({exc})") from exc
    files: list[str] = []
    if isinstance(entries, list):
        for entry in entries:
            if isinstance(entry, dict) and isinstance(entry.get("file"), str):
                path = Path(entry["file"])
                if not path.is_absolute() and isinstance(entry.get("directory"), str):
                    path = Path(entry["directory"]) / path
                if str(path) not in files:
                    files.append(str(path))
    return files
