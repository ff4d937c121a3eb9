"""External input reaching a command or a format string in C/C++ (CWE-78, CWE-134).

The same light taint analysis as :mod:`.c_credentials`: data read from the console, a file, the
network or the environment (``fgets``, ``scanf``, ``recv``, ``getenv``...) that reaches
``system``/``popen``/``exec*`` or the format argument of a ``printf``-family call, within a
function or across functions of the tree (parameter and return summaries). Object-like macros
that name an identifier are followed (``#define EXECL execl``, ``#define COMMAND_ARG3 data``).
"""

from __future__ import annotations

from typing import Final

from trustroot.scan.checks._clex import CFile, Function, first_ident
from trustroot.scan.checks._common import make, snippet_line
from trustroot.scan.checks.c_credentials import (
    _RETURN,
    _analyse,
    _globals,
    _literal_value,
    _publish_globals,
    _Summaries,
)
from trustroot.scan.findings import Finding

__all__ = ["check_c_injection"]

_ALL: Final = -1
#: sink -> (argument index that must not be external, or _ALL for every argument; rule)
_COMMANDS: Final = (
    "system", "popen", "_popen", "_wsystem", "_wpopen", "execl", "execlp", "execle", "execv", "execvp", "execve",
    "_execl", "_execlp", "_execv", "_execvp", "_wexecl", "_wexeclp", "_spawnl", "_spawnlp",
    "posix_spawn", "posix_spawnp",
)  # fmt: skip
_FORMATS: Final = (
    (0, ("printf", "vprintf", "wprintf", "vwprintf")),
    (1, ("fprintf", "vfprintf", "fwprintf", "vfwprintf", "sprintf", "vsprintf", "syslog", "vsyslog", "dprintf")),
    (2, ("snprintf", "vsnprintf", "_snprintf", "_vsnprintf", "swprintf", "vswprintf", "_snwprintf", "_vsnwprintf")),
)
SINKS: Final[dict[str, tuple[int, str]]] = {
    **dict.fromkeys(_COMMANDS, (_ALL, "injection.command")),
    **{name: (index, "injection.format") for index, names in _FORMATS for name in names},
}
_EXTERNAL: Final = frozenset({"console", "file", "network", "env", "external"})


def _scan(  # noqa: PLR0917
    rel: str, cfile: CFile, func: Function, sums: _Summaries, sinks: dict[str, dict[int, str]],
    file_literals: dict[str, int], report: list[Finding] | None,
) -> bool:  # fmt: skip
    st = _analyse(cfile, func, sums, file_literals)
    changed = _publish_globals(cfile, st, sums)
    for m in _RETURN.finditer(cfile.code, func.start, func.end):
        kind = st.read.get(first_ident(m.group(1)))
        if kind in _EXTERNAL and func.name not in sums.returns_read:
            sums.returns_read[func.name] = kind
            changed = True
    seen: set[tuple[int, str]] = set()
    for call in cfile.calls_in(func):
        name = cfile.resolve(call.name)
        targets: list[tuple[int, str]] = []
        if name in SINKS:
            idx, rule = SINKS[name]
            targets = [(i, rule) for i in range(len(call.args))] if idx == _ALL else [(idx, rule)]
        elif name in sinks:
            targets = list(sinks[name].items())
        for idx, rule in targets:
            if idx >= len(call.args) or _literal_value(call.args[idx], cfile):
                continue
            var = cfile.resolve(first_ident(call.args[idx]))
            if var in st.param:
                entry = sinks.setdefault(func.name, {})
                if entry.get(st.param[var]) != rule:
                    entry[st.param[var]] = rule
                    changed = True
            if st.read.get(var) in _EXTERNAL and report is not None:
                line = cfile.line_of(call.start)
                if (line, rule) not in seen:
                    seen.add((line, rule))
                    what = "a command" if rule == "injection.command" else "a format string"
                    report.append(
                        make(rule, rel, line=line, snippet=snippet_line(cfile.line_text(line)),
                             message=f"{st.read[var]} input reaches {what} in {name}() in {func.name}()")
                    )  # fmt: skip
    return changed


def check_c_injection(files: list[tuple[str, CFile]]) -> list[Finding]:
    """Command and format-string injection findings over every C/C++ file of one tree."""
    sums = _Summaries()
    sinks: dict[str, dict[int, str]] = {}
    literals = {rel: _globals(cfile) for rel, cfile in files}
    for _ in range(4):
        changed = False
        for rel, cfile in files:
            for func in cfile.functions:
                changed |= _scan(rel, cfile, func, sums, sinks, literals[rel], None)
        if not changed:
            break
    report: list[Finding] = []
    for rel, cfile in files:
        for func in cfile.functions:
            _scan(rel, cfile, func, sums, sinks, literals[rel], report)
    return report
