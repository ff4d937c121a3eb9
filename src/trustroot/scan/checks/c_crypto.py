"""TLS and crypto misuse in C/C++: disabled certificate checks, fixed old protocol methods, broken
ciphers and hashes, predictable random numbers (CWE-295, 326, 327, 328, 338).

Token patterns over code with comments and string contents blanked, so a word in a comment or a
log message is never a finding; cipher-list strings are read separately.
"""

from __future__ import annotations

import re
from typing import Final

from trustroot.scan.checks._clex import CFile, calls
from trustroot.scan.checks._common import make, snippet_line
from trustroot.scan.findings import Finding

__all__ = ["check_c_crypto"]

_VERIFY_NONE: Final = re.compile(
    r"\b(?:SSL_VERIFY_NONE|MBEDTLS_SSL_VERIFY_NONE|MBEDTLS_SSL_VERIFY_OPTIONAL|WOLFSSL_VERIFY_NONE|"
    r"SSL_VERIFY_PEER\s*&\s*0)\b"
)
_OLD_METHOD: Final = re.compile(
    r"\b(?:SSLv2|SSLv3|TLSv1|TLSv1_1|DTLSv1)_(?:client_|server_)?method\s*\(|"
    r"\bwolf(?:SSLv3|TLSv1|TLSv1_1)_(?:client_|server_)?method\s*\(|"
    r"\bMBEDTLS_SSL_MINOR_VERSION_[012]\b|\bMBEDTLS_SSL_VERSION_TLS1_[01]\b"
)
_MIN_PROTO: Final = frozenset({"SSL_CTX_set_min_proto_version", "SSL_set_min_proto_version"})
_OLD_VERSIONS: Final = re.compile(r"\b(?:SSL3_VERSION|TLS1_VERSION|TLS1_1_VERSION|DTLS1_VERSION)\b")
_CIPHER: Final = re.compile(
    r"\b(?:EVP_(?:des|rc4|rc2|bf|cast5|idea|rc5)\w*|EVP_aes_\d+_ecb|DES_\w+|RC4_set_key|RC4|RC2_\w+|BF_\w+|"
    r"mbedtls_(?:des|des3|arc4|blowfish)_\w+|mbedtls_aes_crypt_ecb|MBEDTLS_CIPHER_(?:DES|ARC4|BLOWFISH)\w*|"
    r"MBEDTLS_CIPHER_AES_\d+_ECB|MBEDTLS_MODE_ECB|wc_(?:Des|Des3|Arc4)\w*|wc_AesEcb\w*|"
    r"CALG_(?:DES|3DES|3DES_112|DESX|RC2|RC4|RC5|CYLINK_MEK|SKIPJACK)|CRYPT_MODE_ECB|BCRYPT_(?:DES|3DES|RC2|RC4)"
    r"_ALGORITHM)\b"
)
_HASH: Final = re.compile(
    r"\b(?:MD[245](?:_Init|_Update|_Final)?|SHA1(?:_Init|_Update|_Final)?|SHA_(?:Init|Update|Final)|"
    r"EVP_(?:md2|md4|md5|sha1|md5_sha1)|mbedtls_(?:md2|md4|md5|sha1)\w*|MBEDTLS_MD_(?:MD2|MD4|MD5|SHA1)|"
    r"wc_(?:Md2|Md4|Md5|Sha|ShaHash|InitSha|ShaUpdate|ShaFinal)\w*|CALG_(?:MD2|MD4|MD5|SHA|SHA1)|"
    r"BCRYPT_(?:MD2|MD4|MD5|SHA1)_ALGORITHM|CC_MD5|CC_SHA1)\b"
)
_PRNG: Final = re.compile(r"\b(?:rand|random|srand|srandom|drand48|lrand48|mrand48|erand48|rand_r)\s*\(")
_SECURITY_WORDS: Final = re.compile(
    r"key|iv\b|nonce|salt|token|secret|passw|session|challenge|seed|crypt|cookie|otp|pin\b|uuid", re.I
)
_CURL_VERIFY: Final = frozenset({"CURLOPT_SSL_VERIFYPEER", "CURLOPT_SSL_VERIFYHOST", "CURLOPT_PROXY_SSL_VERIFYPEER"})
_FALSE: Final = frozenset({"0", "0L", "0l", "FALSE", "false"})
_CIPHER_LIST_FUNCS: Final = frozenset(
    {"SSL_CTX_set_cipher_list", "SSL_set_cipher_list", "wolfSSL_CTX_set_cipher_list", "mosquitto_tls_opts_set"}
)
_WEAK_SUITE: Final = re.compile(r"(?<![!\-+\w])(?:RC4|DES|3DES|NULL|eNULL|aNULL|EXPORT|EXP|ADH|AECDH|MD5|LOW)\b")


def check_c_crypto(rel: str, cfile: CFile) -> list[Finding]:  # noqa: PLR0912 - one branch per pattern family
    """Crypto-misuse findings over one C/C++ file."""
    found: list[Finding] = []
    seen: set[tuple[int, str]] = set()

    def add(rule: str, offset: int, message: str) -> None:
        line = cfile.line_of(offset)
        if (line, rule) in seen:
            return
        seen.add((line, rule))
        found.append(make(rule, rel, line=line, snippet=snippet_line(cfile.line_text(line)), message=message))

    bare = cfile.bare
    for m in _VERIFY_NONE.finditer(bare):
        if _in_define(bare, m.start()):
            continue
        add("crypto.verify-none", m.start(), f"{m.group(0)} disables peer certificate verification")
    for m in _OLD_METHOD.finditer(bare):
        add("crypto.old-protocol-method", m.start(), f"{m.group(0).rstrip('( ')} fixes an old SSL/TLS version")
    for m in _CIPHER.finditer(bare):
        if _in_define(bare, m.start()) and not _define_value_has(bare, m.start()):
            continue
        add("crypto.broken-cipher", m.start(), f"{m.group(0)} is a broken or risky cipher or mode")
    for m in _HASH.finditer(bare):
        if _in_define(bare, m.start()) and not _define_value_has(bare, m.start()):
            continue
        add("crypto.weak-hash", m.start(), f"{m.group(0)} is a broken hash")
    for m in _PRNG.finditer(bare):
        func = cfile.function_at(m.start())
        context = cfile.code[func.start : func.end] if func else cfile.line_text(cfile.line_of(m.start()))
        words = _SECURITY_WORDS.search(re.sub(r"\"(?:\\.|[^\"\\\n])*\"", "", context))
        rule = "crypto.weak-prng" if words else "crypto.weak-prng-use"
        name = m.group(0).rstrip("( ")
        add(rule, m.start(), f"{name}() is predictable" + (" and is used near key material" if words else ""))
    for call in calls(bare):
        if call.name in ("curl_easy_setopt",) and len(call.args) > 2:
            if call.args[1].strip() in _CURL_VERIFY and call.args[2].strip() in _FALSE:
                add("crypto.verify-none", call.start, f"{call.args[1].strip()} switched off")
        elif (
            call.name == "mosquitto_tls_insecure_set"
            and len(call.args) > 1
            and call.args[1].strip()
            in (
                "true",
                "1",
            )
        ):
            add("crypto.verify-none", call.start, "mosquitto_tls_insecure_set() skips the server name check")
        elif call.name == "mosquitto_tls_opts_set" and len(call.args) > 1 and call.args[1].strip() == "0":
            add("crypto.verify-none", call.start, "mosquitto_tls_opts_set(cert_reqs=0) disables verification")
        elif call.name in _MIN_PROTO and len(call.args) > 1 and _OLD_VERSIONS.search(call.args[1]):
            add("crypto.old-protocol-method", call.start, f"minimum protocol {call.args[1].strip()}")
    for call in calls(cfile.code):
        if call.name in _CIPHER_LIST_FUNCS:
            for arg in call.args:
                if arg.strip().startswith('"') and _WEAK_SUITE.search(arg):
                    add("tls.weak-cipher", call.start, f"cipher list {arg.strip()} allows broken suites")
    return found


def _in_define(text: str, offset: int) -> bool:
    start = text.rfind("\n", 0, offset) + 1
    return text[start:offset].lstrip().startswith("#")


def _define_value_has(text: str, offset: int) -> bool:
    """Whether a token on a ``#define`` line is in the macro's value (not its name)."""
    start = text.rfind("\n", 0, offset) + 1
    head = text[start:offset]
    return bool(re.match(r"\s*#\s*define\s+\w+(?:\([^)]*\))?\s+\S", head))
