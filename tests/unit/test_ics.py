"""compliance/ics.toml (issue 8): validated with file, key and line; filled from the context; a
person's decisions survive a re-fill; N/A only where a condition or feature allows it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from trustroot.cli.main import main
from trustroot.compliance.ics import ics_path, load_ics
from trustroot.compliance.ics_fill import fill_ics
from trustroot.context.edit import set_key
from trustroot.context.load import load_context
from trustroot.errors import ComplianceFileError, UsageError


@pytest.fixture
def context_path(product_dir: Path) -> Path:
    return product_dir / "security-context.toml"


@pytest.fixture(scope="module")
def filled_text(product_template: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The ICS a fill writes for the session's product (made once; tests edit copies)."""
    target = tmp_path_factory.mktemp("ics") / "ics.toml"
    fill_ics(load_context(product_template / "security-context.toml"), path=target)
    return target.read_text()


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def _row(path: Path, pid: str) -> str:
    text = path.read_text()
    start = text.index(f'[provision."{pid}"]')
    end = text.find("\n[", start + 1)
    return text[start : end if end > 0 else None]


def test_fill_derives_rows_from_the_context(context_path: Path) -> None:
    report = fill_ics(load_context(context_path))
    ics = load_ics(ics_path(context_path))
    assert report.created and ics.edition == "3.1.3" and len(ics.model.provision) == 78
    assert ics.entry("5.1-1").support == "Y" and ics.entry("5.1-1").source == "derived"  # type: ignore[union-attr]
    assert "security updates until" in ics.entry("5.3-13").justification  # type: ignore[union-attr]
    # software is updateable: the C(3) rows are N/A, naming the condition
    assert ics.entry("5.3-15A").support == "N/A" and ics.entry("5.3-15A").because == ["C(3)"]  # type: ignore[union-attr]
    # what trustroot cannot know stays pending for a person
    assert "5.6-4A" in ics.pending() and "5.12-2" in ics.pending()
    assert set(report.pending) == set(ics.pending())


def test_a_changed_context_changes_the_derived_rows(context_path: Path) -> None:
    fill_ics(load_context(context_path))
    set_key(context_path, "communication.min_tls_version", '"1.3"')
    set_key(context_path, "update.automatic", "false")
    fill_ics(load_context(context_path))
    ics = load_ics(ics_path(context_path))
    assert "TLS >= 1.3" in ics.entry("5.5-1").justification  # type: ignore[union-attr]
    assert ics.entry("5.3-4A").support == "N"  # type: ignore[union-attr]
    assert ics.entry("5.3-4B").support == "N/A" and ics.entry("5.3-4B").because == ["F(h)"]  # type: ignore[union-attr]


def test_refill_keeps_what_a_person_wrote(context_path: Path) -> None:
    fill_ics(load_context(context_path))
    path = ics_path(context_path)
    # a note on a derived row, a decision on a pending row, an edit of a derived justification,
    # and a feature the context cannot know
    _edit(path, '[provision."5.1-2"]\n', '[provision."5.1-2"]\nnote = "reviewed by QA, ticket 42"\n')
    _edit(path, '[provision."5.6-2"]\n', '[provision."5.6-2"]\nsupport = "Y"\njustification = "login banner only"\n')
    _edit(path, "each unit gets its own password", "Our own wording: each unit has its own password")
    _edit(path, '[features.q]\nbasis = "not described', '[features.q]\npresent = false  # no pads\nbasis = "nothing')
    report = fill_ics(load_context(context_path))
    ics = load_ics(path)
    assert ics.entry("5.1-2").note == "reviewed by QA, ticket 42"  # type: ignore[union-attr]
    assert ics.entry("5.1-2").source == "derived"  # type: ignore[union-attr]
    assert ics.entry("5.6-2").support == "Y" and ics.entry("5.6-2").source == "user"  # type: ignore[union-attr]
    assert ics.entry("5.1-1").justification.startswith("Our own wording")  # type: ignore[union-attr]
    assert ics.entry("5.1-1").source == "user" and report.adopted == ["5.1-1"]  # type: ignore[union-attr]
    assert ics.model.features["q"].present is False and ics.model.features["q"].source == "user"
    # the person's feature decides applicability: every F(q) row is now N/A
    assert ics.entry("5.6-4A").support == "N/A" and ics.entry("5.6-4A").because == ["F(q)"]  # type: ignore[union-attr]
    # and no debug interface means no physical debug port: (r) follows (q)
    assert ics.model.features["r"].present is False and ics.entry("5.6-4B").because == ["F(r)"]  # type: ignore[union-attr]
    assert "# no pads" in path.read_text()  # comments survive
    # a third fill changes nothing
    before = path.read_text()
    fill_ics(load_context(context_path))
    assert path.read_text() == before


def test_v2_edition_uses_its_own_conditions(context_path: Path) -> None:
    report = fill_ics(load_context(context_path), edition="2.1.1")
    ics = load_ics(ics_path(context_path))
    assert report.edition == "2.1.1" and len(ics.model.provision) == 68 and not ics.model.features
    assert ics.entry("5.3-14").because == ["C(3)", "C(4)"]  # type: ignore[union-attr]
    assert ics.entry("5.1-1").support == "Y"  # type: ignore[union-attr]
    with pytest.raises(UsageError, match=r"V2\.1\.1, not V3\.1\.3"):
        fill_ics(load_context(context_path), edition="3.1.3")


@pytest.mark.parametrize(
    ("old", "new", "key", "message"),
    [
        # N/A for a provision without condition or feature
        ('[provision."5.2-1"]\nsupport = "Y"', '[provision."5.2-1"]\nsupport = "N/A"\nbecause = ["C(3)"]',
         'provision."5.2-1".support', "N/A is allowed only for a provision with a condition or feature"),
        # N/A naming a feature the file says is present
        ('[provision."5.1-1"]\nsupport = "Y"', '[provision."5.1-1"]\nsupport = "N/A"\nbecause = ["F(a)"]',
         'provision."5.1-1".because[0]', "feature (a) is present"),
        # N/A naming a feature the provision does not have
        ('[provision."5.1-1"]\nsupport = "Y"', '[provision."5.1-1"]\nsupport = "N/A"\nbecause = ["F(q)"]',
         'provision."5.1-1".because[0]', "5.1-1 has no feature (q)"),
        # N/A without saying why
        ('[provision."5.1-1"]\nsupport = "Y"', '[provision."5.1-1"]\nsupport = "N/A"',
         'provision."5.1-1".because', "N/A must name what does not apply"),
        ('[provision."5.2-1"]\nsupport = "Y"', '[provision."5.2-1"]\nsupport = "maybe"',
         'provision."5.2-1".support', "Input should be 'Y', 'N' or 'N/A'"),
        ('[provision."5.2-1"]', '[provision."5.2-9"]', 'provision."5.2-9"', "not a provision of EN 303 645 V3.1.3"),
        ('[provision."5.2-1"]\nsupport = "Y"', '[provision."5.2-1"]\nsupported = "Y"\nsupport = "Y"',
         'provision."5.2-1".supported', "unknown key"),
        ('[features.q]', '[features.zz]', "features.zz", "unknown feature letter"),
        ('edition = "3.1.3"', 'edition = "4.0.0"', "edition", "unknown edition"),
    ],
)  # fmt: skip
def test_invalid_rows_are_refused_with_file_key_and_line(  # noqa: PLR0917 (pytest parameters)
    filled_text: str, tmp_path: Path, old: str, new: str, key: str, message: str
) -> None:
    path = tmp_path / "ics.toml"
    path.write_text(filled_text)
    _edit(path, old, new)
    lines = path.read_text().splitlines()
    field = key.rsplit(".", 1)[-1].split("[", maxsplit=1)[0]
    header = lines.index(new.splitlines()[0])
    end = next((i for i in range(header + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    line = next((i + 1 for i in range(header, end) if lines[i].startswith(f"{field} =")), header + 1)
    with pytest.raises(ComplianceFileError) as caught:
        load_ics(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: {key} (line ") and message in text, text
    if key.startswith("provision."):  # the line of the key, or of its table when the key is missing
        assert f"(line {line})" in text


def test_fill_refuses_to_merge_into_an_invalid_file(context_path: Path) -> None:
    fill_ics(load_context(context_path))
    path = ics_path(context_path)
    _edit(path, '[provision."5.2-1"]\nsupport = "Y"', '[provision."5.2-1"]\nsupport = "N/A"')
    before = path.read_text()
    with pytest.raises(ComplianceFileError, match="N/A is allowed only"):
        fill_ics(load_context(context_path))
    assert path.read_text() == before


def test_justification_is_required(filled_text: str, tmp_path: Path) -> None:
    path = tmp_path / "ics.toml"
    path.write_text(filled_text)
    _edit(path, '[provision."5.6-3"]\n', '[provision."5.6-3"]\nsupport = "N"\n')
    with pytest.raises(ComplianceFileError, match=re.escape('provision."5.6-3".justification')):
        load_ics(path)


def test_cli_fill_and_check(context_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = ["--context", str(context_path)]
    assert main(["compliance", "fill", "--json", *ctx]) == 0
    filled = json.loads(capsys.readouterr().out)
    assert filled["ics"]["created"] and filled["ixit"]["created"]
    assert main(["compliance", "check", *ctx]) == 0
    assert "valid" in capsys.readouterr().out
    assert main(["compliance", "check", "--strict", *ctx]) == 1  # pending rows remain
    capsys.readouterr()
    _edit(ics_path(context_path), '[provision."5.2-1"]\nsupport = "Y"', '[provision."5.2-1"]\nsupport = "N/A"')
    assert main(["compliance", "check", "--json", *ctx]) == 1
    checked = json.loads(capsys.readouterr().out)
    assert checked["ics"]["errors"][0]["key"] == 'provision."5.2-1".support'
    assert checked["ics"]["errors"][0]["line"] > 0
    assert main(["compliance", "catalogue", "5.1-1", "--json", *ctx]) == 0
    assert json.loads(capsys.readouterr().out)["psti"] == ["1(2)"]


def test_a_product_without_passwords_makes_the_password_rows_not_applicable(context_path: Path) -> None:
    set_key(context_path, "identity.password.mode", '"none"')
    fill_ics(load_context(context_path))
    ics = load_ics(ics_path(context_path))
    assert ics.model.features["a"].present is False and ics.model.features["b"].present is False
    assert ics.entry("5.1-1").because == ["F(a)"] and ics.entry("5.1-2").because == ["F(b)"]  # type: ignore[union-attr]
    assert ics.entry("5.1-4").support == "N/A"  # type: ignore[union-attr]
    ics_path(context_path).unlink()
    fill_ics(load_context(context_path), edition="2.1.1")
    v2 = load_ics(ics_path(context_path))
    assert v2.entry("5.1-1").because == ["C(1)"] and v2.entry("5.1-2").because == ["C(2)"]  # type: ignore[union-attr]
