"""compliance/ixit.toml (issue 8): the 29 TS 103 701 tables, filled from the context and key store,
validated with file, key and line, and a person's text kept across re-fills."""

from __future__ import annotations

from pathlib import Path

import pytest

from trustroot.compliance.catalogue import load_catalogue
from trustroot.compliance.ixit import IXIT_TABLES, ixit_path, load_ixit
from trustroot.compliance.ixit_fill import fill_ixit
from trustroot.context.edit import set_key
from trustroot.context.load import load_context
from trustroot.errors import ComplianceFileError
from trustroot.product import open_product


@pytest.fixture
def context_path(product_dir: Path) -> Path:
    return product_dir / "security-context.toml"


@pytest.fixture(scope="module")
def filled_text(product_template: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The IXIT a fill writes for the session's product (made once; tests edit copies)."""
    target = tmp_path_factory.mktemp("ixit") / "ixit.toml"
    fill_ixit(load_context(product_template / "security-context.toml"), path=target)
    return target.read_text()


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_the_29_tables_match_the_catalogue() -> None:
    catalogue = load_catalogue("2.1.1")
    assert sorted(IXIT_TABLES) == list(range(1, 30))
    assert {n: t.name for n, t in IXIT_TABLES.items()} == dict(catalogue.ixit_tables)
    assert all(t.fields for t in IXIT_TABLES.values())


def test_fill_describes_the_products_mechanisms(product_dir: Path, context_path: Path) -> None:
    product = open_product(product_dir)
    report = fill_ixit(product.context, product.keys.list())
    ixit = load_ixit(ixit_path(context_path))
    assert report.created
    upd = {e.id: e for e in ixit.entries(7)}["UpdMech-TUF"]
    assert "ecdsa-p256" in upd.fields["cryptographic_details"] and upd.source == "derived"
    params = {e.id: e for e in ixit.entries("10-SecParam")}
    assert "factory-secret-1" in params["SecParam-FactorySecret"].fields["protection_scheme"]
    assert {e.id for e in ixit.entries(1)} == {"AuthMech-DevicePassword", "AuthMech-DeviceIdentity"}
    assert ixit.entries(2)[0].fields["model_designation"] == product.context.model.product.model
    # what only a person knows is left empty for them
    assert "4-Conf" in report.empty_tables and "15-Intf" in report.empty_tables


def test_refill_refreshes_derived_fields_and_keeps_the_rest(context_path: Path) -> None:
    fill_ixit(load_context(context_path))
    path = ixit_path(context_path)
    _edit(path, 'id = "UpdMech-TUF"\n', 'id = "UpdMech-TUF"\nuser_notification = "app banner"  # ours\n')
    _edit(
        path,
        "[[ixit.20-SecBoot]]\n",
        '[[ixit.15-Intf]]\nid = "Intf-UART"\ndescription = "console"\n\n[[ixit.20-SecBoot]]\n',
    )
    _edit(path, "MCUboot verifies the image before booting it", "Our words on secure boot")
    set_key(context_path, "boot.signature", '"ed25519"')
    report = fill_ixit(load_context(context_path))
    ixit = load_ixit(path)
    upd = {e.id: e for e in ixit.entries(7)}["UpdMech-TUF"]
    assert upd.fields["user_notification"] == "app banner"  # the person's field is kept ...
    assert "images: ed25519" in upd.fields["cryptographic_details"]  # ... the derived ones follow the context
    assert "# ours" in path.read_text()
    assert [e.id for e in ixit.entries(15)] == ["Intf-UART"]  # an entry trustroot did not make
    boot = ixit.entries(20)[0]
    assert boot.source == "user" and boot.fields["description"].startswith("Our words on secure boot")
    assert report.adopted == ["20-SecBoot/SecBoot-MCUboot"]


def test_entries_for_removed_context_items_are_dropped(context_path: Path) -> None:
    text = context_path.read_text()
    context_path.write_text(text + '\n[[data.personal]]\nname = "voice-clips"\ndescription = "short voice commands"\n')
    fill_ixit(load_context(context_path))
    assert "PersData-voice-clips" in {e.id for e in load_ixit(ixit_path(context_path)).entries(21)}
    context_path.write_text(text)
    report = fill_ixit(load_context(context_path))
    assert report.dropped == ["21-PersData/PersData-voice-clips"]
    assert "PersData-voice-clips" not in {e.id for e in load_ixit(ixit_path(context_path)).entries(21)}


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("[[ixit.7-UpdMech]]", "[[ixit.7-UpdateMech]]", "ixit.7-UpdateMech (line"),
        ('id = "UpdMech-TUF"\n', 'id = "UpdMech-TUF"\nsecret_sauce = "x"\n', "unknown field of 7-UpdMech"),
        (
            'id = "UpdMech-TUF"\n',
            'id = "UpdMech-TUF"\nuser_notification = 3\n',
            "Input should be a valid string (got 3)",
        ),
        ('id = "UpdMech-TUF"', 'id = "AuthMech-DeviceIdentity"', None),  # ids are unique per table only
        ('id = "AuthMech-DeviceIdentity"', 'id = "AuthMech-DevicePassword"', "used twice in 1-AuthMech"),
        ('id = "UpdMech-TUF"', 'id = "has space"', "ixit.7-UpdMech[0].id"),
        ('format = "trustroot.ixit/1"', 'format = "trustroot.ixit/9"', "format (line"),
    ],
)
def test_invalid_ixit_is_refused_with_file_key_and_line(
    filled_text: str, tmp_path: Path, old: str, new: str, message: str | None
) -> None:
    path = tmp_path / "ixit.toml"
    path.write_text(filled_text)
    _edit(path, old, new)
    if message is None:
        load_ixit(path)
        return
    with pytest.raises(ComplianceFileError) as caught:
        load_ixit(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)
    assert caught.value.issues and caught.value.issues[0][1] > 0  # a line number
