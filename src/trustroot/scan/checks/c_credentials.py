"""Credentials in C/C++: hard-coded strings, and passwords read from storage or the network in clear,
flowing into login, connect and key-setting calls (CWE-259, 321, 798, 256, 319).

A light taint analysis over the lexical view of :mod:`._clex`: inside a function, a variable is
*literal* when it is given a string literal or a string ``#define`` (directly, by ``strcpy``-like
copies, or by copies of other literal variables) and *read* when ``fgets``/``fread`` (storage) or
``recv`` (network) fill it. Summaries carry flows across functions of the whole tree: which
parameters of a function reach a sink, and which functions return a literal. A function that
decrypts (``CryptDecrypt``, ``EVP_Decrypt*``, ``mbedtls_*decrypt``...) cleans read values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final, TypeVar

from trustroot.scan.checks._clex import CFile, Function, first_ident
from trustroot.scan.checks._common import make, mask, snippet_line
from trustroot.scan.findings import Finding

__all__ = ["SINKS", "check_c_credentials"]

_T = TypeVar("_T")

PASSWORD: Final = "password"  # noqa: S105 - the name of a sink kind, not a secret
KEY: Final = "key"

#: Sink functions: name -> (argument indexes carrying the secret, kind).
SINKS: Final[dict[str, tuple[tuple[int, ...], str]]] = {
    # POSIX / Windows / databases / directories / SSH
    "LogonUserA": ((2,), PASSWORD), "LogonUserW": ((2,), PASSWORD), "LogonUser": ((2,), PASSWORD),
    "LogonUserExA": ((2,), PASSWORD), "LogonUserExW": ((2,), PASSWORD),
    "mysql_real_connect": ((3,), PASSWORD), "PQsetdbLogin": ((6,), PASSWORD),
    "ldap_simple_bind_s": ((2,), PASSWORD), "ldap_simple_bind": ((2,), PASSWORD), "ldap_bind_s": ((2,), PASSWORD),
    "ssh_userauth_password": ((2,), PASSWORD), "libssh2_userauth_password": ((2,), PASSWORD),
    "libssh2_userauth_password_ex": ((3,), PASSWORD), "pam_set_item": ((2,), PASSWORD),
    # MQTT, HTTP, Wi-Fi
    "mosquitto_username_pw_set": ((2,), PASSWORD), "MQTTAsync_setUsernamePassword": ((2,), PASSWORD),
    "esp_mqtt_client_set_password": ((1,), PASSWORD), "WiFi.begin": ((1,), PASSWORD),
    "esp_http_client_set_password": ((1,), PASSWORD), "wpa_passphrase": ((1,), PASSWORD),
    # OpenSSL / mbedTLS / wolfSSL password callbacks and PSKs
    "SSL_CTX_set_default_passwd_cb_userdata": ((1,), PASSWORD), "PEM_read_bio_PrivateKey": ((3,), PASSWORD),
    "mbedtls_pk_parse_keyfile": ((2,), PASSWORD), "mbedtls_ssl_conf_psk": ((1,), KEY),
    "wolfSSL_CTX_use_psk_identity_hint": ((), KEY),
    # keys
    "CryptHashData": ((1,), KEY), "CryptImportKey": ((1,), KEY),
    "AES_set_encrypt_key": ((0,), KEY), "AES_set_decrypt_key": ((0,), KEY),
    "EVP_EncryptInit_ex": ((3,), KEY), "EVP_DecryptInit_ex": ((3,), KEY), "EVP_CipherInit_ex": ((3,), KEY),
    "EVP_EncryptInit": ((2,), KEY), "EVP_DecryptInit": ((2,), KEY), "EVP_CipherInit": ((2,), KEY),
    "EVP_EncryptInit_ex2": ((2,), KEY), "EVP_DecryptInit_ex2": ((2,), KEY),
    "HMAC": ((1,), KEY), "HMAC_Init_ex": ((1,), KEY), "HMAC_Init": ((1,), KEY), "CMAC_Init": ((1,), KEY),
    "EVP_PKEY_new_raw_private_key": ((2,), KEY), "EVP_PKEY_new_mac_key": ((2,), KEY),
    "DES_set_key": ((0,), KEY), "DES_set_key_checked": ((0,), KEY), "DES_set_key_unchecked": ((0,), KEY),
    "RC4_set_key": ((2,), KEY), "BF_set_key": ((2,), KEY), "PKCS5_PBKDF2_HMAC": ((0,), KEY),
    "PKCS5_PBKDF2_HMAC_SHA1": ((0,), KEY), "EVP_BytesToKey": ((3,), KEY),
    "mbedtls_aes_setkey_enc": ((1,), KEY), "mbedtls_aes_setkey_dec": ((1,), KEY),
    "mbedtls_gcm_setkey": ((2,), KEY), "mbedtls_ccm_setkey": ((2,), KEY), "mbedtls_cipher_setkey": ((1,), KEY),
    "mbedtls_md_hmac_starts": ((1,), KEY), "mbedtls_md_hmac": ((1,), KEY), "mbedtls_pk_parse_key": ((1,), KEY),
    "mbedtls_pkcs5_pbkdf2_hmac": ((1,), KEY), "mbedtls_chachapoly_setkey": ((1,), KEY),
    "wc_AesSetKey": ((1,), KEY), "wc_AesGcmSetKey": ((1,), KEY), "wc_HmacSetKey": ((2,), KEY),
    "wc_Des3_SetKey": ((1,), KEY), "wc_Chacha_SetKey": ((1,), KEY), "psa_import_key": ((1,), KEY),
    "wolfSSL_CTX_use_PrivateKey_buffer": ((1,), KEY), "SSL_CTX_use_PrivateKey_ASN1": ((2,), KEY),
}  # fmt: skip

_CURL_SECRET_OPTS: Final = frozenset(
    {"CURLOPT_USERPWD", "CURLOPT_PASSWORD", "CURLOPT_PROXYUSERPWD", "CURLOPT_PROXYPASSWORD", "CURLOPT_KEYPASSWD"}
)
_SECRET_MEMBER: Final = re.compile(
    r"(?:\.|->)\s*(password|passwd|pass|pwd|psk|passphrase|secret|api_key|apikey|auth_token|token)\s*$", re.I
)
_COPY_FUNCS: Final = frozenset(
    [
        "strcpy",
        "strncpy",
        "wcscpy",
        "wcsncpy",
        "strcat",
        "strncat",
        "wcscat",
        "wcsncat",
        "strlcpy",
        "strlcat",
        "memcpy",
        "memmove",
        "lstrcpyA",
        "lstrcpyW",
        "_tcscpy",
        "_mbscpy",
        "StringCchCopyA",
        "StringCchCopyW",
    ]
)
_COPY_DST_SRC: Final = {"StringCchCopyA": (0, 2), "StringCchCopyW": (0, 2)}
_FILE_READS: Final = {"fgets": (0, 2), "fgetws": (0, 2), "fread": (0, 3), "fscanf": (2, 0), "getline": (0, 2)}
_NET_READS: Final = {"recv": 1, "recvfrom": 1, "recvmsg": 1}
_FORMATTERS: Final = {"sprintf": 1, "snprintf": 2, "swprintf": 2, "_snprintf": 2, "asprintf": 1}
_CONSOLE_READS: Final = {"scanf": 1, "gets": 0, "wscanf": 1}
_ENV_READS: Final = frozenset({"getenv", "secure_getenv", "_wgetenv"})
_DECRYPT: Final = re.compile(r"\b\w*(?:[Dd]ecrypt|DECRYPT|UnprotectData)\w*\s*\(")
_LITERAL: Final = re.compile(r"^\s*(?:\(\s*[\w\s\*]+\)\s*)?(?:L|u8|u|U)?\"((?:\\.|[^\"\\])+)\"\s*$")
_ASSIGN: Final = re.compile(
    r"([A-Za-z_]\w*(?:[ \t]*(?:\.|->)[ \t]*\w+)*)[ \t]*(?:\[[^\]=;\n]*\][ \t]*)*(?<![=!<>+\-*/%&|^])=(?!=)\s*([^;]+);"
)
_RETURN: Final = re.compile(r"\breturn\s+([^;]+);")
_STR_LIT: Final = re.compile(r"(\"(?:\\.|[^\"\\\n])*\")")


@dataclass(slots=True)
class _Summaries:
    sink_params: dict[str, dict[int, tuple[str, str, bool]]] = field(default_factory=dict)
    returns_literal: set[str] = field(default_factory=set)
    returns_read: dict[str, str] = field(default_factory=dict)
    global_literal: set[str] = field(default_factory=set)
    global_read: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _State:
    literal: dict[str, int] = field(default_factory=dict)  # var -> source offset
    read: dict[str, str] = field(default_factory=dict)  # var -> "file" | "network"
    param: dict[str, int] = field(default_factory=dict)  # var -> parameter index


def _literal_value(expr: str, cfile: CFile) -> str | None:
    m = _LITERAL.match(expr)
    if m:
        return m.group(1)
    name = first_ident(expr)
    if name and name in cfile.string_macros and expr.strip().endswith(name):
        macro = _LITERAL.match(cfile.string_macros[name])
        return macro.group(1) if macro else None
    return None


def _globals(cfile: CFile) -> dict[str, int]:
    """File-scope variables initialised with a literal (``static const char key[] = "...";``)."""
    outside = list(cfile.code)
    for f in cfile.functions:
        outside[f.start : f.end] = " " * (f.end - f.start)
    text = "".join(outside)
    found: dict[str, int] = {}
    for m in _ASSIGN.finditer(text):
        words = m.group(1).split()
        if words and _literal_value(m.group(2), cfile):
            found[words[-1]] = m.start()
    return found


_DECLARED: Final = re.compile(r"(\w+)\s*(?:\[[^\]]*\]\s*)*(?:=[^;]*)?;")


def file_scope_names(cfile: CFile) -> frozenset[str]:
    """Names declared outside every function (globals, ``extern`` declarations), cached."""
    cached = cfile.cache.get("globals")
    if cached is None:
        outside = list(cfile.bare)
        for f in cfile.functions:
            outside[f.start : f.end] = " " * (f.end - f.start)
        cached = frozenset(m.group(1) for m in _DECLARED.finditer("".join(outside)))
        cfile.cache["globals"] = cached
    return cached  # type: ignore[return-value]


def _publish_globals(cfile: CFile, st: _State, sums: _Summaries) -> bool:
    """Record file-scope variables this function fills with a literal or read input. Changed?"""
    names = file_scope_names(cfile)
    changed = False
    for name in st.literal.keys() & names:
        if name not in sums.global_literal:
            sums.global_literal.add(name)
            changed = True
    for name in st.read.keys() & names:
        if name not in sums.global_read:
            sums.global_read[name] = st.read[name]
            changed = True
    return changed


def _analyse(  # noqa: PLR0912 - one branch per kind of source
    cfile: CFile, func: Function, sums: _Summaries, file_literals: dict[str, int]
) -> _State:
    st = _State(param={p: i for i, p in enumerate(func.params)})
    st.literal.update({k: v for k, v in file_literals.items() if k not in st.param})
    assigns = _assignments(cfile, func)
    func_calls = cfile.calls_in(func)
    for _ in range(3):
        before = (len(st.literal), len(st.read), len(st.param))
        for lhs, rhs, offset in assigns:
            _flow(st, lhs, rhs, offset, cfile, sums)
        for call in func_calls:
            name = cfile.resolve(call.name)
            if name in _COPY_FUNCS and len(call.args) >= 2:
                d, s = _COPY_DST_SRC.get(name, (0, 1))
                if len(call.args) > max(d, s):
                    _flow(st, first_ident(call.args[d]), call.args[s], call.start, cfile, sums)
            elif name in _FILE_READS:
                d, s = _FILE_READS[name]
                if len(call.args) > max(d, s) and first_ident(call.args[s]):
                    stream = first_ident(call.args[s])
                    st.read.setdefault(first_ident(call.args[d]), "console" if stream == "stdin" else "file")
            elif name in _NET_READS and len(call.args) > 1:
                st.read[first_ident(call.args[_NET_READS[name]])] = "network"
            elif name in _FORMATTERS and len(call.args) > _FORMATTERS[name]:
                # sprintf(dst, fmt, ...): dst carries whatever read input the arguments carry
                for arg in call.args[_FORMATTERS[name] + 1 :]:
                    kind = st.read.get(first_ident(arg))
                    if kind is not None:
                        st.read.setdefault(first_ident(call.args[0]), kind)
            elif name in _CONSOLE_READS and len(call.args) > _CONSOLE_READS[name]:
                st.read.setdefault(first_ident(call.args[_CONSOLE_READS[name]]), "console")
        if (len(st.literal), len(st.read), len(st.param)) == before:
            break
    return st


def _assignments(cfile: CFile, func: Function) -> list[tuple[str, str, int]]:
    """(left side without blanks, right side, offset) of every assignment in ``func`` (cached)."""
    cached = func.cache.get("assigns")
    if cached is None:
        body = cfile.code[func.start : func.end]
        cached = [(re.sub(r"\s+", "", m.group(1)), m.group(2), func.start + m.start()) for m in _ASSIGN.finditer(body)]
        func.cache["assigns"] = cached
    return cached  # type: ignore[return-value]


def _flow(st: _State, lhs: str, rhs: str, offset: int, cfile: CFile, sums: _Summaries) -> None:  # noqa: PLR0917
    if not lhs:
        return
    lit = _literal_value(rhs, cfile)
    if lit:
        st.literal.setdefault(lhs, offset)
        return
    src = first_ident(rhs)
    called = cfile.resolve(src)
    if rhs.strip().endswith(")") and called in _ENV_READS:
        st.read.setdefault(lhs, "env")
    elif rhs.strip().endswith(")") and called in sums.returns_read:
        st.read.setdefault(lhs, sums.returns_read[called])
    elif rhs.strip().endswith(")") and src in sums.returns_literal:
        st.literal.setdefault(lhs, offset)
    elif src in st.literal and _PLAIN_VALUE.fullmatch(rhs):
        _taint(st.literal, lhs, st.literal[src])
    elif src in st.read:
        _taint(st.read, lhs, st.read[src])
    elif src in st.param and _PLAIN_VALUE.fullmatch(rhs):
        st.param.setdefault(lhs, st.param[src])
    elif src in sums.global_literal and _PLAIN_VALUE.fullmatch(rhs):
        st.literal.setdefault(lhs, offset)
    elif src in sums.global_read and _PLAIN_VALUE.fullmatch(rhs):
        st.read.setdefault(lhs, sums.global_read[src])


def _taint(into: dict[str, _T], lhs: str, value: _T) -> None:
    """``lhs`` gets ``value``; a member or element (``s.first``) also taints its whole variable."""
    into.setdefault(lhs, value)
    base = re.split(r"\.|->", lhs, maxsplit=1)[0]
    if base != lhs:
        into.setdefault(base, value)


_PLAIN_VALUE: Final = re.compile(r"\s*(?:\([\w\s\*]+\)\s*)?[\*\(\s&]*\w+(?:\s*\[[^\]]*\]|\s*(?:\.|->)\s*\w+)*[\)\s]*")


def _secret_args(rel: str, name: str, args: tuple[str, ...], sums: _Summaries) -> list[tuple[int, str, str, bool]]:
    """(index, kind, sink name, sink function decrypts) for each secret-carrying argument."""
    if name == "curl_easy_setopt":
        return [(2, PASSWORD, name, False)] if len(args) > 2 and args[1].strip() in _CURL_SECRET_OPTS else []
    if name in SINKS:
        idx, kind = SINKS[name]
        return [(i, kind, name, False) for i in idx if i < len(args)]
    summary = sums.sink_params.get(f"{rel}::{name}", sums.sink_params.get(name))
    if summary is not None:
        return [(i, k, s, dec) for i, (k, s, dec) in summary.items() if i < len(args)]
    return []


def _mask_literals(line: str) -> str:
    return _STR_LIT.sub(lambda m: '"' + mask(m.group(1)[1:-1]) + '"' if len(m.group(1)) > 2 else m.group(1), line)


def _scan_function(  # noqa: PLR0912, PLR0917 - one pass over a function, kept whole for the reader
    rel: str,
    cfile: CFile,
    func: Function,
    sums: _Summaries,
    report: list[Finding] | None,
    file_literals: dict[str, int],
) -> bool:
    """Analyse one function; update ``sums``; append findings to ``report`` when given. Changed?"""
    st = _analyse(cfile, func, sums, file_literals)
    decrypts = bool(_DECRYPT.search(cfile.code, func.start, func.end))
    changed = _publish_globals(cfile, st, sums)
    body = cfile.code[func.start : func.end]
    for m in _RETURN.finditer(body):
        expr = m.group(1)
        if (_literal_value(expr, cfile) or first_ident(expr) in st.literal) and func.name not in sums.returns_literal:
            sums.returns_literal.add(func.name)
            changed = True
        kind = st.read.get(first_ident(expr))
        if kind is not None and func.name not in sums.returns_read:
            sums.returns_read[func.name] = kind
            changed = True
    hits: list[tuple[int, str, str, str]] = []  # offset, rule, sink, detail
    for call in cfile.calls_in(func):
        for idx, kind, sink, sink_decrypts in _secret_args(rel, cfile.resolve(call.name), call.args, sums):
            expr = call.args[idx]
            var = first_ident(expr)
            if _literal_value(expr, cfile) or var in st.literal:
                hits.append((call.start, "c-password" if kind == PASSWORD else "c-key", sink, "hard-coded"))
            elif st.read.get(var) in ("file", "network") and kind == PASSWORD and not decrypts and not sink_decrypts:
                rule = "c-stored-plaintext" if st.read[var] == "file" else "c-cleartext-network"
                hits.append((call.start, rule, sink, st.read[var]))
            if var in st.param:
                entry = (kind, sink, decrypts or sink_decrypts)
                for key in (f"{rel}::{func.name}", func.name):
                    cur = sums.sink_params.setdefault(key, {})
                    if cur.get(st.param[var]) != entry:
                        cur[st.param[var]] = entry
                        changed = True
    for lhs, rhs, offset in _assignments(cfile, func):
        if _SECRET_MEMBER.search(lhs) and (_literal_value(rhs, cfile) or first_ident(rhs) in st.literal):
            hits.append((offset, "c-password", "member " + lhs, "hard-coded"))
    for call in cfile.calls_in(func):
        if (
            call.name in _COPY_FUNCS
            and len(call.args) >= 2
            and _SECRET_MEMBER.search(call.args[0].rstrip(") "))
            and (_literal_value(call.args[1], cfile) or first_ident(call.args[1]) in st.literal)
        ):
            hits.append((call.start, "c-password", "member " + call.args[0].strip(), "hard-coded"))
    if report is not None:
        seen: set[tuple[int, str]] = set()
        for offset, rule, sink, detail in hits:
            line = cfile.line_of(offset)
            if (line, rule) in seen:
                continue
            seen.add((line, rule))
            what = {
                "hard-coded": "a hard-coded value reaches",
                "file": "a password read from storage in clear reaches",
                "network": "a password received over the network in clear reaches",
            }[detail]
            report.append(
                make(
                    f"credentials.{rule}",
                    rel,
                    line=line,
                    snippet=snippet_line(_mask_literals(cfile.line_text(line))),
                    message=f"{what} {sink}() in {func.name}()",
                )
            )
    return changed


def check_c_credentials(files: list[tuple[str, CFile]]) -> list[Finding]:
    """Findings over every C/C++ file of one tree (summaries shared across the files)."""
    sums = _Summaries()
    file_literals = {rel: _globals(cfile) for rel, cfile in files}
    for _ in range(4):
        changed = False
        for rel, cfile in files:
            for func in cfile.functions:
                changed |= _scan_function(rel, cfile, func, sums, None, file_literals[rel])
        if not changed:
            break
    report: list[Finding] = []
    for rel, cfile in files:
        for func in cfile.functions:
            _scan_function(rel, cfile, func, sums, report, file_literals[rel])
    return report
