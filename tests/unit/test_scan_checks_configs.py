# ruff: noqa: E501  (table-driven cases: one case per line)
"""Configuration checks: plaintext credentials, attack surface, Wi-Fi, SSH, TLS settings (table-driven)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trustroot.scan.checks import run_tree

# (path, content, expected rule short names; empty means nothing at medium or above)
CASES: list[tuple[str, str, set[str]]] = [
    ("etc/config/network", "config interface 'wan'\n\toption proto 'pppoe'\n\toption password 'isp-pass'\n",
     {"credentials.config"}),
    ("etc/config/network", "config interface 'wan'\n\toption proto 'dhcp'\n", set()),
    ("etc/nvram.txt", "wl0_wpa_psk=12345678\nhttp_passwd=admin\n", {"credentials.config"}),
    ("etc/cloud.yaml", "password: \"{{ vault_pw }}\"\npassword_file: /run/pw\n", set()),
    ("etc/agent.json", '{"token": "eyJhbGciOi.payload.sig"}', {"credentials.config"}),
    ("etc/agent.json", '{"token": "$TOKEN", "token_path": "/data/tok"}', set()),
    ("etc/init.d/S50telnet", "#!/bin/sh\n/usr/sbin/telnetd -p 23\n", {"surface.telnet"}),
    ("etc/init.d/S50x", "#!/bin/sh\nkillall telnetd\n[ -x /usr/sbin/telnetd ] && echo telnetd present\n", set()),
    ("etc/init.d/S60ftp", "#!/bin/sh\nvsftpd /etc/vsftpd.conf &\n", {"surface.ftp"}),
    ("etc/init.d/shell", "#!/bin/sh\nnc -l -p 4444 -e /bin/sh &\n", {"surface.debug-shell"}),
    ("etc/rc.local", "/usr/bin/shellback &\nexit 0\n", {"surface.debug-shell"}),
    ("lib/systemd/system/debug.service", "[Service]\nExecStart=/sbin/agetty --autologin root ttyS0\n",
     {"surface.debug-shell"}),
    ("lib/systemd/system/tftp.service", "[Service]\nExecStart=/usr/sbin/in.tftpd -L /srv\n", {"surface.ftp"}),
    ("etc/inittab", "ttyS0::respawn:/sbin/getty -L ttyS0 115200\n", set()),
    ("etc/inittab", "::askfirst:-/bin/ash\n", {"surface.debug-shell"}),
    ("etc/config/upnpd", "config upnpd 'config'\n\toption enabled '1'\n", {"surface.upnp"}),
    ("etc/config/upnpd", "config upnpd 'config'\n\toption enabled '0'\n", set()),
    ("etc/config/wireless", "config wifi-iface\n\toption mode 'ap'\n\toption encryption 'wep-open'\n", {"surface.weak-wifi"}),
    ("etc/config/wireless", "config wifi-iface\n\toption mode 'ap'\n\toption encryption 'sae-mixed'\n", set()),
    ("etc/wpa_supplicant.conf", 'network={\n\tssid="cafe"\n\tkey_mgmt=NONE\n}\n', {"surface.open-wifi"}),
    ("etc/hostapd.conf", "interface=wlan0\nssid=x\nwpa=1\nwpa_pairwise=TKIP\nwpa_psk_file=/etc/p\n", {"surface.weak-wifi"}),
    ("etc/ssh/sshd_config", "PasswordAuthentication yes\n", {"surface.ssh-password-login"}),
    ("etc/ssh/sshd_config", "#PermitRootLogin yes\nPermitRootLogin prohibit-password\n", set()),
    ("etc/default/dropbear", "DROPBEAR_ARGS=\"-B -p 22\"\n/usr/sbin/dropbear -B\n", {"surface.ssh-password-login"}),
    ("etc/nginx/conf.d/tls.conf", "ssl_protocols TLSv1.2 TLSv1.3;\nssl_ciphers EECDH+AESGCM:!aNULL;\n", set()),
    ("etc/nginx/conf.d/tls.conf", "ssl_protocols SSLv3 TLSv1.2;\n", {"tls.old-protocol"}),
    ("etc/stunnel/stunnel.conf", "sslVersion = TLSv1\nciphers = ADH-AES256-SHA\n", {"tls.old-protocol", "tls.weak-cipher"}),
    ("etc/lighttpd.conf", 'ssl.cipher-list = "DES-CBC3-SHA:HIGH"\n', {"tls.weak-cipher"}),
    ("etc/mosquitto.conf", "listener 1883 0.0.0.0\n", {"tls.no-tls"}),
    ("etc/mosquitto.conf", "listener 1883\nbind_address 127.0.0.1\n", set()),
    ("etc/apache2/ssl.conf", "SSLProtocol all -SSLv3\n", {"tls.old-protocol"}),
    ("etc/apache2/ssl.conf", "SSLProtocol -all +TLSv1.2 +TLSv1.3\n", set()),
    ("usr/sbin/setup.sh", "#!/bin/sh\nsshpass -p 'r00tme' ssh root@10.0.0.1\nwget --password=dl123 http://x\n",
     {"credentials.script"}),
    ("usr/sbin/setup.sh", "#!/bin/sh\nPW=$(cat /data/pw)\nsshpass -f /data/pw ssh root@10.0.0.1\n", set()),
]  # fmt: skip


@pytest.mark.parametrize(("path", "content", "want"), CASES, ids=[f"{i}-{c[0]}" for i, c in enumerate(CASES)])
def test_config_case(tmp_path: Path, path: str, content: str, want: set[str]) -> None:
    target = tmp_path / path
    target.parent.mkdir(parents=True)
    target.write_text(content)
    findings = [f for f in run_tree(tmp_path) if f.severity in ("medium", "high")]
    assert {f.rule_id.removeprefix("trustroot.") for f in findings} == want
    for f in findings:
        assert f.location.path == path and f.location.line >= 1
        assert f.cwe and f.provisions and f.guideline


def test_secrets_never_printed(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "app.ini").write_text("[x]\npassword = Sup3r-S3cret\nwpa_passphrase=Sup3r-S3cret\n")
    findings = run_tree(tmp_path)
    assert len(findings) == 2
    for f in findings:
        assert "Sup3r-S3cret" not in f.snippet + f.message
        assert "<masked:12>" in f.snippet
