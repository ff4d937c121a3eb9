# ruff: noqa: E501  (table-driven cases: one case per line)
"""ELF hardening on binaries compiled here with and without the hardening flags."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from trustroot.scan.checks.elf import check_elf

SRC = '#include <string.h>\n#include <stdio.h>\nint main(int c, char **v){ char b[64]; strcpy(b, c > 1 ? v[1] : "x"); puts(b); return 0; }\n'


def _build(tmp_path: Path, name: str, flags: list[str]) -> bytes:
    out = tmp_path / name
    subprocess.run(["gcc", "-x", "c", "-", "-o", str(out), *flags], input=SRC.encode(), check=True)
    return out.read_bytes()


@pytest.mark.parametrize(
    ("flags", "want"),
    [
        (["-O2", "-fstack-protector-strong", "-fPIE", "-pie", "-Wl,-z,relro,-z,now", "-s"], set()),
        (["-O2", "-fstack-protector-strong", "-fPIE", "-pie", "-Wl,-z,relro,-z,now"], {"elf.not-stripped"}),
        (["-O0", "-fno-stack-protector", "-no-pie", "-z", "execstack", "-Wl,-z,norelro", "-s"],
         {"elf.no-nx", "elf.no-pie", "elf.no-relro", "elf.no-canary"}),
        (["-O2", "-fno-stack-protector", "-fPIE", "-pie", "-s"], {"elf.no-canary"}),
    ],
)  # fmt: skip
def test_hardening(tmp_path: Path, flags: list[str], want: set[str]) -> None:
    data = _build(tmp_path, "prog", flags)
    assert {f.rule_id.removeprefix("trustroot.") for f in check_elf("usr/bin/prog", data)} == want


def test_objects_and_garbage_are_not_judged(tmp_path: Path) -> None:
    subprocess.run(["gcc", "-x", "c", "-", "-c", "-o", str(tmp_path / "o.o")], input=SRC.encode(), check=True)
    assert check_elf("o.o", (tmp_path / "o.o").read_bytes()) == []
    assert check_elf("junk", b"\x7fELF" + b"\x02\x01\x01" + b"\0" * 40) == []
