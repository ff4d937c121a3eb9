"""Binary hardening of ELF executables and shared objects (guideline 6), read with pyelftools.

An executable stack (no ``PT_GNU_STACK``, or one marked executable) defeats NX; an ``ET_EXEC``
executable cannot be placed at a random address (no PIE); without ``PT_GNU_RELRO`` the GOT stays
writable; a binary that calls functions but imports no ``__stack_chk_fail`` has no stack
protector; a ``.symtab`` means symbols were shipped (information only). Relocatable objects and
kernel modules (``ET_REL``) are not judged.
"""

from __future__ import annotations

import io
from typing import Final

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from trustroot.scan.checks._common import make
from trustroot.scan.findings import Finding

__all__ = ["ELF_MAGIC", "check_elf"]

ELF_MAGIC: Final = b"\x7fELF"
_PF_X: Final = 1
_CANARY: Final = frozenset(
    {"__stack_chk_fail", "__stack_chk_guard", "__stack_chk_fail_local", "__intel_security_cookie"}
)


def _symbols(elf: ELFFile, section: str) -> set[str]:
    sec = elf.get_section_by_name(section)
    if sec is None or not hasattr(sec, "iter_symbols"):
        return set()
    return {sym.name for sym in sec.iter_symbols() if sym.name}


def check_elf(rel: str, data: bytes) -> list[Finding]:
    """Hardening findings for the ELF file ``data`` at ``rel`` (nothing when it does not parse)."""
    try:
        elf = ELFFile(io.BytesIO(data))
        etype = elf.header["e_type"]
        if etype not in ("ET_EXEC", "ET_DYN"):
            return []
        segments = list(elf.iter_segments())
        kinds = {seg.header.p_type for seg in segments}
        interp = "PT_INTERP" in kinds
        dynsyms = _symbols(elf, ".dynsym")
        symtab = _symbols(elf, ".symtab")
        has_symtab = elf.get_section_by_name(".symtab") is not None
    except (ELFError, ValueError, KeyError, IndexError, AttributeError, TypeError, AssertionError) as exc:
        del exc
        return []
    found: list[Finding] = []
    what = "executable" if etype == "ET_EXEC" or interp else "shared object"
    stack = [seg for seg in segments if seg.header.p_type == "PT_GNU_STACK"]
    if not stack or stack[0].header.p_flags & _PF_X:
        found.append(make("elf.no-nx", rel, snippet=f"{what}, {'no PT_GNU_STACK' if not stack else 'RWX stack'}"))
    if etype == "ET_EXEC":
        found.append(make("elf.no-pie", rel, snippet="ELF type EXEC (fixed load address)"))
    if "PT_GNU_RELRO" not in kinds and "PT_DYNAMIC" in kinds:
        found.append(make("elf.no-relro", rel, snippet=f"{what} without PT_GNU_RELRO"))
    imports_functions = bool(dynsyms - {""}) or bool(symtab)
    if imports_functions and not ((dynsyms | symtab) & _CANARY):
        found.append(make("elf.no-canary", rel, snippet=f"{what} without __stack_chk_fail"))
    if has_symtab:
        found.append(make("elf.not-stripped", rel, snippet=f"{what} with .symtab ({len(symtab)} symbols)"))
    return found
