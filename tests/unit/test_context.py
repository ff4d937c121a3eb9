"""The Security Context: schema refusals with key path and line, the EN 303 645 lint, edits."""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from trustroot.context.edit import set_key
from trustroot.context.lint import lint
from trustroot.context.load import LoadedContext, find_context, format_path, locate_keys, parse_context
from trustroot.context.schema import SecurityContext, json_schema
from trustroot.context.security_txt import security_txt
from trustroot.context.template import default_context_text
from trustroot.errors import ContextError, ContextNotFoundError, PolicyRefusal, UsageError

TODAY = date(2026, 11, 22)
BASE = default_context_text("Acme Plug", today=TODAY)


def _line(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith(f"{needle} ="))


def _parse(text: str) -> LoadedContext:
    return parse_context(text, Path("security-context.toml"))


def test_default_context_is_clean_and_secure() -> None:
    loaded = parse_context(BASE, Path("security-context.toml"))
    findings = lint(loaded, today=TODAY)
    assert [f for f in findings if f.severity == "error"] == []
    # the only advice is the placeholder contact init writes until the user fills it in
    assert {(f.provision, f.key) for f in findings} == {("5.2-1", "product.disclosure.contact[0]")}
    model = loaded.model
    assert model.communication.min_tls_version == "1.2" and model.communication.mutual_tls
    assert model.boot.anti_rollback and model.boot.signature == "ecdsa-p256"
    assert model.identity.password.mode == "derived" and model.identity.password.entropy_bits >= 60
    assert model.product.support_period_end == date(2031, 11, 22)


# (edit of the default text, provision, key path, severity)
LINT_CASES = [
    (
        ('min_tls_version = "1.2"', 'min_tls_version = "1.0"'),
        "5.5-1",
        "communication.min_tls_version",
        "error",
    ),
    (
        ('min_tls_version = "1.2"', 'min_tls_version = "1.1"'),
        "5.5-1",
        "communication.min_tls_version",
        "error",
    ),
    (("mutual_tls = true", "mutual_tls = false"), "5.5-1", "communication.mutual_tls", "error"),
    (
        ('mode = "derived"', 'mode = "shared"\nshared_value = "admin"'),
        "5.1-1",
        "identity.password.mode",
        "error",
    ),
    (
        ('mode = "derived"', 'mode = "derived"\nshared_value = "x"'),
        "5.1-1",
        "identity.password.shared_value",
        "error",
    ),
    (("length = 16", "length = 8"), "5.1-2", "identity.password.length", "error"),
    (("anti_rollback = true", "anti_rollback = false"), "5.3-7", "boot.anti_rollback", "error"),
    (('signature = "ecdsa-p256"', 'signature = "none"'), "5.3-10", "boot.signature", "error"),
    (('encryption = "none"', 'encryption = "ecies-x25519"'), "5.3-7", "boot.encryption", "error"),
    (('hash = "sha256"', 'hash = "sha384"'), "5.3-7", "boot.hash", "error"),
    (
        ("support_period_end = 2031-11-22", "support_period_end = 2025-01-01"),
        "5.3-13",
        "product.support_period_end",
        "error",
    ),
    (("delete_on_reset = true", "delete_on_reset = false"), "5.11-1", "data.delete_on_reset", "error"),
    (
        ("delete_on_transfer = true", "delete_on_transfer = false"),
        "5.11-2",
        "data.delete_on_transfer",
        "advice",
    ),
    (
        ("checkin_jitter_s = [0, 600]", "checkin_jitter_s = [0, 0]"),
        "5.9-3",
        "update.checkin_jitter_s",
        "advice",
    ),
    (("test_boot = true", "test_boot = false"), "5.7-1", "boot.test_boot", "advice"),
    (("automatic = true", "automatic = false"), "5.3-4A", "update.automatic", "advice"),
]


@pytest.mark.parametrize(
    ("edit", "provision", "key", "severity"), LINT_CASES, ids=[c[2] + ":" + c[1] for c in LINT_CASES]
)
def test_lint_refuses_insecure_settings(edit: tuple[str, str], provision: str, key: str, severity: str) -> None:
    old, new = edit
    assert old in BASE
    text = BASE.replace(old, new, 1)
    loaded = parse_context(text, Path("security-context.toml"))
    found = [f for f in lint(loaded, today=TODAY) if f.key == key and f.provision == provision]
    assert len(found) == 1, lint(loaded, today=TODAY)
    finding = found[0]
    assert finding.severity == severity
    assert finding.line == _line(text, key.rsplit(".", maxsplit=1)[-1].split("[", maxsplit=1)[0])
    assert finding.fix


def test_missing_support_period_and_disclosure() -> None:
    text = BASE.replace("support_period_end = 2031-11-22\n", "")
    start = text.index("[product.disclosure]")
    text = text[:start] + text[text.index("[root_of_trust]") :]
    findings = {(f.provision, f.key): f for f in lint(_parse_loaded(text), today=TODAY)}
    assert findings[("5.3-13", "product.support_period_end")].message == "no support period is declared"
    assert findings[("5.2-1", "product.disclosure")].severity == "error"


def _parse_loaded(text: str) -> LoadedContext:
    return parse_context(text, Path("security-context.toml"))


def test_support_period_ending_tomorrow_is_fine_and_yesterday_is_not() -> None:
    loaded = _parse_loaded(BASE)
    assert not [f for f in lint(loaded, today=date(2031, 11, 22)) if f.provision == "5.3-13"]
    assert [f for f in lint(loaded, today=date(2031, 11, 23)) if f.provision == "5.3-13"]


SCHEMA_CASES = [
    (("align = 8", "align = 8\ncolour = 3"), "boot.colour", "unknown key"),
    (
        ('min_tls_version = "1.2"', 'min_tls_version = "banana"'),
        "communication.min_tls_version",
        "Input should be",
    ),
    (("mutual_tls = true", 'mutual_tls = "yes"'), "communication.mutual_tls", "valid boolean"),
    (("length = 16", "length = 1000"), "identity.password.length", "less than or equal to 64"),
    (("slot_size = 0x60000", "slot_size = 0x60001"), "boot", "not a multiple of sector_size"),
    (
        ("retention_days = 30", "retention_days = -1"),
        "data.personal[0].retention_days",
        "greater than or equal to 1",
    ),
    (
        ('contact = ["mailto:security@acme-plug.example"]', 'contact = ["call us"]'),
        "product.disclosure.contact",
        "URI",
    ),
    (
        ("[declarations]", '[declarations]\n"5.99-1" = { statement = "x", by = "y" }'),
        "declarations",
        "provision id",
    ),
]


@pytest.mark.parametrize(("edit", "key", "message"), SCHEMA_CASES, ids=[c[1] for c in SCHEMA_CASES])
def test_schema_errors_name_key_and_line(edit: tuple[str, str], key: str, message: str) -> None:
    text = BASE.replace(*edit)
    with pytest.raises(ContextError) as info:
        _parse(text)
    issue = next(i for i in info.value.issues if i[0] == key)
    assert message in issue[2]
    assert issue[1] > 0
    assert f"{key} (line {issue[1]})" in str(info.value)


def test_toml_syntax_and_version_errors() -> None:
    with pytest.raises(ContextError, match="not valid TOML"):
        _parse("schema_version = 1\n[product\n")
    with pytest.raises(ContextError, match="schema_version is missing"):
        _parse(BASE.replace("schema_version = 1\n", ""))
    with pytest.raises(
        ContextError, match=r"schema_version \(line 4\): unknown version 2; this trustroot reads version 1"
    ):
        _parse(BASE.replace("schema_version = 1", "schema_version = 2"))


def test_locate_keys_handles_tables_arrays_and_multiline_values() -> None:
    text = '''a = 1
[t]
s = """one
b = 2
"""
arr = [
  1,
  2,
]
"quoted.key" = 3
[[x.y]]
k = 1
[[x.y]]
k = 2
'''
    found = locate_keys(text)
    assert found[("a",)] == 1
    assert found[("t", "s")] == 3
    assert ("t", "b") not in found  # inside the multi-line string
    assert found[("t", "arr")] == 6
    assert found[("t", "quoted.key")] == 10
    assert found[("x", "y", 0, "k")] == 12
    assert found[("x", "y", 1, "k")] == 14
    assert format_path(("t", "quoted.key", 0)) == 't."quoted.key"[0]'


def test_find_context_walks_upward(tmp_path: Path) -> None:
    (tmp_path / "security-context.toml").write_text(BASE)
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_context(deep) == tmp_path / "security-context.toml"
    with pytest.raises(ContextNotFoundError, match=r"no security-context\.toml"):
        find_context(Path("/"))
    with pytest.raises(ContextNotFoundError, match="no such file"):
        find_context(None, tmp_path / "missing.toml")


def test_security_txt_fields() -> None:
    model = _parse_loaded(BASE).model
    text = security_txt(model, now=datetime(2026, 11, 22, 12, 0, tzinfo=UTC))
    lines = text.splitlines()
    assert "Contact: mailto:security@acme-plug.example" in lines
    assert "Expires: 2027-05-21T12:00:00Z" in lines
    assert "Policy: https://acme-plug.example/security/disclosure-policy" in lines
    assert "Preferred-Languages: en" in lines
    no_disclosure = SecurityContext.model_validate(
        {**model.model_dump(), "product": {**model.product.model_dump(), "disclosure": None}}
    )
    with pytest.raises(PolicyRefusal, match=r"5\.2-1"):
        security_txt(no_disclosure, now=datetime(2026, 11, 22, tzinfo=UTC))


def test_set_key_keeps_comments_and_refuses_invalid(tmp_path: Path) -> None:
    path = tmp_path / "security-context.toml"
    path.write_text(BASE)
    old, new = set_key(path, "communication.min_tls_version", '"1.3"')
    assert (old, new) == ('"1.2"', '"1.3"')
    text = path.read_text()
    assert "# Last day security updates are provided" in text
    assert tomllib.loads(text)["communication"]["min_tls_version"] == "1.3"
    before = path.read_bytes()
    with pytest.raises(ContextError, match="refused, the file is unchanged"):
        set_key(path, "boot.align", "7")
    assert path.read_bytes() == before
    with pytest.raises(UsageError, match="no table"):
        set_key(path, "nosuch.key", "1")


def test_json_schema_export_covers_every_section() -> None:
    schema = json_schema()
    assert schema["$schema"].endswith("2020-12/schema")
    assert set(schema["properties"]) == set(SecurityContext.model_fields)
    assert schema["additionalProperties"] is False


def test_context_reference_doc_is_current() -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, str(root / "scripts" / "gen_context_docs.py"), "--check"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
