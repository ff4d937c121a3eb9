"""TLS settings of servers' configuration files: nginx, lighttpd, mosquitto, OpenSSL, stunnel.

Reports protocol floors below TLS 1.2 (5.5-1), cipher lists that name broken suites (RC4, DES,
3DES, NULL, EXPORT, anonymous, MD5, ``@SECLEVEL=0``), and MQTT listeners without TLS that are
not bound to loopback.
"""

from __future__ import annotations

import re
from typing import Final

from trustroot.scan.checks._common import make, snippet_line
from trustroot.scan.findings import Finding

__all__ = ["check_tls_config", "weak_cipher_tokens"]

_OLD_PROTO: Final = re.compile(r"\b(?:SSLv2|SSLv3|TLSv1(?:\.[01])?|TLSv1_1|tlsv1(?:\.1)?)\b(?![.\d])", re.I)
_PROTO_LINES: Final = (
    re.compile(r"^\s*ssl_protocols\s+(?P<v>[^;]+);", re.I),  # nginx
    re.compile(r"^\s*tls_version\s+(?P<v>\S+)", re.I),  # mosquitto
    re.compile(r"^\s*MinProtocol\s*=\s*(?P<v>\S+)", re.I),  # openssl.cnf
    re.compile(r"^\s*sslVersion(?:Min)?\s*=\s*(?P<v>\S+)", re.I),  # stunnel
    re.compile(r"\"MinProtocol\"\s*=>\s*\"(?P<v>[^\"]+)\"", re.I),  # lighttpd ssl-conf-cmd
    re.compile(r"^\s*ssl\.use-sslv[23]\s*=\s*\"(?P<v>enable)\"", re.I),  # lighttpd
    re.compile(r"^\s*SSLProtocol\s+(?P<v>.+)$", re.I),  # apache
)
_CIPHER_LINES: Final = (
    re.compile(r"^\s*ssl_ciphers\s+['\"]?(?P<v>[^;'\"]+)", re.I),
    re.compile(r"^\s*ciphers\s*(?:=\s*|\s)(?P<v>\S+)", re.I),
    re.compile(r"^\s*CipherString\s*=\s*(?P<v>\S+)", re.I),
    re.compile(r"^\s*ssl\.cipher-list\s*=\s*\"(?P<v>[^\"]+)\"", re.I),
    re.compile(r"^\s*SSLCipherSuite\s+(?P<v>\S+)", re.I),
    re.compile(r"\"CipherString\"\s*=>\s*\"(?P<v>[^\"]+)\"", re.I),
)
_WEAK: Final = re.compile(
    r"^(?:RC4|DES|3DES|DES-CBC3|NULL|eNULL|aNULL|EXPORT\w*|EXP|ADH|AECDH|MD5|LOW|RC2|IDEA|SEED|ALL)$|"
    r"(?:^|-)(?:RC4|DES|NULL|EXP|ADH|MD5|RC2)(?:-|$)|@SECLEVEL=0",
    re.I,
)


def weak_cipher_tokens(cipher_list: str) -> list[str]:
    """The tokens of an OpenSSL-style cipher list that enable broken suites (``!x``/``-x`` excluded)."""
    out = []
    for token in re.split(r"[:,\s]+", cipher_list.strip()):
        if not token or token[0] in "!-":
            continue
        bare = token.lstrip("+")
        if _WEAK.search(bare):
            out.append(bare)
    return out


def _old_protocols(value: str, allows_list: bool) -> list[str]:
    if value.lower() == "enable":
        return ["SSLv2/SSLv3"]
    found = []
    for token in re.split(r"[\s,]+", value):
        if token.startswith("-") or token.startswith("!"):
            continue
        if token.lower() == "all" and allows_list:
            found.append("all (includes TLSv1)")
        elif _OLD_PROTO.fullmatch(token.lstrip("+")):
            found.append(token.lstrip("+"))
    return found


def check_tls_config(rel: str, text: str) -> list[Finding]:
    """Findings over one server configuration file."""
    found: list[Finding] = []
    lines = text.splitlines()
    for lineno, line in enumerate(lines, 1):
        if line.lstrip().startswith(("#", ";")):
            continue
        for pattern in _PROTO_LINES:
            m = pattern.search(line)
            if m:
                old = _old_protocols(m.group("v").strip(), "SSLProtocol" in line)
                if old:
                    found.append(
                        make(
                            "tls.old-protocol",
                            rel,
                            line=lineno,
                            snippet=snippet_line(line),
                            message=f"allows {', '.join(old)}",
                        )
                    )
                break
        for pattern in _CIPHER_LINES:
            m = pattern.search(line)
            if m:
                weak = weak_cipher_tokens(m.group("v"))
                if weak:
                    found.append(
                        make(
                            "tls.weak-cipher",
                            rel,
                            line=lineno,
                            snippet=snippet_line(line),
                            message=f"cipher list enables {', '.join(weak)}",
                        )
                    )
                break
    found.extend(_mosquitto_plain_listeners(rel, lines))
    return found


def _mosquitto_plain_listeners(rel: str, lines: list[str]) -> list[Finding]:
    if not any(re.match(r"^\s*(?:listener|allow_anonymous|persistence)\b", ln) for ln in lines):
        return []
    found: list[Finding] = []
    blocks: list[tuple[int, list[str]]] = []
    for lineno, line in enumerate(lines, 1):
        if re.match(r"^\s*listener\s+\d+", line):
            blocks.append((lineno, [line]))
        elif blocks:
            blocks[-1][1].append(line)
    for lineno, block in blocks:
        head = block[0].split()
        bound_local = len(head) > 2 and head[2] in ("127.0.0.1", "::1", "localhost")
        text = "\n".join(block)
        is_ws_unix = len(head) > 1 and head[1] == "0"
        if bound_local or is_ws_unix or re.search(r"^\s*(?:certfile|psk_hint)\s+\S", text, re.M):
            continue
        if re.search(r"^\s*bind_address\s+(?:127\.0\.0\.1|::1|localhost)\s*$", text, re.M):
            continue
        found.append(
            make(
                "tls.no-tls",
                rel,
                line=lineno,
                snippet=snippet_line(block[0]),
                message="MQTT listener without TLS on a network interface",
            )
        )
    return found
