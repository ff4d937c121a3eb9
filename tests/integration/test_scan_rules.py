"""The project's own semgrep rules (trustroot/scan/rules/*.yaml), run by the real semgrep of the tools
environment over the C corpus: each rule fires on its bad code, none fires on the clean twin."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import scan_corpus

RULES = Path(__file__).resolve().parents[2] / "src" / "trustroot" / "scan" / "rules"
SEMGREP = (
    Path(os.environ.get("TRUSTROOT_TOOLS_DIR", Path(__file__).resolve().parents[2] / ".tools")) / "bin" / "semgrep"
)


def _semgrep(root: Path) -> set[tuple[str, str]]:
    argv = [str(SEMGREP), "scan", "--metrics", "off", "--json", "--quiet", "--disable-version-check"]
    for rule in sorted(RULES.glob("*.yaml")):
        argv += ["--config", str(rule)]
    env = {**os.environ, "SEMGREP_ENABLE_VERSION_CHECK": "0", "SEMGREP_SEND_METRICS": "off"}
    out = subprocess.run([*argv, str(root)], capture_output=True, env=env, check=True, timeout=300).stdout
    doc = json.loads(out)
    assert doc["errors"] == []
    return {(r["check_id"].rpartition(".")[2], Path(r["path"]).relative_to(root).as_posix()) for r in doc["results"]}


def test_rules_fire_on_bad_code_only(tmp_path: Path) -> None:
    bad, clean = tmp_path / "bad", tmp_path / "clean"
    bad.mkdir()
    clean.mkdir()
    for name in ("MQTT", "HTTP", "CRYPTO", "MBED"):
        (bad / f"{name.lower()}.c").write_text(getattr(scan_corpus, f"_C_{name}"))
        (clean / f"{name.lower()}.c").write_text(getattr(scan_corpus, f"_C_{name}_CLEAN"))
    # one run over both twins (semgrep's start-up dominates): nothing may come from clean/
    assert _semgrep(tmp_path) == {
        ("c-verify-none", "bad/mqtt.c"),
        ("c-old-protocol-method", "bad/mqtt.c"),
        ("c-hard-coded-password", "bad/http.c"),
        ("c-weak-hash", "bad/crypto.c"),
        ("c-broken-cipher", "bad/crypto.c"),
        ("c-weak-prng-key", "bad/crypto.c"),
        ("c-verify-none", "bad/mbed.c"),
    }


def test_rules_carry_the_metadata_the_driver_reads() -> None:
    import yaml

    for path in RULES.glob("*.yaml"):
        for rule in yaml.safe_load(path.read_text())["rules"]:
            meta = rule["metadata"]
            assert meta["cwe"] and all(c.startswith("CWE-") for c in meta["cwe"]), rule["id"]
            assert meta["provisions"] and meta["trustroot-severity"] in ("high", "medium", "low"), rule["id"]
