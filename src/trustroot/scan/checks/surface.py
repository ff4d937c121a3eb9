"""Exposed attack surface of a firmware root file system (guideline 6; 5.6-1, 5.6-4, 5.5-5).

Services started at boot (init scripts, ``inittab``, ``inetd``, systemd units, procd): telnet, FTP
and TFTP, UPnP, and debug shells (a shell on a console or a socket without a login); SSH servers
that allow root or password logins (OpenSSH ``sshd_config``, Dropbear options and UCI); Wi-Fi that
is open or uses WEP/WPA1 (hostapd, wpa_supplicant, OpenWrt UCI ``wireless``).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Final

from trustroot.scan.checks._common import make, snippet_line
from trustroot.scan.findings import Finding

__all__ = ["check_service_file", "check_sshd", "check_uci", "check_wifi", "is_service_file"]

_NOT_A_START: Final = re.compile(
    r"\b(?:killall|pkill|kill|pidof|pgrep|grep|echo|printf|rm|stop|disable|which|command\s+-v|logger)\b|"
    r"^\s*(?:\[|test\b|if\b|elif\b|case\b)"
)
_SERVICES: Final = (
    ("surface.debug-shell", re.compile(r"\btelnetd\b[^\n]*\s-l\s*/bin/(?:ba|a|z)?sh\b"), "telnetd gives a shell"),
    (
        "surface.debug-shell",
        re.compile(r"\b(?:nc|netcat|ncat|busybox\s+nc)\b[^\n]*\s-[a-z]*e\s*/bin/(?:ba|a)?sh\b"),
        "netcat serves a shell",
    ),
    ("surface.debug-shell", re.compile(r"\bsocat\b[^\n]*exec:/bin/(?:ba|a)?sh", re.I), "socat serves a shell"),
    (
        "surface.debug-shell",
        re.compile(r"\b(?:a?getty|login)\b[^\n]*(?:-f\s+root|--autologin\s+root|-n\s+-l\s+/bin/)"),
        "console logs in as root without a password",
    ),
    (
        "surface.debug-shell",
        re.compile(r"(?:^|[\s;&|/'\"])\w*(?:backdoor|bindshell|shellback|revshell|reverse_shell)\w*\b", re.I),
        "backdoor shell started at boot",
    ),
    ("surface.telnet", re.compile(r"(?:^|[\s;&|=/'\"])(?:busybox\s+)?u?telnetd\b"), "telnet server started"),
    (
        "surface.ftp",
        re.compile(r"(?:^|[\s;&|=/'\"])(?:vsftpd|proftpd|pure-ftpd|bftpd|uftpd|ftpd|in\.ftpd)\b"),
        "FTP server started",
    ),
    (
        "surface.ftp",
        re.compile(r"(?:^|[\s;&|=/'\"])(?:in\.)?(?:tftpd|atftpd|tftpd-hpa|opentftpd)\b"),
        "TFTP server started",
    ),
    (
        "surface.upnp",
        re.compile(r"(?:^|[\s;&|=/'\"])(?:miniupnpd|upnpd|minissdpd|ushare|linux-igd|upnp_igd)\b"),
        "UPnP service started",
    ),
)
_INITTAB_SHELL: Final = re.compile(r"^[^#:]*:[^:]*:(?:respawn|askfirst|once|wait|sysinit):-?/bin/(?:ba|a|z)?sh\b")
_SERVICE_PATH: Final = re.compile(
    r"(?:^|/)etc/(?:init\.d|rc\.d|rc\d\.d|xinetd\.d|rcS\.d|hotplug\.d|uci-defaults)/|(?:^|/)(?:inittab|inetd\.conf|"
    r"rc\.local|rcS|rc\.sysinit|rc\.common|profile)$|\.(?:service|socket)$|(?:^|/)etc/default/[^/]+$"
)


def is_service_file(rel: str) -> bool:
    """Whether ``rel`` is a file that starts services at boot."""
    return bool(_SERVICE_PATH.search(rel))


def check_service_file(rel: str, text: str) -> list[Finding]:
    """Services and debug shells started by one init script, inittab, inetd.conf or unit file."""
    found: list[Finding] = []
    is_inittab = PurePosixPath(rel).name == "inittab"
    reported: set[str] = set()
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if is_inittab and _INITTAB_SHELL.match(stripped):
            found.append(
                make("surface.debug-shell", rel, line=lineno, snippet=snippet_line(line), message="shell without login")
            )
            continue
        body = stripped.split("=", 1)[1] if stripped.startswith(("ExecStart", "ExecStartPre")) else stripped
        if _NOT_A_START.search(body):
            continue
        for rule, pattern, message in _SERVICES:
            if pattern.search(body):
                if rule not in reported:  # one finding per service kind and file
                    reported.add(rule)
                    found.append(make(rule, rel, line=lineno, snippet=snippet_line(line), message=message))
                break
        if re.search(r"\bdropbear\b[^\n]*\s-[a-zA-Z]*B", body):
            found.append(
                make(
                    "surface.ssh-password-login",
                    rel,
                    line=lineno,
                    snippet=snippet_line(line),
                    message="dropbear -B allows logins with an empty password",
                )
            )
    return found


_SSHD: Final = (
    (re.compile(r"^\s*PermitRootLogin\s+yes\b", re.I), "surface.ssh-root-login", "root may log in with a password"),
    (re.compile(r"^\s*PermitEmptyPasswords\s+yes\b", re.I), "surface.ssh-password-login", "empty passwords allowed"),
    (re.compile(r"^\s*PasswordAuthentication\s+yes\b", re.I), "surface.ssh-password-login", "password logins allowed"),
)


def check_sshd(rel: str, text: str) -> list[Finding]:
    """Root and password logins allowed by an OpenSSH ``sshd_config``."""
    found: list[Finding] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for pattern, rule, message in _SSHD:
            if pattern.match(line):
                found.append(make(rule, rel, line=lineno, snippet=snippet_line(line), message=message))
    return found


_UCI_SECTION: Final = re.compile(r"^\s*config\s+['\"]?(\w[\w-]*)['\"]?(?:\s+['\"]?([\w-]+)['\"]?)?\s*$")
_UCI_OPTION: Final = re.compile(r"^\s*option\s+['\"]?([\w-]+)['\"]?\s+['\"]?([^'\"]*)['\"]?\s*$")


def _uci_sections(text: str) -> list[tuple[str, int, dict[str, tuple[str, int]]]]:
    sections: list[tuple[str, int, dict[str, tuple[str, int]]]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _UCI_SECTION.match(line)
        if m:
            sections.append((m.group(1), lineno, {}))
            continue
        o = _UCI_OPTION.match(line)
        if o and sections:
            sections[-1][2][o.group(1)] = (o.group(2), lineno)
    return sections


def check_uci(rel: str, text: str) -> list[Finding]:
    """OpenWrt UCI files: open or weak Wi-Fi, Dropbear password/root logins, UPnP, telnet."""
    found: list[Finding] = []
    lines = text.splitlines()
    for kind, at, opts in _uci_sections(text):
        if kind == "wifi-iface":
            if opts.get("disabled", ("0", 0))[0] == "1":
                continue
            enc, line = opts.get("encryption", ("none", at))
            mode = opts.get("mode", ("ap", 0))[0]
            if enc.lower() in ("none", "") or (enc.lower().startswith("owe") is False and enc.lower() == "open"):
                what = "open Wi-Fi access point" if mode == "ap" else "joins an open Wi-Fi network"
                found.append(
                    make("surface.open-wifi", rel, line=line, snippet=snippet_line(lines[line - 1]), message=what)
                )
            elif enc.lower().startswith("wep") or enc.lower() in (
                "psk",
                "psk+tkip",
                "psk-mixed",
                "psk-mixed+tkip",
                "wpa",
            ):
                found.append(
                    make(
                        "surface.weak-wifi",
                        rel,
                        line=line,
                        snippet=snippet_line(lines[line - 1]),
                        message=f"Wi-Fi encryption '{enc}' is broken or allows WPA1/TKIP",
                    )
                )
        elif kind == "dropbear":
            for name, rule, msg in (
                ("RootPasswordAuth", "surface.ssh-root-login", "root may log in with a password"),
                ("PasswordAuth", "surface.ssh-password-login", "password logins allowed"),
            ):
                value, line = opts.get(name, ("", 0))
                if value.lower() in ("on", "1", "yes", "true"):
                    found.append(make(rule, rel, line=line, snippet=snippet_line(lines[line - 1]), message=msg))
        elif kind == "upnpd":
            value, line = opts.get("enabled", opts.get("enable_upnp", ("", 0)))
            if value == "1":
                found.append(
                    make("surface.upnp", rel, line=line, snippet=snippet_line(lines[line - 1]), message="UPnP enabled")
                )
    return found


def check_wifi(rel: str, text: str) -> list[Finding]:
    """hostapd.conf (access point) and wpa_supplicant.conf (client) Wi-Fi security."""
    found: list[Finding] = []
    lines = text.splitlines()
    conf: dict[str, tuple[str, int]] = {}
    for lineno, raw in enumerate(lines, 1):
        if "=" in raw and not raw.lstrip().startswith("#"):
            k, _, v = raw.strip().partition("=")
            conf.setdefault(k.strip(), (v.strip(), lineno))
    if ("ssid" in conf and "network" not in text and "interface" in conf) or PurePosixPath(rel).name.startswith(
        "hostapd"
    ):
        if "ssid" not in conf:
            return found
        wpa, line = conf.get("wpa", ("0", conf["ssid"][1]))
        if any(k.startswith("wep_key") for k in conf):
            found.append(
                make("surface.weak-wifi", rel, line=line, snippet=snippet_line(lines[line - 1]), message="WEP")
            )
        elif wpa in ("0", ""):
            found.append(
                make(
                    "surface.open-wifi",
                    rel,
                    line=line,
                    snippet=snippet_line(lines[line - 1]),
                    message="hostapd access point without WPA",
                )
            )
        elif wpa in ("1", "3") or conf.get("wpa_pairwise", ("CCMP", 0))[0] == "TKIP":
            found.append(
                make(
                    "surface.weak-wifi",
                    rel,
                    line=line,
                    snippet=snippet_line(lines[line - 1]),
                    message="WPA1 or TKIP allowed",
                )
            )
        return found
    for net in re.finditer(r"network\s*=\s*\{([^}]*)\}", text):
        block = net.group(1)
        line = text.count("\n", 0, net.start()) + 1
        if re.search(r"^\s*key_mgmt\s*=\s*NONE\s*$", block, re.M) and "wep_key" not in block:
            found.append(
                make(
                    "surface.open-wifi",
                    rel,
                    line=line,
                    snippet=snippet_line(lines[line - 1]),
                    message="wpa_supplicant joins an open network",
                )
            )
        elif "wep_key" in block:
            found.append(
                make("surface.weak-wifi", rel, line=line, snippet=snippet_line(lines[line - 1]), message="WEP")
            )
    return found
