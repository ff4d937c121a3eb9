"""Safe unpacking of scan targets: every archive attack is refused with its reason, nothing escapes.

Table-driven: each hostile archive is built here with the standard library (or the real cpio
tool), unpacked into a fresh directory beside a sentinel directory, and must be refused before
anything lands outside the destination.
"""

from __future__ import annotations

import dataclasses
import io
import os
import stat
import subprocess
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from trustroot.cli.main import main
from trustroot.errors import ScanInputError, UnsafeArchiveError
from trustroot.scan.archives import sniff_archive, unpack_archive
from trustroot.scan.config import DEFAULT_SCAN_LIMITS

SMALL = dataclasses.replace(
    DEFAULT_SCAN_LIMITS,
    max_unpacked_bytes=8 * 2**20,
    max_member_bytes=4 * 2**20,
    ratio_floor_bytes=2**20,
    max_members=50,
)


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as archive:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            archive.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def _info(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = 0o4755 if kind == tarfile.REGTYPE else 0o755
    return info


def _zip(path: Path, members: list[tuple[str, bytes]], *, symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
        if symlink is not None:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc")
            archive.writestr(f"{symlink}/passwd", b"root::0:0::/:/bin/sh\n")
    return path


def _newc(members: list[tuple[str, int, bytes]]) -> bytes:
    out = bytearray()
    for index, (name, mode, data) in enumerate([*members, ("TRAILER!!!", 0, b"")]):
        raw = name.encode() + b"\x00"
        fields = [index + 1, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0]
        out += b"070701" + b"".join(f"{f:08X}".encode() for f in fields) + raw
        out += b"\x00" * ((4 - (110 + len(raw)) % 4) % 4)
        out += data + b"\x00" * ((4 - len(data) % 4) % 4)
    return bytes(out)


HOSTILE: dict[str, tuple[Callable[[Path], Path], str]] = {
    "tar ../ traversal": (
        lambda d: _tar(d / "a.tar.gz", [(_info("../../escaped"), b"x")]),
        "climbs out of the archive",
    ),
    "tar absolute path": (
        lambda d: _tar(d / "a.tar", [(_info("/tmp/escaped"), b"x")], "w"),
        "absolute path",
    ),
    "tar symlink then write through it": (
        lambda d: _tar(
            d / "a.tar.xz", [(_info("etc", tarfile.SYMTYPE, "/etc"), b""), (_info("etc/passwd"), b"x")], "w:xz"
        ),
        "written through the symbolic link 'etc'",
    ),
    "tar file over a symlink": (
        lambda d: _tar(d / "a.tgz", [(_info("link", tarfile.SYMTYPE, "/etc/passwd"), b""), (_info("link"), b"x")]),
        "overwrites a symbolic link",
    ),
    "zip ..\\ traversal": (lambda d: _zip(d / "a.zip", [("..\\..\\escaped", b"x")]), "climbs out"),
    "zip absolute drive path": (lambda d: _zip(d / "a.zip", [("C:/escaped", b"x")]), "absolute path"),
    "zip symlink escape": (lambda d: _zip(d / "a.zip", [], symlink="etc"), "written through the symbolic link"),
    "zip bomb (ratio)": (
        lambda d: _zip(d / "bomb.zip", [("zeros", b"\x00" * (3 * 2**20))]),
        "times its own size",
    ),
    "zip bomb (declared size)": (
        lambda d: _zip(d / "bomb.zip", [(f"z{i}", b"\x00" * (2 * 2**20)) for i in range(5)]),
        "declare",
    ),
    "tar too many members": (
        lambda d: _tar(d / "many.tar", [(_info(f"f{i}"), b"") for i in range(60)], "w"),
        "more than 50 members",
    ),
    "cpio traversal": (
        lambda d: _write(d / "a.cpio", _newc([("../escaped", stat.S_IFREG | 0o644, b"x")])),
        "climbs out",
    ),
    "cpio symlink then write through it": (
        lambda d: _write(
            d / "a.cpio",
            _newc([("bin", stat.S_IFLNK | 0o777, b"/usr/bin"), ("bin/sh", stat.S_IFREG | 0o755, b"x")]),
        ),
        "written through the symbolic link 'bin'",
    ),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archives_are_refused_with_their_reason(case: str, tmp_path: Path) -> None:
    build, reason = HOSTILE[case]
    source = tmp_path / "in"
    source.mkdir()
    archive = build(source)
    kind = sniff_archive(archive)
    assert kind is not None
    destination = tmp_path / "sandbox" / "out"
    with pytest.raises(UnsafeArchiveError, match=reason) as refused:
        unpack_archive(archive, kind, destination, SMALL)
    assert refused.value.provision == "5.13-1"
    escaped = [p for p in (tmp_path / "sandbox").rglob("*") if not str(p).startswith(str(destination))]
    assert escaped == []
    assert not (tmp_path / "escaped").exists()


def test_rootfs_tar_unpacks_files_and_keeps_links_and_devices_out(tmp_path: Path) -> None:
    device = _info("dev/console", tarfile.CHRTYPE)
    archive = _tar(
        tmp_path / "rootfs.tar.gz",
        [
            (_info("./etc", tarfile.DIRTYPE), b""),
            (_info("./etc/passwd"), b"root:x:0:0::/root:/bin/sh\n"),
            (_info("./bin/busybox"), b"\x7fELF"),
            (_info("./bin/sh", tarfile.SYMTYPE, "/bin/busybox"), b""),
            (_info("./bin/ash", tarfile.LNKTYPE, "bin/busybox"), b""),
            (device, b""),
            (_info("fifo", tarfile.FIFOTYPE), b""),
        ],
    )
    out = unpack_archive(archive, "tar", tmp_path / "out", SMALL)
    assert (out.root / "etc" / "passwd").read_bytes().startswith(b"root:x")
    assert (out.root / "bin" / "ash").read_bytes() == b"\x7fELF"  # a hard link became a copy
    assert out.links == {"bin/sh": "/bin/busybox"}
    assert not (out.root / "bin" / "sh").exists()
    assert not (out.root / "dev" / "console").exists()
    assert out.skipped_special == 2
    mode = (out.root / "bin" / "busybox").stat().st_mode
    assert not mode & stat.S_ISUID  # set-uid bits are dropped
    assert out.files == 3


def test_cpio_newc_and_odc_from_the_real_tool(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "shadow").write_text("root::19000:0:99999:7:::\n")
    names = "etc\netc/shadow\n"
    for fmt in ("newc", "odc"):
        data = subprocess.run(
            ["cpio", "-o", "-H", fmt, "--quiet"], input=names.encode(), cwd=tree, capture_output=True, check=True
        ).stdout
        archive = _write(tmp_path / f"root.{fmt}.cpio", data)
        assert sniff_archive(archive) == "cpio"
        out = unpack_archive(archive, "cpio", tmp_path / f"out-{fmt}", SMALL)
        assert (out.root / "etc" / "shadow").read_text().startswith("root::")


@pytest.mark.parametrize(
    ("name", "data", "kind"),
    [
        ("truncated.tar.gz", None, "tar"),
        ("garbage.zip", b"PK\x03\x04" + b"\xff" * 200, "zip"),
        ("truncated.cpio", b"070701" + b"0" * 40, "cpio"),
    ],
)
def test_malformed_archives_raise_a_clear_error(name: str, data: bytes | None, kind: str, tmp_path: Path) -> None:
    if data is None:
        whole = _tar(tmp_path / "whole.tar.gz", [(_info(f"f{i}"), os.urandom(20000)) for i in range(3)]).read_bytes()
        data = whole[: len(whole) // 2]
    archive = _write(tmp_path / name, data)
    with pytest.raises(ScanInputError, match=f"not a well-formed {kind} archive"):
        unpack_archive(archive, kind, tmp_path / "out", SMALL)  # type: ignore[arg-type]


def test_cli_exits_2_on_an_unsafe_archive_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = _tar(tmp_path / "evil.tar.gz", [(_info("../../etc/cron.d/x"), b"* * * * * root sh\n")])
    code = main(["scan", str(archive), "--engine", "trustroot", "--no-evidence", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "climbs out of the archive" in err
    assert "Traceback" not in err


def test_cli_exits_2_on_a_missing_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["scan", str(tmp_path / "nowhere"), "--no-evidence"])
    assert code == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_zero_filled_images_are_not_taken_for_empty_tars(tmp_path: Path) -> None:
    # Python's tarfile.is_tarfile says True for zeros: a blank flash image would be an "empty archive"
    blank = _write(tmp_path / "blank.bin", b"\x00" * 4096 + b"firmware")
    assert sniff_archive(blank) is None
    assert sniff_archive(_tar(tmp_path / "real.tar", [(_info("a"), b"x")], "w")) == "tar"
