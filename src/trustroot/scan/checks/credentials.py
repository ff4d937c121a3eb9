"""Plaintext credentials in device configuration (UCI, ini, conf, JSON, YAML, NVRAM dumps) and scripts.

Line-based: a key whose name ends in a secret word (``password``, ``passwd``, ``psk``, ``secret``,
``token``, ``key``...) given a literal value, in whichever of the formats' spellings
(``option key 'v'``, ``key=v``, ``key: v``, ``"key": "v"``, ``key v``); in scripts also the
command lines that carry a password (``chpasswd``, ``curl -u``, ``mosquitto_pub -P``, ``sshpass -p``,
``wget --password=``). Values that only point elsewhere (paths, ``$VARIABLES``, templates,
placeholders) are not credentials.
"""

from __future__ import annotations

import re
from typing import Final

from trustroot.scan.checks._common import make, snippet_line
from trustroot.scan.findings import Finding

__all__ = ["check_config_credentials", "check_script_credentials"]

_NAME_PATTERN: Final = (  # key names that hold secrets
    r"(?:[\w.-]*?[_.-])?(?:pass(?:word|wd|phrase)?|pwd|psk|wpa_?key|secret|token|api_?key|auth_?key|"
    r"access_?key|private_?key|key|wep_?key\d?|credentials?|pin|community|passkey)"
)
_VALUE: Final = r"(?P<q>['\"]?)(?P<v>[^'\"\s#;,}{]+(?:[^'\"\n#;]*[^'\"\s#;,}{])?)(?P=q)"
_FORMS: Final = (
    re.compile(rf"^\s*(?:option|list)\s+['\"]?(?P<k>{_NAME_PATTERN})['\"]?\s+{_VALUE}\s*$", re.I),  # UCI
    re.compile(rf"^\s*(?:export\s+)?['\"]?(?P<k>{_NAME_PATTERN})['\"]?\s*[=:]\s*{_VALUE}\s*[,;]?\s*(?:#.*)?$", re.I),
    re.compile(rf"^\s*(?P<k>{_NAME_PATTERN})\s+{_VALUE}\s*$", re.I),  # "key value" (mosquitto, ppp, openvpn)
)
_JSON_PAIR: Final = re.compile(rf"\"(?P<k>{_NAME_PATTERN})\"\s*:\s*\"(?P<v>[^\"]+)\"", re.I)
_NOT_SECRET_SUFFIX: Final = re.compile(
    r"(?:file|path|dir|length|len|min|max|policy|type|mode|hash_algo|format|id|name|size|bits|usage|"
    r"required|enabled?|timeout|interval|count|auth|authentication|prompt|store|cmd|command|mgmt|"
    r"changed?|expires?|url|uri|_fn|reset|fail|check|help|label|title|hint)$",
    re.I,
)
_PLACEHOLDER: Final = re.compile(
    r"^(?:\$|%|\{\{|<|\*+$|x+$|\.\.\.$|none$|null$|nil$|true$|false$|yes$|no$|on$|off$|disabled?$|"
    r"required$|optional$|changeme_at_first_boot$|/|\./|file:|env:|\(|@)",
    re.I,
)
_SCRIPT_CMDS: Final = (
    re.compile(r"echo\s+['\"]?(?P<u>[\w.-]+):(?P<v>[^'\"\s|]+)['\"]?\s*\|\s*(?:/usr/s?bin/)?chpasswd"),
    re.compile(r"echo\s+-e?\s*['\"](?P<v>[^'\"\\]+)\\n(?P=v)['\"]\s*\|\s*(?:/usr/s?bin/)?passwd"),
    re.compile(r"\bcurl\b[^\n]*?\s(?:-u|--user)\s+['\"]?(?P<u>[^:\s'\"]+):(?P<v>[^\s'\"]+)"),
    re.compile(r"\bmosquitto_(?:pub|sub)\b[^\n]*?\s(?:-P|--pw)\s+['\"]?(?P<v>[^\s'\"]+)"),
    re.compile(r"\bsshpass\s+-p\s*['\"]?(?P<v>[^\s'\"]+)"),
    re.compile(r"\bwget\b[^\n]*?--(?:http-|ftp-)?password[= ]['\"]?(?P<v>[^\s'\"]+)"),
    re.compile(r"\bmysql\b[^\n]*?\s-p(?P<v>[^\s'\"-][^\s'\"]*)"),
    re.compile(r"\bnvram\s+set\s+\w*(?:passw|pwd|psk|key)\w*=['\"]?(?P<v>[^\s'\"]+)", re.I),
    re.compile(r"\bhtpasswd\b[^\n]*?\s-b\S*\s+\S+\s+\S+\s+['\"]?(?P<v>[^\s'\"]+)"),
)


def _is_literal_secret(key: str, value: str) -> bool:
    if _NOT_SECRET_SUFFIX.search(key):
        return False
    v = value.strip()
    if len(v) < 2 or _PLACEHOLDER.match(v) or "$" in v or "`" in v:
        return False
    if key.lower().endswith("key") and re.fullmatch(r"[\w.-]*\.(?:pem|key|der|crt|p12|pfx)", v):
        return False
    return not (key.lower() in ("pin", "community", "token") and len(v) < 4)


def _line_findings(
    rel: str, text: str, rule: str, extra: tuple[re.Pattern[str], ...], *, quoted_only: bool = False
) -> list[Finding]:
    # in a script, "word value" is a command with an argument, not a setting
    forms = _FORMS[1:2] if rule == "credentials.script" else _FORMS
    found: list[Finding] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw if len(raw) <= 4096 else raw[:4096]
        if line.lstrip().startswith(("#", "//", ";", "<!--")):
            continue
        hits: list[tuple[str, str]] = []
        for form in forms:
            m = form.match(line)
            if m and (m.group("q") or not quoted_only):
                hits.append((m.group("k"), m.group("v")))
                break
        hits.extend((m.group("k"), m.group("v")) for m in _JSON_PAIR.finditer(line))
        secrets = tuple(v for k, v in hits if _is_literal_secret(k, v))
        keys = [k for k, v in hits if _is_literal_secret(k, v)]
        for pattern in extra:
            m = pattern.search(line)
            if m and not _PLACEHOLDER.match(m.group("v")) and "$" not in m.group("v"):
                secrets = (*secrets, m.group("v"))
                keys.append("command line")
        if secrets:
            found.append(
                make(
                    rule,
                    rel,
                    line=lineno,
                    snippet=snippet_line(line, secrets),
                    message=f"plaintext credential ({', '.join(dict.fromkeys(keys))})",
                )
            )
    return found


def check_config_credentials(rel: str, text: str) -> list[Finding]:
    """Findings over one configuration file (any of the formats in the module docstring)."""
    return _line_findings(rel, text, "credentials.config", _SCRIPT_CMDS[-2:-1])


def check_script_credentials(rel: str, text: str) -> list[Finding]:
    """Findings over one shell (or other interpreted) script.

    In a program (Python, Lua, JavaScript...) only a quoted value is a literal: ``X_PASSWORD = 134``
    is a constant, not a credential.
    """
    shell = rel.endswith((".sh", ".bash", ".ash")) or text.startswith(("#!/bin/sh", "#!/bin/ash", "#!/bin/bash"))
    return _line_findings(rel, text, "credentials.script", _SCRIPT_CMDS, quoted_only=not shell)
