# ruff: noqa: E501  (table-driven cases: one case per line)
"""Firmware corpora for the scanning gate's tests: a root file system with planted problems and its
clean twin, built from scratch (keys generated, hashes computed, ELF files compiled with gcc), and
their packings (tar.gz, cpio, raw blob). Nothing here is a committed binary.

``PLANTED`` lists every planted problem as (rule id, one CWE it must carry, path); the tests assert
that each is found with that CWE, and that the clean twin has nothing of medium severity or above.
"""

from __future__ import annotations

import io
import random
import shutil
import subprocess
import tarfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from trustroot.scan.checks._crypt import pure_crypt

STRONG = "Zq8#vLp2!mW4@rT9-unlisted"  # not on any list: the clean twin's passwords

PLANTED: list[tuple[str, int, str]] = [
    ("trustroot.passwd.default-password", 798, "etc/shadow"),
    ("trustroot.passwd.weak-hash", 916, "etc/shadow"),
    ("trustroot.passwd.empty-password", 258, "etc/shadow"),
    ("trustroot.passwd.weak-hash", 916, "etc/shadow-"),
    ("trustroot.passwd.default-password", 798, "etc/shadow-"),
    ("trustroot.passwd.extra-uid0", 250, "etc/passwd"),
    ("trustroot.passwd.hash-in-passwd", 256, "etc/passwd"),
    ("trustroot.passwd.weak-hash", 916, "etc/passwd"),
    ("trustroot.passwd.default-password", 798, "etc/passwd"),
    ("trustroot.surface.ssh-password-login", 521, "etc/config/dropbear"),
    ("trustroot.passwd.weak-hash", 916, "www/.htpasswd"),
    ("trustroot.passwd.plaintext", 256, "www/.htpasswd"),
    ("trustroot.passwd.default-password", 798, "www/.htpasswd"),
    ("trustroot.surface.open-wifi", 311, "etc/config/wireless"),
    ("trustroot.credentials.config", 798, "etc/config/wireless"),
    ("trustroot.surface.ssh-root-login", 250, "etc/config/dropbear"),
    ("trustroot.surface.ssh-root-login", 250, "etc/ssh/sshd_config"),
    ("trustroot.surface.ssh-password-login", 521, "etc/ssh/sshd_config"),
    ("trustroot.surface.debug-shell", 306, "etc/init.d/debug"),
    ("trustroot.surface.telnet", 319, "etc/init.d/telnet"),
    ("trustroot.surface.debug-shell", 306, "etc/inittab"),
    ("trustroot.surface.ftp", 319, "etc/inetd.conf"),
    ("trustroot.surface.upnp", 306, "etc/init.d/miniupnpd"),
    ("trustroot.surface.open-wifi", 311, "etc/hostapd.conf"),
    ("trustroot.tls.old-protocol", 326, "etc/nginx/nginx.conf"),
    ("trustroot.tls.weak-cipher", 327, "etc/nginx/nginx.conf"),
    ("trustroot.tls.no-tls", 319, "etc/mosquitto/mosquitto.conf"),
    ("trustroot.tls.old-protocol", 326, "etc/mosquitto/mosquitto.conf"),
    ("trustroot.tls.old-protocol", 326, "etc/ssl/openssl.cnf"),
    ("trustroot.tls.weak-cipher", 327, "etc/ssl/openssl.cnf"),
    ("trustroot.tls.old-protocol", 326, "etc/lighttpd/lighttpd.conf"),
    ("trustroot.credentials.config", 798, "etc/device.json"),
    ("trustroot.credentials.config", 798, "etc/nvram.default"),
    ("trustroot.credentials.config", 798, "etc/app.yaml"),
    ("trustroot.credentials.config", 798, "etc/app.ini"),
    ("trustroot.credentials.script", 798, "usr/bin/provision.sh"),
    ("trustroot.keys.private-key", 321, "etc/ssl/private/device.key"),
    ("trustroot.keys.private-key", 321, "etc/ssh/ssh_host_ed25519_key"),
    ("trustroot.keys.private-key", 321, "usr/bin/cloudd"),
    ("trustroot.elf.no-nx", 693, "usr/bin/legacyd"),
    ("trustroot.elf.no-pie", 693, "usr/bin/legacyd"),
    ("trustroot.elf.no-relro", 693, "usr/bin/legacyd"),
    ("trustroot.elf.no-canary", 693, "usr/bin/legacyd"),
    ("trustroot.component.end-of-life", 1104, "usr/lib/libcrypto.so.1.0.0"),
    ("trustroot.component.vulnerable", 1395, "usr/bin/legacyd"),
    ("trustroot.credentials.c-password", 259, "src/mqtt_client.c"),
    ("trustroot.credentials.c-password", 259, "src/http_client.c"),
    ("trustroot.credentials.c-key", 321, "src/crypto.c"),
    ("trustroot.crypto.verify-none", 295, "src/mqtt_client.c"),
    ("trustroot.crypto.verify-none", 295, "src/mbed.c"),
    ("trustroot.crypto.old-protocol-method", 327, "src/mqtt_client.c"),
    ("trustroot.crypto.weak-hash", 328, "src/crypto.c"),
    ("trustroot.crypto.broken-cipher", 327, "src/crypto.c"),
    ("trustroot.crypto.weak-prng", 338, "src/crypto.c"),
]

#: What the raw blob of the planted tree must yield (a blob is carved, not unpacked).
PLANTED_IN_BLOB: list[tuple[str, int]] = [
    ("trustroot.passwd.default-password", 798),
    ("trustroot.passwd.empty-password", 258),
    ("trustroot.passwd.weak-hash", 916),
    ("trustroot.keys.private-key", 321),
    ("trustroot.component.end-of-life", 1104),
    ("trustroot.component.vulnerable", 1395),
]

#: A small OSV data set: BusyBox before 1.30 and dropbear before 2020.79 are vulnerable.
OSV_RECORDS = [
    {
        "id": "TEST-BUSYBOX-1",
        "aliases": ["CVE-2018-1000517"],
        "summary": "BusyBox wget heap overflow",
        "affected": [
            {"package": {"ecosystem": "Generic", "name": "busybox"},
             "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.30.0"}]}]}
        ],
    },
    {
        "id": "TEST-DROPBEAR-1",
        "summary": "dropbear scp injection",
        "affected": [
            {"package": {"ecosystem": "Generic", "name": "dropbear"},
             "ranges": [{"type": "SEMVER", "events": [{"introduced": "2012.55"}, {"fixed": "2020.79"}]}]}
        ],
    },
]  # fmt: skip

_C_MQTT = r"""
#include <mosquitto.h>
#include <openssl/ssl.h>
#define MQTT_USER "device"
#define MQTT_PASS "Hunter2-mqtt"

int connect_cloud(struct mosquitto *m, SSL_CTX **out)
{
    char pw[64];
    SSL_CTX *ctx = SSL_CTX_new(TLSv1_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    strcpy(pw, MQTT_PASS);
    mosquitto_username_pw_set(m, MQTT_USER, pw);
    *out = ctx;
    return mosquitto_connect(m, "cloud.example", 8883, 60);
}
"""
_C_MQTT_CLEAN = r"""
#include <mosquitto.h>
#include <openssl/ssl.h>
int read_secret(const char *name, char *buf, size_t len);

int connect_cloud(struct mosquitto *m, SSL_CTX **out)
{
    char pw[64];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (read_secret("mqtt", pw, sizeof pw) != 0) return -1;
    mosquitto_username_pw_set(m, "device", pw);
    *out = ctx;
    return mosquitto_connect(m, "cloud.example", 8883, 60);
}
"""
_C_HTTP = r"""
#include <curl/curl.h>
void upload(CURL *h)
{
    curl_easy_setopt(h, CURLOPT_USERPWD, "admin:admin");
    curl_easy_perform(h);
}
"""
_C_HTTP_CLEAN = r"""
#include <curl/curl.h>
void upload(CURL *h, const char *token_header)
{
    struct curl_slist *l = curl_slist_append(NULL, token_header);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, l);
    curl_easy_perform(h);
}
"""
_C_CRYPTO = r"""
#include <openssl/aes.h>
#include <openssl/md5.h>
#include <openssl/evp.h>
static const unsigned char fw_key[] = "0123456789abcdef";

void encrypt_block(const unsigned char *in, unsigned char *out)
{
    AES_KEY k;
    AES_set_encrypt_key(fw_key, 128, &k);
    AES_encrypt(in, out, &k);
}

void fingerprint(const unsigned char *d, size_t n, unsigned char *md)
{
    MD5(d, n, md);
}

const EVP_CIPHER *legacy(void) { return EVP_des_ede3_cbc(); }

void make_session_key(unsigned char *key, int n)
{
    srand(time(NULL));
    for (int i = 0; i < n; i++) key[i] = rand() & 0xff;
}
"""
_C_CRYPTO_CLEAN = r"""
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/random.h>
int load_device_key(unsigned char *key, size_t n);

int encrypt_block(const unsigned char *in, int n, unsigned char *out, unsigned char *iv)
{
    unsigned char key[32];
    int len = 0;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (load_device_key(key, sizeof key) != 0) return -1;
    EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, iv);
    return EVP_EncryptUpdate(c, out, &len, in, n);
}

void fingerprint(const unsigned char *d, size_t n, unsigned char *md)
{
    EVP_Digest(d, n, md, NULL, EVP_sha256(), NULL);
}

void make_session_key(unsigned char *key, int n)
{
    getrandom(key, n, 0);
}
"""
_C_MBED = r"""
#include <mbedtls/ssl.h>
void setup(mbedtls_ssl_config *conf)
{
    mbedtls_ssl_conf_authmode(conf, MBEDTLS_SSL_VERIFY_NONE);
}
"""
_C_MBED_CLEAN = r"""
#include <mbedtls/ssl.h>
void setup(mbedtls_ssl_config *conf)
{
    mbedtls_ssl_conf_authmode(conf, MBEDTLS_SSL_VERIFY_REQUIRED);
}
"""
_ELF_SRC = r"""
#include <stdio.h>
#include <string.h>
static const char banner[] = "BusyBox v1.19.4 (2012-01-01 00:00:00 UTC) multi-call binary";
int main(int argc, char **argv)
{
    char buf[64];
    strcpy(buf, argc > 1 ? argv[1] : banner);
    puts(buf);
    return 0;
}
"""


def _write(root: Path, rel: str, content: str | bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)


def _gcc(src: str, out: Path, flags: list[str]) -> None:
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RuntimeError("gcc is needed to build the ELF corpus (scripts/debian-packages.txt)")
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([gcc, "-x", "c", "-", "-o", str(out), *flags], input=src.encode(), check=True)


def _binary_with(payload: bytes, seed: int) -> bytes:
    rnd = random.Random(seed)
    return rnd.randbytes(4096) + payload + rnd.randbytes(4096)


def build_planted(root: Path) -> Path:
    """A root file system with every problem of :data:`PLANTED`."""
    md5_admin = pure_crypt("admin", "$1$Xa9bQ2zR")
    sha_default = pure_crypt("xc3511", "$6$p1Q9zLm2w8Rt")
    des_1234 = "abOV.DfJmdnYw"  # DES crypt of "admin" with salt "ab" (the scheme alone is weak)
    _write(root, "etc/shadow", f"root:{md5_admin}:19000:0:99999:7:::\nguest::19000:0:99999:7:::\n"
           f"support:{sha_default}:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n")  # fmt: skip
    _write(root, "etc/shadow-", f"root:{des_1234}:18000:0:99999:7:::\n")
    _write(root, "etc/passwd", "root:x:0:0:root:/root:/bin/ash\nbackdoor:x:0:0::/root:/bin/sh\n"
           f"legacy:{des_1234}:1000:1000::/home/legacy:/bin/sh\nnobody:*:65534:65534::/:/bin/false\n")  # fmt: skip
    _write(root, "www/.htpasswd", f"admin:password\nuser:{pure_crypt('123456', '$apr1$kq8Zw3Lp')}\n")
    _write(root, "etc/config/wireless",
           "config wifi-device 'radio0'\n\toption type 'mac80211'\n\n"
           "config wifi-iface 'guest'\n\toption device 'radio0'\n\toption mode 'ap'\n\toption ssid 'Setup'\n"
           "\toption encryption 'none'\n\n"
           "config wifi-iface 'home'\n\toption device 'radio0'\n\toption mode 'ap'\n\toption ssid 'Home'\n"
           "\toption encryption 'psk2'\n\toption key 'FactoryWifi2024'\n")  # fmt: skip
    _write(root, "etc/config/dropbear", "config dropbear\n\toption PasswordAuth 'on'\n\toption RootPasswordAuth 'on'\n"
           "\toption Port '22'\n")  # fmt: skip
    _write(root, "etc/ssh/sshd_config", "Port 22\nPermitRootLogin yes\nPermitEmptyPasswords yes\n")
    _write(root, "etc/init.d/debug", "#!/bin/sh /etc/rc.common\nstart() {\n\t/usr/sbin/telnetd -p 2323 -l /bin/sh\n}\n")
    _write(root, "etc/init.d/telnet", "#!/bin/sh\nstart() {\n\tbusybox telnetd\n}\n")
    _write(root, "etc/init.d/miniupnpd", "#!/bin/sh\n/usr/sbin/miniupnpd -f /etc/miniupnpd.conf\n")
    _write(root, "etc/inittab", "::sysinit:/etc/init.d/rcS\nttyS0::respawn:/bin/sh\n")
    _write(root, "etc/inetd.conf", "tftp dgram udp wait root /usr/sbin/tftpd tftpd -s /tftpboot\n")
    _write(root, "etc/hostapd.conf", "interface=wlan0\nssid=SmartPlug-Setup\nchannel=6\n")
    _write(root, "etc/nginx/nginx.conf", "server {\n  listen 443 ssl;\n  ssl_protocols TLSv1 TLSv1.1 TLSv1.2;\n"
           "  ssl_ciphers 'RC4-SHA:HIGH:!aNULL';\n}\n")  # fmt: skip
    _write(root, "etc/mosquitto/mosquitto.conf", "listener 1883\nallow_anonymous true\n\nlistener 8883\n"
           "certfile /etc/mosquitto/server.crt\nkeyfile /etc/mosquitto/server.key\ntls_version tlsv1\n")  # fmt: skip
    _write(
        root, "etc/ssl/openssl.cnf", "[system_default_sect]\nMinProtocol = TLSv1\nCipherString = DEFAULT@SECLEVEL=0\n"
    )
    _write(root, "etc/lighttpd/lighttpd.conf", 'server.port = 443\nssl.engine = "enable"\nssl.use-sslv3 = "enable"\n')
    _write(
        root,
        "etc/device.json",
        '{\n  "cloud": {\n    "host": "mqtt.example",\n    "mqtt_password": "k9!Qw-7zP"\n  }\n}\n',
    )
    _write(root, "etc/nvram.default", "lan_ipaddr=192.168.1.1\nhttp_username=admin\nhttp_passwd=admin\n")
    _write(
        root, "etc/app.yaml", 'service:\n  url: https://api.example\n  api_key: "sk_live_4eC39HqLyjWDarjtT1zdp7dc"\n'
    )
    _write(root, "etc/app.ini", "[database]\nuser = app\npassword = hunter2\n")
    _write(root, "usr/bin/provision.sh", "#!/bin/sh\necho \"root:toor\" | chpasswd\n"
           "mosquitto_pub -h cloud -u dev -P s3cr3t-pub -t boot -m up\n")  # fmt: skip
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write(
        root,
        "etc/ssl/private/device.key",
        rsa_key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.TraditionalOpenSSL, ser.NoEncryption()),
    )
    ed = ed25519.Ed25519PrivateKey.generate()
    _write(
        root,
        "etc/ssh/ssh_host_ed25519_key",
        ed.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.OpenSSH, ser.NoEncryption()),
    )
    ec_key = ec.generate_private_key(ec.SECP256R1())
    der = ec_key.private_bytes(ser.Encoding.DER, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    _write(root, "usr/bin/cloudd", _binary_with(der, 1))
    _write(root, "usr/lib/libcrypto.so.1.0.0", _binary_with(b"\0OpenSSL 1.0.2k  26 Jan 2017\0", 2))
    _gcc(_ELF_SRC, root / "usr/bin/legacyd",
         ["-O0", "-fno-stack-protector", "-no-pie", "-z", "execstack", "-Wl,-z,norelro"])  # fmt: skip
    _write(root, "src/mqtt_client.c", _C_MQTT)
    _write(root, "src/http_client.c", _C_HTTP)
    _write(root, "src/crypto.c", _C_CRYPTO)
    _write(root, "src/mbed.c", _C_MBED)
    return root


def build_clean(root: Path) -> Path:
    """The clean twin: the same services and files, configured safely."""
    strong = pure_crypt(STRONG, "$6$Wm3Rk8Qz1Lp4")
    _write(root, "etc/shadow", f"root:!:19000:0:99999:7:::\nadmin:{strong}:19000:0:99999:7:::\n"
           "guest:*:19000:0:99999:7:::\n")  # fmt: skip
    _write(root, "etc/passwd", "root:x:0:0:root:/root:/bin/ash\nadmin:x:1000:1000::/home/admin:/bin/ash\n"
           "nobody:*:65534:65534::/:/bin/false\n")  # fmt: skip
    _write(root, "www/.htpasswd", f"admin:{pure_crypt(STRONG, '$6$Hq2Lz9Xw4Rk1')}\n")
    _write(root, "etc/config/wireless",
           "config wifi-device 'radio0'\n\toption type 'mac80211'\n\n"
           "config wifi-iface 'home'\n\toption device 'radio0'\n\toption mode 'ap'\n\toption ssid 'Home'\n"
           "\toption encryption 'sae'\n\n"
           "config wifi-iface 'spare'\n\toption device 'radio0'\n\toption encryption 'none'\n\toption disabled '1'\n")  # fmt: skip
    _write(root, "etc/config/dropbear", "config dropbear\n\toption PasswordAuth 'off'\n\toption RootPasswordAuth 'off'\n"
           "\toption Port '22'\n")  # fmt: skip
    _write(
        root, "etc/ssh/sshd_config", "Port 22\nPermitRootLogin no\nPasswordAuthentication no\nPermitEmptyPasswords no\n"
    )
    _write(root, "etc/init.d/dropbear", "#!/bin/sh\nkillall telnetd 2>/dev/null\n/usr/sbin/dropbear -s -w -p 22\n")
    _write(root, "etc/inittab", "::sysinit:/etc/init.d/rcS\nttyS0::respawn:/sbin/getty -L ttyS0 115200 vt100\n")
    _write(root, "etc/hostapd.conf", "interface=wlan0\nssid=SmartPlug\nwpa=2\nwpa_key_mgmt=SAE\nwpa_pairwise=CCMP\n"
           "wpa_psk_file=/etc/hostapd.psk\n")  # fmt: skip
    _write(root, "etc/nginx/nginx.conf", "server {\n  listen 443 ssl;\n  ssl_protocols TLSv1.2 TLSv1.3;\n"
           "  ssl_ciphers 'HIGH:!aNULL:!MD5:!RC4:!3DES';\n}\n")  # fmt: skip
    _write(root, "etc/mosquitto/mosquitto.conf", "listener 1883 127.0.0.1\nallow_anonymous false\n\nlistener 8883\n"
           "certfile /etc/mosquitto/server.crt\nkeyfile /etc/mosquitto/server.key\ntls_version tlsv1.2\n"
           "password_file /etc/mosquitto/passwd\n")  # fmt: skip
    _write(
        root, "etc/ssl/openssl.cnf", "[system_default_sect]\nMinProtocol = TLSv1.2\nCipherString = DEFAULT@SECLEVEL=2\n"
    )
    _write(root, "etc/lighttpd/lighttpd.conf", 'server.port = 443\nssl.engine = "enable"\nssl.use-sslv3 = "disable"\n')
    _write(
        root,
        "etc/device.json",
        '{\n  "cloud": {\n    "host": "mqtt.example",\n    "mqtt_password_file": "/data/mqtt.pw"\n  }\n}\n',
    )
    _write(root, "etc/nvram.default", "lan_ipaddr=192.168.1.1\nhttp_username=admin\nhttp_passwd=\n")
    _write(root, "etc/app.yaml", "service:\n  url: https://api.example\n  api_key: ${API_KEY}\n")
    _write(root, "etc/app.ini", "[database]\nuser = app\npassword_file = /run/secrets/db\n")
    _write(root, "usr/bin/provision.sh", "#!/bin/sh\nPASS=$(cat /data/mqtt.pw)\n"
           "mosquitto_pub -h cloud -u dev -P \"$PASS\" -t boot -m up\n")  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    _write(
        root,
        "etc/ssl/certs/device-pub.pem",
        key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo),
    )
    _write(root, "usr/bin/cloudd", _binary_with(b"\0cloudd 2.1 (c) example\0", 3))
    _write(root, "usr/lib/libcrypto.so.3", _binary_with(b"\0OpenSSL 3.5.1 1 Jul 2025\0", 4))
    _gcc(_ELF_SRC.replace("v1.19.4", "v1.36.1"), root / "usr/bin/legacyd",
         ["-O2", "-fstack-protector-strong", "-fPIE", "-pie", "-Wl,-z,relro,-z,now", "-s"])  # fmt: skip
    _write(root, "src/mqtt_client.c", _C_MQTT_CLEAN)
    _write(root, "src/http_client.c", _C_HTTP_CLEAN)
    _write(root, "src/crypto.c", _C_CRYPTO_CLEAN)
    _write(root, "src/mbed.c", _C_MBED_CLEAN)
    return root


def pack_tar_gz(root: Path, out: Path) -> Path:
    """``root`` as a gzip-compressed tar (members relative to the root)."""
    with tarfile.open(out, "w:gz") as tar:
        for path in sorted(root.rglob("*")):
            tar.add(path, arcname=path.relative_to(root).as_posix(), recursive=False)
    return out


def pack_cpio(root: Path, out: Path) -> Path:
    """``root`` as a newc cpio archive, made by Debian's cpio."""
    names = "\n".join(p.relative_to(root).as_posix() for p in sorted(root.rglob("*"))) + "\n"
    with out.open("wb") as fh:
        subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root, input=names.encode(), stdout=fh, check=True)
    return out


def pack_blob(root: Path, out: Path) -> Path:
    """``root`` as a raw blob: every file's bytes, each padded to 4 KiB with 0xff like erased flash."""
    buf = io.BytesIO()
    buf.write(b"\x27\x05\x19\x56" + b"\xff" * 4092)  # a boot-loader-like header block
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        buf.write(data + b"\xff" * (-len(data) % 4096))
    out.write_bytes(buf.getvalue())
    return out
