"""semgrep (OSS engine): the project's own C rules from ``trustroot/scan/rules/*.yaml``.

Only local rule files are given (``--config FILE`` per file: never a registry name), metrics and
the version check are off, and nothing is sent anywhere. A rule's ``metadata`` may carry:

``cwe``
    a list of ``"CWE-NNN: title"`` strings (semgrep's own convention);
``provisions`` / ``guideline``
    EN 303 645 provisions (list of ``"5.5-1"``) and guideline number; derived from the CWE if absent;
``trustroot-severity``
    ``high``, ``medium``, ``low``, ``info`` or ``inventory``; else semgrep's ERROR/WARNING/INFO
    become high/medium/low;
``title``
    a one-line title (else the rule's message).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Final

from trustroot.scan.cwe import provisions_for
from trustroot.scan.engines._base import EngineFailure, EngineSkipped, LineCache, RunContext, Tree, run_tool
from trustroot.scan.findings import Finding, Location, Severity

__all__ = ["RULES_DIR", "Semgrep", "rule_files"]

RULES_DIR: Final = Path(__file__).resolve().parent.parent / "rules"
_CWE: Final = re.compile(r"CWE-(\d+)", re.I)
_SEVERITY: Final = {"ERROR": Severity.HIGH, "WARNING": Severity.MEDIUM, "INFO": Severity.LOW}
_PROVISION: Final = re.compile(r"^5\.\d{1,2}-\d{1,2}$")


def rule_files(directory: Path = RULES_DIR) -> list[Path]:
    """The local rule files semgrep is given (``*.yaml`` / ``*.yml``), sorted."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


class Semgrep:
    name = "semgrep"

    def __init__(self, rules_dir: Path = RULES_DIR) -> None:
        self.rules_dir = rules_dir

    def run(self, tree: Tree, ctx: RunContext) -> list[Finding]:
        exe = ctx.executable("semgrep")
        rules = rule_files(self.rules_dir)
        if not rules:
            raise EngineSkipped(f"no rule files in {self.rules_dir}")
        if not tree.c_files:
            raise EngineSkipped("no C/C++ files")
        argv: list[object] = [exe, "scan", "--json", "--metrics", "off", "--disable-version-check", "--quiet"]
        argv += ["--no-git-ignore", f"--jobs={max(ctx.jobs, 1)}", f"--timeout={int(ctx.limits.engine_timeout)}"]
        for rule in rules:
            argv += ["--config", str(rule)]
        argv.append(".")
        run = run_tool(argv, timeout=ctx.limits.engine_timeout, cwd=tree.root)
        if run.returncode not in (0, 1):
            raise EngineFailure(f"semgrep exited {run.returncode}: {run.stderr.decode('utf-8', 'replace')[-300:]}")
        return self.parse(run.stdout, tree, ctx)

    def parse(self, output: bytes, tree: Tree, ctx: RunContext) -> list[Finding]:
        try:
            document = json.loads(output)
            results = document["results"]
        except (ValueError, KeyError, TypeError) as exc:
            raise EngineFailure(f"semgrep wrote unreadable JSON: {exc}") from exc
        lines = LineCache(tree.root)
        findings: list[Finding] = []
        for result in results:
            rel = tree.relative(str(result.get("path", "")))
            if rel is None:
                continue
            extra: dict[str, Any] = result.get("extra") or {}
            meta: dict[str, Any] = extra.get("metadata") or {}
            cwes = tuple(dict.fromkeys(int(c) for c in _CWE.findall(json.dumps(meta.get("cwe", [])))))
            provisions, guideline = provisions_for(cwes)
            given = meta.get("provisions")
            if isinstance(given, list) and given and all(isinstance(p, str) and _PROVISION.match(p) for p in given):
                provisions = tuple(given)
            if isinstance(meta.get("guideline"), int) and 1 <= meta["guideline"] <= 13:
                guideline = meta["guideline"]
            try:
                severity = Severity(str(meta["trustroot-severity"]))
            except (KeyError, ValueError):
                severity = _SEVERITY.get(str(extra.get("severity", "")).upper(), Severity.MEDIUM)
            start = result.get("start") or {}
            line = int(start.get("line") or 0)
            rule = str(result.get("check_id", "rule")).rpartition(".")[2] or "rule"
            message = str(extra.get("message", "")).strip()
            title = str(meta.get("title") or (message.splitlines()[0] if message else rule))
            findings.append(
                Finding(
                    rule_id=f"trustroot.{rule}" if not rule.startswith("trustroot") else rule,
                    title=title[:200],
                    severity=severity,
                    location=Location(path=rel, line=line, column=int(start.get("col") or 0)),
                    cwe=cwes,
                    provisions=provisions,
                    guideline=guideline,
                    snippet=lines.line(rel, line)[: ctx.limits.max_snippet_chars],
                    engines=["semgrep"],
                    message=message[:1000],
                )
            )
        return findings[: ctx.limits.max_findings_per_engine]
