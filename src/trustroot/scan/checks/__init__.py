"""trustroot's own IoT checks: the problems no engine finds.

The gate calls :func:`run_tree` on every tree it scans (a source tree, a root file system, an
unpacked archive or image) and :func:`run_blob` on every raw blob or chunk nothing could unpack.
Both return :class:`~trustroot.scan.findings.Finding` objects with ``engines == ["trustroot"]``;
every rule is in :data:`~trustroot.scan.checks._common.RULES`.

Components found on the way are appended to ``inventory`` when the caller passes a list, for
:func:`~trustroot.scan.checks.components.sbom`; ``vuln_db`` (from
:func:`~trustroot.scan.checks.osv.load_osv`) adds the known vulnerabilities of their versions.

The modules: :mod:`.passwords` (shadow, passwd, htpasswd), :mod:`.credentials` (configuration and
scripts), :mod:`.c_credentials` and :mod:`.c_crypto` (C/C++), :mod:`.keys` (private keys),
:mod:`.surface` (services, SSH, Wi-Fi), :mod:`.tls_config` (server TLS settings), :mod:`.elf`
(binary hardening), :mod:`.components` and :mod:`.osv` (versions, vulnerabilities, end of life, SBOM).
"""

from __future__ import annotations

import os
import re
from datetime import UTC, date, datetime
from pathlib import Path, PurePosixPath
from typing import Final

from trustroot.scan.checks import (
    c_credentials,
    c_crypto,
    c_injection,
    components,
    credentials,
    elf,
    keys,
    passwords,
    surface,
    tls_config,
)
from trustroot.scan.checks._clex import CFile
from trustroot.scan.checks._common import MAX_BLOB_BYTES, MAX_FILE_BYTES, MAX_FILES, RULES, make
from trustroot.scan.checks.components import Component, sbom
from trustroot.scan.checks.osv import VulnDB, load_osv
from trustroot.scan.findings import Finding

__all__ = ["RULES", "Component", "VulnDB", "load_osv", "run_blob", "run_tree", "sbom"]

_C_EXT: Final = frozenset({".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".hh", ".hxx", ".ino", ".inl"})
_CONFIG_EXT: Final = frozenset(
    {".conf", ".cfg", ".cnf", ".ini", ".json", ".yaml", ".yml", ".toml", ".properties", ".env", ".config", ".xml",
     ".txt", ".nvram", ".dat", ".uci", ".rc", ".prefs", ".default", ".defaults", ".settings"}
)  # fmt: skip
#: Folders of documentation and tests: what they hold is not shipped configuration, so the
#: configuration-file checks (credentials, services, TLS settings) skip them; keys, password
#: databases, C sources and binaries are checked everywhere.
_NOT_SHIPPED_DIRS: Final = frozenset({"test", "tests", "testing", "testdata", "man", "doc", "docs", "examples"})
_SCRIPT_EXT: Final = frozenset({".sh", ".bash", ".ash", ".ksh", ".lua", ".py", ".pl", ".php", ".rb", ".js", ".cgi"})
_TEXT_PROBE: Final = 8192
#: Blob windows: size and overlap (the overlap is larger than any key or banner looked for).
BLOB_WINDOW: Final = 8 * 1024 * 1024
BLOB_OVERLAP: Final = 72 * 1024
#: A password field between colons followed by a day count or uid, as in a shadow or passwd line
#: (the pattern starts with a literal ``:`` so the engine skips ahead at C speed); the account name
#: before it is then read backwards.
_SHADOW_FIELD: Final = re.compile(rb":((?:\$(?:1|5|6|apr1)\$[./0-9A-Za-z$=]{4,120})|[./0-9A-Za-z]{13}|):\d{0,6}:")
_USER_BEFORE: Final = re.compile(rb"(?:^|[^A-Za-z0-9_.$/-])([a-z_][a-z0-9_.-]{0,31})$")


def _is_text(head: bytes) -> bool:
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start > len(head) - 4  # a multi-byte character cut by the probe
    return True


def _kind(rel: str, data: bytes) -> set[str]:
    p = PurePosixPath(rel)
    name = p.name.lower()
    suffix = p.suffix.lower()
    kinds: set[str] = set()
    if suffix in _C_EXT:
        kinds.add("c")
        return kinds
    if passwords.is_password_file(rel):
        kinds.add("passwords")
        return kinds
    if name.endswith("sshd_config") or name == "sshd_config":
        kinds.add("sshd")
    if "/config/" in f"/{rel}" and "etc/config/" in rel:
        kinds |= {"uci", "config"}
    if name.startswith(("hostapd", "wpa_supplicant")) and suffix == ".conf":
        kinds |= {"wifi", "config"}
    if surface.is_service_file(rel):
        kinds.add("service")
    if _NOT_SHIPPED_DIRS & {part.lower() for part in p.parts[:-1]}:
        return set()
    if data.startswith(b"#!") or suffix in _SCRIPT_EXT or ("service" in kinds and name not in ("inittab",)):
        kinds.add("script")
    elif suffix in _CONFIG_EXT or "nvram" in name or rel.startswith("etc/") or "/etc/" in rel or name.endswith("rc"):
        kinds.add("config")
    if "config" in kinds or "script" in kinds:
        kinds.add("tls")
    return kinds


def _text_checks(rel: str, data: bytes, kinds: set[str], c_files: list[tuple[str, CFile]]) -> list[Finding]:
    text = data.decode("utf-8", errors="replace")
    out: list[Finding] = []
    if "c" in kinds:
        cfile = CFile.parse(text)
        c_files.append((rel, cfile))
        out.extend(c_crypto.check_c_crypto(rel, cfile))
    if "passwords" in kinds:
        out.extend(passwords.check_password_file(rel, data))
    if "sshd" in kinds:
        out.extend(surface.check_sshd(rel, text))
    if "uci" in kinds:
        out.extend(surface.check_uci(rel, text))
    if "wifi" in kinds:
        out.extend(surface.check_wifi(rel, text))
    if "service" in kinds:
        out.extend(surface.check_service_file(rel, text))
    if "script" in kinds:
        out.extend(credentials.check_script_credentials(rel, text))
    elif "config" in kinds:
        out.extend(credentials.check_config_credentials(rel, text))
    if "tls" in kinds:
        out.extend(tls_config.check_tls_config(rel, text))
    return out


def _key_findings(rel: str, data: bytes, *, text: bool, base: int = 0) -> list[Finding]:
    out = []
    for hit in keys.find_keys(data, base):
        rule = "keys.encrypted-private-key" if hit.encrypted else "keys.private-key"
        snippet = f"{hit.container}: {hit.kind} ({hit.length} bytes, not shown)"
        if text:
            line = data.count(b"\n", 0, hit.offset - base) + 1
            out.append(make(rule, rel, line=line, snippet=snippet, message=f"{hit.kind} private key"))
        else:
            out.append(
                make(rule, rel, byte_offset=hit.offset, byte_length=hit.length, snippet=snippet,
                     message=f"{hit.kind} private key")
            )  # fmt: skip
    return out


def _read(path: Path) -> tuple[bytes, bool]:
    with path.open("rb") as fh:
        data = fh.read(MAX_FILE_BYTES + 1)
    return data[:MAX_FILE_BYTES], len(data) > MAX_FILE_BYTES


def _walk(root: Path) -> list[tuple[Path, str]]:
    if root.is_file() and not root.is_symlink():
        return [(root, root.name)]
    out: list[tuple[Path, str]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(filenames):
            p = base / name
            if p.is_symlink() or not p.is_file():
                continue  # a link is never followed: it may point out of the root
            out.append((p, p.relative_to(root).as_posix()))
    return out


def run_tree(
    root: Path,
    *,
    vuln_db: VulnDB | None = None,
    inventory: list[Component] | None = None,
    today: date | None = None,
) -> list[Finding]:
    """Findings of the own checks over the tree ``root`` (paths relative to ``root``)."""
    found: list[Finding] = []
    c_files: list[tuple[str, CFile]] = []
    comps: list[Component] = []
    files = _walk(root)
    if len(files) > MAX_FILES:
        found.append(
            make("checks.not-inspected", ".", message=f"{len(files) - MAX_FILES} files past the limit of {MAX_FILES}")
        )
        files = files[:MAX_FILES]
    for path, rel in files:
        try:
            data, truncated = _read(path)
        except OSError as exc:
            found.append(make("checks.not-inspected", rel, message=f"unreadable: {exc.strerror}"))
            continue
        if truncated:
            found.append(make("checks.not-inspected", rel, message=f"only the first {MAX_FILE_BYTES} bytes inspected"))
        if data.startswith(elf.ELF_MAGIC):
            found.extend(elf.check_elf(rel, data))
            found.extend(_key_findings(rel, data, text=False))
            comps.extend(components.find_components(rel, data))
            continue
        is_text = _is_text(data[:_TEXT_PROBE])
        if is_text:
            found.extend(_text_checks(rel, data, _kind(rel, data), c_files))
        found.extend(_key_findings(rel, data, text=is_text))
        if not is_text or rel.endswith("/status"):  # in text, a version is a mention; opkg/dpkg status is not
            comps.extend(components.find_components(rel, data))
    found.extend(c_credentials.check_c_credentials(c_files))
    found.extend(c_injection.check_c_injection(c_files))
    found.extend(components.findings_for(comps, vuln_db, today or datetime.now(UTC).date()))
    if inventory is not None:
        inventory.extend(comps)
    return found


def run_blob(
    path: Path,
    *,
    vuln_db: VulnDB | None = None,
    inventory: list[Component] | None = None,
    today: date | None = None,
    rel: str | None = None,
) -> list[Finding]:
    """Findings of the own checks over the raw blob ``path`` (locations with byte offsets).

    Carves private keys, password-database lines and component banners, window by window (each
    window overlaps the next so nothing on a boundary is missed), up to :data:`MAX_BLOB_BYTES`.
    """
    name = rel if rel is not None else path.name
    found: list[Finding] = []
    comps: dict[tuple[str, str], Component] = {}
    seen_keys: set[int] = set()
    seen_lines: set[int] = set()
    with path.open("rb") as fh:
        offset = 0
        carry = b""
        while offset < MAX_BLOB_BYTES:
            chunk = fh.read(BLOB_WINDOW)
            if not chunk:
                break
            window = carry + chunk
            base = offset - len(carry)
            for f in _key_findings(name, window, text=False, base=base):
                if f.location.byte_offset not in seen_keys:
                    seen_keys.add(f.location.byte_offset or 0)
                    found.append(f)
            for m in _SHADOW_FIELD.finditer(window):
                user = _USER_BEFORE.search(window[max(0, m.start() - 33) : m.start()])
                if user is None:
                    continue
                start = m.start() - len(user.group(1))
                at = base + start
                if at in seen_lines:
                    continue
                seen_lines.add(at)
                end = window.find(b"\n", m.start())
                line = window[start : end if end != -1 else m.end()]
                for f in passwords.check_password_file(f"{name}#shadow", line):
                    f.location = type(f.location)(path=name, byte_offset=at, byte_length=len(line))
                    found.append(f)
            for c in components.find_components(name, window):
                key = (c.name, c.version)
                if key not in comps:
                    comps[key] = Component(c.name, c.version, name, base + c.offset, c.evidence)
            offset += len(chunk)
            carry = window[-BLOB_OVERLAP:]
    blob_comps = list(comps.values())
    found.extend(components.findings_for(blob_comps, vuln_db, today or datetime.now(UTC).date()))
    if inventory is not None:
        inventory.extend(blob_comps)
    return found
