"""A small lexical view of C/C++ source: comments blanked, string macros, functions and calls.

Not a parser: enough structure (function bodies by brace matching, call arguments by balanced
parentheses) for the credential and crypto checks, robust to code that does not compile.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

__all__ = ["CFile", "Call", "Function", "calls", "first_ident", "split_args"]

_COMMENT_OR_STRING: Final = re.compile(
    r"//[^\n]*|/\*.*?\*/|(?:L|u8|u|U)?\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'", re.DOTALL
)
_DEFINE_STR: Final = re.compile(r"^[ \t]*#[ \t]*define[ \t]+(\w+)[ \t]+(?:L|u8|u|U)?(\"(?:\\.|[^\"\\\n])*\")", re.M)
_DEFINE_IDENT: Final = re.compile(r"^[ \t]*#[ \t]*define[ \t]+(\w+)[ \t]+([A-Za-z_]\w*)[ \t]*$", re.M)
_DIRECTIVE: Final = re.compile(r"^[ \t]*#[^\n]*(?:\\\n[^\n]*)*", re.M)
_FUNC_HEAD: Final = re.compile(r"(\w+)\s*\(([^;{}()]*(?:\([^;{}()]*\)[^;{}()]*)*)\)\s*(?:const\s*)?(?:noexcept\s*)?$")
_KEYWORDS: Final = frozenset({"if", "for", "while", "switch", "return", "sizeof", "do", "else", "catch"})
_TYPE_WORDS: Final = frozenset(
    [
        "char",
        "wchar_t",
        "unsigned",
        "signed",
        "const",
        "void",
        "int",
        "long",
        "short",
        "size_t",
        "BYTE",
        "LPSTR",
        "LPWSTR",
        "LPCSTR",
        "LPCWSTR",
        "uint8_t",
        "int8_t",
        "uint16_t",
        "uint32_t",
        "TCHAR",
        "struct",
        "volatile",
        "static",
        "PBYTE",
        "LPBYTE",
        "DWORD",
    ]
)
_IDENT: Final = re.compile(r"[A-Za-z_]\w*")
#: A function head (return type, name, parameters) is looked for in this many characters before ``{``.
_MAX_HEAD: Final = 600


@dataclass(frozen=True, slots=True)
class Call:
    """One call ``name(args...)`` starting at offset ``start`` of the blanked text."""

    name: str
    args: tuple[str, ...]
    start: int


@dataclass(slots=True)
class Function:
    """A function definition: its name, parameter names, and body span in the file text."""

    name: str
    params: tuple[str, ...]
    start: int
    end: int
    cache: dict[str, object] = field(default_factory=dict)


@dataclass(slots=True)
class CFile:
    """A C file with comments blanked (``code``), strings kept in ``code`` but blanked in ``bare``."""

    text: str
    code: str = ""
    bare: str = ""
    string_macros: dict[str, str] = field(default_factory=dict)
    ident_macros: dict[str, str] = field(default_factory=dict)
    cache: dict[str, object] = field(default_factory=dict)
    functions: list[Function] = field(default_factory=list)
    _newlines: list[int] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> CFile:
        """The lexical view of ``text`` (CRLF line ends read as LF; line numbers are unchanged)."""
        text = text.replace("\r\n", "\n")
        code_parts: list[str] = []
        bare_parts: list[str] = []
        pos = 0
        for m in _COMMENT_OR_STRING.finditer(text):
            code_parts.append(text[pos : m.start()])
            bare_parts.append(text[pos : m.start()])
            tok = m.group(0)
            blank = re.sub(r"[^\n]", " ", tok)
            if tok.startswith(("//", "/*")):
                code_parts.append(blank)
                bare_parts.append(blank)
            else:
                code_parts.append(tok)
                quote = tok.index(tok[-1])
                bare_parts.append(tok[: quote + 1] + " " * (len(tok) - quote - 2) + tok[-1])
            pos = m.end()
        code_parts.append(text[pos:])
        bare_parts.append(text[pos:])
        self = cls(text=text, code="".join(code_parts), bare="".join(bare_parts))
        self._newlines = [i for i, c in enumerate(text) if c == "\n"]
        self.string_macros = {m.group(1): m.group(2) for m in _DEFINE_STR.finditer(self.code)}
        self.ident_macros = {m.group(1): m.group(2) for m in _DEFINE_IDENT.finditer(self.bare)}
        self.functions = list(_functions(self.bare))
        return self

    def resolve(self, name: str) -> str:
        """``name`` through object-like macros that name another identifier (``#define EXECL execl``)."""
        for _ in range(4):
            target = self.ident_macros.get(name)
            if target is None or target == name:
                break
            name = target
        return name

    def line_of(self, offset: int) -> int:
        """1-based line number of ``offset``."""
        return bisect.bisect_left(self._newlines, offset) + 1

    def line_text(self, line: int) -> str:
        """The original text of line ``line``."""
        lines = self.text.splitlines()
        return lines[line - 1] if 0 < line <= len(lines) else ""

    def calls_in(self, func: Function) -> list[Call]:
        """The calls in ``func``'s body (worked out once per function)."""
        cached = func.cache.get("calls")
        if cached is None:
            cached = list(calls(self.code, func.start, func.end))
            func.cache["calls"] = cached
        return cached  # type: ignore[return-value]

    def function_at(self, offset: int) -> Function | None:
        """The function whose body holds ``offset``."""
        for f in self.functions:
            if f.start <= offset < f.end:
                return f
        return None


def _functions(bare: str) -> Iterator[Function]:
    no_dir = _DIRECTIVE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), bare)
    depth = 0
    last_stop = 0
    i = 0
    n = len(no_dir)
    while i < n:
        c = no_dir[i]
        if c == "{":
            if depth == 0:
                head = no_dir[max(last_stop, i - _MAX_HEAD) : i]
                m = _FUNC_HEAD.search(head.rstrip())
                if m and m.group(1) not in _KEYWORDS and not head.rstrip().endswith("="):
                    end = _match_brace(no_dir, i)
                    params = tuple(_param_name(p) for p in split_args(m.group(2)))
                    yield Function(m.group(1), tuple(p for p in params if p), i, end)
                    i = end
                    last_stop = end
                    continue
            depth += 1
        elif c == "}":
            depth = max(0, depth - 1)
            if depth == 0:
                last_stop = i + 1
        elif c == ";" and depth == 0:
            last_stop = i + 1
        i += 1


def _match_brace(text: str, open_at: int) -> int:
    depth = 0
    for j in range(open_at, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j + 1
    return len(text)


def _param_name(param: str) -> str:
    idents = [t for t in _IDENT.findall(param.split("=", maxsplit=1)[0]) if t not in _TYPE_WORDS]
    return idents[-1] if idents else ""


def split_args(args: str) -> list[str]:
    """Top-level comma-separated parts of ``args`` (parentheses, brackets and braces respected)."""
    out: list[str] = []
    depth = 0
    cur: list[str] = []
    in_str = ""
    prev = ""
    for ch in args:
        if in_str:
            cur.append(ch)
            if ch == in_str and prev != "\\":
                in_str = ""
            prev = "" if prev == "\\" else ch
            continue
        if ch in "\"'":
            in_str = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            prev = ch
            continue
        cur.append(ch)
        prev = ch
    tail = "".join(cur).strip()
    if tail or out:
        out.append(tail)
    return out


_CALL: Final = re.compile(r"\b([A-Za-z_]\w*)\s*\(")


def calls(code: str, start: int = 0, end: int | None = None) -> Iterator[Call]:
    """Every call in ``code[start:end]`` with its top-level arguments."""
    stop = len(code) if end is None else end
    for m in _CALL.finditer(code, start, stop):
        name = m.group(1)
        if name in _KEYWORDS:
            continue
        depth = 0
        j = m.end() - 1
        in_str = ""
        while j < stop:
            ch = code[j]
            if in_str:
                if ch == "\\":
                    j += 2
                    continue
                if ch == in_str:
                    in_str = ""
            elif ch in "\"'":
                in_str = ch
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        yield Call(name, tuple(split_args(code[m.end() : j])), m.start())


def first_ident(expr: str) -> str:
    """The first identifier of ``expr`` that is not a type word (``(char*)(pw + n)`` -> ``pw``)."""
    for t in _IDENT.findall(expr):
        if t not in _TYPE_WORDS:
            return str(t)
    return ""
