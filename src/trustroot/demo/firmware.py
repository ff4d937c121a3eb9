"""Sample inputs of the demo: firmware payloads to sign, and a source tree and firmware tree to scan.

The payloads are deterministic bytes shaped like an application image (a vector table and code-like
filler); the trees are the application source and the root file system of a typical Linux-class
plug, each with a few classic mistakes planted, so that the scanning gate and the assessment have
something to report.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["sample_payload", "write_sample_rootfs", "write_sample_source"]

_PAYLOAD_BYTES = 48 * 1024


def sample_payload(version: str) -> bytes:
    """A deterministic application payload for ``version``."""
    seed = hashlib.sha256(f"acme-plug-firmware-{version}".encode()).digest()
    blocks = bytearray(b"\x00\x10\x00\x20" + b"\x01\x04\x00\x08" * 15)  # a Cortex-M-like vector table
    counter = 0
    while len(blocks) < _PAYLOAD_BYTES:
        blocks += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    marker = f"ACME-PLUG {version}".encode()
    blocks[64 : 64 + len(marker)] = marker
    return bytes(blocks[:_PAYLOAD_BYTES])


_FILES: dict[str, str] = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nadmin:x:0:0:admin:/home/admin:/bin/sh\n"
    "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n",
    # MD5-crypt of "admin" (a well-known default) for the second uid-0 account
    "etc/shadow": "root:*:19000:0:99999:7:::\nadmin:$1$acme$8G.yLQwMZ5sq/fz/GxYSm/:19000:0:99999:7:::\n"
    "daemon:*:19000:0:99999:7:::\n",
    "etc/inittab": "::sysinit:/etc/init.d/rcS\n::respawn:/usr/sbin/telnetd -l /bin/sh\n",
    "etc/config/wireless": (
        "config wifi-iface 'default_radio0'\n\toption ssid 'AcmePlug-Setup'\n\toption encryption 'none'\n"
    ),
    "etc/mosquitto/mosquitto.conf": "listener 8883\ncafile /etc/ssl/ca.pem\ntls_version tlsv1\n",
    "etc/app/cloud.json": '{"broker": "mqtt.acme.example", "username": "plug", "password": "Acme2024!"}\n',
    "etc/version": "acme-plug 1.1.0\n",
}


def write_sample_rootfs(root: Path) -> Path:
    """Write the sample firmware tree under ``root`` (created) and return it."""
    for relative, text in _FILES.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


_SOURCES: dict[str, str] = {
    "main.c": """#include <stdio.h>
#include <string.h>

#include "pairing.h"

int main(int argc, char **argv)
{
    char name[DEVICE_NAME_MAX + 1];
    if (argc < 2) {
        fprintf(stderr, "usage: plugd NAME\\n");
        return 2;
    }
    set_device_name(name, argv[1]);
    printf("paired as %s\\n", name);
    return connect_cloud();
}
""",
    "pairing.h": """#ifndef PAIRING_H
#define PAIRING_H

#define DEVICE_NAME_MAX 32

void set_device_name(char *out, const char *request);
int connect_cloud(void);

#endif
""",
    "pairing.c": """#include <stdio.h>
#include <string.h>

#include "pairing.h"

/* The name the phone app sends when pairing (at most DEVICE_NAME_MAX bytes, says the protocol). */
void set_device_name(char *out, const char *request)
{
    char name[DEVICE_NAME_MAX + 1];
    strcpy(name, request); /* planted: the request's length is never checked */
    snprintf(out, DEVICE_NAME_MAX + 1, "%s", name);
}
""",
    "cloud.c": """#include <openssl/ssl.h>

#include "pairing.h"

/* planted: a fleet-wide credential compiled into every device */
static const char *CLOUD_PASSWORD = "Acme-Plug-Cloud-2024!";

int connect_cloud(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        return 1;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); /* planted: the server is never authenticated */
    (void)CLOUD_PASSWORD;
    SSL_CTX_free(ctx);
    return 0;
}
""",
}


def write_sample_source(root: Path) -> Path:
    """Write the sample application source under ``root`` (created) and return it."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in _SOURCES.items():
        (root / name).write_text(text)
    return root
