"""detect-secrets: hard-coded keys, passwords and tokens (guideline 4), snippets masked.

detect-secrets is built for source repositories and reports many things that are not secrets on
a device. The driver keeps every private key it reports and drops, counting them in the engine's
detail line, the hits of its keyword, entropy and URL plugins that are:

* in test code (a directory named ``test``, ``tests``... of a source tree);
* on a commented-out line;
* a high-entropy string on a line that names no credential (packet dumps, hashes of data);
* a value that is a file reference (``private_key = ca.key``) or prose (``A challenge password``).
"""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath
from typing import Final

from trustroot.scan.engines._base import EngineFailure, LineCache, RunContext, Tree, run_tool
from trustroot.scan.findings import Finding, Location, Severity
from trustroot.scan.masking import mask_secrets

__all__ = ["NOISE_FILTERS", "DetectSecrets"]

NOISE_FILTERS: Final = ("test-code", "commented", "entropy-without-credential", "file-reference", "prose")
_TEST_DIRS: Final = frozenset({"test", "tests", "testing", "unittest", "unittests", "__tests__", "testdata"})
_COMMENT: Final = re.compile(r"^\s*(#|//|/\*|\*|;|<!--|--|rem\s)", re.I)
_CREDENTIAL_WORD: Final = re.compile(r"pass|pwd|secret|token|api.?key|private|auth|credential|psk", re.I)
_VALUE: Final = re.compile(r"""[=:]\s*["']?(?P<value>[^"'#;,]*)""")
_FILE_REFERENCE: Final = re.compile(r"^[\w./-]+\.(key|pem|crt|cer|der|p12|pfx|csr|txt|conf|cnf|json)$", re.I)
_KEY_TYPE: Final = "Private Key"
_HIGH_TYPES: Final = frozenset(
    {
        _KEY_TYPE,
        "AWS Access Key",
        "Azure Storage Account access key",
        "GitHub Token",
        "GitLab Token",
        "Slack Token",
        "Stripe Access Key",
        "Twilio API Key",
        "JSON Web Token",
        "OpenAI Token",
    }
)


def _noise(kind: str, rel: str, line: str) -> str | None:
    """Which noise filter drops a non-key hit, or ``None`` to keep it."""
    if any(part.lower() in _TEST_DIRS for part in PurePosixPath(rel).parts[:-1]):
        return "test-code"
    if _COMMENT.match(line):
        return "commented"
    if "High Entropy" in kind and not _CREDENTIAL_WORD.search(line):
        return "entropy-without-credential"
    match = _VALUE.search(line)
    value = match["value"].strip() if match else ""
    if value and _FILE_REFERENCE.match(value):
        return "file-reference"
    if value and len(value.split()) >= 2 and "High Entropy" not in kind:
        return "prose"
    return None


class DetectSecrets:
    name = "detect-secrets"

    def __init__(self) -> None:
        self.dropped: dict[str, int] = {}

    def run(self, tree: Tree, ctx: RunContext) -> list[Finding]:
        exe = ctx.executable("detect-secrets")
        run = run_tool([exe, "scan", "--all-files", "."], timeout=ctx.limits.engine_timeout, cwd=tree.root)
        if run.returncode != 0:
            raise EngineFailure(
                f"detect-secrets exited {run.returncode}: {run.stderr.decode('utf-8', 'replace')[-300:]}"
            )
        return self.parse(run.stdout, tree, ctx)

    def parse(self, output: bytes, tree: Tree, ctx: RunContext) -> list[Finding]:
        try:
            results = json.loads(output)["results"]
        except (ValueError, KeyError, TypeError) as exc:
            raise EngineFailure(f"detect-secrets wrote unreadable JSON: {exc}") from exc
        lines = LineCache(tree.root)
        findings: list[Finding] = []
        for filename, hits in sorted(results.items()):
            rel = tree.relative(filename)
            if rel is None or not isinstance(hits, list):
                continue
            for hit in hits:
                kind = str(hit.get("type", "secret"))
                number = int(hit.get("line_number") or 0)
                text = lines.line(rel, number)
                if kind != _KEY_TYPE:
                    why = _noise(kind, rel, text)
                    if why is not None:
                        self.dropped[why] = self.dropped.get(why, 0) + 1
                        continue
                findings.append(self._finding(kind, rel, number, text, ctx))
        return findings[: ctx.limits.max_findings_per_engine]

    @staticmethod
    def _finding(kind: str, rel: str, number: int, text: str, ctx: RunContext) -> Finding:
        key = kind == _KEY_TYPE
        slug = re.sub(r"[^a-z0-9]+", "-", kind.lower()).strip("-")
        return Finding(
            rule_id=f"detect-secrets.{slug}",
            title="private key in the tree" if key else f"hard-coded secret ({kind})",
            severity=Severity.HIGH if kind in _HIGH_TYPES else Severity.MEDIUM,
            location=Location(path=rel, line=number),
            cwe=(321,) if key else (798,),
            provisions=("5.4-1", "5.4-3") if key else ("5.4-3", "5.1-1"),
            guideline=4,
            snippet=(text if key else mask_secrets(text))[: ctx.limits.max_snippet_chars],
            engines=["detect-secrets"],
            message=(
                "a private key is stored in clear; keys belong in a key store or secure element"
                if key
                else f"detect-secrets' {kind} plugin: a credential written into the code or configuration"
            ),
        )

    def detail(self) -> str:
        if not self.dropped:
            return ""
        return "dropped as noise: " + ", ".join(f"{why} {n}" for why, n in sorted(self.dropped.items()))
