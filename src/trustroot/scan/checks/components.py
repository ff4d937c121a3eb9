"""Component versions found in binaries and text, matched against a local OSV data set and a shipped
table of end-of-life release lines; a CycloneDX 1.5 SBOM of what was found.

A signature is a byte pattern a component writes into its own binary or banner (``BusyBox v1.30.1``,
``OpenSSL 1.0.2k``, ``SSH-2.0-dropbear_2019.78``, ``Linux version 4.4.60``...), plus package
databases (opkg, dpkg ``status`` files), so the version comes from the firmware itself.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib import resources
from typing import Any, Final

from trustroot.scan.checks._common import make
from trustroot.scan.checks.osv import VulnDB, compare_versions
from trustroot.scan.findings import Finding

__all__ = ["SIGNATURES", "Component", "end_of_life", "find_components", "findings_for", "sbom"]

#: name -> (CycloneDX type, byte patterns whose group 1 is the version)
SIGNATURES: Final[dict[str, tuple[str, tuple[re.Pattern[bytes], ...]]]] = {
    "busybox": ("application", (re.compile(rb"BusyBox v(\d+\.\d+(?:\.\d+)?)"),)),
    "openssl": ("library", (re.compile(rb"OpenSSL (\d+\.\d+\.\d+[a-z]{0,2})(?=[ \x00-])"),)),
    "dropbear": ("application", (re.compile(rb"[Dd]ropbear(?:_| v| sshd v| SSH server v|-)(20\d\d\.\d+(?:\.\d+)?)"),)),
    "openssh": ("application", (re.compile(rb"OpenSSH_(\d+\.\d+(?:p\d+)?)"),)),
    "lighttpd": ("application", (re.compile(rb"lighttpd/(\d+\.\d+\.\d+)"),)),
    "dnsmasq": ("application", (re.compile(rb"[Dd]nsmasq(?:-| version )(\d+\.\d+(?:\.\d+)?)"),)),
    "curl": ("library", (re.compile(rb"(?:libcurl|curl)/(\d+\.\d+\.\d+)"),)),
    "mosquitto": ("application", (re.compile(rb"mosquitto(?: version |/| broker v?)(\d+\.\d+\.\d+)"),)),
    "uclibc": ("library", (re.compile(rb"libuClibc-(\d+\.\d+\.\d+(?:\.\d+)?)\.so"),
                           re.compile(rb"uClibc (\d+\.\d+\.\d+)"))),
    "uclibc-ng": ("library", (re.compile(rb"uClibc-ng (\d+\.\d+\.\d+)"),)),
    "glibc": ("library", (re.compile(rb"GNU C Library [^\n\x00]{0,80}?version (\d+\.\d+(?:\.\d+)?)"),)),
    "musl": ("library", (re.compile(rb"musl libc (?:version )?(\d+\.\d+\.\d+)"),)),
    "linux": ("operating-system", (re.compile(rb"Linux version (\d+\.\d+(?:\.\d+)?)"),)),
    "zlib": ("library", (re.compile(rb"(?:deflate|inflate) (\d+\.\d+\.\d+(?:\.\d+)?) Copyright"),)),
    "hostapd": ("application", (re.compile(rb"hostapd v(\d+\.\d+(?:\.\d+)?)"),)),
    "wpa_supplicant": ("application", (re.compile(rb"wpa_supplicant v(\d+\.\d+(?:\.\d+)?)"),)),
    "mbedtls": ("library", (re.compile(rb"(?:[Mm]bed ?TLS|mbedtls) (\d+\.\d+\.\d+)"),)),
    "wolfssl": ("library", (re.compile(rb"wolfSSL (?:version )?(\d+\.\d+\.\d+)"),)),
    "miniupnpd": ("application", (re.compile(rb"miniupnpd/(\d+\.\d+(?:\.\d+)?)"),)),
    "python": ("application", (re.compile(rb"(?:^|[^\w.])[Pp]ython (\d\.\d+\.\d+)(?=[ \x00\n])"),)),
}  # fmt: skip
_PKG_DB: Final = re.compile(r"^Package: ([\w.+-]+)\n(?:[^\n]+\n)*?Version: ([^\s]+)", re.M)
#: Package database names of components that have a signature, mapped to the signature's name.
_PKG_ALIASES: Final = {"libopenssl": "openssl", "libopenssl1.1": "openssl", "libopenssl3": "openssl",
                        "libcurl4": "curl", "libcurl": "curl", "openssh-server": "openssh", "libc6": "glibc",
                        "libmbedtls": "mbedtls", "dnsmasq-full": "dnsmasq", "libuclibc": "uclibc"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Component:
    """A component version identified at ``path`` (``offset`` in its bytes, or a package database)."""

    name: str
    version: str
    path: str
    offset: int = 0
    evidence: str = ""

    @property
    def purl(self) -> str:
        """Package URL (``pkg:generic/<name>@<version>``)."""
        return f"pkg:generic/{self.name}@{self.version}"


#: Literal bytes every match of a signature contains: found with ``bytes.find`` (C speed), the
#: signature's pattern then runs on a small window around each occurrence only.
_ANCHORS: Final[dict[str, tuple[bytes, ...]]] = {
    "busybox": (b"BusyBox v",), "openssl": (b"OpenSSL ",), "dropbear": (b"ropbear",), "openssh": (b"OpenSSH_",),
    "lighttpd": (b"lighttpd/",), "dnsmasq": (b"nsmasq",), "curl": (b"curl/",), "mosquitto": (b"mosquitto",),
    "uclibc": (b"uClibc",), "uclibc-ng": (b"uClibc-ng ",), "glibc": (b"GNU C Library",), "musl": (b"musl libc",),
    "linux": (b"Linux version ",), "zlib": (b" Copyright",), "hostapd": (b"hostapd v",),
    "wpa_supplicant": (b"wpa_supplicant v",), "mbedtls": (b"bed TLS", b"bedTLS", b"mbedtls "),
    "wolfssl": (b"wolfSSL ",), "miniupnpd": (b"miniupnpd/",), "python": (b"ython ",),
}  # fmt: skip
#: At most this many occurrences of one anchor are looked at per file or window.
MAX_ANCHOR_HITS: Final = 256
_WINDOW_BEFORE: Final = 40
_WINDOW_AFTER: Final = 200


def _anchor_hits(data: bytes) -> dict[str, list[int]]:
    """Offsets of every anchor in ``data`` (``bytes.find``: a C search per anchor), by component name."""
    hits: dict[str, list[int]] = {}
    for name, anchors in _ANCHORS.items():
        for anchor in anchors:
            pos = data.find(anchor)
            while pos != -1:
                found = hits.setdefault(name, [])
                found.append(pos)
                if len(found) >= MAX_ANCHOR_HITS:
                    break
                pos = data.find(anchor, pos + 1)
    return hits


def _matches(data: bytes, positions: list[int], pattern: re.Pattern[bytes]) -> list[tuple[int, re.Match[bytes]]]:
    out: list[tuple[int, re.Match[bytes]]] = []
    seen: set[int] = set()
    for pos in positions:
        base = max(0, pos - _WINDOW_BEFORE)
        window = data[base : pos + _WINDOW_AFTER]
        for m in pattern.finditer(window):
            if base + m.start() not in seen and base + m.start() <= pos + 16:
                seen.add(base + m.start())
                out.append((base + m.start(), m))
    return out


def find_components(rel: str, data: bytes) -> list[Component]:
    """Every component version whose signature occurs in ``data`` (one per name and version)."""
    found: dict[tuple[str, str], Component] = {}
    hits = _anchor_hits(data)
    for name, (_kind, patterns) in SIGNATURES.items():
        if name not in hits:
            continue
        for pattern in patterns:
            for offset, m in sorted(_matches(data, hits[name], pattern), key=lambda hit: hit[0]):
                version = m.group(1).decode("ascii", errors="replace")
                key = (name, version)
                if key not in found:
                    evidence = m.group(0).decode("ascii", errors="replace")[:80]
                    found[key] = Component(name, version, rel, offset, evidence)
    if rel.endswith(("/status", "opkg/status")) and b"Package: " in data[:65536]:
        text = data.decode("utf-8", errors="replace")
        for entry in _PKG_DB.finditer(text):
            pkg = entry.group(1).lower()
            name = _PKG_ALIASES.get(pkg, pkg)
            if name in SIGNATURES:
                version = entry.group(2).split(":")[-1].split("-")[0]
                found.setdefault((name, version), Component(name, version, rel, 0, f"Package: {entry.group(1)}"))
    return list(found.values())


@functools.cache
def _eol_table() -> tuple[dict[str, str], ...]:
    raw = resources.files("trustroot.scan").joinpath("data", "end-of-life.json").read_text(encoding="utf-8")
    entries = json.loads(raw)["entries"]
    return tuple({str(k): str(v) for k, v in e.items()} for e in entries)


def _in_cycle(version: str, cycle: str) -> bool:
    if version == cycle:
        return True
    return version.startswith(cycle) and len(version) > len(cycle) and not version[len(cycle)].isdigit()


def end_of_life(name: str, version: str, today: date) -> dict[str, str] | None:
    """The end-of-life entry covering ``name`` ``version`` if its date is before ``today``."""
    for entry in _eol_table():
        if entry["component"] != name:
            continue
        hit = ("cycle" in entry and _in_cycle(version, entry["cycle"])) or (
            "below" in entry and compare_versions(version, entry["below"]) < 0
        )
        if hit and date.fromisoformat(entry["eol"]) < today:
            return entry
    return None


def findings_for(components: list[Component], vuln_db: VulnDB | None, today: date) -> list[Finding]:
    """Inventory, vulnerability and end-of-life findings for ``components``."""
    out: list[Finding] = []
    for c in components:
        where = {"line": 0} if c.offset == 0 else {"byte_offset": c.offset, "byte_length": len(c.evidence)}
        out.append(make("component.identified", c.path, snippet=c.evidence, message=f"{c.name} {c.version}", **where))
        eol = end_of_life(c.name, c.version, today)
        if eol is not None:
            line = eol.get("cycle", "< " + eol.get("below", ""))
            out.append(
                make("component.end-of-life", c.path, snippet=c.evidence,
                     message=f"{c.name} {c.version}: release line {line} unsupported since {eol['eol']}", **where)
            )  # fmt: skip
        if vuln_db is not None:
            for v in vuln_db.matches(c.name, c.version):
                alias = f" ({', '.join(v.aliases[:3])})" if v.aliases else ""
                out.append(
                    make("component.vulnerable", c.path, snippet=c.evidence,
                         message=f"{c.name} {c.version}: {v.id}{alias} {v.summary}".strip(), **where)
                )  # fmt: skip
    return out


def sbom(components: list[Component], vuln_db: VulnDB | None = None, *, now: datetime | None = None) -> dict[str, Any]:
    """A CycloneDX 1.5 JSON document (as a dict) listing ``components`` and, given a data set, their vulnerabilities."""
    from trustroot import __version__

    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    comps: list[dict[str, Any]] = []
    vulns: dict[str, dict[str, Any]] = {}
    seen: dict[str, dict[str, Any]] = {}
    for c in components:
        ref = c.purl
        if ref in seen:
            seen[ref]["evidence"]["occurrences"].append({"location": c.path})
            continue
        entry: dict[str, Any] = {
            "type": SIGNATURES.get(c.name, ("library", ()))[0],
            "bom-ref": ref,
            "name": c.name,
            "version": c.version,
            "purl": ref,
            "evidence": {"occurrences": [{"location": c.path}]},
        }
        seen[ref] = entry
        comps.append(entry)
        if vuln_db is not None:
            for v in vuln_db.matches(c.name, c.version):
                rec = vulns.setdefault(
                    v.id,
                    {"bom-ref": f"vuln-{v.id}", "id": v.id, "source": {"name": "OSV"}, "description": v.summary,
                     "affects": []},
                )  # fmt: skip
                if v.aliases:
                    rec["references"] = [{"id": a, "source": {"name": "alias"}} for a in v.aliases]
                rec["affects"].append({"ref": ref})
    doc: dict[str, Any] = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": stamp,
            "tools": {"components": [{"type": "application", "name": "trustroot", "version": __version__}]},
        },
        "components": comps,
    }
    if vulns:
        doc["vulnerabilities"] = list(vulns.values())
    return doc
