"""flawfinder: the inventory of risky C calls (strcpy, system, rand...), each tagged with a CWE.

flawfinder matches names, not data flow: it cannot tell a misuse from a careful use, so its hits
are reported with severity ``inventory`` (a list worth reviewing, never a gate failure). When
another engine reports the same defect at the same place, the merge keeps that engine's severity.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Final

from trustroot.scan.cwe import provisions_for
from trustroot.scan.engines._base import EngineFailure, EngineSkipped, RunContext, Tree, run_tool
from trustroot.scan.findings import Finding, Location, Severity

__all__ = ["Flawfinder"]

_CWE: Final = re.compile(r"CWE-(\d+)")
_MIN_LEVEL: Final = 1
#: flawfinder's exit status when some files had encoding errors (the output is still complete).
_ENCODING_ERRORS: Final = 15


class Flawfinder:
    name = "flawfinder"

    def __init__(self) -> None:
        self.note = ""

    def detail(self) -> str:
        return self.note

    def run(self, tree: Tree, ctx: RunContext) -> list[Finding]:
        exe = ctx.executable("flawfinder")
        files = tree.c_files
        if not files:
            raise EngineSkipped("no C/C++ files")
        # flawfinder walks the directory itself and reads only C/C++ files (by their names)
        argv: list[object] = [exe, "--csv", "--quiet", "--dataonly", f"--minlevel={_MIN_LEVEL}", str(tree.root)]
        run = run_tool(argv, timeout=ctx.limits.engine_timeout, cwd=tree.root)
        self.note = "some files are not valid UTF-8: their risky calls may be missed" if run.returncode == 15 else ""
        if run.returncode not in (0, _ENCODING_ERRORS):
            raise EngineFailure(f"flawfinder exited {run.returncode}: {run.stderr.decode('utf-8', 'replace')[-300:]}")
        return self.parse(run.stdout.decode("utf-8", "replace"), tree, ctx)

    def parse(self, text: str, tree: Tree, ctx: RunContext) -> list[Finding]:
        findings: list[Finding] = []
        for row in csv.DictReader(io.StringIO(text)):
            rel = tree.relative(row.get("File") or "")
            if rel is None:
                continue
            cwes = tuple(dict.fromkeys(int(c) for c in _CWE.findall(row.get("CWEs") or "")))
            provisions, guideline = provisions_for(cwes)
            name = row.get("Name") or "call"
            warning = row.get("Warning") or ""
            findings.append(
                Finding(
                    rule_id=f"flawfinder.{name}",
                    title=f"risky call {name}() (level {row.get('Level', '?')})",
                    severity=Severity.INVENTORY,
                    location=Location(path=rel, line=_int(row.get("Line")), column=_int(row.get("Column"))),
                    cwe=cwes,
                    provisions=provisions,
                    guideline=guideline,
                    snippet=(row.get("Context") or "").strip()[: ctx.limits.max_snippet_chars],
                    engines=["flawfinder"],
                    message=f"{warning} {row.get('Suggestion') or ''}".strip()[:1000],
                )
            )
            if len(findings) >= ctx.limits.max_findings_per_engine:
                break
        return findings


def _int(text: str | None) -> int:
    try:
        return max(int(text or "0"), 0)
    except ValueError:
        return 0
