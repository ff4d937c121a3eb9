"""What every own check shares: the rule table, limits, masking, and making a finding."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from trustroot.scan.findings import Finding, Location, Severity

__all__ = [
    "ENGINE",
    "MAX_BLOB_BYTES",
    "MAX_FILES",
    "MAX_FILE_BYTES",
    "MAX_LINE_CHARS",
    "RULES",
    "Rule",
    "make",
    "mask",
    "snippet_line",
]

#: The engine name of every own finding.
ENGINE: Final = "trustroot"
#: A file larger than this is read only up to this many bytes (text and binary checks alike).
MAX_FILE_BYTES: Final = 16 * 1024 * 1024
#: A raw blob is carved in windows up to this size in total.
MAX_BLOB_BYTES: Final = 1024 * 1024 * 1024
#: At most this many files of one tree are inspected (the rest are reported as not inspected).
MAX_FILES: Final = 200_000
#: A snippet is cut to this many characters.
MAX_LINE_CHARS: Final = 160


@dataclass(frozen=True, slots=True)
class Rule:
    """One kind of own finding: stable id, title, severity, CWE ids and EN 303 645 provisions."""

    rule_id: str
    title: str
    severity: Severity
    cwe: tuple[int, ...]
    provisions: tuple[str, ...]

    @property
    def guideline(self) -> int:
        """The guideline number of the first provision (``5.4-3`` belongs to guideline 4)."""
        return int(self.provisions[0].split("-")[0].split(".")[1])


def _r(rule_id: str, title: str, severity: Severity, cwe: tuple[int, ...], provisions: tuple[str, ...]) -> Rule:
    return Rule(f"trustroot.{rule_id}", title, severity, cwe, provisions)


H, M, L, INF = Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.INFO

#: Every rule of the own checks, by short name.
RULES: Final[dict[str, Rule]] = {
    r.rule_id.removeprefix("trustroot."): r
    for r in (
        # password databases
        _r("passwd.empty-password", "Account without a password", H, (258, 521), ("5.1-1",)),
        _r("passwd.default-password", "Account password is a well-known default", H, (798, 1393), ("5.1-1",)),
        _r("passwd.weak-hash", "Password hashed with a weak scheme (DES or MD5-crypt)", M, (916, 328), ("5.4-1",)),
        _r("passwd.hash-in-passwd", "Password hash readable by everyone in /etc/passwd", M, (256, 522), ("5.4-1",)),
        _r("passwd.extra-uid0", "Account other than root with uid 0", H, (250, 269), ("5.6-7",)),
        _r("passwd.plaintext", "Plaintext password in an htpasswd file", H, (256,), ("5.4-1",)),
        # credentials
        _r("credentials.config", "Plaintext credential in a configuration file", H, (798, 260), ("5.1-1", "5.4-3")),
        _r("credentials.script", "Plaintext credential in a script", H, (798,), ("5.1-1", "5.4-3")),
        _r(
            "credentials.c-password",
            "Hard-coded password flows into a login or connect call",
            H,
            (259, 798),
            ("5.4-3",),
        ),
        _r(
            "credentials.c-key", "Hard-coded cryptographic key flows into a key-setting call", H, (321, 798), ("5.4-3",)
        ),
        _r(
            "credentials.c-stored-plaintext",
            "Password read from storage is used without decryption",
            M,
            (256,),
            ("5.4-1",),
        ),
        _r(
            "credentials.c-cleartext-network",
            "Password received over the network in clear is used",
            M,
            (319,),
            ("5.5-7",),
        ),
        _r("injection.command", "External input reaches an OS command", H, (78,), ("5.13-1",)),
        _r("injection.format", "External input used as a format string", H, (134,), ("5.13-1",)),
        # keys
        _r("keys.private-key", "Private key shipped in the tree or image", H, (321, 798), ("5.4-1", "5.4-3")),
        _r("keys.encrypted-private-key", "Encrypted private key shipped (offline-crackable)", L, (321,), ("5.4-1",)),
        # attack surface
        _r("surface.telnet", "Telnet service started", H, (319, 306), ("5.6-1", "5.5-5")),
        _r("surface.ftp", "FTP or TFTP service started", M, (319, 306), ("5.6-1",)),
        _r("surface.upnp", "UPnP service started", M, (306,), ("5.6-1", "5.6-2")),
        _r("surface.debug-shell", "Debug or root shell exposed without login", H, (306, 489), ("5.6-4",)),
        _r("surface.ssh-root-login", "SSH allows root login", M, (250,), ("5.6-7",)),
        _r("surface.ssh-password-login", "SSH allows password or empty-password login", M, (309, 521), ("5.1-1",)),
        _r("surface.open-wifi", "Wi-Fi network without encryption", H, (311, 319), ("5.5-1",)),
        _r("surface.weak-wifi", "Wi-Fi with broken security (WEP or WPA1/TKIP)", M, (326, 327), ("5.5-1",)),
        # TLS and crypto
        _r("tls.old-protocol", "TLS configuration allows protocols older than TLS 1.2", M, (326, 327), ("5.5-1",)),
        _r("tls.weak-cipher", "TLS configuration allows broken cipher suites", M, (327,), ("5.5-1",)),
        _r("tls.no-tls", "Network service configured without TLS", M, (319,), ("5.5-1",)),
        _r("crypto.verify-none", "TLS peer certificate verification disabled", H, (295,), ("5.5-1",)),
        _r("crypto.old-protocol-method", "Fixed old SSL/TLS protocol method", M, (326, 327), ("5.5-1",)),
        _r("crypto.broken-cipher", "Broken or risky cipher (DES, 3DES, RC2, RC4, RC5, ECB)", M, (327,), ("5.5-1",)),
        _r("crypto.weak-hash", "Broken hash (MD2, MD4, MD5, SHA-1)", M, (328, 327), ("5.5-1",)),
        _r("crypto.weak-prng", "Predictable random number generator", M, (338, 330), ("5.5-1",)),
        _r(
            "crypto.weak-prng-use", "Predictable random number generator (not for security?)", L, (338, 330), ("5.5-1",)
        ),
        # ELF
        _r("elf.no-nx", "Executable stack (no NX)", M, (693,), ("5.6-8",)),
        _r("elf.no-pie", "Executable not position independent (no ASLR)", L, (693,), ("5.6-9",)),
        _r("elf.no-relro", "No RELRO (writable GOT)", L, (693,), ("5.6-9",)),
        _r("elf.no-canary", "No stack protector", L, (693, 121), ("5.6-9",)),
        _r("elf.not-stripped", "Binary not stripped (symbols shipped)", INF, (615,), ("5.6-6",)),
        # components
        _r("component.vulnerable", "Component version with known vulnerabilities", H, (1395, 937), ("5.3-8",)),
        _r("component.end-of-life", "Component version past its end of life", M, (1104,), ("5.3-8",)),
        _r("component.identified", "Component identified", INF, (), ("5.3-1",)),
        # limits
        _r("checks.not-inspected", "File not inspected by the own checks", INF, (), ("5.6-9",)),
    )
}


def mask(secret: str) -> str:
    """A stand-in for a secret that shows only its length, never a character of it."""
    return f"<masked:{len(secret)}>"


def snippet_line(text: str, secrets: tuple[str, ...] = ()) -> str:
    """One evidence line with every secret in ``secrets`` masked, cut to :data:`MAX_LINE_CHARS`."""
    out = text.strip()
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        out = out.replace(secret, mask(secret))
    if len(out) > MAX_LINE_CHARS:
        out = out[: MAX_LINE_CHARS - 1] + "\u2026"
    return out


_NONPRINT = re.compile(r"[^\x20-\x7e]")


def make(
    rule: str,
    path: str,
    *,
    line: int = 0,
    snippet: str = "",
    message: str = "",
    byte_offset: int | None = None,
    byte_length: int | None = None,
) -> Finding:
    """A finding of the own rule ``rule`` (short name from :data:`RULES`) at ``path``."""
    spec = RULES[rule]
    return Finding(
        rule_id=spec.rule_id,
        title=spec.title,
        severity=spec.severity,
        location=Location(path=path, line=line, byte_offset=byte_offset, byte_length=byte_length),
        cwe=spec.cwe,
        provisions=spec.provisions,
        guideline=spec.guideline,
        snippet=_NONPRINT.sub("?", snippet),
        engines=[ENGINE],
        message=message or spec.title,
    )
